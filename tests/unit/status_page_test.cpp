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
        for (int i = 0; i < 3; ++i) samples_.add(take_sample(stats_, pool_, 1));
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

}  // namespace
}  // namespace crosstown
