// The responder against a raw FastCGI client on a unix socket: no nginx, so each test controls
// exactly what the peer does.
#include <fcgiapp.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/fastcgi/listen_socket.hpp>
#include <crosstown/fastcgi/responder.hpp>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <filesystem>
#include <memory>
#include <thread>

#include "support/eventually.hpp"
#include "support/fastcgi_client.hpp"
#include "support/gate.hpp"
#include "support/job_harness.hpp"
#include "support/process_threads.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::FastCgiConnection;
using test::Gate;
using test::kPatience;

class ResponderTest : public ::testing::Test {
  protected:
    ResponderTest() {
        FCGX_Init();
        path_ = dir_ / "app.sock";
        socket_ = ListenSocket::open(path_);
        router_.get("/hello", [](Request&, Response& res) { res.text("hello\n"); });
    }
    ~ResponderTest() override {
        slow_release_.open();
        responder_.reset();
        pool_.reset();
        socket_.close();
    }

    // GET /slow: opens slow_in_, then waits for slow_release_ before it answers.
    void add_slow_route() {
        router_.get("/slow", [this](Request&, Response& res) {
            slow_in_.open();
            slow_release_.wait();
            res.text("done\n");
        });
    }

    void start(ResponderConfig config = {.threads = 2}) {
        pool_ = std::make_unique<Pool>(PoolConfig{.workers = 4});
        responder_ = std::make_unique<Responder>(socket_.fd(), router_, *pool_, stats_, config);
    }

    test::LogCapture log_;  // keeps access lines out of the test output
    Gate slow_in_;
    Gate slow_release_;
    test::TempDir dir_{"crosstown-responder"};
    std::string path_;
    ListenSocket socket_;
    Router router_;
    RequestStats stats_;
    std::unique_ptr<Pool> pool_;
    std::unique_ptr<Responder> responder_;
};

TEST_F(ResponderTest, ServesARequest) {
    start();
    FastCgiConnection connection(path_);
    const auto reply = connection.request(test::get("/hello"));
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, "hello\n");
    EXPECT_EQ(reply.headers.at("Content-Length"), "6");
    EXPECT_EQ(reply.headers.at("Content-Type"), "text/plain; charset=utf-8");
    EXPECT_TRUE(test::eventually([&] { return stats_.total() == 1; }));
}

TEST_F(ResponderTest, ResponseIsOutBeforeAnyCallbackEnds) {
    Gate release;
    std::atomic<bool> started{false};
    std::atomic<bool> finished_before_start{false};
    router_.get("/defer", [&](Request&, Response& res) {
        follow_response([&] {
            const auto* outcome = current_response_outcome();
            finished_before_start = outcome != nullptr && outcome->finished_at <= Clock::now();
            started = true;
            release.wait();
        });
        res.status(202).text("queued\n");
    });
    start();
    FastCgiConnection connection(path_);
    const auto reply = connection.request(test::get("/defer"));
    ASSERT_TRUE(reply.ended) << "the reply came while the callback was still held";
    EXPECT_EQ(reply.status, 202);
    EXPECT_TRUE(test::eventually([&] { return started.load(); }));
    EXPECT_TRUE(finished_before_start) << "the callback started after FCGX_Finish_r";
    release.open();
    pool_->wait_idle();
    EXPECT_EQ(pool_->counters().snapshot().completed, 1u);
}

TEST_F(ResponderTest, NoCallbackStartsWhileTheHandlerRuns) {
    std::atomic<int> ran{0};
    int seen_in_handler = -1;
    router_.get("/defer", [&](Request&, Response& res) {
        for (int i = 0; i < 20; ++i) follow_response([&] { ++ran; });
        std::this_thread::sleep_for(50ms);
        seen_in_handler = ran.load();
        res.text("ok\n");
    });
    start();
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection.request(test::get("/defer")).ended);
    // The reply can arrive before the responder thread has dispatched: wait for the runs.
    EXPECT_TRUE(test::eventually([&] { return ran.load() == 20; }));
    EXPECT_EQ(seen_in_handler, 0);
}

TEST_F(ResponderTest, GateReadsTheStatusSentAfterAThrowBecameA500) {
    std::atomic<int> always_ran{0};
    std::atomic<int> default_ran{0};
    router_.get("/throws", [&](Request&, Response& res) {
        follow_response([&] { ++default_ran; });
        follow_response({.run_on = always}, [&] { ++always_ran; });
        res.status(200);
        throw std::runtime_error("after registering");
    });
    start({.threads = 1});
    FastCgiConnection connection(path_);
    EXPECT_EQ(connection.request(test::get("/throws")).status, 500);
    ASSERT_TRUE(test::eventually([&] { return always_ran.load() == 1; }));
    pool_->wait_idle();
    EXPECT_EQ(default_ran.load(), 0) << "the default gate skips a 500";
    EXPECT_EQ(pool_->counters().snapshot().skipped, 1u);
}

TEST_F(ResponderTest, CallbacksReadTheRequestByReferenceAfterTheResponse) {
    std::string seen;
    std::atomic<bool> done{false};
    router_.post("/keep", [&](Request& req, Response& res) {
        follow_response([&req, &seen, &done] {
            std::this_thread::sleep_for(50ms);  // long after FCGX_Finish_r freed libfcgi's copy
            seen = req.method() + " " + req.path() + " " +
                   std::string(req.query("q").value_or("")) + " " +
                   std::string(req.header("X-Thing").value_or("")) + " " + req.body();
            done = true;
        });
        res.status(202);
    });
    start({.threads = 1});
    FastCgiConnection connection(path_);
    const auto reply = connection.request({{"REQUEST_METHOD", "POST"},
                                           {"DOCUMENT_URI", "/keep"},
                                           {"QUERY_STRING", "q=a%20b"},
                                           {"HTTP_X_THING", "42"},
                                           {"CONTENT_LENGTH", "4"}},
                                          "body");
    ASSERT_EQ(reply.status, 202);
    ASSERT_TRUE(test::eventually([&] { return done.load(); }));
    EXPECT_EQ(seen, "POST /keep a b 42 body");
}

TEST_F(ResponderTest, IdleKeptConnectionDoesNotPinTheOnlyThread) {
    start({.threads = 1});
    FastCgiConnection idle(path_);
    ASSERT_TRUE(idle.request(test::get("/hello")).ended);
    // `idle` stays open with keep-conn. With plain libfcgi the one thread would now sit in
    // read() on it and the next connection would wait forever.
    for (int i = 0; i < 5; ++i) {
        FastCgiConnection other(path_);
        const auto reply = other.request(test::get("/hello"));
        ASSERT_TRUE(reply.ended) << "request " << i;
        EXPECT_EQ(reply.status, 200);
    }
    const auto again = idle.request(test::get("/hello"));
    EXPECT_TRUE(again.ended) << "the kept connection is still served";
}

TEST_F(ResponderTest, ManyKeptConnectionsTakeTurnsOnOneThread) {
    start({.threads = 1});
    std::vector<std::unique_ptr<FastCgiConnection>> connections;
    for (int i = 0; i < 12; ++i) connections.push_back(std::make_unique<FastCgiConnection>(path_));
    for (int round = 0; round < 5; ++round) {
        for (auto& connection : connections) {
            ASSERT_TRUE(connection->request(test::get("/hello")).ended) << "round " << round;
        }
    }
    EXPECT_TRUE(test::eventually([&] { return stats_.total() == 60; }));
}

// Only one thread waits for requests at a time; while it is held in a slow handler another
// takes over watching (Lookout), so a kept connection's next request is not held behind it.
TEST_F(ResponderTest, ASlowHandlerHoldsNoOtherConnectionsRequest) {
    add_slow_route();
    start({.threads = 2});
    FastCgiConnection kept(path_);
    ASSERT_TRUE(kept.request(test::get("/hello")).ended);
    FastCgiConnection slow(path_);
    ASSERT_TRUE(slow.send_request(test::get("/slow")));
    ASSERT_TRUE(slow_in_.wait());
    const auto sent = Clock::now();
    ASSERT_TRUE(kept.send_request(test::get("/hello")));
    const auto reply = kept.read_reply(2s);
    const auto waited = Clock::now() - sent;
    slow_release_.open();
    ASSERT_TRUE(reply.ended) << "the kept connection waited for the slow handler";
    EXPECT_EQ(reply.status, 200);
    EXPECT_LT(waited, 500ms);
    EXPECT_TRUE(slow.read_reply().ended);
}

// Requests that arrive together while every thread is free run together: each thread that
// takes one leaves, and the next takes over watching within a few milliseconds.
TEST_F(ResponderTest, SlowRequestsOnSeveralConnectionsRunAtOnce) {
    router_.get("/sleep", [](Request&, Response& res) {
        std::this_thread::sleep_for(300ms);
        res.text("slept\n");
    });
    start({.threads = 4});
    std::vector<std::unique_ptr<FastCgiConnection>> connections;
    for (int i = 0; i < 4; ++i) connections.push_back(std::make_unique<FastCgiConnection>(path_));
    const auto sent = Clock::now();
    for (auto& connection : connections) ASSERT_TRUE(connection->send_request(test::get("/sleep")));
    for (auto& connection : connections) ASSERT_TRUE(connection->read_reply().ended);
    // One after another they would take 1.2 s.
    EXPECT_LT(Clock::now() - sent, 800ms);
}

// Idle responder threads sleep without deadlines: an idle fcgi_app makes no wake-ups.
TEST_F(ResponderTest, IdleThreadsDoNotWakeUp) {
    start({.threads = 4});
    for (int i = 0; i < 3; ++i) {
        FastCgiConnection connection(path_);
        ASSERT_TRUE(connection.request(test::get("/hello")).ended);
    }
    std::this_thread::sleep_for(50ms);
    const long before = test::voluntary_context_switches("ct-responder");
    std::this_thread::sleep_for(300ms);
    EXPECT_LE(test::voluntary_context_switches("ct-responder") - before, 10);
}

TEST_F(ResponderTest, ConnectionWithoutKeepConnIsClosed) {
    start();
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection.request(test::get("/hello"), {}, false).ended);
    EXPECT_TRUE(connection.closed_by_peer(kPatience));
}

TEST_F(ResponderTest, StalledPeerIsDroppedAfterTheIoTimeout) {
    start({.threads = 1, .io_timeout = 200ms});
    FastCgiConnection stalled(path_);
    // BEGIN_REQUEST and half the params, then silence: the thread blocks in libfcgi's read.
    ASSERT_TRUE(stalled.send_raw(test::begin_request(true) + test::record(test::kParams, "\x0e")));
    std::this_thread::sleep_for(20ms);
    const auto started = Clock::now();
    FastCgiConnection other(path_);
    const auto reply = other.request(test::get("/hello"));
    ASSERT_TRUE(reply.ended) << "served once the stalled peer timed out";
    EXPECT_LT(Clock::now() - started, 3s);
    EXPECT_TRUE(stalled.closed_by_peer(kPatience));
}

TEST_F(ResponderTest, SameThreadCallbacksRunBeforeTheNextRequest) {
    std::atomic<Clock::rep> callback_ended{0};
    std::atomic<Clock::rep> next_handler_started{0};
    router_.get("/slow-after", [&](Request&, Response& res) {
        follow_response({.same_thread = true}, [&] {
            std::this_thread::sleep_for(150ms);
            callback_ended = Clock::now().time_since_epoch().count();
        });
        res.text("ok\n");
    });
    router_.get("/next", [&](Request&, Response& res) {
        next_handler_started = Clock::now().time_since_epoch().count();
        res.text("ok\n");
    });
    start({.threads = 1});
    FastCgiConnection first(path_);
    const auto reply = first.request(test::get("/slow-after"));
    ASSERT_TRUE(reply.ended) << "the response did not wait for the same_thread callback";
    EXPECT_EQ(callback_ended.load(), 0) << "the reply arrived before the callback ended";
    FastCgiConnection second(path_);
    ASSERT_TRUE(second.request(test::get("/next")).ended);
    EXPECT_GE(next_handler_started.load(), callback_ended.load());
}

TEST_F(ResponderTest, ClientGoneMeansUndelivered) {
    Gate respond;
    Gate handler_in;
    std::atomic<int> delivered_seen{-1};
    std::atomic<bool> opted_out_ran{false};
    router_.get("/wait", [&](Request&, Response& res) {
        follow_response([&] { delivered_seen = response_delivered() ? 1 : 0; });
        follow_response({.skip_if_undelivered = true}, [&] { opted_out_ran = true; });
        handler_in.open();
        respond.wait();
        res.text(std::string(100'000, 'x'));
    });
    start({.threads = 1});
    {
        FastCgiConnection connection(path_);
        ASSERT_TRUE(connection.send_request(test::get("/wait")));
        ASSERT_TRUE(handler_in.wait());
    }  // the client leaves
    respond.open();
    ASSERT_TRUE(test::eventually([&] { return stats_.undelivered() == 1; }));
    pool_->wait_idle();
    EXPECT_EQ(delivered_seen.load(), 0) << "ran by default, and knew";
    EXPECT_FALSE(opted_out_ran.load());
    EXPECT_EQ(pool_->counters().snapshot().skipped, 1u);
    FastCgiConnection next(path_);
    EXPECT_TRUE(next.request(test::get("/hello")).ended) << "the thread serves on";
}

TEST_F(ResponderTest, BodyOverTheLimitIs413AndTheConnectionCloses) {
    router_.post("/upload", [](Request& req, Response& res) { res.text(req.body()); });
    start({.threads = 1, .limits = {.max_body = 10}});
    FastCgiConnection connection(path_);
    auto params = test::Params{
        {"REQUEST_METHOD", "POST"}, {"DOCUMENT_URI", "/upload"}, {"CONTENT_LENGTH", "100"}};
    const auto reply = connection.request(params, std::string(100, 'x'));
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.status, 413);
    EXPECT_TRUE(connection.closed_by_peer(kPatience)) << "unread body: not reusable";
    FastCgiConnection next(path_);
    EXPECT_EQ(next.request(test::get("/hello")).status, 200);
}

TEST_F(ResponderTest, RequestBodyIsReadWhole) {
    router_.post("/upload",
                 [](Request& req, Response& res) { res.text(std::to_string(req.body().size())); });
    start({.threads = 1, .limits = {.max_body = 1 << 20}});
    FastCgiConnection connection(path_);
    const std::string body(300'000, 'y');
    auto params = test::Params{{"REQUEST_METHOD", "POST"},
                               {"DOCUMENT_URI", "/upload"},
                               {"CONTENT_LENGTH", std::to_string(body.size())}};
    const auto reply = connection.request(params, body);
    EXPECT_EQ(reply.body, "300000");
    EXPECT_TRUE(connection.request(test::get("/hello")).ended) << "kept connection stays clean";
}

TEST_F(ResponderTest, GarbageIsDroppedAndServingGoesOn) {
    start({.threads = 1});
    {
        FastCgiConnection bad(path_);
        bad.send_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        EXPECT_TRUE(bad.closed_by_peer(kPatience));
    }
    {
        FastCgiConnection bad(path_);
        std::string wrong_version = test::begin_request(true);
        wrong_version[0] = 9;
        bad.send_raw(wrong_version);
        EXPECT_TRUE(bad.closed_by_peer(kPatience));
    }
    FastCgiConnection good(path_);
    EXPECT_EQ(good.request(test::get("/hello")).status, 200);
}

TEST_F(ResponderTest, HandlerExceptionIs500AndTheThreadLives) {
    router_.get("/boom", [](Request&, Response&) { throw std::runtime_error("boom"); });
    start({.threads = 1});
    FastCgiConnection connection(path_);
    const auto reply = connection.request(
        {{"REQUEST_METHOD", "GET"}, {"DOCUMENT_URI", "/boom"}, {"HTTP_X_REQUEST_ID", "boom-1"}});
    EXPECT_EQ(reply.status, 500);
    EXPECT_EQ(reply.body, "internal error; request id boom-1\n");
    EXPECT_TRUE(log_.contains("boom-1"));
    EXPECT_EQ(connection.request(test::get("/hello")).status, 200);
}

// Holds every free file descriptor of the process (under a lowered limit) until destroyed.
class FdExhaustion {
  public:
    FdExhaustion() {
        ::getrlimit(RLIMIT_NOFILE, &saved_);
        rlimit low = saved_;
        low.rlim_cur = 256;
        ::setrlimit(RLIMIT_NOFILE, &low);
        const int seed = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (seed >= 0) held_.push_back(seed);
        for (int fd; seed >= 0 && (fd = ::dup(seed)) >= 0;) held_.push_back(fd);
    }
    ~FdExhaustion() {
        release_all();
        ::setrlimit(RLIMIT_NOFILE, &saved_);
    }
    void release_one() {
        ::close(held_.back());
        held_.pop_back();
    }
    void release_all() {
        for (const int fd : held_) ::close(fd);
        held_.clear();
    }

  private:
    rlimit saved_{};
    std::vector<int> held_;
};

TEST_F(ResponderTest, RunningOutOfDescriptorsIsTransient) {
#ifdef CROSSTOWN_SANITIZE_UNDEFINED
    // UBSan's vptr check probes memory through a pipe; with no descriptor left it reports a
    // false "invalid vptr" in the log call. The release and tsan presets run this test.
    GTEST_SKIP() << "needs free descriptors under UBSan";
#endif
    start({.threads = 1});
    FdExhaustion exhaustion;
    exhaustion.release_one();  // room for the client's own socket, and no more
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection.send_request(test::get("/hello")));
    ASSERT_TRUE(test::eventually([&] { return log_.contains("accept failed"); }))
        << "accept4 hit EMFILE and said so";
    exhaustion.release_all();
    const auto reply = connection.read_reply();
    ASSERT_TRUE(reply.ended) << "the same thread serves once descriptors are back";
    EXPECT_EQ(reply.status, 200);
    EXPECT_TRUE(log_.contains("Too many open files"));
}

TEST_F(ResponderTest, StopWakesIdleThreadsAtOnce) {
    start({.threads = 8});
    FastCgiConnection kept(path_);
    ASSERT_TRUE(kept.request(test::get("/hello")).ended);
    const auto started = Clock::now();
    responder_->stop();
    responder_->join();
    EXPECT_LT(Clock::now() - started, 2s);
    responder_.reset();
    EXPECT_TRUE(kept.closed_by_peer(kPatience)) << "idle kept connections are closed";
}

TEST_F(ResponderTest, StopLetsTheRequestInHandFinish) {
    add_slow_route();
    start({.threads = 2});
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection.send_request(test::get("/slow")));
    ASSERT_TRUE(slow_in_.wait());
    responder_->stop();
    std::thread opener([&] {
        std::this_thread::sleep_for(100ms);
        slow_release_.open();
    });
    responder_->join();
    opener.join();
    const auto reply = connection.read_reply(1s);
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.body, "done\n");
}

// Requests with durable jobs, over a journal whose next transaction `blocker` holds in BEGIN
// (SQLite waits for it up to its busy timeout, 5 s, then fails the transaction).
class DurableResponderTest : public ResponderTest {
  protected:
    DurableResponderTest() {
        router_.get("/durable", [](Request&, Response& res) {
            follow_response_durably("noop", "{}");
            res.status(202).text("kept\n");
        });
        blocker_.begin();
    }
    // Stopped before the journal and the runner go.
    ~DurableResponderTest() override {
        blocker_.rollback();
        durable_responder_.reset();
    }

    void start_durable() {
        durable_responder_ = std::make_unique<Responder>(socket_.fd(), router_, jobs_.pool, stats_,
                                                         ResponderConfig{.threads = 2},
                                                         &jobs_.runner);
    }

    std::atomic<int> ran_{0};
    JobKinds kinds_ = [this] {  // before the runner, which takes its kinds when it is built
        JobKinds kinds;
        kinds.define("noop", {}, [this](const Job&, std::stop_token) { ++ran_; });
        return kinds;
    }();
    std::string journal_ = dir_ / "jobs.db";
    test::Harness jobs_{kinds_, journal_};
    SqliteJobDatabase blocker_ = test::open_rw(journal_);
    std::unique_ptr<Responder> durable_responder_;
};

TEST_F(DurableResponderTest, ARequestWaitingForAnotherRequestsCommitDoesNotHoldItsThread) {
    start_durable();
    FastCgiConnection first(path_);
    FastCgiConnection second(path_);
    ASSERT_TRUE(first.send_request(test::get("/durable")));
    std::this_thread::sleep_for(100ms);  // setup: lets its round start; not asserted on
    ASSERT_TRUE(second.send_request(test::get("/durable")));
    // Both in hand, and only the first's thread busy, in its round: the second's thread left
    // it to the next round.
    EXPECT_TRUE(test::eventually(
        [&] { return stats_.in_flight() == 2 && durable_responder_->busy() == 1; }, 3s))
        << "in flight " << stats_.in_flight() << ", busy " << durable_responder_->busy();
    EXPECT_FALSE(second.read_reply(50ms).ended) << "answered before its jobs were committed";
    blocker_.rollback();
    for (auto* connection : {&first, &second}) {
        const auto reply = connection->read_reply();
        ASSERT_TRUE(reply.ended);
        EXPECT_EQ(reply.status, 202);
    }
    EXPECT_TRUE(test::eventually([&] { return ran_.load() == 2; }));
    EXPECT_TRUE(test::eventually([&] { return stats_.in_flight() == 0; }));
}

TEST_F(DurableResponderTest, JoinWaitsForARequestLeftToACommitThatTheWriterThreadWrites) {
    // A commit that waits (not a request's) leads the round held in BEGIN; the request left
    // to the next round is answered by the journal's writer thread, after every responder
    // thread has left: join() must wait for it.
    std::jthread committer([&] {
        JobBatch batch(&kinds_, 10);
        batch.add("noop", "{}", {});
        EXPECT_EQ(jobs_.runner.commit(batch, 200, "outside").size(), 1U);
    });
    std::this_thread::sleep_for(100ms);  // setup: lets its round start; not asserted on
    start_durable();
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection.send_request(test::get("/durable")));
    ASSERT_TRUE(test::eventually(
        [&] { return stats_.in_flight() == 1 && durable_responder_->busy() == 0; }, 3s));
    durable_responder_->stop();
    std::atomic<bool> joined{false};
    std::jthread joiner([&] {
        durable_responder_->join();
        joined = true;
    });
    std::this_thread::sleep_for(200ms);  // margin for a join that does not wait to return
    EXPECT_FALSE(joined.load()) << "join() returned with a request still left to its commit";
    blocker_.rollback();
    joiner.join();
    const auto reply = connection.read_reply();
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.status, 202);
}

TEST_F(DurableResponderTest, RequestsWhoseAnswerCannotMoveWaitForTheirCommitOnTheirOwnThread) {
    // A same_thread callback runs on the request's thread after its response, before that
    // thread serves again; a response over 64 KiB would hold up the others of a round. While
    // another commit holds the round, each such request keeps its thread busy, and the
    // same_thread callback runs on the handler's thread.
    std::atomic<std::thread::id> handler_thread;
    std::atomic<std::thread::id> callback_thread;
    router_.get("/durable-same-thread", [&](Request&, Response& res) {
        handler_thread = std::this_thread::get_id();
        follow_response_durably("noop", "{}");
        follow_response({.same_thread = true},
                        [&] { callback_thread = std::this_thread::get_id(); });
        res.status(202).text("kept\n");
    });
    router_.get("/durable-big", [](Request&, Response& res) {
        follow_response_durably("noop", "{}");
        res.status(202).text(std::string(100 * 1024, 'x'));
    });
    blocker_.rollback();  // taken again for each request below
    for (const char* path : {"/durable-same-thread", "/durable-big"}) {
        SCOPED_TRACE(path);
        blocker_.begin();
        std::jthread committer([&] {  // leads the round that the lock holds
            JobBatch batch(&kinds_, 10);
            batch.add("noop", "{}", {});
            EXPECT_EQ(jobs_.runner.commit(batch, 200, "outside").size(), 1U);
        });
        std::this_thread::sleep_for(100ms);  // setup: lets its round start; not asserted on
        if (!durable_responder_) start_durable();
        FastCgiConnection connection(path_);
        ASSERT_TRUE(connection.send_request(test::get(path)));
        ASSERT_TRUE(test::eventually([&] { return stats_.in_flight() == 1; }, 3s));
        std::this_thread::sleep_for(100ms);  // margin for a thread that would leave it
        EXPECT_EQ(durable_responder_->busy(), 1U) << "its thread left it to the commit";
        blocker_.rollback();
        committer.join();
        const auto reply = connection.read_reply();
        ASSERT_TRUE(reply.ended);
        EXPECT_EQ(reply.status, 202);
    }
    EXPECT_TRUE(test::eventually([&] { return callback_thread.load() == handler_thread.load(); }))
        << "the same_thread callback ran on another thread than its request's";
}

TEST_F(DurableResponderTest, ARequestWhoseCommitFailsIs503) {
    start_durable();
    FastCgiConnection connection(path_);
    // Its round waits for the blocker until SQLite's busy timeout, then fails.
    const auto reply = connection.request(test::get("/durable"));
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.status, 503);
    EXPECT_EQ(reply.headers.at("Retry-After"), "1");
    EXPECT_EQ(ran_.load(), 0);
}

TEST_F(ResponderTest, AccessLogLineNamesTheRequest) {
    router_.get("/defer", [](Request&, Response& res) {
        follow_response([] {});
        follow_response([] {});
        res.status(202);
    });
    start({.threads = 1});
    FastCgiConnection connection(path_);
    ASSERT_TRUE(connection
                    .request({{"REQUEST_METHOD", "GET"},
                              {"DOCUMENT_URI", "/defer"},
                              {"HTTP_X_REQUEST_ID", "acc-9"}})
                    .ended);
    EXPECT_TRUE(test::eventually([&] { return log_.contains("access GET /defer 202"); }));
    EXPECT_TRUE(log_.contains("id=acc-9 deferred=2"));
}

}  // namespace
}  // namespace crosstown
