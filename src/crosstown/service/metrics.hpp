// crosstown::render_metrics: the process's counters in the Prometheus text format (0.0.4),
// what Server::metrics() returns for a /metrics endpoint (served as kMetricsContentType).
// Any thread; reads relaxed counters, so a scrape is a statistic, not a snapshot of one instant.
#pragma once

#include <string>
#include <string_view>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/jobs_sampler.hpp"

namespace crosstown {

// A label value as the text format wants it: backslash, double quote and newline escaped, so
// that a kind named by the application cannot break the exposition.
std::string escape_label_value(std::string_view value);

// `jobs`: the durable jobs' runner, null when the journal is off (then no crosstown_jobs_*
// or crosstown_journal_* families). `census`: the jobs sampler's last snapshot, for the store's
// counts (crosstown_jobs_stored, crosstown_jobs_lag_seconds), null before the first.
std::string render_metrics(const RequestStats& requests, const Pool& pool, unsigned busy_responders,
                           const JobRunner* jobs = nullptr, const JobsSnapshot* census = nullptr);

}  // namespace crosstown
