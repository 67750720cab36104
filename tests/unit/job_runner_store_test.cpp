// The runner on every store: what JobRunner promises (a committed job runs once and leaves its
// store, a failing one is retried then dead, a stuck handler is given up, stop keeps what has
// not finished, a skipped job leaves, a dead process's jobs run on the next one) checked on the
// in-memory store, a SQLite journal file and a real redis-server, each started as a server
// starts it (JobStore::start: replay, or the feed). The runner's finer rules (suspects, room,
// cut-short attempts, gates, poison jobs) are in job_runner_test, on a SQLite file; a process
// that really dies in its job is in the integration tests, on both real stores.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/memory_job_store.hpp"
#include "crosstown/jobs/redis/redis_job_admin.hpp"
#include "crosstown/jobs/redis/redis_job_store.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_admin.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/job_harness.hpp"
#include "support/journal_files.hpp"
#include "support/log_capture.hpp"
#include "support/redis_server.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using Names = std::vector<std::string>;
using test::Attempts;
using test::Seen;

// Each store, as processes one after another open it: open() gives the store of the process
// now running, die() ends that process without a clean stop.
class MemoryStores {
  public:
    JobStore& open(const Names&) { return store_; }
    void die() {}  // the store outlives the runner, as a journal outlives its process
    std::vector<AdminJob> list(bool dead_only = false) { return store_.list(dead_only); }

  private:
    MemoryJobStore store_;
};

class SqliteStores {
  public:
    JobStore& open(const Names&) { return store_.emplace(test::open_rw(path_)); }
    void die() { store_.reset(); }
    std::vector<AdminJob> list(bool dead_only = false) {
        if (store_) store_->flush();
        return SqliteJobAdmin(path_, false).list(dead_only);
    }

  private:
    test::TempDir dir_;
    std::string path_ = dir_ / "jobs.db";
    std::optional<SqliteJobStore> store_;
};

// Each process is a new instance; one that dies leaves its heartbeat to expire after
// kClaimAfter, and the next claims or releases what it had.
class RedisStores {
  public:
    static constexpr auto kClaimAfter = 1000ms;
    JobStore& open(const Names& kinds) {
        return store_.emplace(server_.unix_address(), options("i" + std::to_string(++opened_)),
                              kinds);
    }
    void die() { store_.reset(); }  // no close(): it never leaves
    std::vector<AdminJob> list(bool dead_only = false) {
        return RedisJobAdmin(server_.unix_address(), options("admin")).list(dead_only);
    }

  private:
    static RedisJournalOptions options(const std::string& instance) {
        RedisJournalOptions o;
        o.prefix = "runner";
        o.instance = instance;
        o.claim_after = kClaimAfter;
        return o;
    }
    test::RedisServer server_;
    int opened_ = 0;
    std::optional<RedisJobStore> store_;
};

// A process: a pool, a runner on the store it opens, started as the server starts it. Stopped
// as the server stops: pool drained, runner stopped, store closed.
template <class Stores>
class JobRunnerOnEachStore : public ::testing::Test {
  protected:
    void TearDown() override { stop(); }

    void start(PoolConfig config = {.workers = 4, .min_workers = 4}) {
        store_ = &stores.open(kinds.names());
        pool_.emplace(config);
        runner_.emplace(kinds, *store_, *pool_);
        store_->start(*runner_, true);
    }
    void stop() {
        if (!runner_) return;
        stuck.open();  // a handler left waiting by a failed assertion returns
        store_->stop_taking();
        pool_->drain(10s, 10s);
        runner_->stop();
        store_->close();
        runner_.reset();
        pool_.reset();
    }
    // The process dies: its runner ends, and its store is gone without closing. The store
    // goes first: a Redis store's feed calls the runner until the store is gone.
    void die() {
        pool_->drain(0s, 10s);
        runner_->stop();
        stores.die();
        runner_.reset();
        pool_.reset();
    }
    JobRunner& runner() { return *runner_; }
    JobStore& store() { return *store_; }

    // Commits `count` jobs of `kind` (payloads "0", "1", ...) as one request's after a response
    // with `status`, and starts them unless `start` is false (the process dies first); the ids.
    std::vector<std::int64_t> run(std::string_view kind, int count = 1, DurableOptions options = {},
                                  bool delivered = true, bool start = true) {
        JobBatch batch(&kinds, 10'000);
        for (int i = 0; i < count; ++i) batch.add(kind, std::to_string(i), options);
        auto committed = runner_->commit(batch, 200, "req-1");
        std::vector<std::int64_t> ids;
        for (const auto& job : committed) ids.push_back(job.id);
        if (start) {
            runner_->start(std::move(committed),
                           std::make_shared<const ResponseOutcome>(
                               ResponseOutcome{"req-1", 200, delivered, nullptr, Clock::now()}));
        }
        return ids;
    }
    bool store_empty() {
        return test::eventually([&] { return stores.list().empty(); }, test::kPatience, 10ms);
    }

    // Declared before the runner and its pool, so that handlers never outlive them.
    JobKinds kinds;
    Stores stores;
    Attempts attempts;
    test::Gate stuck;  // opened at the end of every test

  private:
    JobStore* store_ = nullptr;
    std::optional<Pool> pool_;
    std::optional<JobRunner> runner_;
};

using Stores = ::testing::Types<MemoryStores, SqliteStores, RedisStores>;
class StoreNames {
  public:
    template <class T>
    static std::string GetName(int) {
        if (std::is_same_v<T, MemoryStores>) return "Memory";
        return std::is_same_v<T, SqliteStores> ? "Sqlite" : "Redis";
    }
};
TYPED_TEST_SUITE(JobRunnerOnEachStore, Stores, StoreNames);

TYPED_TEST(JobRunnerOnEachStore, CommittedJobsRunOnceAndLeaveTheStore) {
    auto& attempts = this->attempts;
    this->kinds.define("email", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    this->start();
    const auto ids = this->run("email", 3);
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 3; }));
    ASSERT_TRUE(this->store_empty()) << "a job that succeeded stayed in the store";
    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 3U);
    for (const auto& s : seen) {
        EXPECT_EQ(s.job.attempt, 1U);
        EXPECT_EQ(std::ranges::count(ids, s.job.id), 1) << s.job.id;
        EXPECT_EQ(s.job.request_id, "req-1");
    }
}

TYPED_TEST(JobRunnerOnEachStore, AFailingJobIsRetriedThenDeadWithItsLastError) {
    test::LogCapture quiet;
    auto& attempts = this->attempts;
    this->kinds.define("flaky", {.max_attempts = 3, .backoff = 1ms},
                       [&](const Job& job, std::stop_token) {
                           attempts.add(job);
                           throw std::runtime_error("refused " + std::to_string(job.attempt));
                       });
    this->start();
    const auto ids = this->run("flaky");
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().dead == 1; }));
    EXPECT_EQ(attempts.list().size(), 3U);
    ASSERT_TRUE(test::eventually([&] { return this->stores.list(true).size() == 1; },
                                 test::kPatience, 10ms));
    const auto dead = this->stores.list(true).at(0);
    EXPECT_EQ(dead.job.id, ids.at(0));
    EXPECT_EQ(dead.job.state, JobState::dead);
    EXPECT_EQ(dead.job.attempts, 3U);
    EXPECT_THAT(dead.job.last_error, HasSubstr("refused 3"));
}

// A handler that never looks at its stop token: at its timeout (plus the grace) the attempt
// has failed, the kind's one slot goes to the next job, and the stuck job is retried.
TYPED_TEST(JobRunnerOnEachStore, AHandlerIgnoringItsStopTokenIsGivenUpAndItsKindGoesOn) {
    test::LogCapture logs;
    auto& stuck = this->stuck;
    auto& attempts = this->attempts;
    constexpr auto kTimeout = 200ms;
    this->kinds.define("stubborn",
                       {.max_attempts = 3, .backoff = 1ms, .timeout = kTimeout, .concurrency = 1},
                       [&](const Job& job, std::stop_token) {
                           attempts.add(job);
                           if (job.payload == "0" && job.attempt == 1) stuck.wait();
                       });
    this->start();
    this->run("stubborn", 2);  // "0" gets stuck; "1" waits for the kind's one slot
    // Both succeed while the first attempt's handler is still stuck: the kind went on without
    // it. (How soon, timeout + 1 s, job_runner_test checks, without a feed's round trips.)
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 2; }))
        << "the kind stayed wedged behind the stuck handler";
    EXPECT_TRUE(attempts.find("1", 1).has_value());
    EXPECT_TRUE(attempts.find("0", 2).has_value()) << "the stuck job was not retried";
    EXPECT_TRUE(logs.contains("given up"));
    EXPECT_TRUE(this->store_empty());
    stuck.open();  // it returns at last; its result is ignored
    ASSERT_TRUE(test::eventually([&] { return this->runner().report().at(0).stuck == 0; }));
    EXPECT_EQ(this->runner().totals().succeeded, 2U);
}

TYPED_TEST(JobRunnerOnEachStore, StopKeepsAJobWaitingForItsRetryInTheStore) {
    test::LogCapture quiet;
    this->kinds.define("later", {.backoff = 60'000ms}, [](const Job&, std::stop_token) {
        throw std::runtime_error("try again in a minute");
    });
    this->start();
    const auto ids = this->run("later");
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().retried == 1; }));
    this->stop();
    const auto left = this->stores.list();
    ASSERT_EQ(left.size(), 1U);
    EXPECT_EQ(left[0].job.id, ids.at(0));
    EXPECT_EQ(left[0].job.state, JobState::retry);
    EXPECT_EQ(left[0].job.attempts, 1U);
    EXPECT_EQ(left[0].job.last_error, "try again in a minute");
}

TYPED_TEST(JobRunnerOnEachStore, ASkippedJobLeavesTheStoreWithoutRunning) {
    std::atomic<int> ran{0};
    this->kinds.define("notify", {}, [&](const Job&, std::stop_token) { ++ran; });
    this->start();
    this->run("notify", 2, {.skip_if_undelivered = true}, /*delivered=*/false);
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().skipped == 2; }));
    EXPECT_TRUE(this->store_empty());
    EXPECT_EQ(ran, 0);
}

// A request retried with the same unique key makes no second job: counted, never run; the key
// of a job skipped because its response was lost is free for the client's retry at once.
TYPED_TEST(JobRunnerOnEachStore, ADuplicateIsCountedAndNeverRunsAndASkippedJobFreesItsKey) {
    std::atomic<int> ran{0};
    this->kinds.define("charge", {}, [&](const Job&, std::stop_token) { ++ran; });
    this->start();
    EXPECT_EQ(this->run("charge", 1, {.unique_key = "order-1"}).size(), 1U);
    EXPECT_TRUE(this->run("charge", 1, {.unique_key = "order-1"}).empty());
    EXPECT_EQ(this->run("charge", 2, {.unique_key = "order-2"}).size(), 1U)
        << "two jobs with one key in one request";
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 2; }));
    EXPECT_EQ(this->runner().totals().deduplicated, 2U);
    EXPECT_EQ(this->runner().totals().enqueued, 2U);
    EXPECT_TRUE(this->run("charge", 1, {.unique_key = "order-1"}).empty())
        << "the key outlives the job that succeeded";

    this->run("charge", 1, {.skip_if_undelivered = true, .unique_key = "lost"}, false);
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().skipped == 1; }));
    ASSERT_TRUE(test::eventually([&] {
        return this->run("charge", 1, {.unique_key = "lost"}).size() == 1;
    })) << "the retry of a request whose response was lost was deduplicated";
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 3; }));
    EXPECT_EQ(ran, 3);
}

// A long-lived process: what the runner and the store keep about jobs is bounded by the jobs
// in flight. After many jobs (some retried, some skipped, some failing for good) and once
// idle, every structure is empty, on every store.
TYPED_TEST(JobRunnerOnEachStore, ManyJobsLeaveNoBookkeepingBehind) {
    test::LogCapture quiet;
    this->kinds.define("mixed", {.max_attempts = 2, .backoff = 1ms, .concurrency = 8},
                       [](const Job& job, std::stop_token) {
                           const auto n = std::stoi(job.payload);
                           if (n % 7 == 0) throw std::runtime_error("always");
                           if (n % 3 == 0 && job.attempt == 1) throw std::runtime_error("once");
                       });
    this->start();
    constexpr int kRequests = 40;
    constexpr int kPerRequest = 25;
    for (int i = 0; i < kRequests; ++i) {
        this->run("mixed", kPerRequest, {.skip_if_undelivered = true}, /*delivered=*/i % 10 != 0);
    }
    const auto& totals = [&] { return this->runner().totals(); };
    ASSERT_TRUE(test::eventually(
        [&] {
            const auto t = totals();
            return t.succeeded + t.dead + t.skipped == kRequests * kPerRequest;
        },
        4 * test::kPatience))
        << totals().succeeded << " succeeded, " << totals().dead << " dead, " << totals().skipped
        << " skipped";
    EXPECT_GT(totals().retried, 0U);
    EXPECT_GT(totals().dead, 0U);
    EXPECT_GT(totals().skipped, 0U);
    const auto empty = [](const std::map<std::string, std::size_t>& sizes) {
        return std::ranges::all_of(sizes, [](const auto& s) { return s.second == 0; });
    };
    // The store's last writes (completions after the count) land within a round or a beat.
    EXPECT_TRUE(test::eventually([&] { return empty(this->store().bookkeeping()); }))
        << ::testing::PrintToString(this->store().bookkeeping());
    EXPECT_TRUE(test::eventually([&] { return empty(this->runner().bookkeeping()); }))
        << ::testing::PrintToString(this->runner().bookkeeping());
    // In the store itself, only the dead jobs stay.
    EXPECT_TRUE(test::eventually(
        [&] { return this->stores.list().size() == this->stores.list(true).size(); }));
}

// The process dies between its commit and the jobs' start: the next process runs them (SQLite
// and memory: replayed; Redis: the dead instance's held jobs released, then taken).
TYPED_TEST(JobRunnerOnEachStore, JobsADeadProcessCommittedRunOnTheNextOne) {
    auto& attempts = this->attempts;
    this->kinds.define("call", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    this->start();
    const auto ids = this->run("call", 2, {}, true, /*start=*/false);
    this->die();
    this->start();
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 2; },
                                 10 * RedisStores::kClaimAfter));
    EXPECT_TRUE(this->store_empty());
    for (const auto id : ids) {
        EXPECT_EQ(std::ranges::count(attempts.list(), id, [](const Seen& s) { return s.job.id; }),
                  1)
            << id;
    }
}

// A job with a delay is committed with its request, and starts no earlier than its delay after
// the response (which here takes 300 ms after the commit), and soon after that: within a look
// of the Redis feed (it blocks for at most 200 ms), on every store. Meanwhile it takes no worker.
TYPED_TEST(JobRunnerOnEachStore, ADelayedJobStartsItsDelayAfterTheResponse) {
    constexpr auto kDelay = 600ms;
    auto& attempts = this->attempts;
    this->kinds.define("remind", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    this->start();
    JobBatch batch(&this->kinds, 10);
    batch.add("remind", "p", {.delay = kDelay});
    auto committed = this->runner().commit(batch, 200, "req-1");
    ASSERT_EQ(committed.size(), 1U);
    std::this_thread::sleep_for(300ms);  // the response takes its time
    const auto responded = Clock::now();
    this->runner().start(std::move(committed),
                         std::make_shared<const ResponseOutcome>(
                             ResponseOutcome{"req-1", 200, true, nullptr, responded}));
    if (!this->store().shared()) {
        const auto reports = this->runner().report();
        EXPECT_EQ(reports.at(0).scheduled, 1U);
        EXPECT_EQ(reports.at(0).running, 0U);
    }
    ASSERT_TRUE(test::eventually([&] { return attempts.size() == 1; }, kDelay + test::kPatience));
    const auto started = attempts.list().at(0).at - responded;
    // Redis counts whole milliseconds of its clock: up to 2 ms early by this one.
    EXPECT_GE(started, kDelay - 2ms) << "the delay counted from the commit";
    EXPECT_LT(started, kDelay + 1s)
        << "late by "
        << std::chrono::duration_cast<std::chrono::milliseconds>(started - kDelay).count() << " ms";
    EXPECT_EQ(attempts.list().at(0).job.attempt, 1U);
    EXPECT_TRUE(this->store_empty());
}

// A job scheduled ahead whose process dies before its time runs on the next process, at its
// time (counted from its commit, the time the store keeps), not before.
TYPED_TEST(JobRunnerOnEachStore, AScheduledJobOfADeadProcessRunsOnTheNextOneAtItsTime) {
    constexpr auto kDelay = 1500ms;
    auto& attempts = this->attempts;
    this->kinds.define("remind", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    this->start();
    const auto committed = Clock::now();
    const auto ids = this->run("remind", 1, {.delay = kDelay});
    this->die();
    this->start();
    ASSERT_TRUE(test::eventually([&] { return attempts.size() == 1; },
                                 kDelay + 10 * RedisStores::kClaimAfter));
    const auto seen = attempts.list().at(0);
    EXPECT_EQ(seen.job.id, ids.at(0));
    // The store keeps whole milliseconds of the wall clock: up to 2 ms early by this clock.
    EXPECT_GE(seen.at - committed, kDelay - 2ms) << "ran before its time";
    EXPECT_TRUE(this->store_empty());
}

// The request's trace context reaches each attempt's Job, a retry's included, and the runner's
// log lines about the job carry it.
TYPED_TEST(JobRunnerOnEachStore, EveryAttemptSeesItsRequestsTraceContextAndItsLogLinesCarryIt) {
    const std::string trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    test::LogCapture logs;
    auto& attempts = this->attempts;
    this->kinds.define("traced", {.backoff = 1ms}, [&](const Job& job, std::stop_token) {
        attempts.add(job);
        if (job.attempt == 1) throw std::runtime_error("once");
    });
    this->start();
    JobBatch batch(&this->kinds, 10);
    batch.set_trace_parent(trace);
    batch.add("traced", "p", {});
    auto committed = this->runner().commit(batch, 200, "req-1");
    this->runner().start(std::move(committed),
                         std::make_shared<const ResponseOutcome>(
                             ResponseOutcome{"req-1", 200, true, nullptr, Clock::now(), trace}));
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == 1; }));
    ASSERT_EQ(attempts.size(), 2U);
    for (const auto& seen : attempts.list()) {
        EXPECT_EQ(seen.job.trace_parent, trace) << "attempt " << seen.job.attempt;
    }
    EXPECT_TRUE(logs.contains("request req-1, trace " + trace + ") attempt 1 of 10 failed"))
        << ::testing::PrintToString(logs.lines());
}

// A kind with a rate of 20 starts a second (a burst of 5) starts 25 jobs over at least a
// second: 5 at once, then one every 50 ms, on every store (on Redis through one bucket in the
// server). The jobs above the rate wait without a worker: nothing runs while some still wait.
TYPED_TEST(JobRunnerOnEachStore, AKindsRateSpreadsItsStartsAndHoldsNoWorkerWhileTheyWait) {
    constexpr int kJobs = 25;
    auto& attempts = this->attempts;
    this->kinds.define("metered", {.rate = {.per_second = 20, .burst = 5}},
                       [&](const Job& job, std::stop_token) { attempts.add(job); });
    this->start();
    const auto released = Clock::now();  // no start comes before it
    this->run("metered", kJobs);
    ASSERT_TRUE(test::eventually([&] {
        const auto report = this->runner().report().at(0);
        const auto done = this->runner().totals().succeeded;
        return report.running == 0 && done >= 5 && done < kJobs;
    })) << "no moment with jobs left and none running";
    ASSERT_TRUE(test::eventually([&] { return this->runner().totals().succeeded == kJobs; },
                                 2s + test::kPatience));
    auto seen = attempts.list();
    std::ranges::sort(seen, {}, &test::Seen::at);
    // (25 - 5) starts at 20 a second after the burst: the last a second at the least (a
    // clock's grain less) after the release. Counted from the release, not from the first
    // start, which a busy machine may run some milliseconds after its grant.
    EXPECT_GE(seen.back().at - released, 1s - 5ms);
    EXPECT_LT(seen.back().at - seen.front().at, 1s + 1s) << "far slower than the rate";
}

}  // namespace
}  // namespace crosstown
