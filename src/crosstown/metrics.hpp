// crosstown::render_metrics: the process's counters in the Prometheus text format (0.0.4),
// for a /metrics endpoint:
//
//   router.get("/metrics", [&](auto&, auto& res) {
//       res.body(crosstown::render_metrics(server.request_stats(), server.pool(),
//                                          server.busy_responders()),
//                crosstown::kMetricsContentType);
//   });
#pragma once

#include <string>
#include <string_view>

#include "crosstown/pool.hpp"
#include "crosstown/request_stats.hpp"

namespace crosstown {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_metrics(const RequestStats& requests, const Pool& pool,
                           unsigned busy_responders);

}  // namespace crosstown
