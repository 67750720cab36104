// crosstown::LatencyHistogram: a lock-free, fixed-bucket histogram of durations.
//
// Buckets are cumulative-ready for Prometheus (`le` upper bounds in seconds, 50 us .. 10 s,
// then +Inf). record() is two relaxed atomic adds, cheap enough for the pool's hot path; keep
// one histogram per writing thread (the pool does, per worker) so those adds do not contend,
// and merge snapshots to read.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace crosstown {

class LatencyHistogram {
  public:
    static constexpr std::array<double, 16> kBoundsSeconds{
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
        0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};

    void record(std::chrono::nanoseconds duration);

    struct Snapshot {
        std::array<std::uint64_t, kBoundsSeconds.size() + 1> buckets{};  // last one is +Inf
        std::uint64_t count = 0;
        double sum_seconds = 0;

        Snapshot& operator+=(const Snapshot& other);
        // The q-quantile (0 < q <= 1) in seconds, interpolated linearly inside its bucket as
        // Prometheus's histogram_quantile does; 0 when empty. A quantile in the +Inf bucket
        // reads as the last bound: "at least 10 s".
        double quantile(double q) const;
    };
    Snapshot snapshot() const;

  private:
    std::array<std::atomic<std::uint64_t>, kBoundsSeconds.size() + 1> buckets_{};
    std::atomic<std::uint64_t> sum_nanos_{0};
};

}  // namespace crosstown
