#include "crosstown/service/metrics.hpp"

#include <fmt/format.h>

#include <iterator>

namespace crosstown {
namespace {

using Out = std::back_insert_iterator<std::string>;

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
        {"registered", counts.registered}, {"forgotten", counts.forgotten},
        {"skipped", counts.skipped},       {"dispatched", counts.dispatched},
        {"completed", counts.completed},   {"failed", counts.failed},
        {"rejected", counts.rejected},     {"abandoned", counts.abandoned},
        {"shed", counts.shed}};
    for (const auto& [outcome, value] : outcomes) {
        fmt::format_to(out, "crosstown_deferred_total{{outcome=\"{}\"}} {}\n", outcome, value);
    }
    family(out, "crosstown_deferred_slow_total", "counter",
           "Callbacks that ran longer than --slow-callback.");
    fmt::format_to(out, "crosstown_deferred_slow_total {}\n", pool.slow_callbacks());
    gauge(out, "crosstown_deferred_queue_depth", "Deferred callbacks waiting for a worker.",
          pool.queue_depth());
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

}  // namespace

std::string render_metrics(const RequestStats& requests, const Pool& pool,
                           unsigned busy_responders) {
    std::string text;
    request_metrics(std::back_inserter(text), requests, busy_responders);
    deferred_metrics(std::back_inserter(text), pool);
    return text;
}

}  // namespace crosstown
