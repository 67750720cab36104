#include <gtest/gtest.h>

#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/deferred/response_outcome.hpp>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <crosstown/jobs/job_kinds.hpp>
#include <crosstown/testing/test_client.hpp>
#include <stdexcept>

namespace crosstown::testing {
namespace {

class TestClientTest : public ::testing::Test {
  protected:
    TestClientTest() {
        router_.post("/signup", [this](Request& req, Response& res) {
            follow_response({.name = "welcome-email"}, [this, &req] {
                log_.push_back("email to " + std::string(req.query("user").value_or("?")));
            });
            follow_response({.name = "audit", .run_on = always},
                            [this] { log_.push_back("audit"); });
            res.status(201).text("created\n");
        });
        router_.get("/forbidden", [this](Request&, Response& res) {
            follow_response([this] { log_.push_back("should not run"); });
            follow_response({.run_on = always}, [this] { log_.push_back("always"); });
            res.status(403).text("no\n");
        });
        router_.get("/fails", [](Request&, Response& res) {
            follow_response([] { throw std::runtime_error("smtp down"); });
            res.text("ok\n");
        });
        router_.get("/echo-headers", [](Request& req, Response& res) {
            res.text(std::string(req.header("X-Thing").value_or("none")));
        });
        router_.get("/delivered", [this](Request&, Response&) {
            follow_response(
                [this] { log_.push_back(response_delivered() ? "delivered" : "lost"); });
        });
    }

    Router router_;
    std::vector<std::string> log_;
};

TEST_F(TestClientTest, ReturnsTheResponse) {
    TestClient client(router_);
    const auto res = client.post("/signup?user=ann");
    EXPECT_EQ(res.status, 201);
    EXPECT_EQ(res.body, "created\n");
    EXPECT_EQ(res.header("content-type"), "text/plain; charset=utf-8");
    EXPECT_EQ(res.header("X-Request-Id"), res.request_id);
}

TEST_F(TestClientTest, CapturesCallbacksWithoutRunningThem) {
    TestClient client(router_);
    client.post("/signup?user=ann");
    const auto deferred = client.deferred();
    ASSERT_EQ(deferred.size(), 2u);
    EXPECT_EQ(deferred[0].name, "welcome-email");
    EXPECT_EQ(deferred[1].name, "audit");
    EXPECT_TRUE(deferred[0].will_run());
    EXPECT_EQ(deferred[0].response_status, 201);
    EXPECT_TRUE(log_.empty());
}

TEST_F(TestClientTest, RunDeferredRunsInOrderWithTheRequestStillReadable) {
    TestClient client(router_);
    client.post("/signup?user=ann");
    const auto report = client.run_deferred();
    EXPECT_EQ(report.ran, 2u);
    EXPECT_EQ(report.failed, 0u);
    EXPECT_EQ(log_, (std::vector<std::string>{"email to ann", "audit"}));
    EXPECT_TRUE(client.deferred().empty()) << "run once";
    EXPECT_EQ(client.run_deferred().ran, 0u);
}

TEST_F(TestClientTest, GatesOnTheStatusOfEachResponse) {
    TestClient client(router_);
    client.get("/forbidden");
    const auto deferred = client.deferred();
    ASSERT_EQ(deferred.size(), 2u);
    EXPECT_FALSE(deferred[0].will_run()) << "4xx skips by default";
    EXPECT_TRUE(deferred[1].will_run());
    const auto report = client.run_deferred();
    EXPECT_EQ(report.ran, 1u);
    EXPECT_EQ(report.skipped, 1u);
    EXPECT_EQ(log_, (std::vector<std::string>{"always"}));
}

TEST_F(TestClientTest, AccumulatesAcrossRequestsUntilRun) {
    TestClient client(router_);
    client.post("/signup?user=a");
    client.post("/signup?user=b");
    EXPECT_EQ(client.deferred().size(), 4u);
    client.run_deferred();
    EXPECT_EQ(log_, (std::vector<std::string>{"email to a", "audit", "email to b", "audit"}));
}

TEST_F(TestClientTest, GateSeesThe500AThrowingHandlerBecame) {
    router_.get("/throws", [this](Request&, Response& res) {
        follow_response([this] { log_.push_back("default"); });
        follow_response({.run_on = always}, [this] { log_.push_back("always"); });
        res.status(200);
        throw std::runtime_error("late failure");
    });
    TestClient client(router_);
    EXPECT_EQ(client.get("/throws").status, 500);
    const auto deferred = client.deferred();
    ASSERT_EQ(deferred.size(), 2u);
    EXPECT_EQ(deferred[0].response_status, 500);
    EXPECT_FALSE(deferred[0].will_run());
    EXPECT_TRUE(deferred[1].will_run());
    client.run_deferred();
    EXPECT_EQ(log_, (std::vector<std::string>{"always"}));
}

TEST_F(TestClientTest, FailuresAreReportedNotThrown) {
    TestClient client(router_);
    client.get("/fails");
    const auto report = client.run_deferred();
    EXPECT_EQ(report.failed, 1u);
    ASSERT_EQ(report.errors.size(), 1u);
    EXPECT_EQ(report.errors[0], "smtp down");
}

TEST_F(TestClientTest, AutomaticModeRunsRightAfterEachResponse) {
    TestClient client(router_, {.run_deferred_after_each_response = true});
    client.post("/signup?user=ann");
    EXPECT_EQ(log_, (std::vector<std::string>{"email to ann", "audit"}));
    EXPECT_TRUE(client.deferred().empty());
    client.get("/forbidden");
    EXPECT_EQ(client.automatic_runs().ran, 3u);
    EXPECT_EQ(client.automatic_runs().skipped, 1u);
}

TEST_F(TestClientTest, ResponsesCountAsDelivered) {
    TestClient client(router_, {.run_deferred_after_each_response = true});
    client.get("/delivered");
    EXPECT_EQ(log_, (std::vector<std::string>{"delivered"}));
}

// A request's traceparent reaches its callbacks (ResponseOutcome) and its jobs' Job.
TEST_F(TestClientTest, CallbacksAndJobsSeeTheRequestsTraceContext) {
    const std::string trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    JobKinds kinds;
    std::string job_trace = "unset";
    kinds.define("audit", {},
                 [&](const Job& job, std::stop_token) { job_trace = job.trace_parent; });
    router_.get("/traced", [this](Request&, Response&) {
        follow_response([this] { log_.push_back(current_response_outcome()->trace_parent); });
        follow_response_durably("audit", "{}");
    });
    TestClient client(router_, {.run_deferred_after_each_response = true});
    client.get("/traced", {{"traceparent", trace}});
    EXPECT_EQ(log_, (std::vector<std::string>{trace}));
    ASSERT_EQ(client.durable_jobs().size(), 1U);
    EXPECT_EQ(client.durable_jobs()[0].trace_parent, trace);
    const auto report = client.run_durable_jobs(kinds);
    EXPECT_EQ(report.ran, 1U);
    EXPECT_EQ(report.failed, 0U);
    EXPECT_EQ(job_trace, trace);
}

TEST_F(TestClientTest, SendsHeadersAndGoesThroughTheSameErrorPath) {
    TestClient client(router_);
    EXPECT_EQ(client.get("/echo-headers", {{"X-Thing", "42"}}).body, "42");
    EXPECT_EQ(client.get("/nope").status, 404);
    EXPECT_EQ(client.get("/signup").status, 405);
    EXPECT_EQ(client.get("/echo-headers?bad=%zz").status, 400);
    TestClient small(router_, {.limits = {.max_body = 4}});
    EXPECT_EQ(small.post("/signup", "12345").status, 413);
    EXPECT_EQ(small.post("/signup", "1", {{"Content-Length", "x"}}).status, 400);
}

TEST_F(TestClientTest, DecodesThePathAsNginxWould) {
    router_.get("/files/{name}", [](Request& req, Response& res) {
        res.text(std::string(req.param("name").value_or("")));
    });
    TestClient client(router_);
    EXPECT_EQ(client.get("/files/a%20b").body, "a b");
}

TEST_F(TestClientTest, AMovedClientKeepsWhatItCaptured) {
    TestClient first(router_);
    EXPECT_EQ(first.post("/signup?user=ann").status, 201);
    TestClient second(std::move(first));
    ASSERT_EQ(second.deferred().size(), 2U) << "welcome-email and audit";
    EXPECT_EQ(second.run_deferred().ran, 2U);
    EXPECT_EQ(log_, (std::vector<std::string>{"email to ann", "audit"}));
    EXPECT_EQ(second.post("/signup?user=bob").status, 201);
}

}  // namespace
}  // namespace crosstown::testing
