#include "crosstown/service/status_document.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace crosstown {
namespace {

using nlohmann::json;

// Milliseconds, to the microsecond: what the page shows and the JSON holds, so both agree.
double milliseconds(double seconds) { return std::round(seconds * 1e6) / 1e3; }

double milliseconds(std::chrono::nanoseconds d) {
    return milliseconds(std::chrono::duration<double>(d).count());
}

// fmt 9 formats a system_clock time point in local time: go through gmtime explicitly.
std::string utc(std::chrono::system_clock::time_point t) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

// Three significant digits (see the header). Whole values go out as integers, so that 1090
// does not read "1090.0".
json three_digits(double value) {
    if (value <= 0) return 0;
    const double scale = std::pow(10.0, 3 - std::ceil(std::log10(value)));
    const double rounded = std::round(value * scale) / scale;
    if (rounded >= 1 && rounded == std::floor(rounded)) return static_cast<std::int64_t>(rounded);
    return rounded;
}

// A whole value as an integer (0, not 0.0), like three_digits, keeping every digit otherwise.
json plain_number(double value) {
    if (value == std::floor(value) && std::abs(value) < 1e15) {
        return static_cast<std::int64_t>(value);
    }
    return value;
}

json percentiles(const LatencyHistogram::Snapshot& snapshot) {
    return {{"count", snapshot.count},
            {"p50_ms", three_digits(snapshot.quantile(0.50) * 1e3)},
            {"p90_ms", three_digits(snapshot.quantile(0.90) * 1e3)},
            {"p99_ms", three_digits(snapshot.quantile(0.99) * 1e3)}};
}

json notable(const std::vector<NotableCallback>& callbacks, bool with_error) {
    json list = json::array();
    for (const auto& c : callbacks) {
        json entry{{"name", c.name},
                   {"request_id", c.request_id},
                   {"run_ms", milliseconds(c.run_time)},
                   {"ended_at", utc(c.ended_at)}};
        if (with_error) entry["error"] = c.error;
        list.push_back(std::move(entry));
    }
    return list;
}

// Per-second series from the samples: a rate from consecutive counters, or the level itself.
// The jobs' two only with durable jobs.
json charts(const std::vector<StatusSample>& samples, bool with_jobs) {
    json rps = json::array(), queue = json::array(), workers = json::array(),
         responders = json::array(), job_runs = json::array(), job_lag = json::array();
    for (std::size_t i = 1; i < samples.size(); ++i) {
        const auto& previous = samples[i - 1];
        const auto& sample = samples[i];
        const double seconds = std::chrono::duration<double>(sample.at - previous.at).count();
        const double rate =
            seconds > 0 ? static_cast<double>(sample.requests - previous.requests) / seconds : 0;
        rps.push_back(std::round(rate * 10) / 10);
        queue.push_back(sample.queue_depth);
        workers.push_back(sample.busy_workers);
        responders.push_back(sample.busy_responders);
        const double runs =
            seconds > 0 ? static_cast<double>(sample.job_runs - previous.job_runs) / seconds : 0;
        job_runs.push_back(std::round(runs * 10) / 10);
        job_lag.push_back(plain_number(sample.job_lag_seconds));
    }
    json section{{"interval_seconds", SampleRing::kInterval.count()},
                 {"requests_per_second", rps},
                 {"queue_depth", queue},
                 {"busy_workers", workers},
                 {"busy_responders", responders}};
    if (with_jobs) {
        section["job_runs_per_second"] = std::move(job_runs);
        section["job_lag_seconds"] = std::move(job_lag);
    }
    return section;
}

// Unix ms as UTC; "-" for none.
std::string utc_ms(std::int64_t unix_ms) {
    if (unix_ms <= 0) return "-";
    return utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms)));
}

json jobs_section(const JobsSnapshot& jobs) {
    json kinds = json::array();
    for (const auto& status : jobs.kinds) {
        const auto& c = status.census;
        kinds.push_back(
            {{"kind", c.kind},
             {"ready", c.ready},
             {"running", c.running},
             {"scheduled", c.scheduled},
             {"retrying", c.retrying},
             {"dead", c.dead},
             {"lag_seconds", plain_number(status.lag_seconds)},
             {"runs_per_second", plain_number(std::round(status.runs_per_second * 100) / 100)}});
    }
    json dead = json::array();
    for (const auto& job : jobs.latest_dead) {
        dead.push_back({{"id", job.id},
                        {"kind", job.kind},
                        {"attempts", job.attempts},
                        {"died_at", utc_ms(job.run_at_ms)},
                        {"request_id", job.request_id},
                        {"error", job.last_error}});
    }
    const bool never = jobs.taken_at == std::chrono::system_clock::time_point{};
    return {{"as_of", never ? std::string("never") : utc(jobs.taken_at)},
            {"error", jobs.error},
            {"partial", jobs.partial},
            {"window_seconds", plain_number(std::round(jobs.window_seconds))},
            {"kinds", std::move(kinds)},
            {"latest_dead", std::move(dead)}};
}

json requests_section(const StatusReport& r) {
    json section{{"total", r.requests_total},
                 {"undelivered", r.undelivered},
                 {"in_flight", r.in_flight},
                 {"responders", r.responders},
                 {"busy_responders", r.busy_responders},
                 {"handler", percentiles(r.handler_time)}};
    for (int c = 1; c <= 5; ++c) section[fmt::format("{}xx", c)] = r.requests_by_class[c];
    return section;
}

json deferred_section(const StatusReport& r) {
    const auto& d = r.deferred;
    return {{"registered", d.registered},
            {"forgotten", d.forgotten},
            {"skipped", d.skipped},
            {"dispatched", d.dispatched},
            {"completed", d.completed},
            {"failed", d.failed},
            {"rejected", d.rejected},
            {"abandoned", d.abandoned},
            {"shed", d.shed},
            {"slow", r.slow_callbacks},
            {"queue_wait", percentiles(r.queue_wait)},
            {"run", percentiles(r.run_time)},
            {"slowest", notable(r.notable.slowest, false)},
            {"recent_failures", notable(r.notable.recent_failures, true)}};
}

}  // namespace

json status_document(const StatusReport& r) {
    json doc{{"process",
              {{"pid", r.pid},
               {"accepting", r.accepting},
               {"uptime_seconds", std::round(std::chrono::duration<double>(r.uptime).count())},
               {"time", utc(r.now)}}},
             {"requests", requests_section(r)},
             {"pool",
              {{"workers", r.live_workers},
               {"min_workers", r.pool.min_workers},
               {"max_workers", r.pool.workers},
               {"busy_workers", r.busy_workers},
               {"queue_depth", r.queue_depth},
               {"queue_capacity", r.pool.queue_capacity},
               {"overflow", overflow_name(r.pool.overflow)},
               {"slow_callback_ms", r.pool.slow_callback.count()}}},
             {"deferred", deferred_section(r)},
             {"charts", charts(r.samples, r.jobs != nullptr)}};
    if (r.jobs) doc["jobs"] = jobs_section(*r.jobs);
    return doc;
}

}  // namespace crosstown
