// crosstown::status_document: a StatusReport as the one JSON document the status page's three
// views show (HTML, ?json, ?text), so that they cannot disagree.
//
// Sections: process, requests, pool, deferred (with the slowest and the latest failed
// callbacks), charts (per-second series from the sample ring), and with durable jobs, jobs (per
// kind, and the latest dead). Latency percentiles are in milliseconds to three significant
// digits: they are estimates from histogram buckets, and more digits would only pretend
// otherwise.
#pragma once

#include <nlohmann/json.hpp>

#include "crosstown/service/status_report.hpp"

namespace crosstown {

nlohmann::json status_document(const StatusReport& report);

}  // namespace crosstown
