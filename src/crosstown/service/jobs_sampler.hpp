// crosstown::JobsSampler: the status page's view of durable jobs, kept ready so that neither
// the page nor /metrics ever queries the store.
//
// Its own thread (run(), started by the server while it serves) calls take() once a second: it
// asks the runner for a census (a query of the store, which may wait for it, so not on the
// thread that samples the charts) and keeps it, with each kind's lag and its runs per second
// over the charts' window, as an immutable JobsSnapshot that readers get with a pointer copy.
// When the store cannot be read the last snapshot stays, saying why, so the page still answers
// while the store is away.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "crosstown/jobs/job_census.hpp"
#include "crosstown/jobs/job_runner.hpp"

namespace crosstown {

struct KindStatus {
    KindCensus census;
    double lag_seconds = 0;  // how long the oldest ready job has waited since it was due
    // Attempts this process ended (succeeded, retried or dead) a second, over the window.
    double runs_per_second = 0;
};

struct JobsSnapshot {
    // The census's; the epoch while none has succeeded yet.
    std::chrono::system_clock::time_point taken_at;
    std::vector<KindStatus> kinds;       // by kind
    std::vector<StoredJob> latest_dead;  // the last to die first
    bool partial = false;                // JobCensus::partial
    // Why the last census failed (the store could not be read): this one is older. Empty when
    // it is the last.
    std::string error;
    double window_seconds = 0;  // over which runs_per_second are counted
    std::uint64_t runs = 0;     // attempts this process ended so far, every kind
    double worst_lag_seconds = 0;
};

class JobsSampler {
  public:
    static constexpr std::size_t kLatestDead = 5;

    explicit JobsSampler(const JobRunner& runner) : runner_(runner) {}

    // One census now. From one thread at a time: run()'s, or a test's.
    void take();
    // take() once a second until `stop`.
    void run(std::stop_token stop);
    // Any thread; null before the first take().
    std::shared_ptr<const JobsSnapshot> latest() const;

  private:
    using Clock = std::chrono::steady_clock;
    struct Ends {
        Clock::time_point at;
        std::map<std::string, std::uint64_t, std::less<>> by_kind;
    };
    void keep(std::shared_ptr<const JobsSnapshot> snapshot);

    const JobRunner& runner_;
    std::deque<Ends> ends_;  // the sampler thread's; the window's, oldest first

    mutable std::mutex mutex_;
    std::shared_ptr<const JobsSnapshot> latest_;  // guarded by mutex_
};

}  // namespace crosstown
