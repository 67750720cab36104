// crosstown::Server in-process: one per process, the exit code of run(), and a whole run from
// the first request to SIGTERM, on a unix socket of its own. ctest runs each test in a
// process of its own; run one by one, the tests still leave no Server and no signal pending.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/server.hpp>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/eventually.hpp"
#include "support/fastcgi_client.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
  protected:
    ServerTest() {
        // Neither socket activation nor systemd's notifications: this process serves `listen`.
        for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"}) ::unsetenv(name);
    }
    ~ServerTest() override { consume_pending_stop_signals(); }

    // A stop signal that arrived after run() returned would stop the next Server at once.
    static void consume_pending_stop_signals() {
        sigset_t pending;
        sigpending(&pending);
        for (const int signal : {SIGTERM, SIGINT, SIGHUP}) {
            if (sigismember(&pending, signal) != 1) continue;
            sigset_t one;
            sigemptyset(&one);
            sigaddset(&one, signal);
            const timespec now{};
            sigtimedwait(&one, nullptr, &now);
        }
    }

    ServerConfig config() const {
        ServerConfig config;
        config.listen = dir_ / "app.sock";
        config.responders = 2;
        config.pool.workers = 2;
        config.drain_timeout = 5s;
        return config;
    }

    test::LogCapture log_;
    test::TempDir dir_{"crosstown-server"};
};

TEST_F(ServerTest, OnlyOneServerAtATime) {
    std::optional<Server> first(std::in_place, config());
    try {
        Server second(config());
        FAIL() << "a second Server was made while the first exists";
    } catch (const std::logic_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("a Server already exists in this process"));
    }
    EXPECT_EQ(first->config().listen, dir_ / "app.sock") << "the first is untouched";
    first.reset();
    EXPECT_NO_THROW(Server again(config())) << "once the first is gone, another may be made";
}

TEST_F(ServerTest, RunWithNothingToListenOnReturns2) {
    auto settings = config();
    settings.listen.clear();
    Server server(settings);
    EXPECT_EQ(server.run(), 2);
    EXPECT_TRUE(log_.contains("no listen address is set (--listen) and systemd passed no socket"));
    EXPECT_FALSE(server.accepting());
}

// What the client thread saw while run() served on the test thread.
struct Observed {
    bool answered = false;  // the socket answered within kPatience
    test::CgiReply reply;
    bool callback_ran = false;
    bool accepting = false;
    bool accepting_after_sighup = false;
    std::string metrics;
    DeferredCounts counts;
};

TEST_F(ServerTest, AWholeRunFromTheFirstRequestToSigterm) {
    std::atomic<int> callbacks{0};
    Server server(config());  // blocks SIGTERM/SIGINT/SIGHUP in this thread
    server.router().get("/hello", [&](Request&, Response& res) {
        follow_response([&] { ++callbacks; });
        res.text("hello\n");
    });
    const auto socket = dir_ / "app.sock";

    // Started after the Server, so it inherits the blocked signals: only run()'s sigwait
    // takes the SIGTERM it sends to the process.
    Observed seen;
    std::thread client([&] {
        seen.answered = test::eventually(
            [&] {
                try {
                    test::FastCgiConnection connection(socket);
                    seen.reply = connection.request(test::get("/hello"));
                    return seen.reply.ended;
                } catch (const std::runtime_error&) {
                    return false;  // not listening yet
                }
            },
            test::kPatience, 5ms);
        // The callback runs after the response; the request is counted once dispatched.
        seen.callback_ran = test::eventually([&] {
            return server.deferred_counts().completed == 1 &&
                   server.metrics().find("crosstown_requests_total{code=\"2xx\"} 1\n") !=
                       std::string::npos;
        });
        // Set once every responder waits, so the first request can be served an instant
        // before it: wait for it rather than read it once.
        seen.accepting = test::eventually([&] { return server.accepting(); });
        seen.metrics = server.metrics();
        seen.counts = server.deferred_counts();
        ::kill(::getpid(), SIGHUP);  // logged and ignored
        test::eventually([&] { return log_.contains("SIGHUP: nothing to reload"); });
        seen.accepting_after_sighup = server.accepting();
        ::kill(::getpid(), SIGTERM);
    });
    const int code = server.run();
    client.join();

    ASSERT_TRUE(seen.answered) << "no answer on " << socket;
    EXPECT_EQ(seen.reply.status, 200);
    EXPECT_EQ(seen.reply.body, "hello\n");
    ASSERT_TRUE(seen.callback_ran);
    EXPECT_EQ(callbacks.load(), 1);
    EXPECT_TRUE(seen.accepting);
    EXPECT_TRUE(seen.accepting_after_sighup) << "SIGHUP does not stop the server";
    EXPECT_THAT(seen.metrics, HasSubstr("crosstown_deferred_total{outcome=\"completed\"} 1\n"));
    EXPECT_THAT(seen.metrics, HasSubstr("crosstown_deferred_total{outcome=\"registered\"} 1\n"));
    EXPECT_THAT(seen.metrics, HasSubstr("crosstown_requests_total{code=\"2xx\"} 1\n"));
    EXPECT_THAT(seen.metrics, HasSubstr("crosstown_pool_workers 2\n"));
    EXPECT_EQ(seen.counts.registered, 1U);
    EXPECT_EQ(seen.counts.dispatched, 1U);
    EXPECT_EQ(seen.counts.completed, 1U);

    EXPECT_EQ(code, 0);
    EXPECT_FALSE(server.accepting());
    EXPECT_EQ(server.busy_responders(), 0U);
    const auto counts = server.deferred_counts();
    EXPECT_TRUE(counts.balanced()) << counts.summary();
    EXPECT_TRUE(counts.nothing_lost()) << counts.summary();
    EXPECT_EQ(counts.registered, 1U);
    EXPECT_EQ(counts.completed, 1U);
    EXPECT_TRUE(log_.contains("listening on " + socket));
    EXPECT_TRUE(log_.contains("SIGTERM: no new requests"));
    EXPECT_TRUE(log_.contains(counts.summary())) << "the summary line";
    EXPECT_FALSE(std::filesystem::exists(socket)) << "the socket file goes with the server";
}

}  // namespace
}  // namespace crosstown
