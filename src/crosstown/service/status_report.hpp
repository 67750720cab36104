// crosstown::StatusReport: what the status page shows, read at once from the live process.
//
// collect_status reads relaxed atomics, per-thread histograms, the pool's notable callbacks, the
// sample ring and the jobs sampler's last snapshot (never the store itself); the only lock it
// shares with workers (the notable callbacks') it holds for a pointer copy, so an operator
// refreshing the page cannot slow the service down. Like a /metrics scrape, the figures are
// statistics read one after the other, not one instant.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "crosstown/deferred/deferred_counts.hpp"
#include "crosstown/deferred/notable_callbacks.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/pool_config.hpp"
#include "crosstown/observe/latency_histogram.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/jobs_sampler.hpp"
#include "crosstown/service/sample_ring.hpp"

namespace crosstown {

struct StatusReport {
    // The process.
    long pid = 0;
    bool accepting = false;
    std::chrono::system_clock::time_point now;
    std::chrono::steady_clock::duration uptime{};
    // Requests.
    std::array<std::uint64_t, 6> requests_by_class{};  // [1] 1xx .. [5] 5xx
    std::uint64_t requests_total = 0;
    std::uint64_t undelivered = 0;
    std::int64_t in_flight = 0;
    unsigned responders = 0;
    unsigned busy_responders = 0;
    LatencyHistogram::Snapshot handler_time;
    // The pool and its deferred callbacks.
    PoolConfig pool;
    unsigned busy_workers = 0;
    unsigned live_workers = 0;
    std::size_t queue_depth = 0;
    DeferredCounts deferred;
    std::uint64_t slow_callbacks = 0;
    LatencyHistogram::Snapshot queue_wait;
    LatencyHistogram::Snapshot run_time;
    NotableCallbacks::Snapshot notable;
    // Durable jobs, as the sampler last saw them; null when the journal is off.
    std::shared_ptr<const JobsSnapshot> jobs;
    // The last minutes, oldest first.
    std::vector<StatusSample> samples;
};

// Where collect_status reads from.
struct StatusSources {
    const RequestStats& requests;
    const Pool& pool;
    const SampleRing& samples;
    const JobsSampler* jobs = nullptr;  // null when the journal is off
    unsigned responders;
    unsigned busy_responders;
    bool accepting;
    std::chrono::steady_clock::time_point started;
};

StatusReport collect_status(const StatusSources& sources);

// The sample the server's sampler adds to the ring every second; `jobs` as it just took it
// (null when the journal is off).
StatusSample take_sample(const RequestStats& requests, const Pool& pool, unsigned busy_responders,
                         const JobsSnapshot* jobs);

}  // namespace crosstown
