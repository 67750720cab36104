#include "crosstown/service/status_page.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "crosstown/detail/html_escape.hpp"
#include "crosstown/service/status_document.hpp"

namespace crosstown {
namespace {

using nlohmann::json;
using detail::html_escape;
using Out = std::back_insert_iterator<std::string>;

// A figure of the document at `path` ("requests.2xx"), marked with its path.
std::string figure(const json& doc, std::string_view path) {
    std::string pointer(1, '/');
    pointer.append(path);
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    const auto& value = doc.at(json::json_pointer(pointer));
    const auto text = value.is_string() ? value.get<std::string>() : value.dump();
    return fmt::format(R"(<span data-key="{}">{}</span>)", html_escape(path), html_escape(text));
}

// A table row: a label and the figure at `path`.
void row(Out out, const json& doc, std::string_view label, std::string_view path) {
    fmt::format_to(out, "<tr><th>{}</th><td>{}</td></tr>\n", label, figure(doc, path));
}

// A latency row: p50, p90 and p99 of the percentiles at `path`.
void latency_row(Out out, const json& doc, std::string_view label, std::string_view path) {
    fmt::format_to(out, "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>\n", label,
                   figure(doc, fmt::format("{}.p50_ms", path)),
                   figure(doc, fmt::format("{}.p90_ms", path)),
                   figure(doc, fmt::format("{}.p99_ms", path)));
}

std::string duration_words(double seconds) {
    auto s = static_cast<long long>(seconds);
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m {}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h {}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d {}h", s / 86400, s % 86400 / 3600);
}

// A small line chart of one series, stretched over the samples there are (a fresh process
// has only seconds of them), the newest at the right edge.
void chart(Out out, const json& doc, std::string_view title, std::string_view key) {
    constexpr double kWidth = 300, kHeight = 64;
    const auto& series = doc["charts"][std::string(key)];
    double top = 1;
    for (const auto& v : series) top = std::max(top, v.get<double>());
    const double step = kWidth / static_cast<double>(std::max<std::size_t>(series.size(), 2) - 1);
    std::string points;
    for (std::size_t i = 0; i < series.size(); ++i) {
        fmt::format_to(std::back_inserter(points), "{:.1f},{:.1f} ",
                       static_cast<double>(i) * step,
                       kHeight - 2 - series[i].get<double>() * (kHeight - 4) / top);
    }
    const auto last = series.empty() ? std::string("–") : series.back().dump();
    fmt::format_to(out,
                   R"(<figure class="chart"><figcaption>{} <b>{}</b> <small>max {}</small>)"
                   R"(</figcaption><svg viewBox="0 0 {} {}" preserveAspectRatio="none" )"
                   R"(role="img" aria-label="{} over the last {} seconds" data-chart="{}">)"
                   R"(<line x1="0" y1="{}" x2="{}" y2="{}" class="axis"/>)"
                   R"(<polyline points="{}"/></svg></figure>)"
                   "\n",
                   title, last, top, kWidth, kHeight, title, series.size(), key, kHeight - 2,
                   kWidth, kHeight - 2, points);
}

void notable_table(Out out, const json& doc, std::string_view title, std::string_view key,
                   bool with_error) {
    const auto& list = doc["deferred"][std::string(key)];
    fmt::format_to(out, "<section class=\"wide\"><h2>{}</h2>\n", title);
    if (list.empty()) {
        fmt::format_to(out, "<p class=\"none\">none yet</p></section>\n");
        return;
    }
    fmt::format_to(out, "<table class=\"list\"><tr><th>callback</th><th>request</th>"
                        "<th>ran (ms)</th><th>ended (UTC)</th>{}</tr>\n",
                   with_error ? "<th>error</th>" : "");
    for (std::size_t i = 0; i < list.size(); ++i) {
        const auto at = [&](std::string_view field) {
            return figure(doc, fmt::format("deferred.{}.{}.{}", key, i, field));
        };
        fmt::format_to(out, "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>",
                       at("name"), at("request_id"), at("run_ms"), at("ended_at"));
        if (with_error) fmt::format_to(out, "<td class=\"error\">{}</td>", at("error"));
        fmt::format_to(out, "</tr>\n");
    }
    fmt::format_to(out, "</table></section>\n");
}

constexpr std::string_view kStyle = R"(
:root{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2433;background:#f3f5f9}
body{margin:0}header{background:#1d2433;color:#fff;padding:12px 20px;display:flex;
gap:18px;align-items:baseline;flex-wrap:wrap}header h1{font-size:18px;margin:0}
header .state{padding:1px 8px;border-radius:9px;background:#2e9d5b}header .state.off{background:#c0392b}
header .meta{opacity:.8}header label{margin-left:auto;opacity:.8}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:14px;padding:16px 20px}
section{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;
color:#5a6478;margin:0 0 6px}table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:normal;color:#5a6478;padding:2px 8px 2px 0}
td{text-align:right;font-variant-numeric:tabular-nums;padding:2px 0}
table.list td{text-align:left;padding:2px 10px 2px 0}table.list th{font-size:12px}
td.error{color:#c0392b}meter{width:100%;height:10px}.bad{color:#c0392b;font-weight:600}
div.charts{display:flex;gap:20px;flex-wrap:wrap}div.charts figure{flex:1 1 200px}
table.latency th{text-align:right}table.latency th:first-child{text-align:left}
table.latency td{padding-left:12px}
figure.chart{margin:4px 0 10px}figure.chart svg{width:100%;height:64px;background:#f7f9fc}
figure.chart polyline{fill:none;stroke:#3867d6;stroke-width:1.5;vector-effect:non-scaling-stroke}
figure.chart .axis{stroke:#ccd3e0;vector-effect:non-scaling-stroke}figcaption small{color:#5a6478}
p.none{color:#5a6478;margin:4px 0}h2.next{margin-top:12px}footer{padding:0 20px 16px;color:#5a6478}
)";

constexpr std::string_view kRefresh = R"(<script>
(function(){var box=document.getElementById('refresh');
box.checked=localStorage.getItem('crosstown-status-refresh')!=='off';
box.onchange=function(){localStorage.setItem('crosstown-status-refresh',box.checked?'on':'off')};
setInterval(function(){if(box.checked)location.reload()},5000);})();
</script>)";

void html_header(Out out, const json& doc) {
    const auto& process = doc["process"];
    const bool accepting = process["accepting"].get<bool>();
    fmt::format_to(out,
                   "<header><h1>crosstown</h1><span class=\"state{}\">{}</span>"
                   "<span class=\"meta\">pid {} · up {} · {}</span>"
                   "<label><input type=\"checkbox\" id=\"refresh\"> refresh every 5 s</label>"
                   "</header>\n",
                   accepting ? "" : " off", accepting ? "accepting" : "not accepting",
                   figure(doc, "process.pid"),
                   duration_words(process["uptime_seconds"].get<double>()),
                   figure(doc, "process.time"));
}

void requests_card(Out out, const json& doc) {
    fmt::format_to(out, "<section><h2>Requests</h2><table>\n");
    row(out, doc, "answered", "requests.total");
    for (const auto* c : {"2xx", "3xx", "4xx", "5xx"}) {
        row(out, doc, c, fmt::format("requests.{}", c));
    }
    row(out, doc, "undelivered (client gone)", "requests.undelivered");
    row(out, doc, "in flight", "requests.in_flight");
    fmt::format_to(out, "</table></section>\n");
}

void pool_card(Out out, const json& doc) {
    const auto& pool = doc["pool"];
    const auto& requests = doc["requests"];
    fmt::format_to(out, "<section><h2>Threads and queue</h2><table>\n");
    fmt::format_to(out, "<tr><th>responders busy</th><td>{} / {}</td></tr>\n",
                   figure(doc, "requests.busy_responders"), figure(doc, "requests.responders"));
    fmt::format_to(out, "<tr><td colspan=2><meter min=0 max={} value={}></meter></td></tr>\n",
                   requests["responders"].dump(), requests["busy_responders"].dump());
    // Against the workers alive now, which the next row marks.
    fmt::format_to(out, "<tr><th>workers busy</th><td>{} / {}</td></tr>\n",
                   figure(doc, "pool.busy_workers"), pool["workers"].dump());
    fmt::format_to(out, "<tr><td colspan=2><meter min=0 max={} value={}></meter></td></tr>\n",
                   pool["workers"].dump(), pool["busy_workers"].dump());
    fmt::format_to(out, "<tr><th>workers alive (min..max)</th><td>{} ({}..{})</td></tr>\n",
                   figure(doc, "pool.workers"), figure(doc, "pool.min_workers"),
                   figure(doc, "pool.max_workers"));
    fmt::format_to(out, "<tr><th>queue</th><td>{} / {}</td></tr>\n",
                   figure(doc, "pool.queue_depth"), figure(doc, "pool.queue_capacity"));
    fmt::format_to(out,
                   "<tr><td colspan=2><meter min=0 max={} high={} value={}></meter></td></tr>\n",
                   pool["queue_capacity"].dump(), pool["queue_capacity"].get<double>() * 0.8,
                   pool["queue_depth"].dump());
    row(out, doc, "when full (overflow)", "pool.overflow");
    row(out, doc, "slow above (ms, 0: off)", "pool.slow_callback_ms");
    fmt::format_to(out, "</table></section>\n");
}

void deferred_card(Out out, const json& doc) {
    fmt::format_to(out, "<section><h2>Deferred callbacks</h2><table>\n");
    static constexpr std::pair<const char*, const char*> rows[] = {
        {"registered", "registered"},
        {"dispatched", "dispatched"},
        {"completed", "completed"},
        {"failed (threw)", "failed"},
        {"skipped (gate, undelivered)", "skipped"},
        {"forgotten", "forgotten"},
        {"rejected (queue full)", "rejected"},
        {"abandoned (drain deadline)", "abandoned"},
        {"shed (503 at registration)", "shed"},
        {"slow", "slow"}};
    for (const auto& [label, key] : rows) row(out, doc, label, fmt::format("deferred.{}", key));
    fmt::format_to(out, "</table></section>\n");
}

void latency_card(Out out, const json& doc) {
    fmt::format_to(out, "<section><h2>Latency (ms)</h2><table class=\"latency\">"
                        "<tr><th></th><th>p50</th><th>p90</th><th>p99</th></tr>\n");
    latency_row(out, doc, "handler", "requests.handler");
    latency_row(out, doc, "queue wait", "deferred.queue_wait");
    latency_row(out, doc, "run time", "deferred.run");
    fmt::format_to(out, "</table><p class=\"none\">Queue wait and run time of deferred "
                        "callbacks. Estimated from histogram buckets, as Prometheus does."
                        "</p></section>\n");
}

void charts_card(Out out, const json& doc) {
    const auto seconds = doc["charts"]["requests_per_second"].size() *
                         static_cast<std::size_t>(SampleRing::kInterval.count());
    fmt::format_to(out, "<section class=\"wide\"><h2>Last {} (at most {} minutes)</h2>"
                        "<div class=\"charts\">\n",
                   duration_words(static_cast<double>(seconds)),
                   SampleRing::kCapacity * SampleRing::kInterval.count() / 60);
    chart(out, doc, "requests/s", "requests_per_second");
    chart(out, doc, "queue depth", "queue_depth");
    chart(out, doc, "busy workers", "busy_workers");
    if (doc["charts"].contains("job_lag_seconds")) {
        chart(out, doc, "job runs/s", "job_runs_per_second");
        chart(out, doc, "job lag (s)", "job_lag_seconds");
    }
    fmt::format_to(out, "</div></section>\n");
}

void dead_jobs_table(Out out, const json& doc) {
    const auto& list = doc["jobs"]["latest_dead"];
    fmt::format_to(out, "<h2 class=\"next\">Latest dead jobs</h2>\n");
    if (list.empty()) {
        fmt::format_to(out, "<p class=\"none\">none</p>\n");
        return;
    }
    fmt::format_to(out, "<table class=\"list\"><tr><th>job</th><th>kind</th><th>attempts</th>"
                        "<th>died (UTC)</th><th>request</th><th>last error</th></tr>\n");
    for (std::size_t i = 0; i < list.size(); ++i) {
        const auto at = [&](std::string_view field) {
            return figure(doc, fmt::format("jobs.latest_dead.{}.{}", i, field));
        };
        fmt::format_to(out,
                       "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>"
                       "<td class=\"error\">{}</td></tr>\n",
                       at("id"), at("kind"), at("attempts"), at("died_at"), at("request_id"),
                       at("error"));
    }
    fmt::format_to(out, "</table>\n");
}

// Per kind: the store's counts (every instance's, with a shared store), lag and this
// process's runs; then the latest dead jobs.
void jobs_card(Out out, const json& doc) {
    const auto& jobs = doc["jobs"];
    fmt::format_to(out, "<section class=\"wide\"><h2>Durable jobs</h2>\n");
    fmt::format_to(out, "<p class=\"none\">Counted by the store at {}; runs a second by this "
                        "process over the last {} s.{}</p>\n",
                   figure(doc, "jobs.as_of"), figure(doc, "jobs.window_seconds"),
                   jobs["partial"].get<bool>()
                       ? " More jobs are scheduled or dead than one count takes in: at least "
                         "these."
                       : "");
    if (!jobs["error"].get<std::string>().empty()) {
        fmt::format_to(out, "<p class=\"bad\">The store could not be read: {}</p>\n",
                       figure(doc, "jobs.error"));
    }
    fmt::format_to(out, "<table class=\"list\"><tr><th>kind</th><th>ready</th><th>running</th>"
                        "<th>scheduled</th><th>retrying</th><th>dead</th><th>lag (s)</th>"
                        "<th>runs/s</th></tr>\n");
    static constexpr std::string_view kColumns[] = {"kind",     "ready", "running",
                                                    "scheduled", "retrying", "dead",
                                                    "lag_seconds", "runs_per_second"};
    for (std::size_t i = 0; i < jobs["kinds"].size(); ++i) {
        fmt::format_to(out, "<tr>");
        for (const auto column : kColumns) {
            const auto path = fmt::format("jobs.kinds.{}.{}", i, column);
            fmt::format_to(out, "<td>{}</td>", figure(doc, path));
        }
        fmt::format_to(out, "</tr>\n");
    }
    fmt::format_to(out, "</table>\n");
    dead_jobs_table(out, doc);
    fmt::format_to(out, "</section>\n");
}

std::string render_html(const json& doc) {
    std::string page;
    const Out out(page);
    fmt::format_to(out,
                   "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width\">"
                   "<link rel=\"icon\" href=\"data:,\"><title>crosstown status · pid {}</title>"
                   "<style>{}</style></head><body>\n",
                   doc["process"]["pid"].dump(), kStyle);
    html_header(out, doc);
    fmt::format_to(out, "<main>\n");
    requests_card(out, doc);
    pool_card(out, doc);
    deferred_card(out, doc);
    latency_card(out, doc);
    if (doc.contains("jobs")) jobs_card(out, doc);
    charts_card(out, doc);
    notable_table(out, doc, "Slowest callbacks", "slowest", false);
    notable_table(out, doc, "Recent failures", "recent_failures", true);
    fmt::format_to(out,
                   "</main>\n<footer>Also as <a href=\"?json\">JSON</a> and "
                   "<a href=\"?text\">text</a>. Figures are read one after another, not at one "
                   "instant.</footer>\n{}</body></html>\n",
                   kRefresh);
    return page;
}

std::string percentiles_text(const json& percentiles) {
    return fmt::format("p50 {} p90 {} p99 {} ms", percentiles["p50_ms"].dump(),
                       percentiles["p90_ms"].dump(), percentiles["p99_ms"].dump());
}

void notable_lines(Out out, const json& list, std::string_view label) {
    for (const auto& c : list) {
        fmt::format_to(out, "{:<10}{} (request {}) ran {} ms, ended {}{}\n", label,
                       c["name"].get<std::string>(), c["request_id"].get<std::string>(),
                       c["run_ms"].dump(), c["ended_at"].get<std::string>(),
                       c.contains("error") ? ": " + c["error"].get<std::string>() : "");
    }
}

// "jobs      KIND ready N running N ..." per kind, then "dead      job ID ..." per latest dead.
void jobs_lines(Out out, const json& jobs) {
    fmt::format_to(out, "jobs      counted at {}{}{}\n", jobs["as_of"].get<std::string>(),
                   jobs["partial"].get<bool>() ? " (partial: at least these)" : "",
                   jobs["error"].get<std::string>().empty()
                       ? ""
                       : "; not since: " + jobs["error"].get<std::string>());
    for (const auto& k : jobs["kinds"]) {
        fmt::format_to(out,
                       "jobs      {} ready {} running {} scheduled {} retrying {} dead {} "
                       "lag {} s runs {}/s\n",
                       k["kind"].get<std::string>(), k["ready"].dump(), k["running"].dump(),
                       k["scheduled"].dump(), k["retrying"].dump(), k["dead"].dump(),
                       k["lag_seconds"].dump(), k["runs_per_second"].dump());
    }
    for (const auto& d : jobs["latest_dead"]) {
        fmt::format_to(out, "dead      job {} ({}) after {} attempts, died {} (request {}): {}\n",
                       d["id"].dump(), d["kind"].get<std::string>(), d["attempts"].dump(),
                       d["died_at"].get<std::string>(), d["request_id"].get<std::string>(),
                       d["error"].get<std::string>());
    }
}

std::string render_text(const json& doc) {
    const auto& process = doc["process"];
    const auto& requests = doc["requests"];
    const auto& pool = doc["pool"];
    const auto& deferred = doc["deferred"];
    const auto n = [](const json& section, const char* key) { return section[key].dump(); };
    std::string text;
    const Out out(text);
    fmt::format_to(out, "crosstown pid {}, {}, up {}, at {}\n", n(process, "pid"),
                   process["accepting"].get<bool>() ? "accepting" : "not accepting",
                   duration_words(process["uptime_seconds"].get<double>()),
                   process["time"].get<std::string>());
    fmt::format_to(out,
                   "requests  answered {} (2xx {} 3xx {} 4xx {} 5xx {}), undelivered {}, "
                   "in flight {}, responders {}/{} busy\n",
                   n(requests, "total"), n(requests, "2xx"), n(requests, "3xx"),
                   n(requests, "4xx"), n(requests, "5xx"), n(requests, "undelivered"),
                   n(requests, "in_flight"), n(requests, "busy_responders"),
                   n(requests, "responders"));
    fmt::format_to(out, "handler   {}\n", percentiles_text(requests["handler"]));
    fmt::format_to(out, "pool      workers {}/{} busy ({}..{}), queue {}/{}, overflow {}\n",
                   n(pool, "busy_workers"), n(pool, "workers"), n(pool, "min_workers"),
                   n(pool, "max_workers"), n(pool, "queue_depth"), n(pool, "queue_capacity"),
                   pool["overflow"].get<std::string>());
    fmt::format_to(out,
                   "deferred  registered {} dispatched {} completed {} failed {} skipped {} "
                   "forgotten {} rejected {} abandoned {} shed {} slow {}\n",
                   n(deferred, "registered"), n(deferred, "dispatched"),
                   n(deferred, "completed"), n(deferred, "failed"), n(deferred, "skipped"),
                   n(deferred, "forgotten"), n(deferred, "rejected"), n(deferred, "abandoned"),
                   n(deferred, "shed"), n(deferred, "slow"));
    fmt::format_to(out, "wait      {}\nrun       {}\n", percentiles_text(deferred["queue_wait"]),
                   percentiles_text(deferred["run"]));
    notable_lines(out, deferred["slowest"], "slowest");
    notable_lines(out, deferred["recent_failures"], "failed");
    if (doc.contains("jobs")) jobs_lines(out, doc["jobs"]);
    return text;
}

}  // namespace

StatusFormat status_format(const Request& req) {
    if (req.query("json")) return StatusFormat::json;
    if (req.query("text")) return StatusFormat::text;
    return StatusFormat::html;
}

std::string render_status(const StatusReport& report, StatusFormat format) {
    const auto doc = status_document(report);
    switch (format) {
        // Names and errors come from applications and may hold any bytes: replace what is
        // not UTF-8 rather than fail the whole document.
        case StatusFormat::json: return doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        case StatusFormat::text: return render_text(doc);
        case StatusFormat::html: break;
    }
    return render_html(doc);
}

void serve_status(const StatusReport& report, const Request& req, Response& res) {
    const auto format = status_format(req);
    auto body = render_status(report, format);
    res.header("Cache-Control", "no-store");
    switch (format) {
        case StatusFormat::json: res.json(std::move(body)); break;
        case StatusFormat::text: res.text(std::move(body)); break;
        case StatusFormat::html: res.body(std::move(body), "text/html; charset=utf-8"); break;
    }
}

}  // namespace crosstown
