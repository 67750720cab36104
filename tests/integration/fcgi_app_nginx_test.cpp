// fcgi_app behind a real nginx: what a user sees with curl, measured with timestamps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "support/app_checks.hpp"
#include "support/app_under_test.hpp"
#include "support/eventually.hpp"
#include "support/nginx_stack.hpp"
#include "support/temp_dir.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::int64_t nanos(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TEST(FcgiAppThroughNginx, Hello) {
    NginxStack stack;
    const auto reply = stack.get("/hello");
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, "hello\n");
    EXPECT_EQ(reply.header("content-type"), "text/plain; charset=utf-8");
}

TEST(FcgiAppThroughNginx, RequestIdFromTheClientOrFromNginx) {
    NginxStack stack;
    EXPECT_EQ(http(stack.port(), "GET", "/hello", {}, {{"X-Request-Id", "curl-7"}})
                  .header("x-request-id"),
              "curl-7");
    const auto generated = stack.get("/hello").header("x-request-id");
    EXPECT_TRUE(std::regex_match(generated, std::regex("[0-9a-f]{32}")))
        << "nginx's $request_id: " << generated;
}

// The heart of it: 100 calls of 300 ms (30 s in series) answer at once and run after.
// The shipped snippet serves what the operator reads to this machine only. nginx listens on
// 127.0.0.1; a client connecting from 127.0.0.2 is, to nginx, another machine.
TEST(FcgiAppThroughNginx, MetricsAndStatusAreForLoopbackOnly) {
    NginxStack stack;
    EXPECT_EQ(stack.get("/metrics").status, 200);
    const auto remote = http_get_from("127.0.0.2", stack.port(), "/metrics");
    EXPECT_EQ(remote.status, 403) << remote.body;
    EXPECT_EQ(remote.body.find("crosstown_"), std::string::npos) << "no metric leaks";
    EXPECT_EQ(http_get_from("127.0.0.2", stack.port(), "/status").status, 403);
    EXPECT_EQ(http_get_from("127.0.0.2", stack.port(), "/metrics/").status, 404)
        << "nearby paths reach the app, which does not serve them";
    // Everything else is served to anyone, with the same FastCGI settings as before.
    const auto hello = http_get_from("127.0.0.2", stack.port(), "/hello");
    EXPECT_EQ(hello.status, 200);
    EXPECT_EQ(hello.body, "hello\n");
    // The nested locations inherit the params: the request id still comes from nginx.
    EXPECT_FALSE(stack.get("/metrics").header("x-request-id").empty());
}

TEST(FcgiAppThroughNginx, HundredCallsAnswerAtOnceAndRunAfterTheResponse) {
    NginxStack stack({"--workers", "100"});
    const auto reply = http(stack.port(), "POST", "/calls?count=100&latency_ms=300");
    ASSERT_EQ(reply.status, 202) << reply.body;
    EXPECT_LT(reply.took, 150ms) << "the client does not wait for the calls";
    const auto body = json::parse(reply.body);
    EXPECT_EQ(body["count"], 100);

    const auto status = wait_for_batch(stack, body["batch"], 10s);
    EXPECT_EQ(status["placed"], 100);
    EXPECT_EQ(status["pending"], 0);
    EXPECT_EQ(status["started_before_finish"], 0);
    EXPECT_GE(status["min_start_delay_ms"].get<double>(), 0.0);
    const auto finished = status["response_finished_ns"].get<std::int64_t>();
    EXPECT_GE(status["first_call_started_ns"].get<std::int64_t>(), finished)
        << "no call started before FCGX_Finish_r";
    // The client had its reply long before the last call ended. (Which comes first, the
    // client's read or the responder's return from FCGX_Finish_r, is a race: nginx may pass the
    // reply on while the responder thread waits to be scheduled.)
    EXPECT_LT(nanos(reply.received_at), status["last_call_ended_ns"].get<std::int64_t>())
        << "the client waited for the calls";
    EXPECT_LT(status["all_done_after_ms"].get<double>(), 3000) << "all placed within seconds";
    EXPECT_GE(status["all_done_after_ms"].get<double>(), 300);
}

TEST(FcgiAppThroughNginx, FailingCallsAreIsolated) {
    NginxStack stack({"--workers", "10"});
    const auto reply = http(stack.port(), "POST", "/calls?count=10&latency_ms=10&fail_every=5");
    ASSERT_EQ(reply.status, 202);
    const auto status = wait_for_batch(stack, json::parse(reply.body)["batch"], 10s);
    EXPECT_EQ(status["placed"], 8);
    EXPECT_EQ(status["failed"], 2);
    EXPECT_EQ(stack.get("/hello").status, 200);
    EXPECT_THAT(stack.app().output(), HasSubstr("call 5 failed (simulated)"));
}

TEST(FcgiAppThroughNginx, ErrorsComeBackAsSpecifiedAndServingGoesOn) {
    NginxStack stack({"--max-body", "1024", "--max-deferred-per-request", "50"});
    const auto port = stack.port();
    struct Case {
        std::string method, target, body;
        int status;
        std::string reason;
    };
    const std::vector<Case> cases = {
        {"GET", "/hello?x=%zz", "", 400, "bad percent-escape in the query string at offset 2"},
        {"POST", "/calls?count=abc", "", 400, "count: 'abc' is not a whole number"},
        {"POST", "/calls?count=51", "", 400, "count: 51 is outside 1..50"},
        {"GET", "/nowhere", "", 404, "no route for /nowhere"},
        {"GET", "/calls/unknown", "", 404, "no batch 'unknown'"},
        {"DELETE", "/hello", "", 405, "DELETE is not allowed on /hello"},
        {"POST", "/calls", std::string(4096, 'x'), 413, "over the limit of 1024"},
        {"GET", "/fail", "", 500, "internal error; request id "},
    };
    for (const auto& c : cases) {
        const auto reply = http(port, c.method, c.target, c.body);
        EXPECT_EQ(reply.status, c.status) << c.method << " " << c.target;
        EXPECT_THAT(reply.body, HasSubstr(c.reason)) << c.method << " " << c.target;
        EXPECT_EQ(stack.get("/hello").status, 200) << "still serving after " << c.target;
    }
    const auto not_allowed = http(port, "DELETE", "/hello");
    EXPECT_EQ(not_allowed.header("allow"), "GET, HEAD");
    const auto failed = http(port, "GET", "/fail", {}, {{"X-Request-Id", "boom-42"}});
    EXPECT_EQ(failed.body, "internal error; request id boom-42\n");
    EXPECT_THAT(stack.app().output(), HasSubstr("request boom-42 GET /fail failed"));
    EXPECT_TRUE(stack.app().running());
}

TEST(FcgiAppThroughNginx, SigtermCompletesEveryPendingCallAndExitsZero) {
    NginxStack stack({"--workers", "8", "--drain-timeout", "30s"});
    const auto reply = http(stack.port(), "POST", "/calls?count=40&latency_ms=200");
    ASSERT_EQ(reply.status, 202);
    // 40 calls x 200 ms on 8 workers: about 1 s of work is still queued now.
    stack.app().signal(SIGTERM);
    const auto code = stack.app().wait(20s);
    ASSERT_TRUE(code.has_value()) << "did not exit";
    EXPECT_EQ(*code, 0) << stack.app().output();

    const auto counts = summary_counts(stack.app().output());
    ASSERT_FALSE(counts.empty()) << stack.app().output();
    EXPECT_EQ(counts.at("registered"), 40);
    EXPECT_EQ(counts.at("dispatched"), 40);
    EXPECT_EQ(counts.at("completed"), 40) << "every call ran to its end";
    EXPECT_EQ(counts.at("abandoned"), 0);
    EXPECT_EQ(counts.at("rejected"), 0);
    EXPECT_EQ(counts.at("registered"),
              counts.at("skipped") + counts.at("forgotten") + counts.at("dispatched"));
    EXPECT_EQ(counts.at("dispatched"), counts.at("completed") + counts.at("failed") +
                                           counts.at("rejected") + counts.at("abandoned"));
    EXPECT_EQ(stack.get("/hello").status, 502) << "nginx gets a refusal, not a hang";
}

TEST(FcgiAppThroughNginx, ShortDrainDeadlineAbandonsAndExitsNonZero) {
    NginxStack stack({"--workers", "2", "--drain-timeout", "100ms"});
    ASSERT_EQ(http(stack.port(), "POST", "/calls?count=20&latency_ms=300").status, 202);
    stack.app().signal(SIGTERM);
    const auto code = stack.app().wait(20s);
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    const auto counts = summary_counts(stack.app().output());
    ASSERT_FALSE(counts.empty());
    EXPECT_GT(counts.at("abandoned"), 0);
    EXPECT_EQ(counts.at("dispatched"), counts.at("completed") + counts.at("failed") +
                                           counts.at("rejected") + counts.at("abandoned"));
    EXPECT_THAT(stack.app().output(), HasSubstr("abandoned"));
}

TEST(FcgiAppThroughNginx, SighupIsIgnored) {
    NginxStack stack;
    stack.app().signal(SIGHUP);
    // Once the app has logged it, SIGHUP has been handled: it did not stop the app.
    EXPECT_TRUE(eventually([&] { return stack.app().output().find("SIGHUP") != std::string::npos; },
                           kPatience, 5ms))
        << stack.app().output();
    EXPECT_TRUE(stack.app().running());
    EXPECT_EQ(stack.get("/hello").status, 200);
}

// nginx caches up to 32 idle connections (the shipped keepalive) in front of 2 responder
// threads. With plain libfcgi each cached connection pins a thread and requests hang until
// fastcgi_read_timeout; here every one must answer promptly.
TEST(FcgiAppThroughNginx, KeepConnNeverStallsWithMoreCachedConnectionsThanThreads) {
    NginxStack stack({"--responders", "2", "--access-log", "off"});
    constexpr int kClients = 64;
    constexpr auto kDuration = 3s;
    std::atomic<int> ok{0};
    std::atomic<int> bad{0};
    std::atomic<Clock::rep> slowest{0};
    std::vector<std::thread> clients;
    const auto until = Clock::now() + kDuration;
    for (int i = 0; i < kClients; ++i) {
        clients.emplace_back([&] {
            while (Clock::now() < until) {
                const auto reply = http(stack.port(), "GET", "/hello", {}, {}, 20s);
                (reply.status == 200 ? ok : bad)++;
                auto took = reply.took.count();
                auto seen = slowest.load();
                while (took > seen && !slowest.compare_exchange_weak(seen, took)) {
                }
            }
        });
    }
    for (auto& client : clients) client.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(ok.load(), kClients);
    EXPECT_LT(Clock::duration(slowest.load()), 2s)
        << "no request came near fastcgi_read_timeout (30 s)";
    RecordProperty("requests", ok.load());
}

TEST(FcgiAppCommandLine, BadConfigNamesTheOptionAndExits2) {
    const TempDir dir("crosstown-cli");
    ChildProcess app({fcgi_app_path(), "--workers", "many"}, dir / "fcgi_app.log");
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("--workers: 'many' is not a whole number"));
}

TEST(FcgiAppCommandLine, UnusableSocketPathExits2) {
    const TempDir dir("crosstown-cli");
    ChildProcess app({fcgi_app_path(), "--listen", "/nonexistent-dir/app.sock"},
                     dir / "fcgi_app.log");
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("--listen: cannot listen on /nonexistent-dir/app.sock"));
}

}  // namespace
}  // namespace crosstown::test
