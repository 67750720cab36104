// fcgi_app's handlers driven through TestClient: no nginx, no threads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/testing/test_client.hpp>
#include <nlohmann/json.hpp>

#include "call_ledger.hpp"
#include "routes.hpp"

namespace fcgi_app {
namespace {

using crosstown::testing::TestClient;
using ::testing::HasSubstr;
using json = nlohmann::json;

class FcgiAppRoutes : public ::testing::Test {
  protected:
    FcgiAppRoutes() { add_routes(router_, app_); }

    CallLedger ledger_{3};
    bool accepting_ = true;
    App app_{ledger_, 50, [] { return std::string("# metrics\n"); }, [this] { return accepting_; },
             [](crosstown::Request&, crosstown::Response& res) { res.text("status page\n"); }};
    crosstown::Router router_;
    TestClient client_{router_};
};

TEST_F(FcgiAppRoutes, Hello) {
    const auto res = client_.get("/hello");
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.body, "hello\n");
    EXPECT_EQ(res.header("Content-Type"), "text/plain; charset=utf-8");
}

TEST_F(FcgiAppRoutes, PostCallsRegistersOneCallbackPerCall) {
    const auto res = client_.post("/calls?count=4&latency_ms=0");
    EXPECT_EQ(res.status, 202);
    const auto body = json::parse(res.body);
    EXPECT_EQ(body["count"], 4);
    EXPECT_EQ(client_.deferred().size(), 4u);

    const auto batch = body["batch"].get<std::string>();
    auto status = json::parse(client_.get("/calls/" + batch).body);
    EXPECT_EQ(status["pending"], 4) << "nothing ran before run_deferred";
    EXPECT_EQ(status["started"], 0);
    EXPECT_TRUE(status["min_start_delay_ms"].is_null());

    const auto report = client_.run_deferred();
    EXPECT_EQ(report.ran, 4u);
    status = json::parse(client_.get("/calls/" + batch).body);
    EXPECT_EQ(status["placed"], 4);
    EXPECT_EQ(status["pending"], 0);
    EXPECT_EQ(status["started_before_finish"], 0);
    EXPECT_GE(status["min_start_delay_ms"].get<double>(), 0.0);
}

TEST_F(FcgiAppRoutes, EveryKthCallFailsInIsolation) {
    const auto res = client_.post("/calls?count=6&latency_ms=0&fail_every=3");
    const auto report = client_.run_deferred();
    EXPECT_EQ(report.ran, 6u);
    EXPECT_EQ(report.failed, 2u);
    const auto batch = json::parse(res.body)["batch"].get<std::string>();
    const auto status = json::parse(client_.get("/calls/" + batch).body);
    EXPECT_EQ(status["placed"], 4);
    EXPECT_EQ(status["failed"], 2);
}

TEST_F(FcgiAppRoutes, CallsAreBounded) {
    auto res = client_.post("/calls?count=51");
    EXPECT_EQ(res.status, 400);
    EXPECT_THAT(res.body, HasSubstr("count: 51 is outside 1..50"));
    EXPECT_TRUE(client_.deferred().empty());
    EXPECT_EQ(client_.post("/calls?count=0").status, 400);
    EXPECT_EQ(client_.post("/calls?count=x").status, 400);
    EXPECT_EQ(client_.post("/calls?latency_ms=60001").status, 400);
    EXPECT_EQ(client_.post("/calls?count=2&latency_ms=-1").status, 400);
}

TEST_F(FcgiAppRoutes, UnknownAndForgottenBatchesAre404) {
    EXPECT_EQ(client_.get("/calls/nope").status, 404);
    const auto first = json::parse(client_.post("/calls?latency_ms=0").body)["batch"];
    for (int i = 0; i < 3; ++i) client_.post("/calls?latency_ms=0");
    EXPECT_EQ(client_.get("/calls/" + first.get<std::string>()).status, 404)
        << "only the 3 most recent batches are kept";
    client_.run_deferred();
}

TEST_F(FcgiAppRoutes, FailIs500NamingTheRequest) {
    const auto res = client_.get("/fail", {{"X-Request-Id", "f-1"}});
    EXPECT_EQ(res.status, 500);
    EXPECT_EQ(res.body, "internal error; request id f-1\n");
}

TEST_F(FcgiAppRoutes, HealthzFollowsAccepting) {
    EXPECT_EQ(client_.get("/healthz").status, 200);
    accepting_ = false;
    EXPECT_EQ(client_.get("/healthz").status, 503);
}

TEST_F(FcgiAppRoutes, MetricsIsPrometheusText) {
    const auto res = client_.get("/metrics");
    EXPECT_EQ(res.status, 200);
    EXPECT_THAT(std::string(res.header("Content-Type").value_or("")), HasSubstr("version=0.0.4"));
    EXPECT_EQ(res.body, "# metrics\n");
}

TEST_F(FcgiAppRoutes, WrongMethodIs405) {
    const auto res = client_.get("/calls");
    EXPECT_EQ(res.status, 405);
    EXPECT_EQ(res.header("Allow"), "POST");
}

}  // namespace
}  // namespace fcgi_app
