#include "crosstown/service/status_report.hpp"

#include <unistd.h>

namespace crosstown {

StatusReport collect_status(const StatusSources& sources) {
    const auto& requests = sources.requests;
    const auto& pool = sources.pool;
    StatusReport report{
        .pid = static_cast<long>(::getpid()),
        .accepting = sources.accepting,
        .now = std::chrono::system_clock::now(),
        .uptime = std::chrono::steady_clock::now() - sources.started,
        .requests_total = requests.total(),
        .undelivered = requests.undelivered(),
        .in_flight = requests.in_flight(),
        .responders = sources.responders,
        .busy_responders = sources.busy_responders,
        .handler_time = requests.handler_time(),
        .pool = pool.config(),
        .busy_workers = pool.busy_workers(),
        .live_workers = pool.live_workers(),
        .queue_depth = pool.queue_depth(),
        .deferred = pool.counters().snapshot(),
        .slow_callbacks = pool.slow_callbacks(),
        .queue_wait = pool.queue_wait(),
        .run_time = pool.run_time(),
        .notable = pool.notable_callbacks(),
        .jobs = sources.jobs != nullptr ? sources.jobs->latest() : nullptr,
        .samples = sources.samples.samples(),
    };
    for (int c = 1; c <= 5; ++c) report.requests_by_class[c] = requests.requests(c);
    return report;
}

StatusSample take_sample(const RequestStats& requests, const Pool& pool, unsigned busy_responders,
                         const JobsSnapshot* jobs) {
    const auto counts = pool.counters().snapshot();
    return {.at = std::chrono::steady_clock::now(),
            .requests = requests.total(),
            .callbacks_done = counts.completed + counts.failed,
            .queue_depth = pool.queue_depth(),
            .busy_workers = pool.busy_workers(),
            .busy_responders = busy_responders,
            .job_runs = jobs != nullptr ? jobs->runs : 0,
            .job_lag_seconds = jobs != nullptr ? jobs->worst_lag_seconds : 0};
}

}  // namespace crosstown
