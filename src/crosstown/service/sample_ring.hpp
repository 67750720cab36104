// crosstown::SampleRing: the last minutes of the process, one StatusSample a second, for the
// status page's charts.
//
// One thread adds (the server's sampler), any thread copies. The mutex is the ring's own:
// neither requests nor deferred callbacks ever take it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace crosstown {

struct StatusSample {
    std::chrono::steady_clock::time_point at;
    std::uint64_t requests = 0;        // answered so far
    std::uint64_t callbacks_done = 0;  // deferred callbacks completed or failed so far
    std::size_t queue_depth = 0;
    unsigned busy_workers = 0;
    unsigned busy_responders = 0;
    std::uint64_t job_runs = 0;  // durable job attempts ended so far
    double job_lag_seconds = 0;  // the worst lag of any kind (JobsSnapshot)
};

class SampleRing {
  public:
    static constexpr std::size_t kCapacity = 300;  // five minutes at one a second
    static constexpr std::chrono::seconds kInterval{1};

    void add(const StatusSample& sample) {
        std::lock_guard lock(mutex_);
        samples_[next_] = sample;
        next_ = (next_ + 1) % kCapacity;
        if (size_ < kCapacity) ++size_;
    }

    // Oldest first.
    std::vector<StatusSample> samples() const {
        std::lock_guard lock(mutex_);
        std::vector<StatusSample> out;
        out.reserve(size_);
        for (std::size_t i = 0; i < size_; ++i) {
            out.push_back(samples_[(next_ + kCapacity - size_ + i) % kCapacity]);
        }
        return out;
    }

  private:
    mutable std::mutex mutex_;
    std::array<StatusSample, kCapacity> samples_{};  // guarded by mutex_
    std::size_t next_ = 0;                           // guarded by mutex_
    std::size_t size_ = 0;                           // guarded by mutex_
};

}  // namespace crosstown
