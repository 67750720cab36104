#include <fmt/format.h>
#include <gtest/gtest.h>

#include <crosstown/http/router.hpp>
#include <crosstown/testing/test_client.hpp>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/sample_ring.hpp"
#include "crosstown/service/status_document.hpp"
#include "crosstown/service/status_page.hpp"
#include "crosstown/service/status_report.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A process's worth of sources with some history: requests by class, callbacks that completed,
// one slow, two that failed (one with a name that would be markup if not escaped).
class StatusPage : public ::testing::Test {
  protected:
    StatusPage() {
        stats_.record(200, 10, 1ms, true);
        stats_.record(200, 10, 2ms, true);
        stats_.record(404, 10, 1ms, true);
        stats_.record(500, 10, 1ms, false);
        auto outcome = std::make_shared<ResponseOutcome>(ResponseOutcome{.request_id = "req-1"});
        pool_.submit({[] {}, "quick", outcome, {}});
        pool_.submit({[] { std::this_thread::sleep_for(30ms); }, "slow-report", outcome, {}});
        pool_.submit({[] { throw std::runtime_error("line <busy> & down"); },
                      "<script>alert(1)</script>", outcome, {}});
        pool_.submit({[] { throw std::runtime_error("no answer"); }, "call-2", outcome, {}});
        pool_.wait_idle();
        for (int i = 0; i < 3; ++i) samples_.add(take_sample(stats_, pool_, 1, nullptr));
    }

    StatusReport report() const {
        return collect_status({.requests = stats_,
                               .pool = pool_,
                               .samples = samples_,
                               .responders = 8,
                               .busy_responders = 1,
                               .accepting = true,
                               .started = std::chrono::steady_clock::now() - 90s});
    }

    test::LogCapture quiet_;  // the failing callbacks log
    RequestStats stats_;
    Pool pool_{{.workers = 2, .queue_capacity = 64}};
    SampleRing samples_;
};

// The figures an HTML page marks with data-key, by key, as the page shows them.
std::map<std::string, std::string> marked_figures(const std::string& html) {
    static const std::regex marked(R"re(<span data-key="([^"]+)">([^<]*)</span>)re");
    std::map<std::string, std::string> figures;
    for (std::sregex_iterator it(html.begin(), html.end(), marked), end; it != end; ++it) {
        figures[(*it)[1]] = (*it)[2];
    }
    return figures;
}

std::string as_shown(const json& value) {
    return value.is_string() ? value.get<std::string>() : value.dump();
}

json at_path(const json& doc, std::string path) {
    std::replace(path.begin(), path.end(), '.', '/');
    return doc.at(json::json_pointer("/" + path));
}

TEST_F(StatusPage, TheDocumentHoldsTheFigures) {
    const auto doc = status_document(report());
    EXPECT_EQ(doc["process"]["uptime_seconds"], 90);
    EXPECT_TRUE(doc["process"]["accepting"].get<bool>());
    EXPECT_EQ(doc["requests"]["total"], 4);
    EXPECT_EQ(doc["requests"]["2xx"], 2);
    EXPECT_EQ(doc["requests"]["4xx"], 1);
    EXPECT_EQ(doc["requests"]["5xx"], 1);
    EXPECT_EQ(doc["requests"]["undelivered"], 1);
    EXPECT_EQ(doc["requests"]["responders"], 8);
    EXPECT_EQ(doc["pool"]["workers"], 2);
    EXPECT_EQ(doc["pool"]["queue_capacity"], 64);
    EXPECT_EQ(doc["pool"]["overflow"], "block");
    EXPECT_EQ(doc["deferred"]["dispatched"], 4);
    EXPECT_EQ(doc["deferred"]["completed"], 2);
    EXPECT_EQ(doc["deferred"]["failed"], 2);
    EXPECT_EQ(doc["deferred"]["run"]["count"], 4);
    EXPECT_GE(doc["deferred"]["run"]["p99_ms"].get<double>(), 25.0);  // the 30 ms one
    EXPECT_EQ(doc["deferred"]["slowest"][0]["name"], "slow-report");
    EXPECT_EQ(doc["deferred"]["slowest"][0]["request_id"], "req-1");
    EXPECT_GE(doc["deferred"]["slowest"][0]["run_ms"].get<double>(), 30.0);
    ASSERT_EQ(doc["deferred"]["recent_failures"].size(), 2U);
    EXPECT_EQ(doc["deferred"]["recent_failures"][1]["error"], "line <busy> & down");
    EXPECT_EQ(doc["charts"]["requests_per_second"].size(), 2U);  // from 3 samples
}

TEST_F(StatusPage, TimesAreUtcWhateverTheLocalZone) {
    const char* saved = std::getenv("TZ");
    const std::string previous = saved != nullptr ? saved : "";
    ::setenv("TZ", "Asia/Tokyo", 1);  // UTC+9, no daylight saving
    ::tzset();
    auto r = report();
    r.now = std::chrono::system_clock::time_point{};  // the epoch
    const auto doc = status_document(r);
    if (saved != nullptr) {
        ::setenv("TZ", previous.c_str(), 1);
    } else {
        ::unsetenv("TZ");
    }
    ::tzset();
    EXPECT_EQ(doc["process"]["time"], "1970-01-01T00:00:00Z");
}

TEST_F(StatusPage, JsonSurvivesBytesThatAreNotUtf8) {
    auto r = report();
    r.notable.recent_failures.push_back({"call-\xff", "req-\xfe", 1ms, {}, "bad \xc3 byte"});
    const auto text = render_status(r, StatusFormat::json);
    const auto doc = json::parse(text);  // valid JSON, with U+FFFD where the bytes were
    EXPECT_EQ(doc["deferred"]["recent_failures"].back()["name"], "call-\xef\xbf\xbd");
}

TEST_F(StatusPage, EveryFigureOnThePageIsTheDocumentsFigure) {
    const auto r = report();
    const auto doc = status_document(r);
    const auto figures = marked_figures(render_status(r, StatusFormat::html));
    EXPECT_GE(figures.size(), 40U);
    for (const auto* key : {"requests.5xx", "pool.queue_depth", "deferred.abandoned",
                            "deferred.run.p99_ms", "deferred.recent_failures.1.error"}) {
        EXPECT_TRUE(figures.contains(key)) << key;
    }
    for (const auto& [key, shown] : figures) {
        // The page escapes what it shows; compare with the document's text escaped alike.
        std::string expected = as_shown(at_path(doc, key));
        expected = std::regex_replace(expected, std::regex("&"), "&amp;");
        expected = std::regex_replace(expected, std::regex("<"), "&lt;");
        expected = std::regex_replace(expected, std::regex(">"), "&gt;");
        EXPECT_EQ(shown, expected) << key;
    }
}

TEST_F(StatusPage, EscapesWhatApplicationsName) {
    const auto html = render_status(report(), StatusFormat::html);
    EXPECT_EQ(html.find("<script>alert"), std::string::npos);
    EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
    EXPECT_NE(html.find("line &lt;busy&gt; &amp; down"), std::string::npos);
}

TEST_F(StatusPage, IsSelfContained) {
    const auto html = render_status(report(), StatusFormat::html);
    EXPECT_EQ(html.find("src="), std::string::npos);  // no scripts, images or frames to fetch
    EXPECT_EQ(html.find("stylesheet"), std::string::npos);
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
    EXPECT_NE(html.find("<svg"), std::string::npos);
}

TEST_F(StatusPage, TextSummarisesForCurl) {
    const auto text = render_status(report(), StatusFormat::text);
    EXPECT_NE(text.find("answered 4 (2xx 2 3xx 0 4xx 1 5xx 1)"), std::string::npos) << text;
    EXPECT_NE(text.find("dispatched 4 completed 2 failed 2"), std::string::npos) << text;
    EXPECT_NE(text.find("slowest   slow-report (request req-1)"), std::string::npos) << text;
    EXPECT_NE(text.find("failed    call-2 (request req-1)"), std::string::npos) << text;
}

TEST_F(StatusPage, TheQueryChoosesTheFormat) {
    Router router;
    router.get("/status", [this](Request& req, Response& res) { serve_status(report(), req, res); });
    testing::TestClient client(router);
    const auto html = client.get("/status");
    EXPECT_EQ(html.header("Content-Type"), "text/html; charset=utf-8");
    EXPECT_EQ(html.header("Cache-Control"), "no-store");
    const auto as_json = client.get("/status?json");
    EXPECT_EQ(as_json.header("Content-Type"), "application/json");
    EXPECT_EQ(json::parse(as_json.body)["deferred"]["failed"], 2);
    const auto text = client.get("/status?text");
    EXPECT_EQ(text.header("Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(text.body.rfind("crosstown pid ", 0), 0U);
}

// A report with durable jobs: one kind named to break HTML, lagging, and one dead job.
StatusReport with_jobs(StatusReport r, std::string error = {}) {
    auto jobs = std::make_shared<JobsSnapshot>();
    jobs->taken_at = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    KindCensus census{.kind = "<b>sms</b>", .ready = 7, .running = 2, .scheduled = 3,
                      .retrying = 1, .dead = 4, .oldest_ready_ms = 1'799'999'998'500};
    jobs->kinds.push_back({.census = census, .lag_seconds = 1.5, .runs_per_second = 2.25});
    StoredJob dead{.id = 42, .kind = "<b>sms</b>", .request_id = "req-9", .attempts = 5};
    dead.run_at_ms = 1'799'999'990'000;
    dead.last_error = "gateway said <no> & hung up";
    jobs->latest_dead.push_back(dead);
    jobs->partial = true;
    jobs->error = std::move(error);
    jobs->window_seconds = 60.4;
    r.jobs = std::move(jobs);
    return r;
}

TEST_F(StatusPage, TheJobsSectionHoldsEachKindAndTheLatestDead) {
    const auto doc = status_document(with_jobs(report()));
    const auto& kind = doc["jobs"]["kinds"][0];
    EXPECT_EQ(kind["kind"], "<b>sms</b>");
    EXPECT_EQ(kind["ready"], 7);
    EXPECT_EQ(kind["running"], 2);
    EXPECT_EQ(kind["scheduled"], 3);
    EXPECT_EQ(kind["retrying"], 1);
    EXPECT_EQ(kind["dead"], 4);
    EXPECT_EQ(kind["lag_seconds"], 1.5);
    EXPECT_EQ(kind["runs_per_second"], 2.25);
    EXPECT_EQ(doc["jobs"]["as_of"], "2027-01-15T08:00:00Z");
    EXPECT_EQ(doc["jobs"]["window_seconds"], 60);
    EXPECT_TRUE(doc["jobs"]["partial"].get<bool>());
    const auto& dead = doc["jobs"]["latest_dead"][0];
    EXPECT_EQ(dead["id"], 42);
    EXPECT_EQ(dead["attempts"], 5);
    EXPECT_EQ(dead["died_at"], "2027-01-15T07:59:50Z");
    EXPECT_EQ(dead["error"], "gateway said <no> & hung up");
    EXPECT_TRUE(doc["charts"].contains("job_lag_seconds"));
    auto never = with_jobs(report(), "unreachable");
    std::const_pointer_cast<JobsSnapshot>(never.jobs)->taken_at = {};
    EXPECT_EQ(status_document(never)["jobs"]["as_of"], "never") << "no census has succeeded";
    EXPECT_FALSE(status_document(report()).contains("jobs")) << "no journal, no jobs section";
    EXPECT_FALSE(status_document(report())["charts"].contains("job_lag_seconds"));
}

TEST_F(StatusPage, TheJobsSectionOnThePageIsEscapedAndMarked) {
    const auto r = with_jobs(report(), "journal /x: unreachable");
    const auto doc = status_document(r);
    const auto html = render_status(r, StatusFormat::html);
    EXPECT_EQ(html.find("<b>sms"), std::string::npos);
    EXPECT_EQ(html.find("<no>"), std::string::npos);
    EXPECT_NE(html.find("at least these"), std::string::npos) << "the partial count is said";
    EXPECT_NE(html.find("could not be read"), std::string::npos) << "the failed census is said";
    const auto figures = marked_figures(html);
    for (const auto* key : {"jobs.kinds.0.kind", "jobs.kinds.0.ready", "jobs.kinds.0.lag_seconds",
                            "jobs.latest_dead.0.error", "jobs.latest_dead.0.died_at",
                            "jobs.error", "jobs.as_of"}) {
        EXPECT_TRUE(figures.contains(key)) << key;
    }
    EXPECT_EQ(figures.at("jobs.kinds.0.kind"), "&lt;b&gt;sms&lt;/b&gt;");
    EXPECT_EQ(figures.at("jobs.kinds.0.running"), "2");
    for (const auto* chart : {"job_lag_seconds", "job_runs_per_second"}) {
        EXPECT_NE(html.find(fmt::format("data-chart=\"{}\"", chart)), std::string::npos) << chart;
    }
}

TEST_F(StatusPage, TheJobsLinesSummariseForCurl) {
    const auto text = render_status(with_jobs(report()), StatusFormat::text);
    EXPECT_NE(text.find("jobs      <b>sms</b> ready 7 running 2 scheduled 3 retrying 1 dead 4 "
                        "lag 1.5 s runs 2.25/s"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("dead      job 42 (<b>sms</b>) after 5 attempts, died "
                        "2027-01-15T07:59:50Z (request req-9): gateway said <no> & hung up"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("(partial: at least these)"), std::string::npos) << text;
}

}  // namespace
}  // namespace crosstown
