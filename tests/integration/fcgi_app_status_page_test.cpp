// GET /status checked in a real browser: headless chromium renders the page fcgi_app serves
// through nginx, and every figure on it must be the figure GET /status?json holds; with
// JavaScript and without. A screenshot is kept for people to look at (SCREENSHOT_PATH, in the
// build directory). /metrics and ?text are checked against the same JSON.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "support/app_checks.hpp"
#include "support/eventually.hpp"
#include "support/headless_chromium.hpp"
#include "support/nginx_stack.hpp"
#include "support/temp_dir.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kCharts = {"requests_per_second", "queue_depth", "busy_workers"};

json status_json(const NginxStack& stack) { return json::parse(stack.get("/status?json").body); }

// Load with something of everything: calls that fail (every 7th throws), calls slower than
// --slow-callback (all of them: 150 ms against 100 ms), more calls than workers (a queue),
// plain pages and a 404.
void serve_load(const NginxStack& stack) {
    for (int batch = 0; batch < 3; ++batch) {
        EXPECT_EQ(http(stack.port(), "POST", "/calls?count=20&latency_ms=150&fail_every=7").status,
                  202);
        EXPECT_EQ(stack.get("/hello").status, 200);
    }
    EXPECT_EQ(stack.get("/nowhere").status, 404);
}

// Every callback registered has run (or failed), no worker is busy, nothing waits, and the
// charts have a few samples: from here on only requests move the figures.
bool at_rest(const json& doc) {
    const auto& d = doc["deferred"];
    const auto n = [&](const char* key) { return d[key].get<long>(); };
    return n("registered") == n("skipped") + n("forgotten") + n("dispatched") &&
           n("completed") + n("failed") == n("dispatched") && doc["pool"]["busy_workers"] == 0 &&
           doc["pool"]["queue_depth"] == 0 && doc["charts"]["busy_workers"].size() >= 3;
}

// An app that has served the load above and come to rest.
class StatusPageThroughNginx : public ::testing::Test {
  protected:
    void SetUp() override {
        serve_load(stack_);
        // 60 calls of 150 ms on 4 workers: about 2.3 s, and a chart sample a second.
        json last;
        eventually(
            [&] {
                last = status_json(stack_);
                return at_rest(last);
            },
            30s, 100ms);
        ASSERT_TRUE(at_rest(last)) << last.dump(2);
    }

    NginxStack stack_{{"--slow-callback", "100ms", "--workers", "4"}};
};

// The same, seen through chromium. Without chromium these tests fail: a test that skips
// would let a machine without it pass having checked nothing.
class StatusPageInChromium : public StatusPageThroughNginx {
  protected:
    void SetUp() override {
        ASSERT_STRNE(CHROMIUM_PATH, "") << "chromium is not installed; script/test installs it";
        StatusPageThroughNginx::SetUp();
    }

    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(stack_.port()) + "/status";
    }

    const HeadlessChromium chromium_{CHROMIUM_PATH};
};

// What chromium's serialiser escapes in text (&, <, >, no-break space), and the page's own
// five, undone.
std::string unescape_html(std::string text) {
    const std::pair<std::string, std::string> entities[] = {
        {"&lt;", "<"},        {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"},
        {"&nbsp;", "\u00a0"}, {"&amp;", "&"}};  // last: "&amp;lt;" is "&lt;" as text
    for (const auto& [entity, character] : entities) {
        text = replace_all(text, entity, character);
    }
    return text;
}

// The figures a page marks, <span ... data-key="PATH">VALUE</span>, by path, as shown.
std::map<std::string, std::string> marked_figures(const std::string& dom) {
    static const std::regex marked(R"re(<span[^>]*\sdata-key="([^"]+)"[^>]*>([^<]*)</span>)re");
    std::map<std::string, std::string> figures;
    for (std::sregex_iterator it(dom.begin(), dom.end(), marked), end; it != end; ++it) {
        const bool first = figures.emplace((*it)[1], unescape_html((*it)[2])).second;
        EXPECT_TRUE(first) << "twice on the page: " << (*it)[1];
    }
    return figures;
}

json::json_pointer pointer(std::string path) {
    std::replace(path.begin(), path.end(), '.', '/');
    return json::json_pointer("/" + path);
}

// A JSON value as the page shows it: a string as it is, a number as nlohmann prints it.
std::string as_shown(const json& value) {
    return value.is_string() ? value.get<std::string>() : value.dump();
}

// The JSON is read right after the page, and the page's own request is answered in between:
// the request figures it touches move, by a little. Counters only grow; levels (the page's
// request is in flight in both reads) may go either way.
const std::set<std::string> kGrowingByThePageFetch = {"requests.total", "requests.2xx",
                                                      "requests.handler.count"};
const std::set<std::string> kLevelsDuringThePageFetch = {"requests.in_flight",
                                                         "requests.busy_responders"};
constexpr double kPageFetchSlack = 3;

// That the page's figure at `key` agrees with `now`, the JSON's, read just after.
void expect_agrees(const std::string& key, const std::string& shown, const json& now) {
    if (key.starts_with("requests.handler.p")) {
        // Quantiles of a histogram that the page's fetch adds to move either way, by any
        // amount with so few requests: a number, no more.
        EXPECT_GE(std::stod(shown), 0) << key;
    } else if (key == "process.time") {
        // UTC to the second, ISO 8601: text order is time order.
        EXPECT_LE(shown, now.get<std::string>()) << key;
    } else if (kGrowingByThePageFetch.contains(key)) {
        const auto grew = now.get<double>() - std::stod(shown);
        EXPECT_GE(grew, 0) << key << " went back";
        EXPECT_LE(grew, kPageFetchSlack) << key;
    } else if (kLevelsDuringThePageFetch.contains(key)) {
        EXPECT_LE(std::abs(now.get<double>() - std::stod(shown)), kPageFetchSlack) << key;
    } else {
        // Everything else stands still at rest: the pool, the callbacks, the other counters.
        EXPECT_EQ(shown, as_shown(now)) << key;
    }
}

// How many points the polyline in the chart marked data-chart="key" has; nullopt when the
// page has no such chart, or it has no polyline.
std::optional<std::size_t> chart_points(const std::string& dom, const std::string& key) {
    const auto svg = dom.find("data-chart=\"" + key + "\"");
    if (svg == std::string::npos) return std::nullopt;
    const auto chart = dom.substr(svg, dom.find("</svg>", svg) - svg);
    static const std::regex polyline(R"re(<polyline[^>]*\spoints="([^"]*)")re");
    std::smatch match;
    if (!std::regex_search(chart, match, polyline)) return std::nullopt;
    std::istringstream points(match[1]);
    std::size_t count = 0;
    for (std::string point; points >> point;) ++count;
    return count;
}

TEST_F(StatusPageInChromium, EveryFigureOnThePageIsTheJsonFigure) {
    const auto figures = marked_figures(chromium_.dom(url()));
    const auto now = status_json(stack_);
    ASSERT_GE(figures.size(), 40u) << "figures on the page";
    EXPECT_TRUE(figures.contains("deferred.slowest.0.name"));
    EXPECT_TRUE(figures.contains("deferred.recent_failures.0.error"));
    for (const auto& [key, shown] : figures) {
        ASSERT_TRUE(now.contains(pointer(key))) << key << " is on the page, not in the JSON";
        expect_agrees(key, shown, now.at(pointer(key)));
    }
    // The load did what it was for: the page had failures and slow callbacks to show.
    EXPECT_GT(now["deferred"]["failed"].get<long>(), 0);
    EXPECT_GT(now["deferred"]["slow"].get<long>(), 0);
}

TEST_F(StatusPageInChromium, EachChartHasAPointPerSample) {
    const auto started = Clock::now();
    const auto dom = chromium_.dom(url());
    const auto now = status_json(stack_);
    // One sample a second: between the page's read and the JSON's, the charts gain at most one
    // per second since chromium started, and one more for a sample taken just then.
    const auto gained = std::chrono::ceil<std::chrono::seconds>(Clock::now() - started).count() + 1;
    for (const auto& key : kCharts) {
        const auto points = chart_points(dom, key);
        ASSERT_TRUE(points.has_value()) << "no chart with a polyline for " << key;
        const auto samples = now["charts"][key].size();
        EXPECT_GE(*points, 3u) << key;
        EXPECT_LE(*points, samples) << key;
        EXPECT_LE(samples - *points, static_cast<std::size_t>(gained)) << key;
    }
}

TEST_F(StatusPageInChromium, WorksWithoutJavaScript) {
    const HeadlessChromium no_scripts(CHROMIUM_PATH, /*javascript=*/false);
    // First, that this browser really runs no script.
    EXPECT_THAT(no_scripts.dom("data:text/html,<p id=probe>off</p><script>"
                               "document.getElementById('probe').textContent='on'</script>"),
                HasSubstr(">off<"));

    const auto dom = no_scripts.dom(url());
    const auto figures = marked_figures(dom);
    const auto now = status_json(stack_);
    ASSERT_GE(figures.size(), 40u) << "figures on the page";
    for (const auto& [key, shown] : figures) {
        if (key.starts_with("deferred.")) {
            EXPECT_EQ(shown, as_shown(now.at(pointer(key)))) << key;
        }
    }
    EXPECT_EQ(figures.at("deferred.completed"), now["deferred"]["completed"].dump());
    for (const auto& key : kCharts) EXPECT_TRUE(chart_points(dom, key).has_value()) << key;
}

TEST_F(StatusPageThroughNginx, MetricsCountWhatTheJsonCounts) {
    const auto metrics = stack_.get("/metrics").body;
    const auto now = status_json(stack_);  // at rest: the callbacks' figures stand still
    const auto& deferred = now["deferred"];
    static const std::regex outcome(R"re(\ncrosstown_deferred_total\{outcome="(\w+)"\} (\d+))re");
    std::set<std::string> outcomes;
    for (std::sregex_iterator it(metrics.begin(), metrics.end(), outcome), end; it != end; ++it) {
        const std::string name = (*it)[1];
        outcomes.insert(name);
        ASSERT_TRUE(deferred.contains(name)) << name << " is in /metrics, not in the JSON";
        EXPECT_EQ(std::stol((*it)[2]), deferred.at(name).get<long>()) << name;
    }
    EXPECT_TRUE(outcomes.contains("completed") && outcomes.contains("failed")) << metrics;
    EXPECT_EQ(metric_value(metrics, "crosstown_deferred_slow_total"),
              deferred["slow"].get<double>());
}

// The number after `word` on the "deferred" line of GET /status?text; -1 when absent.
long deferred_line_count(const std::string& text, const std::string& word) {
    const auto line = text.find("\ndeferred ");
    if (line == std::string::npos) return -1;
    const std::regex count("\\b" + word + " (\\d+)\\b");
    std::smatch match;
    const auto deferred = text.substr(line, text.find('\n', line + 1) - line);
    return std::regex_search(deferred, match, count) ? std::stol(match[1]) : -1;
}

TEST_F(StatusPageThroughNginx, TextCountsWhatTheJsonCounts) {
    const auto text = stack_.get("/status?text").body;
    const auto now = status_json(stack_);
    const auto& deferred = now["deferred"];
    EXPECT_EQ(deferred_line_count(text, "completed"), deferred["completed"].get<long>()) << text;
    EXPECT_EQ(deferred_line_count(text, "failed"), deferred["failed"].get<long>()) << text;
}

// With durable jobs (a SQLite journal): calls that die after their 5 attempts, calls scheduled
// ten minutes ahead, calls that succeed, and in-memory calls as before, so that the page has
// something in every section.
class StatusPageWithJobs : public ::testing::Test {
  protected:
    static constexpr long kDead = 3, kScheduled = 2;

    void SetUp() override {
        serve_load(stack_);
        const auto post = [&](const std::string& query) {
            EXPECT_EQ(http(stack_.port(), "POST", "/calls?durable=1&" + query).status, 202)
                << query;
        };
        post("count=3&fail_first=5&latency_ms=0");  // dead after 10+20+40+80 ms of backoff
        post("count=2&delay_ms=600000&latency_ms=0");
        post("count=4&latency_ms=0");
        json last;
        eventually(
            [&] {
                last = status_json(stack_);
                return at_rest(last) && jobs_at_rest(last);
            },
            30s, 100ms);
        ASSERT_TRUE(at_rest(last) && jobs_at_rest(last)) << last.dump(2);
    }

    // The census shows the dead and the scheduled calls, nothing else waits or runs, and the
    // jobs' charts have a few samples.
    static bool jobs_at_rest(const json& doc) {
        if (!doc.contains("jobs") || doc["jobs"]["kinds"].size() != 1) return false;
        const auto& kind = doc["jobs"]["kinds"][0];
        return kind["dead"] == kDead && kind["scheduled"] == kScheduled && kind["ready"] == 0 &&
               kind["running"] == 0 && kind["retrying"] == 0 &&
               doc["charts"]["job_lag_seconds"].size() >= 3;
    }

    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(stack_.port()) + "/status";
    }

    test::TempDir dir_;
    NginxStack stack_{{"--slow-callback", "100ms", "--workers", "4", "--journal", dir_ / "jobs.db",
                       "--call-backoff", "10ms"}};
};

class StatusPageWithJobsInChromium : public StatusPageWithJobs {
  protected:
    void SetUp() override {
        ASSERT_STRNE(CHROMIUM_PATH, "") << "chromium is not installed; script/test installs it";
        StatusPageWithJobs::SetUp();
    }

    const HeadlessChromium chromium_{CHROMIUM_PATH};
};

// At rest the census stands still, but for its time and the runs a second, whose window grows
// while the runs do not.
void expect_job_figure_agrees(const std::string& key, const std::string& shown, const json& now) {
    if (key == "jobs.as_of") {
        EXPECT_LE(shown, now.get<std::string>()) << key;
    } else if (key == "jobs.window_seconds") {
        EXPECT_LE(std::stod(shown), now.get<double>()) << key;
    } else if (key.ends_with(".runs_per_second")) {
        EXPECT_GE(std::stod(shown), now.get<double>()) << key;
    } else {
        EXPECT_EQ(shown, as_shown(now)) << key;
    }
}

TEST_F(StatusPageWithJobsInChromium, EveryJobFigureOnThePageIsTheJsonFigure) {
    const auto dom = chromium_.dom(url());
    const auto figures = marked_figures(dom);
    const auto now = status_json(stack_);
    std::size_t jobs = 0;
    for (const auto& [key, shown] : figures) {
        ASSERT_TRUE(now.contains(pointer(key))) << key << " is on the page, not in the JSON";
        if (!key.starts_with("jobs.")) continue;
        ++jobs;
        expect_job_figure_agrees(key, shown, now.at(pointer(key)));
    }
    // When it was counted and over what window, a kind's eight columns, and six fields of each
    // dead job.
    EXPECT_GE(jobs, 2 + 8 + 6 * kDead) << "job figures on the page";
    EXPECT_EQ(figures.at("jobs.kinds.0.kind"), "place-call");
    EXPECT_EQ(figures.at("jobs.kinds.0.dead"), std::to_string(kDead));
    EXPECT_EQ(figures.at("jobs.kinds.0.scheduled"), std::to_string(kScheduled));
    EXPECT_THAT(figures.at("jobs.latest_dead.0.error"), HasSubstr("failed (simulated), attempt 5"));
    EXPECT_EQ(figures.at("jobs.latest_dead.0.attempts"), "5");
    for (const auto* key : {"job_runs_per_second", "job_lag_seconds"}) {
        const auto points = chart_points(dom, key);
        ASSERT_TRUE(points.has_value()) << "no chart with a polyline for " << key;
        EXPECT_GE(*points, 3u) << key;
    }
}

// A screenshot, for people: what the page looks like after some load (charts, failures, jobs).
TEST_F(StatusPageWithJobsInChromium, Screenshot) {
    std::filesystem::remove(SCREENSHOT_PATH);
    chromium_.screenshot(url(), SCREENSHOT_PATH);
    ASSERT_TRUE(std::filesystem::exists(SCREENSHOT_PATH)) << SCREENSHOT_PATH;
    const auto png = read_file(SCREENSHOT_PATH);
    EXPECT_GT(png.size(), 10'000u) << "more than a blank page";
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    // The IHDR chunk comes first: width and height, big-endian, at 16 and 20.
    const auto at = [&](std::size_t i) { return static_cast<unsigned char>(png.at(i)); };
    EXPECT_EQ(at(16) << 24 | at(17) << 16 | at(18) << 8 | at(19), 1280);
    EXPECT_EQ(at(20) << 24 | at(21) << 16 | at(22) << 8 | at(23), 1000);
}

// /metrics reads the same census as the page, so at rest they agree exactly.
TEST_F(StatusPageWithJobs, MetricsCountWhatTheJsonCounts) {
    const auto metrics = stack_.get("/metrics").body;
    const auto now = status_json(stack_);
    const auto& kind = now["jobs"]["kinds"][0];
    for (const auto* state : {"ready", "running", "scheduled", "retrying", "dead"}) {
        const auto series =
            fmt::format(R"(crosstown_jobs_stored{{kind="place-call",state="{}"}})", state);
        EXPECT_EQ(metric_value(metrics, series), kind[state].get<double>()) << series;
    }
    EXPECT_EQ(metric_value(metrics, R"(crosstown_jobs_lag_seconds{kind="place-call"})"),
              kind["lag_seconds"].get<double>());
    // And the runner's own count of the dead agrees with the store's.
    EXPECT_EQ(metric_value(metrics, R"(crosstown_jobs_total{kind="place-call",outcome="dead"})"),
              kDead);
}

TEST_F(StatusPageWithJobs, TextCountsWhatTheJsonCounts) {
    const auto text = stack_.get("/status?text").body;
    EXPECT_THAT(text, HasSubstr(fmt::format("jobs      place-call ready 0 running 0 scheduled {} "
                                            "retrying 0 dead {} lag 0 s",
                                            kScheduled, kDead)));
    EXPECT_THAT(text, HasSubstr("attempt 5"));
    std::size_t dead_lines = 0;
    for (auto at = text.find("\ndead      job "); at != std::string::npos;
         at = text.find("\ndead      job ", at + 1)) {
        ++dead_lines;
    }
    EXPECT_EQ(dead_lines, static_cast<std::size_t>(kDead)) << text;
}

// Without a journal the page has no jobs section and no jobs' charts.
TEST_F(StatusPageThroughNginx, HasNoJobsSectionWithoutAJournal) {
    const auto now = status_json(stack_);
    EXPECT_FALSE(now.contains("jobs"));
    EXPECT_FALSE(now["charts"].contains("job_lag_seconds"));
    EXPECT_THAT(stack_.get("/status").body, ::testing::Not(HasSubstr("Durable jobs")));
}

}  // namespace
}  // namespace crosstown::test
