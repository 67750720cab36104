#include "crosstown/service/metrics.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <iterator>
#include <tuple>

#include "crosstown/jobs/redis/redis_job_store.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

namespace crosstown {
namespace {

using Out = std::back_insert_iterator<std::string>;

}  // namespace

std::string escape_label_value(std::string_view value) {
    std::string escaped;
    escaped.reserve(value.size());
    for (const char c : value) {
        switch (c) {
            case '\\':
                escaped += "\\\\";
                break;
            case '"':
                escaped += "\\\"";
                break;
            case '\n':
                escaped += "\\n";
                break;
            default:
                escaped += c;
        }
    }
    return escaped;
}

namespace {

void family(Out out, std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <class Value>
void gauge(Out out, std::string_view name, std::string_view help, Value value) {
    family(out, name, "gauge", help);
    fmt::format_to(out, "{} {}\n", name, value);
}

void histogram(Out out, std::string_view name, std::string_view help,
               const LatencyHistogram::Snapshot& snapshot) {
    family(out, name, "histogram", help);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < LatencyHistogram::kBoundsSeconds.size(); ++i) {
        cumulative += snapshot.buckets[i];
        fmt::format_to(out, "{}_bucket{{le=\"{}\"}} {}\n", name,
                       LatencyHistogram::kBoundsSeconds[i], cumulative);
    }
    fmt::format_to(out, "{}_bucket{{le=\"+Inf\"}} {}\n", name, snapshot.count);
    fmt::format_to(out, "{}_sum {}\n{}_count {}\n", name, snapshot.sum_seconds, name,
                   snapshot.count);
}

void request_metrics(Out out, const RequestStats& requests, unsigned busy_responders) {
    family(out, "crosstown_requests_total", "counter", "Requests answered, by status class.");
    for (int c = 1; c <= 5; ++c) {
        fmt::format_to(out, "crosstown_requests_total{{code=\"{}xx\"}} {}\n", c,
                       requests.requests(c));
    }
    family(out, "crosstown_responses_undelivered_total", "counter",
           "Responses that did not reach nginx (the client went away).");
    fmt::format_to(out, "crosstown_responses_undelivered_total {}\n", requests.undelivered());
    family(out, "crosstown_response_body_bytes_total", "counter", "Response body bytes sent.");
    fmt::format_to(out, "crosstown_response_body_bytes_total {}\n", requests.response_bytes());
    gauge(out, "crosstown_requests_in_flight", "Requests being handled now.", requests.in_flight());
    gauge(out, "crosstown_responders_busy", "Responder threads serving a request now.",
          busy_responders);
    histogram(out, "crosstown_handler_seconds", "Time spent in handlers.", requests.handler_time());
}

void deferred_metrics(Out out, const Pool& pool) {
    const auto counts = pool.counters().snapshot();
    family(out, "crosstown_deferred_total", "counter",
           "Deferred callbacks by outcome (registered = skipped + forgotten + dispatched; shed "
           "ones were refused at registration and never registered).");
    const std::pair<std::string_view, std::uint64_t> outcomes[] = {
        {"registered", counts.registered},
        {"forgotten", counts.forgotten},
        {"skipped", counts.skipped},
        {"dispatched", counts.dispatched},
        {"completed", counts.completed},
        {"failed", counts.failed},
        {"rejected", counts.rejected},
        {"abandoned", counts.abandoned},
        {"shed", counts.shed}};
    for (const auto& [outcome, value] : outcomes) {
        fmt::format_to(out, "crosstown_deferred_total{{outcome=\"{}\"}} {}\n", outcome, value);
    }
    family(out, "crosstown_deferred_slow_total", "counter",
           "Callbacks that ran longer than --slow-callback.");
    fmt::format_to(out, "crosstown_deferred_slow_total {}\n", pool.slow_callbacks());
    gauge(out, "crosstown_deferred_queue_depth", "Deferred callbacks waiting for a worker.",
          pool.queue_depth());
    gauge(out, "crosstown_deferred_queue_reserved",
          "Queue slots kept by requests for the callbacks they will dispatch (block).",
          pool.reserved_room());
    gauge(out, "crosstown_deferred_queue_capacity", "Most callbacks that may wait.",
          pool.config().queue_capacity);
    gauge(out, "crosstown_pool_workers", "Worker threads alive now.", pool.live_workers());
    gauge(out, "crosstown_pool_workers_max", "Most worker threads (--workers MIN..MAX).",
          pool.config().workers);
    gauge(out, "crosstown_pool_busy_workers", "Workers running a callback now.",
          pool.busy_workers());
    histogram(out, "crosstown_deferred_queue_wait_seconds",
              "From FCGX_Finish_r to the callback's start.", pool.queue_wait());
    histogram(out, "crosstown_deferred_run_seconds", "Callback run time.", pool.run_time());
}

void batch_histogram(Out out, const SqliteJobStore::BatchSizes& sizes) {
    constexpr std::string_view name = "crosstown_journal_batch_jobs";
    family(out, name, "histogram", "Jobs committed per journal transaction (group commit).");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < SqliteJobStore::kBatchBounds.size(); ++i) {
        cumulative += sizes.buckets[i];
        fmt::format_to(out, "{}_bucket{{le=\"{}\"}} {}\n", name, SqliteJobStore::kBatchBounds[i],
                       cumulative);
    }
    fmt::format_to(out, "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, sizes.count,
                   name, sizes.sum, name, sizes.count);
}

void journal_metrics(Out out, const SqliteJobStore& sqlite) {
    family(out, "crosstown_journal_failed_transactions_total", "counter",
           "Journal transactions that failed (disk full, I/O error); their requests got 503.");
    fmt::format_to(out, "crosstown_journal_failed_transactions_total {}\n",
                   sqlite.failed_transactions());
    gauge(out, "crosstown_journal_unique_keys",
          "Unique keys the journal keeps in memory (live jobs', and finished ones' not forgotten "
          "yet: until a little after their unique_for ends).",
          sqlite.unique_keys_held());
    histogram(out, "crosstown_journal_commit_seconds",
              "From a request's commit to its transaction's end.", sqlite.commit_latency());
    batch_histogram(out, sqlite.batch_sizes());
}

void redis_metrics(Out out, const RedisJobStore& redis) {
    const auto figures = redis.figures();
    const std::tuple<std::string_view, std::string_view, std::string_view, std::uint64_t> rows[] = {
        {"crosstown_redis_claimed_total", "counter",
         "Jobs this instance claimed from consumers that stopped (XAUTOCLAIM).", figures.claimed},
        {"crosstown_redis_orphans_released_total", "counter",
         "Held jobs of instances that stopped beating, released by this one.",
         figures.orphans_released},
        {"crosstown_redis_failed_commands_total", "counter",
         "Round trips to Redis that failed (server unreachable, timeout).",
         figures.failed_commands},
        {"crosstown_redis_round_trips_total", "counter",
         "Round trips to Redis: a command, a script or a whole pipeline each.",
         figures.round_trips},
        {"crosstown_redis_writes_along_total", "counter",
         "Releases and finishes sent in the pipeline of a group of holds, not in one of their "
         "own.",
         figures.writes_along},
        {"crosstown_redis_unwritten", "gauge",
         "Releases and finishes not written yet, tried again at each beat.", figures.unwritten}};
    for (const auto& [name, type, help, value] : rows) {
        family(out, name, type, help);
        fmt::format_to(out, "{} {}\n", name, value);
    }
    std::vector<RedisStreamFigures> streams;
    try {
        streams = redis.streams();
    } catch (const JournalError&) {
        return;  // unreachable now: the counters above say so
    }
    family(out, "crosstown_redis_stream_length", "gauge",
           "Entries in each kind's stream: released and not finished, on any instance.");
    for (const auto& s : streams) {
        fmt::format_to(out, "crosstown_redis_stream_length{{kind=\"{}\"}} {}\n",
                       escape_label_value(s.kind), s.length);
    }
    family(out, "crosstown_redis_pending", "gauge",
           "Entries of each kind's stream taken by some consumer and not finished.");
    for (const auto& s : streams) {
        fmt::format_to(out, "crosstown_redis_pending{{kind=\"{}\"}} {}\n",
                       escape_label_value(s.kind), s.pending);
    }
}

void job_metrics(Out out, const JobRunner& jobs) {
    const auto kinds = jobs.report();
    family(out, "crosstown_jobs_total", "counter",
           "Durable jobs by kind and outcome (retried: failed attempts rescheduled).");
    for (const auto& kind : kinds) {
        const auto& c = kind.counts;
        const std::pair<std::string_view, std::uint64_t> outcomes[] = {
            {"enqueued", c.enqueued},   {"replayed", c.replayed},        {"received", c.received},
            {"succeeded", c.succeeded}, {"retried", c.retried},          {"dead", c.dead},
            {"skipped", c.skipped},     {"deduplicated", c.deduplicated}};
        for (const auto& [outcome, value] : outcomes) {
            fmt::format_to(out, "crosstown_jobs_total{{kind=\"{}\",outcome=\"{}\"}} {}\n",
                           escape_label_value(kind.kind), outcome, value);
        }
    }
    family(out, "crosstown_jobs", "gauge",
           "Durable jobs by kind and state now (retrying, scheduled: waiting here for their time; "
           "outstanding: in the journal, not finished; at shutdown these are kept).");
    for (const auto& kind : kinds) {
        const std::pair<std::string_view, std::uint64_t> states[] = {
            {"running", kind.running},
            {"waiting", kind.waiting},
            {"retrying", kind.retrying},
            {"scheduled", kind.scheduled},
            {"outstanding", kind.counts.outstanding}};
        for (const auto& [state, value] : states) {
            fmt::format_to(out, "crosstown_jobs{{kind=\"{}\",state=\"{}\"}} {}\n",
                           escape_label_value(kind.kind), state, value);
        }
    }
    unsigned stuck = 0;
    for (const auto& kind : kinds) stuck += kind.stuck;
    gauge(out, "crosstown_jobs_stuck",
          "Durable job attempts given up past their timeout whose handlers still run, each "
          "holding a worker.",
          stuck);
    if (const auto* sqlite = dynamic_cast<const SqliteJobStore*>(&jobs.store())) {
        journal_metrics(out, *sqlite);
    } else if (const auto* redis = dynamic_cast<const RedisJobStore*>(&jobs.store())) {
        redis_metrics(out, *redis);
    }
    histogram(out, "crosstown_jobs_start_delay_seconds",
              "From a job's commit to its first attempt's start.", jobs.start_delay());
    histogram(out, "crosstown_jobs_run_seconds", "Durable job attempt run time.", jobs.run_time());
}

// The store's counts as the status page shows them: the same snapshot, so the two agree.
void census_metrics(Out out, const JobsSnapshot& census) {
    family(out, "crosstown_jobs_stored", "gauge",
           "Durable jobs the store keeps, by kind and state, at the status page's last census "
           "(every instance's, with a shared store).");
    for (const auto& status : census.kinds) {
        const auto& c = status.census;
        const std::pair<std::string_view, std::uint64_t> states[] = {{"ready", c.ready},
                                                                     {"running", c.running},
                                                                     {"scheduled", c.scheduled},
                                                                     {"retrying", c.retrying},
                                                                     {"dead", c.dead}};
        for (const auto& [state, value] : states) {
            fmt::format_to(out, "crosstown_jobs_stored{{kind=\"{}\",state=\"{}\"}} {}\n",
                           escape_label_value(c.kind), state, value);
        }
    }
    family(out, "crosstown_jobs_lag_seconds", "gauge",
           "How long each kind's oldest ready job has waited since it was due.");
    for (const auto& status : census.kinds) {
        fmt::format_to(out, "crosstown_jobs_lag_seconds{{kind=\"{}\"}} {}\n",
                       escape_label_value(status.census.kind), status.lag_seconds);
    }
    // The two families above are as old as this: a store that cannot be read leaves them as
    // they were, and this grows.
    const auto age =
        std::chrono::duration<double>(std::chrono::system_clock::now() - census.taken_at).count();
    gauge(out, "crosstown_jobs_census_age_seconds",
          "Since the store's jobs were last counted (the status page's census).",
          std::round(age * 10) / 10);
}

}  // namespace

std::string render_metrics(const RequestStats& requests, const Pool& pool, unsigned busy_responders,
                           const JobRunner* jobs, const JobsSnapshot* census) {
    std::string text;
    request_metrics(std::back_inserter(text), requests, busy_responders);
    deferred_metrics(std::back_inserter(text), pool);
    if (jobs != nullptr) job_metrics(std::back_inserter(text), *jobs);
    if (jobs != nullptr && census != nullptr) census_metrics(std::back_inserter(text), *census);
    return text;
}

}  // namespace crosstown
