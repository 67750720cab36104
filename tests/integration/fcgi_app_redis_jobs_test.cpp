// Durable jobs on Redis, end to end: fcgi_app instances behind one real nginx upstream,
// sharing one real redis-server, with a witness file (one line per placed call) that every
// instance appends to. An instance killed with SIGKILL under load loses nothing that got a
// 202: the survivor releases what it held and claims what it had taken. A web-only instance
// runs nothing; a worker-only one, with no socket, drains its backlog.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "crosstown/jobs/redis/redis_connection.hpp"
#include "support/app_checks.hpp"
#include "support/app_under_test.hpp"
#include "support/calls_load.hpp"
#include "support/fastcgi_client.hpp"
#include "support/nginx_stack.hpp"
#include "support/redis_server.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr auto kClaimAfter = "5s";  // the least --journal-claim-after takes
constexpr auto kClaimTime = 5s;

// fcgi_app instances sharing one Redis journal and a witness file, behind one nginx whose
// upstream lists their sockets.
class RedisStack {
  public:
    std::string witness() const { return stack_.dir() + "/witness"; }
    std::string socket_of(const std::string& name) const { return stack_.socket_of(name); }
    ChildProcess& app(const std::string& name) { return stack_.app(name); }
    int port() const { return stack_.port(); }

    // `instance`: its name in Redis, by default `name`; a restart after a crash needs a new
    // one, since the dead one's heartbeat holds the old name for the claim time.
    void start_app(const std::string& name, const std::string& redis,
                   std::vector<std::string> more = {}, std::string instance = {}) {
        if (instance.empty()) instance = name;
        std::vector<std::string> args{"--journal",
                                      redis,
                                      "--journal-claim-after",
                                      kClaimAfter,
                                      "--journal-instance",
                                      instance,
                                      "--witness",
                                      witness(),
                                      "--access-log",
                                      "off"};
        args.insert(args.end(), more.begin(), more.end());
        stack_.start_app(name, std::move(args));
    }
    void start_nginx(const std::vector<std::string>& upstream) { stack_.start_nginx(upstream); }
    // Instances "one" and "two", both with `more`, behind one nginx upstream.
    void start_two_behind_nginx(const std::string& redis,
                                const std::vector<std::string>& more = {}) {
        start_app("one", redis, more);
        start_app("two", redis, more);
        start_nginx({"one", "two"});
    }

    HttpReply post_calls(int count, int latency_ms, const std::string& query = {}) const {
        return http(port(), "POST",
                    "/calls?durable=1&count=" + std::to_string(count) +
                        "&latency_ms=" + std::to_string(latency_ms) + query,
                    {}, {}, 10s);
    }

  private:
    NginxStack stack_{NginxStack::Instances{"crosstown-rj"}};
};

long count_lines(const std::string& text, const std::string& needle) {
    long n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

// The accepted calls that the witness does not list yet.
std::set<std::pair<std::string, long>> unplaced(const std::vector<CallsLoad::Accepted>& accepted,
                                                const std::string& witness) {
    std::set<std::pair<std::string, long>> missing;
    for (const auto& [batch, count] : accepted) {
        for (long call = 1; call <= count; ++call) missing.emplace(batch, call);
    }
    for (const auto& p : read_witness(witness)) missing.erase({p.batch, p.call});
    return missing;
}

// Every call of every accepted batch is in the witness within `limit`.
void expect_all_placed(const std::vector<CallsLoad::Accepted>& accepted, const std::string& witness,
                       ChildProcess& app, std::chrono::milliseconds limit = 30s) {
    std::set<std::pair<std::string, long>> missing;
    EXPECT_TRUE(eventually(
        [&] {
            missing = unplaced(accepted, witness);
            return missing.empty();
        },
        limit, 50ms))
        << missing.size() << " accepted calls never placed within " << limit.count() << " ms\n"
        << app.output();
}

// Entries of a kind's stream that each consumer has taken and not finished (XPENDING).
std::map<std::string, long> pending_by_consumer(RedisConnection& redis, const std::string& kind) {
    const auto reply = redis.command({"XPENDING", "crosstown:stream:" + kind, "crosstown"});
    std::map<std::string, long> pending;
    const auto* consumers = reply.element(3);
    for (std::size_t i = 0; i < reply_size(consumers); ++i) {
        const auto* consumer = reply_element(consumers, i);
        pending[reply_string(reply_element(consumer, 0))] =
            std::stol(reply_string(reply_element(consumer, 1)));
    }
    return pending;
}

TEST(RedisJobs, NoServerAtStartExits2NamingTheAddress) {
    TempDir dir("crosstown-rj");
    const auto address = "redis://127.0.0.1:" + std::to_string(free_port());
    ChildProcess app({fcgi_app_path(), "--listen", dir / "app.sock", "--journal", address},
                     dir / "app.log");
    EXPECT_EQ(app.wait(10s), 2) << app.output();
    EXPECT_THAT(app.output(), HasSubstr(address));
}

TEST(RedisJobs, AcceptedCallsArePlacedAndTheSummaryAddsUp) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("one", redis.unix_address());
    stack.start_nginx({"one"});
    const auto reply = stack.post_calls(5, 10);
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] { return read_witness(stack.witness()).size() == 5; }))
        << stack.app("one").output();
    // The witness line is written before the job is acknowledged: wait for that too.
    EXPECT_TRUE(eventually([&] {
        const auto metrics = http_get(stack.port(), "/metrics").body;
        return metric_value(metrics, "crosstown_redis_stream_length{kind=\"place-call\"}") == 0 &&
               metric_value(metrics, "crosstown_redis_pending{kind=\"place-call\"}") == 0;
    })) << http_get(stack.port(), "/metrics").body;
    stack.app("one").signal(SIGTERM);
    ASSERT_EQ(stack.app("one").wait(15s), 0) << stack.app("one").output();
    const auto counts = summary_counts(stack.app("one").output(), "jobs enqueued=");
    ASSERT_FALSE(counts.empty()) << stack.app("one").output();
    EXPECT_EQ(counts.at("enqueued"), 5);
    EXPECT_EQ(counts.at("received"), 5);
    EXPECT_EQ(counts.at("succeeded"), 5);
    EXPECT_EQ(counts.at("kept"), 0);
}

// Two instances behind one upstream: a client retrying POST /calls with one Idempotency-Key,
// three times in a row and then eight at once, has each call placed once, whichever instance
// took each request; each instance counts the duplicates it refused.
TEST(RedisJobs, RetriesWithOneIdempotencyKeyPlaceEachCallOnceAcrossInstances) {
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address());
    post_calls_with_one_idempotency_key(stack.port());
    ASSERT_TRUE(eventually([&] { return read_witness(stack.witness()).size() >= 10; }))
        << stack.app("one").output() << stack.app("two").output();
    // The witness line is written before the job is acknowledged: wait for that too.
    EXPECT_TRUE(eventually([&] {
        const auto metrics = http_get(stack.port(), "/metrics").body;
        return metric_value(metrics, "crosstown_redis_stream_length{kind=\"place-call\"}") == 0 &&
               metric_value(metrics, "crosstown_redis_pending{kind=\"place-call\"}") == 0;
    }));
    std::map<std::string, long> totals;
    for (const std::string name : {"one", "two"}) {
        stack.app(name).signal(SIGTERM);
        ASSERT_EQ(stack.app(name).wait(15s), 0) << stack.app(name).output();
        for (const auto& [count, n] : summary_counts(stack.app(name).output(), "jobs enqueued=")) {
            totals[count] += n;
        }
    }
    EXPECT_EQ(totals["enqueued"], 10);
    EXPECT_EQ(totals["deduplicated"], 2 * 5 + 7 * 5);
    std::map<std::string, std::set<long>> calls;
    const auto placed = read_witness(stack.witness());
    for (const auto& p : placed) calls[p.batch].insert(p.call);
    EXPECT_EQ(placed.size(), 10U);
    EXPECT_EQ(calls["k-in-a-row"], (std::set<long>{1, 2, 3, 4, 5}));
    EXPECT_EQ(calls["k-at-once"], (std::set<long>{1, 2, 3, 4, 5}));
}

// A call whose first attempt fails on instance one waits for its retry in Redis, not in one:
// one stops, two starts, and two places the call (the witness names its pid) at the retry's
// time. Not by a claim: one left nothing taken, and two placed it before the claim time after
// one's last beat (its stop) could have passed.
TEST(RedisJobs, AFailedCallIsRetriedByAnotherInstanceWhenItsOwnHasStopped) {
    const std::vector<std::string> backoff{"--call-backoff", "2s"};
    RedisServer redis;
    RedisStack stack;
    stack.start_app("one", redis.unix_address(), backoff);
    stack.start_nginx({"one"});
    auto client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    const auto reply = stack.post_calls(1, 0, "&fail_first=1");
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] {
        return client.command({"ZCARD", "crosstown:scheduled"}).integer() == 1;
    })) << "no retry scheduled\n"
        << stack.app("one").output();
    stack.app("one").signal(SIGTERM);
    ASSERT_EQ(stack.app("one").wait(15s), 0) << stack.app("one").output();
    const auto stopped = std::chrono::steady_clock::now();
    EXPECT_EQ(pending_by_consumer(client, "place-call")["one"], 0)
        << "the retry stayed taken by the instance that failed it";
    stack.start_app("two", redis.unix_address(), backoff);
    ASSERT_TRUE(eventually([&] { return read_witness(stack.witness()).size() == 1; }))
        << stack.app("two").output();
    const auto placed = read_witness(stack.witness()).at(0);
    EXPECT_EQ(placed.batch, batch_of(reply));
    EXPECT_EQ(placed.attempt, 2U);
    EXPECT_EQ(placed.pid, stack.app("two").pid()) << "not placed by the second instance";
    const auto started =
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(placed.started_ns));
    EXPECT_LT(started - stopped, kClaimTime) << "as late as a claim";
}

// A delayed call starts no earlier than its delay after its response, and soon after, on
// whichever instance takes it.
TEST(RedisJobs, DelayedCallsStartTheirDelayAfterTheResponseOnEitherInstance) {
    constexpr auto kDelay = 2s;
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address());
    const auto sent = std::chrono::steady_clock::now();
    const auto reply = stack.post_calls(4, 0, "&delay_ms=2000");
    const auto answered = std::chrono::steady_clock::now();
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] { return read_witness(stack.witness()).size() == 4; },
                           kDelay + kPatience))
        << stack.app("one").output() << stack.app("two").output();
    for (const auto& placed : read_witness(stack.witness())) {
        const auto started =
            std::chrono::steady_clock::time_point(std::chrono::nanoseconds(placed.started_ns));
        // Redis counts whole milliseconds of its clock: up to 2 ms early by this one.
        EXPECT_GE(started - sent, kDelay - 2ms)
            << "call " << placed.call << " ran before its time";
        EXPECT_LT(started - answered, kDelay + 1s) << "call " << placed.call << " late";
        EXPECT_EQ(placed.attempt, 1U);
    }
}

// Instance one dies between its hold and its response (a client that reads nothing holds a
// 4 MiB response back, straight on one's socket). The client's retry with the same
// Idempotency-Key reaches two, which deduplicates it; one's held calls are released by two once
// one's heartbeat lapsed, and each call is placed once.
TEST(RedisJobs, ARetryAfterKillNineBetweenHoldAndResponsePlacesEachCallOnce) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("one", redis.unix_address());
    stack.start_app("two", redis.unix_address());
    stack.start_nginx({"two"});
    auto client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    FastCgiConnection fastcgi(stack.socket_of("one"));
    post_calls_and_hold_the_answer(fastcgi, "after-a-crash");
    ASSERT_TRUE(eventually([&] {
        return client.command({"SCARD", "crosstown:held:one"}).integer() == 5;
    })) << "the calls were never held\n"
        << stack.app("one").output();
    stack.app("one").signal(SIGKILL);
    ASSERT_EQ(stack.app("one").wait(10s), 128 + SIGKILL);
    const auto keyed = http(stack.port(), "POST", "/calls?durable=1&count=5&latency_ms=0", {},
                            {{"Idempotency-Key", "after-a-crash"}}, 10s);
    ASSERT_EQ(keyed.status, 202) << keyed.body;
    EXPECT_EQ(batch_of(keyed), "k-after-a-crash");
    const auto metrics = [&] { return http_get(stack.port(), "/metrics").body; };
    const auto placed = [&] {
        auto lines = read_witness(stack.witness());
        std::erase_if(lines, [](const Placed& p) { return p.batch != "k-after-a-crash"; });
        return lines;
    };
    // Released once one's heartbeat lapsed (the claim time) and two looked (a beat).
    ASSERT_TRUE(eventually(
        [&] {
            return metric_value(metrics(), "crosstown_redis_orphans_released_total") == 5 &&
                   placed().size() >= 5;
        },
        kClaimTime * 5 / 4 + kPatience))
        << stack.app("two").output();
    EXPECT_EQ(metric_value(metrics(),
                           "crosstown_jobs_total{kind=\"place-call\",outcome=\"deduplicated\"}"),
              5);
    std::set<long> calls;
    for (const auto& p : placed()) calls.insert(p.call);
    EXPECT_EQ(placed().size(), 5U);
    EXPECT_EQ(calls, (std::set<long>{1, 2, 3, 4, 5}));
}

// 200 calls of a kind limited to 50 starts a second with a burst of 10, spread over two
// instances sharing the bucket in Redis: one burst at once, then 50 a second, and the last
// within 5 s of the first start; each instance alone at the full rate would take half that.
TEST(RedisJobs, ARateLimitHoldsAcrossInstances) {
    const std::vector<std::string> rate{"--call-rate", "50/10"};
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address(), rate);
    // No call starts before its response: none takes a token before this. The first start is
    // no bound, as its record may come well after its token on a slow machine.
    const auto posted = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) ASSERT_EQ(stack.post_calls(50, 0).status, 202);
    ASSERT_TRUE(
        eventually([&] { return read_witness(stack.witness()).size() == 200; }, 5s + kPatience))
        << read_witness(stack.witness()).size() << " placed\n"
        << stack.app("one").output();
    std::vector<std::int64_t> starts;
    std::set<pid_t> pids;
    for (const auto& p : read_witness(stack.witness())) {
        starts.push_back(p.started_ns);
        pids.insert(p.pid);
    }
    std::ranges::sort(starts);
    // A start is taken from the bucket only for a call in hand, so at most one burst of 10
    // starts at once (an instance holding starts through a wait for new jobs would add its own),
    // and the 200th start comes (200 - 10) / 50 = 3.8 s after the posts at the earliest, less
    // the server clock's 1 ms steps. Without the shared bucket, two instances would take half
    // the time.
    const auto last = std::chrono::nanoseconds(starts.back()) - posted.time_since_epoch();
    EXPECT_GE(last, 3780ms);
    const auto spread = std::chrono::nanoseconds(starts.back() - starts.front());
    EXPECT_LE(spread, 5s);
    std::cout << "[ figures ] 200 calls at 50/s (burst 10) over two instances: "
              << std::chrono::duration<double>(spread).count() << " s from first to last start, "
              << std::chrono::duration<double>(last).count() << " s from the posts to the last\n";
    EXPECT_EQ(pids.size(), 2U) << "one instance ran every call: the test shows no sharing";
}

// Calls read from the stream and waiting in the instance for their starts (one a second) are
// cancelled like those still in the stream: after the first has started and the cancel, at
// most one more starts in the 3 s that would have started three, and no entry stays pending.
TEST(RedisJobs, CancelStopsCallsWaitingForTheirStarts) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("one", redis.unix_address(), {"--call-rate", "1/1"});
    stack.start_nginx({"one"});
    auto client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    ASSERT_EQ(stack.post_calls(5, 0).status, 202);
    ASSERT_TRUE(eventually([&] { return !read_witness(stack.witness()).empty(); }))
        << stack.app("one").output();
    const auto cancelled =
        jobs_command({"cancel", "--kind", "place-call", "--journal", redis.unix_address()});
    EXPECT_EQ(cancelled.code, 0) << cancelled.err;
    std::this_thread::sleep_for(3s);
    EXPECT_LE(read_witness(stack.witness()).size(), 2U) << cancelled.out;
    EXPECT_TRUE(eventually([&] { return pending_by_consumer(client, "place-call")["one"] == 0; }))
        << "the cancelled calls' entries stay pending";
    EXPECT_THAT(jobs_command({"list", "--journal", redis.unix_address()}).out, HasSubstr("0 jobs"));
}

// `fcgi_app jobs cancel --kind` beside two running instances: three calls scheduled 3 s ahead
// never run, and one whose first attempt was running (and fails) is not retried. Nothing is
// placed by the time each would have run (its delay, or its attempt and backoff, and a look
// of the feeds), and nothing is left in Redis.
TEST(RedisJobs, CancelBesideRunningInstancesStopsScheduledCallsAndRetries) {
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address());
    auto client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    ASSERT_EQ(stack.post_calls(3, 0, "&delay_ms=3000").status, 202);
    const auto posted = std::chrono::steady_clock::now();
    ASSERT_EQ(stack.post_calls(1, 1500, "&fail_first=1").status, 202);
    ASSERT_TRUE(eventually([&] {
        auto pending = pending_by_consumer(client, "place-call");
        return pending["one"] + pending["two"] == 1;
    })) << "the failing call never started";
    const auto cancelled =
        jobs_command({"cancel", "--kind", "place-call", "--journal", redis.unix_address()});
    EXPECT_EQ(cancelled.code, 0) << cancelled.err;
    EXPECT_THAT(cancelled.out, HasSubstr("4 jobs cancelled"));
    // The running attempt ends (failed), and its retry would have been due 200 ms later (240 at
    // most) and taken within a look; the scheduled calls were due 3 s after their response.
    ASSERT_TRUE(eventually([&] {
        return count_lines(stack.app("one").output() + stack.app("two").output(),
                           "attempt 1 of 5 failed") == 1;
    })) << "the running call's attempt never ended";
    std::this_thread::sleep_until(std::max(std::chrono::steady_clock::now() + 1s, posted + 4s));
    EXPECT_TRUE(read_witness(stack.witness()).empty()) << stack.app("one").output();
    EXPECT_THAT(jobs_command({"list", "--journal", redis.unix_address()}).out, HasSubstr("0 jobs"));
    EXPECT_EQ(client.command({"ZCARD", "crosstown:scheduled"}).integer(), 0);
}

TEST(RedisJobs, AWebInstanceRunsNothingAndAWorkerWithoutASocketDrainsTheBacklog) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("web", redis.unix_address(), {"--role", "web"});
    stack.start_nginx({"web"});
    long calls = 0;
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(stack.post_calls(3, 5).status, 202);
        calls += 3;
    }
    EXPECT_TRUE(eventually([&] {
        return metric_value(http_get(stack.port(), "/metrics").body,
                            "crosstown_redis_stream_length{kind=\"place-call\"}") == calls;
    })) << http_get(stack.port(), "/metrics").body;
    // A web instance holds jobs for its responses, so it must beat though it runs none: past
    // the claim time its heartbeat is still there, and it ran nothing meanwhile.
    std::this_thread::sleep_for(6s);
    EXPECT_TRUE(read_witness(stack.witness()).empty()) << "a web instance ran jobs";
    auto redis_client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    EXPECT_EQ(redis_client.command({"EXISTS", "crosstown:alive:web"}).integer(), 1)
        << "a web instance stopped beating";
    stack.start_app("worker", redis.unix_address(), {"--role", "worker"});
    EXPECT_FALSE(std::filesystem::exists(stack.socket_of("worker"))) << "a worker listens";
    ASSERT_TRUE(eventually([&] {
        return static_cast<long>(read_witness(stack.witness()).size()) == calls;
    })) << stack.app("worker").output();
    stack.app("worker").signal(SIGTERM);
    ASSERT_EQ(stack.app("worker").wait(15s), 0) << stack.app("worker").output();
    const auto counts = summary_counts(stack.app("worker").output(), "jobs enqueued=");
    ASSERT_FALSE(counts.empty()) << stack.app("worker").output();
    EXPECT_EQ(counts.at("received"), calls);
    EXPECT_EQ(counts.at("succeeded"), calls);
}

// At the kill, at least kBacklog calls wait in Redis's scheduled set for their retry (their
// first attempt fails, and the retry waits kRetryWait, +-20%): the backlog is the rate of calls
// times kRetryWait, so it is reached at 100 calls a second to each instance, a tenth of what a
// 2-core machine takes through nginx (a third under the sanitizers). The clients pause between
// requests, so that the instances keep up with what they accept. And at least kInFlight calls
// run on the killed instance (20 ms each), taken from its stream and not finished. The survivor
// must claim those, run the retries, and place every call.
TEST(RedisJobs, KillNineOfOneInstanceLosesNoAcceptedCallAndOnlyInFlightOnesRunTwice) {
    constexpr long kBacklog = 1000;
    constexpr long kInFlight = 3;
    constexpr long kBudget = 60'000;  // calls at most: the load is bounded on any machine
    constexpr auto kRetryWait = 10s;
    const std::vector<std::string> backoff{"--call-backoff", "10s"};
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address(), backoff);
    auto redis_client = RedisConnection::open(RedisAddress::parse(redis.unix_address()), "", 2s);
    const auto load_started = std::chrono::steady_clock::now();
    CallsLoad load(stack.port(), {.clients = 8,
                                  .latency_ms = 20,
                                  .durable = true,
                                  .max_calls = 5,
                                  .query = "&fail_first=1",
                                  .pause = 20ms,
                                  .budget = kBudget});
    long backlog = 0;
    long in_flight = 0;
    ASSERT_TRUE(eventually(
        [&] {
            backlog = redis_client.command({"ZCARD", "crosstown:scheduled"}).integer();
            in_flight = pending_by_consumer(redis_client, "place-call")["one"];
            return (backlog >= kBacklog && in_flight >= kInFlight) || load.sent() >= kBudget / 2;
        },
        120s, 10ms))
        << backlog << " retries scheduled, " << in_flight
        << " calls running on the instance to kill";
    ASSERT_GE(backlog, kBacklog) << "the retries never had the backlog the test claims";
    // The two instances kept up with the calls accepted so far (the backlog is what waits for
    // a retry): that rate is what they run at, at the least.
    const long accepted_calls = load.accepted_calls();
    const auto load_time =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_started).count();
    stack.app("one").signal(SIGKILL);
    ASSERT_EQ(stack.app("one").wait(10s), 128 + SIGKILL);
    // What the killed instance left taken: the survivor claims it only after the claim time.
    const auto left_taken = pending_by_consumer(redis_client, "place-call")["one"];
    EXPECT_GE(left_taken, 1) << "no call was running on the killed instance";
    const auto kill_offset = std::filesystem::file_size(stack.witness());
    const auto accepted_at_kill = load.accepted().size();
    ASSERT_TRUE(eventually([&] { return load.accepted().size() >= accepted_at_kill + 20; }, 20s))
        << "nothing accepted after the kill\n"
        << stack.app("two").output();
    load.finish();
    for (const auto& [status, n] : load.refused()) EXPECT_EQ(status, 502) << n << " times";

    // The deadline follows the work: the claim time and a beat (the survivor looks once a
    // quarter of it), the longest retry wait left (+20% jitter), and twice the time the
    // survivor alone needs for what is still unplaced, at half the rate both ran before the
    // kill.
    const auto accepted = load.accepted();
    const auto rate = static_cast<double>(accepted_calls) / load_time;
    const auto left = static_cast<double>(unplaced(accepted, stack.witness()).size());
    const auto limit = kClaimTime * 5 / 4 + kRetryWait * 6 / 5 +
                       std::chrono::milliseconds(static_cast<long>(2 * left / (rate / 2) * 1000));
    expect_all_placed(accepted, stack.witness(), stack.app("two"),
                      std::chrono::duration_cast<std::chrono::milliseconds>(limit));
    const auto claimed =
        metric_value(http_get(stack.port(), "/metrics").body, "crosstown_redis_claimed_total");
    ASSERT_TRUE(claimed.has_value());
    EXPECT_GE(*claimed, static_cast<double>(left_taken))
        << "the survivor did not claim what the killed instance was running";

    // A call placed twice: first by the killed instance before the kill (placed, not yet
    // acknowledged), then by the survivor after it claimed the entry.
    std::map<std::pair<std::string, long>, std::vector<Placed>> lines_of;
    for (const auto& p : read_witness(stack.witness())) lines_of[{p.batch, p.call}].push_back(p);
    long duplicates = 0;
    for (const auto& [key, lines] : lines_of) {
        if (lines.size() == 1) continue;
        ++duplicates;
        ASSERT_EQ(lines.size(), 2U) << key.first << " call " << key.second;
        EXPECT_LT(lines[0].offset, kill_offset) << key.first << " call " << key.second;
        EXPECT_GE(lines[1].offset, kill_offset) << key.first << " call " << key.second;
        EXPECT_EQ(lines[0].job, lines[1].job) << "the same job, run again";
    }
    long calls = 0;
    for (const auto& [batch, count] : accepted) calls += count;
    std::cout << "[ figures ] kill -9 of one of two instances: " << accepted.size()
              << " requests accepted (" << calls << " calls), backlog " << backlog << ", "
              << *claimed << " claimed by the survivor, " << duplicates
              << " placed twice, all placed within " << limit.count() << " ms allowed\n";
    // Jobs the killed instance held for responses that never reached their clients (502s)
    // run too, released by the survivor and retried like the others: once the streams are
    // empty, nothing is left for the survivor to keep at its stop.
    EXPECT_TRUE(eventually(
        [&] {
            const auto metrics = http_get(stack.port(), "/metrics").body;
            return metric_value(metrics, "crosstown_redis_stream_length{kind=\"place-call\"}") == 0;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(limit), 50ms))
        << http_get(stack.port(), "/metrics").body;
    stack.app("two").signal(SIGTERM);
    EXPECT_EQ(stack.app("two").wait(30s), 0) << stack.app("two").output();
    const auto counts = summary_counts(stack.app("two").output(), "jobs enqueued=");
    ASSERT_FALSE(counts.empty());
    EXPECT_EQ(counts.at("kept"), 0);
    EXPECT_EQ(counts.at("dead"), 0);
}

// A poison job (each attempt aborts its process) on two instances: whichever takes or claims it
// dies, and is restarted under a new name. A claim counts each earlier delivery of the job's
// entry as an attempt (the first, a fresh job's, records nothing) and its attempt is recorded
// before each claimed run, so it is dead after max_attempts deaths in all: no instance, even
// one that claims it every time, dies of it more than max_attempts times. The ordinary calls
// accepted meanwhile are all placed.
TEST(RedisJobs, AJobThatCrashesItsInstanceGoesDeadAndEveryOtherCallIsPlaced) {
    constexpr int kMaxAttempts = 5;  // place-call's
    RedisServer redis;
    RedisStack stack;
    stack.start_two_behind_nginx(redis.unix_address());
    std::vector<CallsLoad::Accepted> accepted;
    const auto post_ordinary = [&] {
        const auto reply = stack.post_calls(3, 100);
        if (reply.status == 202) accepted.emplace_back(batch_of(reply), 3);
    };
    post_ordinary();
    const auto poison = stack.post_calls(1, 0, "&crash=1");
    ASSERT_EQ(poison.status, 202) << poison.body;
    post_ordinary();
    const auto journal = redis.unix_address();
    const auto buried = [&] {
        return jobs_command({"stats", "--journal", journal}).out.find("dead 1") !=
               std::string::npos;
    };
    std::map<std::string, int> deaths;  // by socket
    std::map<std::string, int> starts{{"one", 1}, {"two", 1}};
    int total = 0;
    // Each death is followed by a claim after the claim time (5 s): the deadline follows.
    const auto limit = std::chrono::seconds(5 + 5) * (kMaxAttempts + 2);
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!buried() && total <= kMaxAttempts && std::chrono::steady_clock::now() < until) {
        for (const std::string name : {"one", "two"}) {
            if (stack.app(name).running()) continue;
            EXPECT_EQ(stack.app(name).wait(0ms), 128 + SIGABRT) << stack.app(name).output();
            ++deaths[name];
            ++total;
            stack.start_app(name, redis.unix_address(), {},
                            name + "-" + std::to_string(++starts[name]));
            post_ordinary();
        }
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(eventually(buried, 20s, 100ms)) << total << " deaths, and the job is not dead";
    const auto dead = jobs_command({"list", "--dead", "--journal", journal});
    EXPECT_THAT(dead.out, HasSubstr("the process died during attempt 5")) << dead.out;
    EXPECT_EQ(total, kMaxAttempts) << "deaths before the poison job was dead";
    for (const auto& [name, n] : deaths) EXPECT_LE(n, kMaxAttempts) << name;
    expect_all_placed(accepted, stack.witness(), stack.app("one"));
    std::cout << "[ figures ] poison job on two instances: dead after " << total
              << " deaths (one: " << deaths["one"] << ", two: " << deaths["two"] << "); "
              << accepted.size() << " ordinary batches all placed\n";
}

TEST(RedisJobs, TheJobsCommandListsAndRevivesDeadJobsWhileTheInstanceRuns) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("one", redis.unix_address());
    stack.start_nginx({"one"});
    // Each attempt fails until the fifth, which is the last: dead after about 3 s of backoff.
    const auto reply = http(stack.port(), "POST",
                            "/calls?durable=1&count=1&latency_ms=0&fail_first=5", {}, {}, 10s);
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto journal = redis.unix_address();
    ASSERT_TRUE(eventually(
        [&] {
            return jobs_command({"stats", "--journal", journal}).out.find("dead 1") !=
                   std::string::npos;
        },
        20s, 200ms))
        << jobs_command({"list", "--journal", journal}).out;
    const auto dead = jobs_command({"list", "--dead", "--journal", journal});
    EXPECT_EQ(dead.code, 0) << dead.err;
    EXPECT_THAT(dead.out, HasSubstr("place-call"));
    EXPECT_THAT(dead.out, HasSubstr("failed (simulated), attempt 5"));
    EXPECT_THAT(dead.out, HasSubstr("1 jobs"));

    const auto retried = jobs_command({"retry", "--dead", "--journal", journal});
    EXPECT_EQ(retried.code, 0) << retried.err;
    EXPECT_THAT(retried.out, HasSubstr("1 dead jobs made ready"));
    // The running instance takes it at once: attempts from 1 again, so it fails again.
    EXPECT_TRUE(eventually(
        [&] { return count_lines(stack.app("one").output(), "attempt 1 of 5 failed") >= 2; }, 10s,
        50ms))
        << stack.app("one").output();

    const auto wrong = jobs_command({"stats", "--journal", "redis://127.0.0.1:1"});
    EXPECT_EQ(wrong.code, 2);
    EXPECT_THAT(wrong.err, HasSubstr("redis://127.0.0.1:1"));
}

TEST(RedisJobs, CallsStartOnlyAfterTheirResponseFinishedThoughAnotherInstanceRunsThem) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("web", redis.unix_address(), {"--role", "web"});
    stack.start_app("worker", redis.unix_address(), {"--role", "worker"});
    stack.start_nginx({"web"});
    std::vector<std::string> batches;
    for (int i = 0; i < 20; ++i) {
        const auto reply = stack.post_calls(5, 0);
        ASSERT_EQ(reply.status, 202) << reply.body;
        batches.push_back(batch_of(reply));
    }
    ASSERT_TRUE(eventually([&] { return read_witness(stack.witness()).size() >= 100; }))
        << stack.app("worker").output();
    // When each response was finished, as the web instance recorded it after FCGX_Finish_r
    // (steady_clock, comparable across processes of this machine).
    std::map<std::string, std::int64_t> finished_ns;
    for (const auto& batch : batches) {
        ASSERT_TRUE(eventually([&] {
            const auto status = json::parse(http_get(stack.port(), "/calls/" + batch).body);
            finished_ns[batch] = status.value("response_finished_ns", std::int64_t{0});
            return finished_ns[batch] > 0;
        })) << batch;
    }
    std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
    const auto placed = read_witness(stack.witness());
    ASSERT_EQ(placed.size(), 100U);
    for (const auto& p : placed) {
        EXPECT_EQ(p.pid, stack.app("worker").pid()) << "placed by another process than the worker";
        EXPECT_GE(p.started_ns, finished_ns.at(p.batch))
            << p.batch << " call " << p.call << " started before its response was finished";
        earliest = std::min(earliest, p.started_ns - finished_ns.at(p.batch));
    }
    std::cout << "[ figures ] web -> Redis -> worker: the earliest call started "
              << static_cast<double>(earliest) / 1e6 << " ms after its response was finished\n";
}

// The response is 4 MiB and nobody reads it for a while: FCGX_Finish_r waits, and so must
// the calls, though the instance that runs them is another one. The wait is longer than the
// claim time, so that neither a beat's look for stranded jobs nor a lapsed heartbeat may
// release them early either.
TEST(RedisJobs, AResponseNotYetReadHoldsItsCallsBackOnEveryInstance) {
    RedisServer redis;
    RedisStack stack;
    stack.start_app("web", redis.unix_address(), {"--role", "web"});
    stack.start_app("worker", redis.unix_address(), {"--role", "worker"});
    FastCgiConnection fastcgi(stack.socket_of("web"));
    const Params post{{"REQUEST_METHOD", "POST"},
                      {"DOCUMENT_URI", "/calls"},
                      {"QUERY_STRING", "durable=1&count=3&latency_ms=0&pad_kb=4096"},
                      {"CONTENT_LENGTH", "0"}};
    ASSERT_TRUE(fastcgi.send_request(post));
    std::this_thread::sleep_for(7s);
    EXPECT_TRUE(read_witness(stack.witness()).empty())
        << "calls ran while their response was still being written";
    const auto reply = fastcgi.read_reply();
    ASSERT_TRUE(reply.ended);
    EXPECT_EQ(reply.status, 202);
    EXPECT_TRUE(eventually([&] { return read_witness(stack.witness()).size() == 3; }))
        << stack.app("worker").output();
}

TEST(RedisJobs, ARedisKilledAndRestartedMidLoadMeans503sMeanwhileAndNoAcceptedCallLost) {
    RedisServer redis{{.appendonly = true}};  // appendfsync always: a hold is on disk at its 202
    RedisStack stack;
    stack.start_app("one", redis.unix_address());
    stack.start_nginx({"one"});
    // Calls of 300 ms: some are running when Redis goes, and their completions must wait.
    CallsLoad load(stack.port(), {.clients = 2, .latency_ms = 300, .durable = true, .max_calls = 5});
    ASSERT_TRUE(eventually([&] { return load.accepted().size() >= 30; }, 20s));
    redis.stop(SIGKILL);
    ASSERT_TRUE(eventually([&] { return load.refused()[503] >= 5; }, 10s))
        << "no 503 while Redis was down";
    EXPECT_EQ(http_get(stack.port(), "/hello").status, 200) << "a request without durable work";
    EXPECT_TRUE(eventually([&] {
        return metric_value(http_get(stack.port(), "/metrics").body, "crosstown_redis_unwritten") >
               0;
    })) << "no completion waited for Redis: the test proves little";
    const auto accepted_while_down = load.accepted().size();
    redis.start();
    ASSERT_TRUE(eventually([&] { return load.accepted().size() >= accepted_while_down + 30; }, 20s))
        << "nothing accepted after Redis came back\n"
        << stack.app("one").output();
    load.finish();
    for (const auto& [status, n] : load.refused()) EXPECT_EQ(status, 503) << n << " times";
    const auto accepted = load.accepted();
    expect_all_placed(accepted, stack.witness(), stack.app("one"));
    EXPECT_TRUE(eventually([&] {
        return metric_value(http_get(stack.port(), "/metrics").body, "crosstown_redis_unwritten") ==
               0;
    })) << "completions kept while Redis was down were not written once it was back";
    std::cout << "[ figures ] Redis killed and restarted: " << accepted.size()
              << " requests accepted, " << load.refused()[503] << " refused with 503\n";
}

}  // namespace
}  // namespace crosstown::test
