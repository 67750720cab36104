#include "crosstown/jobs/job_runner.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/http/router.hpp>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <crosstown/testing/capture_deferred.hpp>
#include <crosstown/testing/captured_job.hpp>
#include <crosstown/testing/test_client.hpp>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/deferred/request_context.hpp"
#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/process_pool.hpp"
#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/counting_observer.hpp"
#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/job_harness.hpp"
#include "support/journal_files.hpp"
#include "support/log_capture.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

using test::Attempts;
using test::Harness;
using test::ids_of;
using test::open_rw;
using test::outcome;
using test::Seen;
using test::stored;

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

TEST(JobRunner, CommittedJobsRunOnThePoolAndTheirRowsAreDeleted) {
    test::TempDir dir;
    JobKinds kinds;
    Attempts attempts;
    kinds.define("email", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    Harness h(kinds, dir / "jobs.db");

    JobBatch batch(&kinds, 100);
    batch.add("email", "to ada", {});
    batch.add("email", "to grace", {});
    auto committed = h.runner.commit(batch, 201, "req-9");
    ASSERT_EQ(committed.size(), 2U);
    EXPECT_TRUE(batch.empty());
    // On disk before the response is written, not run yet.
    EXPECT_EQ(ids_of(stored(h.path)),
              (std::vector<std::int64_t>{committed[0].id, committed[1].id}));
    EXPECT_EQ(attempts.size(), 0U);
    const std::set<std::int64_t> ids{committed[0].id, committed[1].id};

    h.runner.start(std::move(committed), outcome("req-9", true, 201));
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 2; }));
    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 2U);
    std::set<std::int64_t> seen_ids;
    std::set<std::string> payloads;
    for (const auto& s : seen) {
        seen_ids.insert(s.job.id);
        payloads.insert(s.job.payload);
        EXPECT_EQ(s.job.kind, "email");
        EXPECT_EQ(s.job.attempt, 1U);
        EXPECT_EQ(s.job.request_id, "req-9");
        EXPECT_NE(s.thread, std::this_thread::get_id());  // on a pool worker
    }
    EXPECT_EQ(seen_ids, ids);
    EXPECT_EQ(payloads, (std::set<std::string>{"to ada", "to grace"}));
    EXPECT_TRUE(h.journal().empty());

    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.enqueued, 2U);
    EXPECT_EQ(totals.succeeded, 2U);
    EXPECT_EQ(totals.outstanding, 0U);
    EXPECT_EQ(totals.retried + totals.dead + totals.skipped + totals.replayed, 0U);
    EXPECT_EQ(h.runner.start_delay().count, 2U);
    EXPECT_EQ(h.runner.run_time().count, 2U);
    // Durable attempts are the runner's to count, not the pool's.
    EXPECT_EQ(h.pool.counters().snapshot().dispatched, 0U);
}

TEST(JobRunner, AThrowingJobIsRetriedWithBackoffUntilItSucceeds) {
    test::LogCapture quiet;
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    JobKinds kinds;
    Attempts attempts;
    std::mutex mutex;
    std::vector<StoredJob> between;  // the journal as the second attempt starts; guarded by mutex
    SqliteJobStore* writer = nullptr;
    kinds.define("call", {.max_attempts = 5, .backoff = 20ms, .max_backoff = 1000ms},
                 [&](const Job& job, std::stop_token) {
                     attempts.add(job);
                     if (job.attempt == 2) {
                         writer->flush();
                         std::lock_guard lock(mutex);
                         between = stored(path);
                     }
                     if (job.attempt < 3) {
                         throw std::runtime_error("busy signal " + std::to_string(job.attempt));
                     }
                 });
    Harness h(kinds, path);
    writer = &h.writer;
    const auto ids = h.run(kinds, "call");
    ASSERT_EQ(ids.size(), 1U);
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 1; }));
    ASSERT_TRUE(test::eventually([&] { return h.idle(); }));

    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 3U);
    for (std::size_t i = 0; i < seen.size(); ++i) {
        EXPECT_EQ(seen[i].job.attempt, i + 1);
        EXPECT_EQ(seen[i].job.id, ids[0]);  // stable: the idempotency key
        EXPECT_EQ(seen[i].job.payload, "0");
        EXPECT_EQ(seen[i].job.request_id, "req-1");
    }
    // Backoff: 20 ms before the second attempt and 40 before the third, give or take 20%.
    EXPECT_GE(seen[1].at - seen[0].at, 16ms);
    EXPECT_GE(seen[2].at - seen[1].at, 32ms);
    {
        std::lock_guard lock(mutex);
        ASSERT_EQ(between.size(), 1U);
        EXPECT_EQ(between[0].state, JobState::retry);
        EXPECT_EQ(between[0].attempts, 1U);
        EXPECT_EQ(between[0].last_error, "busy signal 1");
    }
    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.retried, 2U);
    EXPECT_EQ(totals.succeeded, 1U);
    EXPECT_EQ(totals.dead, 0U);
    EXPECT_EQ(totals.outstanding, 0U);
    EXPECT_EQ(h.runner.run_time().count, 3U);
    EXPECT_EQ(h.runner.start_delay().count, 1U);  // the first attempt only
    EXPECT_TRUE(h.journal().empty());
}

TEST(JobRunner, AJobThatAlwaysFailsIsDeadAfterMaxAttemptsWithItsLastError) {
    test::LogCapture logs;
    test::TempDir dir;
    JobKinds kinds;
    Attempts attempts;
    kinds.define("call", {.max_attempts = 3, .backoff = 10ms},
                 [&](const Job& job, std::stop_token) {
                     attempts.add(job);
                     throw std::runtime_error("no answer " + std::to_string(job.attempt));
                 });
    Harness h(kinds, dir / "jobs.db");
    const auto ids = h.run(kinds, "call", 1, {}, "req-dead");
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().dead == 1; }));
    ASSERT_TRUE(test::eventually([&] { return h.idle(); }));
    EXPECT_EQ(attempts.size(), 3U);

    const auto jobs = h.journal();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, ids[0]);
    EXPECT_EQ(jobs[0].state, JobState::dead);
    EXPECT_EQ(jobs[0].attempts, 3U);
    EXPECT_EQ(jobs[0].last_error, "no answer 3");
    EXPECT_EQ(jobs[0].request_id, "req-dead");

    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.dead, 1U);
    EXPECT_EQ(totals.retried, 2U);
    EXPECT_EQ(totals.succeeded, 0U);
    EXPECT_EQ(totals.outstanding, 0U);
    EXPECT_TRUE(logs.contains("is dead after 3 attempts"));
}

TEST(JobRunner, ANonStandardExceptionFailsTheAttemptToo) {
    test::LogCapture quiet;
    test::TempDir dir;
    JobKinds kinds;
    kinds.define("odd", {.max_attempts = 1}, [](const Job&, std::stop_token) { throw 42; });
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "odd");
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().dead == 1; }));
    const auto jobs = h.journal();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].state, JobState::dead);
    EXPECT_EQ(jobs[0].last_error, "non-standard exception");
}

// Waits on `stop` for at most kPatience; true when stop was requested.
bool wait_for_stop(std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait_for(lock, stop, test::kPatience, [] { return false; });
    return stop.stop_requested();
}

TEST(JobRunner, AnAttemptPastItsTimeoutSeesItsStopTokenRequested) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<bool> saw_stop{false};
    std::atomic<std::int64_t> waited_ms{-1};
    kinds.define(
        "slow", {.max_attempts = 1, .timeout = 50ms}, [&](const Job&, std::stop_token stop) {
            const auto started = Clock::now();
            saw_stop = wait_for_stop(stop);
            waited_ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)
                    .count();
        });
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "slow");
    // It returned normally even so, perhaps without doing its work: a failed attempt, here
    // its last.
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().dead == 1; }));
    EXPECT_EQ(h.runner.totals().succeeded, 0U);
    EXPECT_TRUE(saw_stop);
    EXPECT_GE(waited_ms.load(), 40);
    EXPECT_LT(waited_ms.load(), 5000);
    h.writer.flush();
    const auto jobs = h.journal();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].state, JobState::dead);
    EXPECT_EQ(jobs[0].last_error, "timed out after 50 ms");
}

TEST(JobRunner, AnAttemptThatThrowsAfterItsTimeoutFailsAsTimedOut) {
    test::LogCapture quiet;
    test::TempDir dir;
    JobKinds kinds;
    kinds.define("slow", {.max_attempts = 1, .timeout = 50ms},
                 [&](const Job&, std::stop_token stop) {
                     if (wait_for_stop(stop)) throw std::runtime_error("interrupted");
                 });
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "slow");
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().dead == 1; }));
    const auto jobs = h.journal();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].state, JobState::dead);
    EXPECT_EQ(jobs[0].last_error, "timed out after 50 ms: interrupted");
}

TEST(JobRunner, AFastAttemptNeverSeesItsStopToken) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<int> stopped{0};
    std::atomic<int> ran{0};
    kinds.define("quick", {.timeout = 10'000ms}, [&](const Job&, std::stop_token stop) {
        if (stop.stop_requested()) ++stopped;
        ++ran;
    });
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "quick", 20);
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 20; }));
    EXPECT_EQ(ran, 20);
    EXPECT_EQ(stopped, 0);
}

// A handler that ignores its stop token does not wedge its kind: kStopGrace after its timeout
// the attempt is given up (failed, retried), the next job of the kind (concurrency 1) starts,
// and the stuck handler's late return is ignored.
TEST(JobRunner, AHandlerIgnoringItsStopTokenIsGivenUpAndFreesItsKind) {
    test::LogCapture logs;
    test::TempDir dir;
    JobKinds kinds;
    test::Gate stuck_gate;
    Attempts attempts;
    constexpr auto kTimeout = 200ms;
    kinds.define("stubborn",
                 {.max_attempts = 3, .backoff = 1ms, .timeout = kTimeout, .concurrency = 1},
                 [&](const Job& job, std::stop_token) {
                     attempts.add(job);
                     if (job.payload == "0" && job.attempt == 1) stuck_gate.wait();  // ignores stop
                 });
    Harness h(kinds, dir / "jobs.db");
    const auto started = Clock::now();
    h.run(kinds, "stubborn", 2);  // "0" gets stuck, "1" waits for the kind's one slot
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 2; }))
        << "the kind stayed wedged behind the stuck handler";
    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 3U);
    EXPECT_EQ(seen[0].job.payload, "0");
    EXPECT_EQ(seen[1].job.payload, "1");
    EXPECT_LT(seen[1].at - started, kTimeout + 1s) << "the next job waited for the stuck one";
    EXPECT_EQ(seen[2].job.payload, "0");
    EXPECT_EQ(seen[2].job.attempt, 2U) << "the stuck job was not retried";
    const auto reports = h.runner.report();
    EXPECT_EQ(reports.at(0).stuck, 1U);
    EXPECT_EQ(reports.at(0).running, 0U);
    EXPECT_TRUE(logs.contains("given up"));
    EXPECT_TRUE(h.journal().empty()) << "the retry's success did not finish the job";

    stuck_gate.open();  // it returns at last: ignored, and no longer stuck
    ASSERT_TRUE(test::eventually([&] { return h.runner.report().at(0).stuck == 0; }));
    // Logged after the count is taken down, outside the runner's lock.
    EXPECT_TRUE(test::eventually([&] { return logs.contains("ignored"); }));
    EXPECT_EQ(h.runner.totals().succeeded, 2U);
    EXPECT_EQ(h.runner.totals().retried, 1U);
    EXPECT_EQ(h.runner.totals().outstanding, 0U);
}

TEST(JobRunner, AKindNeverRunsMoreThanItsConcurrencyAtOnce) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    std::atomic<int> done{0};
    std::atomic<int> others{0};
    kinds.define("limited", {.concurrency = 3}, [&](const Job&, std::stop_token) {
        const int now = ++running;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(1ms);  // overlap; not asserted on
        --running;
        ++done;
    });
    kinds.define("free", {}, [&](const Job&, std::stop_token) { ++others; });
    Harness h(kinds, dir / "jobs.db", {.workers = 8, .min_workers = 8});
    h.run(kinds, "limited", 200);
    h.run(kinds, "free", 20);  // another kind is not held behind the limited one's line
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 220; }));
    EXPECT_EQ(done, 200);
    EXPECT_EQ(others, 20);
    EXPECT_LE(most.load(), 3);
    EXPECT_EQ(most.load(), 3);  // and the limit is used: eight workers, jobs waiting
    EXPECT_TRUE(h.journal().empty());
}

TEST(JobRunner, ReplayRunsTheJournalsLiveJobsWithTheirNextAttempt) {
    test::LogCapture logs;
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    const auto now = unix_ms_now();
    const auto future_due = now + 300;
    std::int64_t ready = 0, past = 0, future = 0, dead = 0, unknown = 0;
    {
        auto journal = open_rw(path);
        ready = journal.insert({"work", "ready", "old-req"}, now - 5000);
        past = journal.insert({"work", "past", "r2"}, now - 5000);
        journal.reschedule(past, 2, now - 10, "earlier failure");
        future = journal.insert({"work", "future", "r3"}, now - 5000);
        journal.reschedule(future, 1, future_due, "x");
        dead = journal.insert({"work", "dead", "r4"}, now - 5000);
        journal.bury(dead, 10, "gave up", 0);
        unknown = journal.insert({"removed-kind", "?", "r5"}, now - 5000);
    }
    JobKinds kinds;
    std::mutex mutex;
    std::map<std::string, Job> ran;            // by payload; guarded by mutex
    std::map<std::string, std::int64_t> when;  // unix ms; guarded by mutex
    kinds.define("work", {.backoff = 10ms}, [&](const Job& job, std::stop_token) {
        std::lock_guard lock(mutex);
        ran.emplace(job.payload, job);
        when.emplace(job.payload, unix_ms_now());
    });
    Harness h(kinds, path);
    h.runner.replay(
        SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
            .live_jobs());
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 3; }));
    ASSERT_TRUE(test::eventually([&] { return h.idle(); }));
    {
        std::lock_guard lock(mutex);
        ASSERT_EQ(ran.size(), 3U);
        EXPECT_EQ(ran.at("ready").id, ready);
        EXPECT_EQ(ran.at("ready").attempt, 1U);
        EXPECT_EQ(ran.at("ready").request_id, "old-req");
        EXPECT_EQ(ran.at("past").id, past);
        EXPECT_EQ(ran.at("past").attempt, 3U);
        EXPECT_EQ(ran.at("future").id, future);
        EXPECT_EQ(ran.at("future").attempt, 2U);
        EXPECT_GE(when.at("future"), future_due - 5);  // not before its due time
        EXPECT_FALSE(ran.contains("dead"));
    }
    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.replayed, 3U);
    EXPECT_EQ(totals.enqueued, 0U);
    EXPECT_EQ(totals.outstanding, 0U);
    // The dead job, and the one whose kind is gone (logged), stay.
    EXPECT_EQ(ids_of(h.journal()), (std::vector<std::int64_t>{dead, unknown}));
    EXPECT_TRUE(logs.contains("removed-kind"));
}

// A replayed job may have been running when its process died: its attempt is in the journal
// before its handler starts, so that a death during it counts.
TEST(JobRunner, AReplayedJobsAttemptIsRecordedBeforeItRuns) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t id = 0;
    {
        auto journal = open_rw(path);
        id = journal.insert({"work", "p", "r"}, unix_ms_now());
        journal.reschedule(id, 1, 0, "an earlier failure");
    }
    JobKinds kinds;
    std::mutex mutex;
    std::vector<StoredJob> seen_while_running;  // guarded by mutex
    kinds.define("work", {}, [&](const Job&, std::stop_token) {
        std::lock_guard lock(mutex);
        seen_while_running = stored(path);
    });
    Harness h(kinds, path);
    h.runner.replay(
        SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
            .live_jobs());
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 1; }));
    std::lock_guard lock(mutex);
    ASSERT_EQ(seen_while_running.size(), 1U);
    EXPECT_EQ(seen_while_running[0].id, id);
    EXPECT_EQ(seen_while_running[0].attempts, 2U);
    EXPECT_EQ(seen_while_running[0].last_error, "the process died during attempt 2");
    EXPECT_TRUE(h.journal().empty());
}

// A job whose recorded attempts reached max_attempts died with its process each time: it is
// dead at replay, and never runs again; one below it runs.
TEST(JobRunner, AReplayedJobWhoseProcessDiedInItsLastAttemptIsDead) {
    test::LogCapture logs;
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t poison = 0, healthy = 0;
    {
        auto journal = open_rw(path);
        poison = journal.insert({"work", "poison", "r1"}, unix_ms_now());
        journal.record_attempt(poison, 3);
        healthy = journal.insert({"work", "healthy", "r2"}, unix_ms_now());
        journal.record_attempt(healthy, 2);
    }
    JobKinds kinds;
    Attempts attempts;
    kinds.define("work", {.max_attempts = 3},
                 [&](const Job& job, std::stop_token) { attempts.add(job); });
    Harness h(kinds, path);
    h.runner.replay(
        SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
            .live_jobs());
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 1; }));
    ASSERT_TRUE(test::eventually([&] { return h.idle(); }));
    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0].job.id, healthy);
    EXPECT_EQ(seen[0].job.attempt, 3U);
    EXPECT_EQ(h.runner.totals().dead, 1U);
    EXPECT_EQ(h.runner.totals().outstanding, 0U);
    const auto jobs = h.journal();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, poison);
    EXPECT_EQ(jobs[0].state, JobState::dead);
    EXPECT_EQ(jobs[0].attempts, 3U);
    EXPECT_EQ(jobs[0].last_error, "the process died during attempt 3");
    EXPECT_TRUE(logs.contains("the process died during attempt 3"));
}

// A replayed job whose last recorded attempt ended with its process may be what kills it: it
// runs alone, and the jobs replayed beside it, and new ones, wait until it has ended.
TEST(JobRunner, ASuspectRunsAloneAndTheOthersWaitForIt) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    {
        auto journal = open_rw(path);
        journal.insert({"work", "before", "r"}, unix_ms_now());
        const auto suspect = journal.insert({"work", "suspect", "r"}, unix_ms_now());
        journal.record_attempt(suspect, 1);
        for (int i = 0; i < 4; ++i) journal.insert({"work", "after", "r"}, unix_ms_now());
    }
    JobKinds kinds;
    std::mutex mutex;
    int running = 0;            // guarded by mutex
    int beside_suspect = -1;    // others running while the suspect ran; guarded by mutex
    bool others_after = false;  // a job started after the suspect; guarded by mutex
    bool suspect_done = false;  // guarded by mutex
    kinds.define("work", {}, [&](const Job& job, std::stop_token) {
        {
            std::lock_guard lock(mutex);
            ++running;
            if (job.payload == "suspect") beside_suspect = running - 1;
            if (job.payload == "after") others_after = others_after || suspect_done;
        }
        std::this_thread::sleep_for(50ms);
        std::lock_guard lock(mutex);
        if (job.payload == "suspect") {
            beside_suspect = std::max(beside_suspect, running - 1);
            suspect_done = true;
        }
        --running;
    });
    Harness h(kinds, path);
    h.runner.replay(
        SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
            .live_jobs());
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 6; }));
    std::lock_guard lock(mutex);
    EXPECT_EQ(beside_suspect, 0) << "other jobs ran beside the suspect";
    EXPECT_TRUE(others_after) << "the jobs after the suspect did not wait for it";
}

TEST(JobRunner, ASkippedJobIsNotRunAndLeavesTheJournal) {
    test::TempDir dir;
    JobKinds kinds;
    Attempts attempts;
    kinds.define("notify", {}, [&](const Job& job, std::stop_token) { attempts.add(job); });
    Harness h(kinds, dir / "jobs.db");
    JobBatch batch(&kinds, 10);
    batch.add("notify", "needs the client", {.skip_if_undelivered = true});
    batch.add("notify", "regardless", {});
    auto committed = h.runner.commit(batch, 200, "req-lost");
    ASSERT_EQ(committed.size(), 2U);
    h.runner.start(std::move(committed), outcome("req-lost", /*delivered=*/false));
    ASSERT_TRUE(test::eventually([&] {
        const auto t = h.runner.totals();
        return t.succeeded == 1 && t.skipped == 1;
    }));
    const auto seen = attempts.list();
    ASSERT_EQ(seen.size(), 1U);
    EXPECT_EQ(seen[0].job.payload, "regardless");
    EXPECT_EQ(h.runner.totals().outstanding, 0U);
    EXPECT_TRUE(h.journal().empty());
}

TEST(JobRunner, ADeliveredResponseRunsSkipIfUndeliveredJobs) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<int> ran{0};
    kinds.define("notify", {}, [&](const Job&, std::stop_token) { ++ran; });
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "notify", 2, {.skip_if_undelivered = true});
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 2; }));
    EXPECT_EQ(ran, 2);
    EXPECT_EQ(h.runner.totals().skipped, 0U);
}

TEST(JobRunner, TheGateDecidesAtCommitWhatGoesToTheJournal) {
    test::TempDir dir;
    JobKinds kinds;
    std::mutex mutex;
    std::vector<std::string> ran;  // guarded by mutex
    kinds.define("k", {}, [&](const Job& job, std::stop_token) {
        std::lock_guard lock(mutex);
        ran.push_back(job.payload);
    });
    Harness h(kinds, dir / "jobs.db");
    auto batch_of_three = [&] {
        JobBatch batch(&kinds, 10);
        batch.add("k", "default", {});
        batch.add("k", "2xx", {.run_on = "2xx"});
        batch.add("k", "always", {.run_on = always});
        return batch;
    };
    auto failed = batch_of_three();
    auto after_500 = h.runner.commit(failed, 500, "req-500");
    EXPECT_TRUE(failed.empty());
    ASSERT_EQ(after_500.size(), 1U);
    EXPECT_EQ(after_500[0].registration.payload, "always");
    auto redirected = batch_of_three();
    auto after_302 = h.runner.commit(redirected, 302, "req-302");
    ASSERT_EQ(after_302.size(), 2U);
    EXPECT_EQ(after_302[0].registration.payload, "default");
    EXPECT_EQ(after_302[1].registration.payload, "always");
    auto ok = batch_of_three();
    EXPECT_EQ(h.runner.commit(ok, 200, "req-200").size(), 3U);
    // Nothing at all passes: no transaction either.
    JobBatch none(&kinds, 10);
    none.add("k", "default", {});
    EXPECT_TRUE(h.runner.commit(none, 404, "req-404").empty());

    const auto jobs = stored(h.path);
    ASSERT_EQ(jobs.size(), 6U);
    EXPECT_EQ(jobs[0].payload, "always");
    EXPECT_EQ(jobs[0].request_id, "req-500");
    EXPECT_EQ(h.writer.batch_sizes().count, 3U);
    EXPECT_EQ(h.runner.totals().enqueued, 6U);
    EXPECT_EQ(h.runner.totals().outstanding, 6U);
}

TEST(JobRunner, StopKeepsWhatHasNotFinishedInTheJournal) {
    test::LogCapture quiet;
    test::TempDir dir;
    JobKinds kinds;
    test::Gate release;
    std::atomic<int> held_runs{0};
    kinds.define("held", {.concurrency = 1}, [&](const Job&, std::stop_token) {
        ++held_runs;
        release.wait();
    });
    kinds.define("flaky", {.backoff = 60'000ms}, [](const Job&, std::stop_token) {
        throw std::runtime_error("try again in a minute");
    });
    Harness h(kinds, dir / "jobs.db", {.workers = 2, .min_workers = 2});
    const auto flaky = h.run(kinds, "flaky");
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        return h.report_of(reports, "flaky").retrying == 1;
    }));
    const auto held = h.run(kinds, "held", 5);
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        const auto& r = h.report_of(reports, "held");
        return held_runs.load() == 1 && r.running == 1 && r.waiting == 4;
    }));

    EXPECT_EQ(h.runner.stop(), 6U);  // five held (one running), one waiting for its retry
    // A start after stop runs nothing; the job stays committed.
    const auto late = h.run(kinds, "held");
    release.open();
    h.pool.wait_idle();
    EXPECT_EQ(held_runs, 1);  // the waiting ones never started
    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.succeeded, 1U);
    EXPECT_EQ(totals.outstanding, 6U);  // 4 held + 1 flaky + 1 late
    EXPECT_EQ(totals.summary(),
              "jobs enqueued=7 replayed=0 received=0 succeeded=1 retried=1 dead=0 skipped=0 "
              "deduplicated=0 kept=6");

    const auto jobs = h.journal();
    std::vector<std::int64_t> expected(held.begin() + 1, held.end());
    expected.insert(expected.begin(), flaky.begin(), flaky.end());
    expected.insert(expected.end(), late.begin(), late.end());
    EXPECT_EQ(ids_of(jobs), expected);
    EXPECT_EQ(jobs[0].state, JobState::retry);
    EXPECT_EQ(jobs[1].state, JobState::ready);
    h.runner.wait_idle();  // returns at once once stopped
}

// A handler that honours its stop token may throw, or just return; either way its work may be
// undone, so the job is kept: neither failed nor succeeded.
class CutShort : public ::testing::TestWithParam<bool> {};

TEST_P(CutShort, AnAttemptCutShortByTheDrainIsKeptNotFailedNorDone) {
    const bool throws = GetParam();
    test::LogCapture logs;
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<bool> started{false};
    kinds.define("long", {.max_attempts = 1}, [&](const Job&, std::stop_token stop) {
        started = true;
        if (wait_for_stop(stop) && throws) throw std::runtime_error("interrupted by shutdown");
    });
    Harness h(kinds, dir / "jobs.db");
    const auto ids = h.run(kinds, "long");
    ASSERT_TRUE(test::eventually([&] { return started.load(); }));
    const auto report = h.pool.drain(0ms, 10s);
    EXPECT_EQ(report.stuck, 0U);
    EXPECT_EQ(h.runner.stop(), 1U);
    const auto totals = h.runner.totals();
    EXPECT_EQ(totals.dead, 0U);  // max_attempts 1, and yet not dead
    EXPECT_EQ(totals.retried, 0U);
    EXPECT_EQ(totals.outstanding, 1U);
    const auto jobs = h.journal();
    ASSERT_EQ(ids_of(jobs), ids);
    EXPECT_EQ(jobs[0].state, JobState::ready);
    EXPECT_EQ(jobs[0].attempts, 0U);
    EXPECT_EQ(totals.succeeded, 0U);
    EXPECT_TRUE(logs.contains("cut short by shutdown"));
}

INSTANTIATE_TEST_SUITE_P(ThrowingOrReturning, CutShort, ::testing::Bool());

// A gate like test::Gate with a shorter patience, so that a round that goes wrong ends soon.
class ShortGate {
  public:
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, 2s, [&] { return open_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
};

// Rounds of: hold the pool's only worker, start ten durable jobs into a queue of two, check
// that start() returned while the worker was still held, and that the jobs beyond the queue
// wait in the runner; then release the worker and see all ten run. Several rounds, because
// start() races the runner's own clock thread, which feeds waiting jobs to the pool.
void spill_rounds(Overflow overflow, int rounds) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<int> ran{0};
    kinds.define("k", {}, [&](const Job&, std::stop_token) { ++ran; });
    Harness h(kinds, dir / "jobs.db",
              {.workers = 1, .min_workers = 1, .queue_capacity = 2, .overflow = overflow});
    for (int round = 0; round < rounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        ShortGate release;
        std::atomic<bool> holding{false};
        std::atomic<bool> held_done{false};
        h.pool.submit(DeferredCallback{[&] {
                                           holding = true;
                                           release.wait();
                                           held_done = true;
                                       },
                                       "holder",
                                       {},
                                       {}});
        ASSERT_TRUE(test::eventually([&] { return holding.load(); }));

        const int before = ran.load();
        h.run(kinds, "k", 10);
        // start() returned while the only worker was still held: a start that waited for
        // room would have returned only once the holder gave up (ShortGate's 2 s).
        EXPECT_FALSE(held_done) << "start() waited for room in the pool's queue";
        EXPECT_EQ(h.pool.queue_depth(), 2U);
        // Eventually: the runner's clock polls for room, and while it tries the full queue one
        // job is briefly out of the line, in its hands.
        EXPECT_TRUE(test::eventually([&] {
            auto reports = h.runner.report();
            return h.report_of(reports, "k").waiting == 8U;
        })) << "the jobs beyond the queue do not wait in the runner";
        EXPECT_EQ(ran.load(), before);
        release.open();
        ASSERT_TRUE(test::eventually([&] {
            return h.runner.totals().succeeded == static_cast<std::uint64_t>(10 * (round + 1));
        })) << "durable jobs were lost: "
            << h.runner.totals().summary();
        ASSERT_TRUE(test::eventually([&] { return h.idle(); }));
        if (::testing::Test::HasFailure()) break;
    }
    EXPECT_EQ(ran, 10 * rounds);
    EXPECT_TRUE(h.journal().empty());
}

// Room checked under the runner's lock can be gone by the time the jobs are submitted (the
// clock thread, or other submitters, take it): start() must still never wait in the pool.
TEST(JobRunner, JobsBeyondThePoolsQueueWaitInTheRunnerInsteadOfBlockingStart) {
    spill_rounds(Overflow::block, 100);
}

// The same race under reject: no durable job may be dropped by the pool, and every kind's
// running count must come back down.
TEST(JobRunner, UnderRejectNoDurableJobIsDroppedByTheRace) {
    test::LogCapture quiet;
    spill_rounds(Overflow::reject, 100);
}

using test::CountingObserver;

TEST(JobRunner, WaitForRoomWaitsWhileAsManyJobsWaitAsThePoolsQueueHolds) {
    test::TempDir dir;
    JobKinds kinds;
    test::Gate release;
    kinds.define("one-at-a-time", {.concurrency = 1},
                 [&](const Job&, std::stop_token) { release.wait(); });
    kinds.define("other", {}, [](const Job&, std::stop_token) {});
    Harness h(kinds, dir / "jobs.db", {.workers = 2, .min_workers = 2, .queue_capacity = 2});
    {
        CountingObserver observer;
        detail::request_context().observer = &observer;
        h.runner.wait_for_room("one-at-a-time");  // nothing waits: at once
        detail::request_context().observer = nullptr;
        EXPECT_EQ(observer.blocked, 0);
    }
    h.run(kinds, "one-at-a-time", 5);  // one runs, four wait in the kind's line
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        return h.report_of(reports, "one-at-a-time").waiting == 4;
    }));
    {
        // Per kind: a slow kind's line holds back only its own registrations.
        CountingObserver other_observer;
        detail::request_context().observer = &other_observer;
        h.runner.wait_for_room("other");
        detail::request_context().observer = nullptr;
        EXPECT_EQ(other_observer.blocked, 0);
    }
    CountingObserver observer;
    std::atomic<bool> returned{false};
    std::jthread handler([&] {
        detail::request_context().observer = &observer;
        h.runner.wait_for_room("one-at-a-time");
        detail::request_context().observer = nullptr;
        returned = true;
    });
    ASSERT_TRUE(test::eventually([&] { return observer.blocked.load() == 1; }));
    EXPECT_FALSE(returned);
    release.open();  // the line shortens below the queue's capacity
    ASSERT_TRUE(test::eventually([&] { return returned.load(); }));
    EXPECT_EQ(observer.unblocked_count, 1);
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 5; }));
}

TEST(JobRunner, WaitForRoomReturnsOnceTheRunnerStops) {
    test::TempDir dir;
    JobKinds kinds;
    test::Gate release;
    kinds.define("one-at-a-time", {.concurrency = 1},
                 [&](const Job&, std::stop_token) { release.wait(); });
    Harness h(kinds, dir / "jobs.db", {.workers = 2, .min_workers = 2, .queue_capacity = 1});
    h.run(kinds, "one-at-a-time", 3);
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        return h.report_of(reports, "one-at-a-time").waiting == 2;
    }));
    CountingObserver observer;
    std::atomic<bool> returned{false};
    std::jthread handler([&] {
        detail::request_context().observer = &observer;
        h.runner.wait_for_room("one-at-a-time");
        detail::request_context().observer = nullptr;
        returned = true;
    });
    ASSERT_TRUE(test::eventually([&] { return observer.blocked.load() == 1; }));
    EXPECT_EQ(h.runner.stop(), 3U);
    ASSERT_TRUE(test::eventually([&] { return returned.load(); }));
    release.open();
}

// The drain deadline, or a second signal, must free handlers that still wait for room, or the
// responders could never be joined.
TEST(JobRunner, EndingRoomWaitsEndsThemNowAndLater) {
    test::TempDir dir;
    JobKinds kinds;
    test::Gate release;
    kinds.define("one-at-a-time", {.concurrency = 1},
                 [&](const Job&, std::stop_token) { release.wait(); });
    Harness h(kinds, dir / "jobs.db", {.workers = 2, .min_workers = 2, .queue_capacity = 1});
    h.run(kinds, "one-at-a-time", 3);
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        return h.report_of(reports, "one-at-a-time").waiting == 2;
    }));
    std::atomic<bool> returned{false};
    std::jthread handler([&] {
        h.runner.wait_for_room("one-at-a-time");
        returned = true;
    });
    EXPECT_FALSE(test::eventually([&] { return returned.load(); }, std::chrono::milliseconds(200)));
    h.runner.end_room_waits();
    ASSERT_TRUE(test::eventually([&] { return returned.load(); }));
    h.runner.wait_for_room("one-at-a-time");  // released for good: at once
    release.open();
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 3; }));
}

// A consumer with every opening taken waits for a job to end, not for its timeout: the pause of
// a poll would bound its jobs/s at the kind's concurrency per pause.
TEST(JobRunner, WaitForOpeningsReturnsAsAJobEndsAndEmptyAtItsStop) {
    test::TempDir dir;
    JobKinds kinds;
    test::Gate gates[2];
    std::atomic<int> started_jobs{0};
    kinds.define("one", {.concurrency = 1}, [&](const Job&, std::stop_token) {
        EXPECT_TRUE(gates[started_jobs++].wait());
    });
    Harness h(kinds, dir / "jobs.db");
    static constexpr auto kLongWait = std::chrono::milliseconds(60'000);
    const auto wait_from = [&](std::stop_token stop) {
        return std::async(std::launch::async,
                          [&h, stop] { return h.runner.wait_for_openings(stop, kLongWait); });
    };

    h.run(kinds, "one");
    ASSERT_TRUE(test::eventually([&] { return h.runner.openings().empty(); }));
    const auto started = Clock::now();
    auto waiter = wait_from({});
    ASSERT_EQ(waiter.wait_for(50ms), std::future_status::timeout) << "it did not wait";
    gates[0].open();
    EXPECT_EQ(waiter.get(), (std::map<std::string, std::size_t>{{"one", 1}}));
    EXPECT_LT(Clock::now() - started, kLongWait / 2);

    h.run(kinds, "one");
    ASSERT_TRUE(test::eventually([&] { return h.runner.openings().empty(); }));
    std::stop_source stop;
    const auto stop_started = Clock::now();
    auto stopped = wait_from(stop.get_token());
    ASSERT_EQ(stopped.wait_for(50ms), std::future_status::timeout) << "it did not wait";
    stop.request_stop();
    EXPECT_TRUE(stopped.get().empty());
    EXPECT_LT(Clock::now() - stop_started, kLongWait / 2);
    gates[1].open();
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 2; }));
}

TEST(JobRunner, WaitIdleReturnsOnceEverythingHasRun) {
    test::TempDir dir;
    JobKinds kinds;
    std::atomic<int> ran{0};
    kinds.define("k", {.backoff = 5ms}, [&](const Job& job, std::stop_token) {
        if (job.attempt == 1 && job.payload == "3") throw std::runtime_error("once");
        ++ran;
    });
    Harness h(kinds, dir / "jobs.db");
    {
        test::LogCapture quiet;
        h.run(kinds, "k", 10);
        h.runner.wait_idle();
    }
    EXPECT_EQ(ran, 10);
    EXPECT_EQ(h.runner.totals().succeeded, 10U);
}

TEST(JobRunner, ReportGivesEachKindsCounts) {
    test::TempDir dir;
    JobKinds kinds;
    kinds.define("a", {}, [](const Job&, std::stop_token) {});
    kinds.define("b", {}, [](const Job&, std::stop_token) {});
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "a", 3);
    h.run(kinds, "b", 1);
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 4; }));
    auto reports = h.runner.report();
    ASSERT_EQ(reports.size(), 2U);
    EXPECT_EQ(h.report_of(reports, "a").counts.succeeded, 3U);
    EXPECT_EQ(h.report_of(reports, "a").counts.enqueued, 3U);
    EXPECT_EQ(h.report_of(reports, "b").counts.succeeded, 1U);
    EXPECT_EQ(&h.runner.kinds(), &kinds);
    EXPECT_EQ(&h.runner.store(), &h.writer);
}

// With a store that runs its own jobs, the census moves what this process runs from ready to
// running, takes the lag from the kind's line, and names every kind defined, jobs or not.
TEST(JobRunner, TheCensusTellsRunningFromReadyAndTheLagFromTheLine) {
    test::TempDir dir;
    JobKinds kinds;
    test::Gate gate;
    kinds.define("one-at-a-time", {.concurrency = 1},
                 [&](const Job&, std::stop_token) { gate.wait(); });
    kinds.define("idle", {}, [](const Job&, std::stop_token) {});
    Harness h(kinds, dir / "jobs.db");
    h.run(kinds, "one-at-a-time", 3);
    h.writer.flush();
    ASSERT_TRUE(test::eventually([&] {
        auto reports = h.runner.report();
        return h.report_of(reports, "one-at-a-time").waiting == 2;
    }));
    std::this_thread::sleep_for(50ms);  // the line's lag
    const auto census = h.runner.census(5);
    gate.open();
    ASSERT_EQ(census.kinds.size(), 2U);
    const auto& busy = census.kinds[1];
    EXPECT_EQ(busy.kind, "one-at-a-time");
    EXPECT_EQ(busy.running, 1U);
    EXPECT_EQ(busy.ready, 2U);
    const auto unix_now = detail::unix_now_ms();
    EXPECT_LE(busy.oldest_ready_ms, unix_now - 50);
    EXPECT_GT(busy.oldest_ready_ms, unix_now - 60'000);
    EXPECT_EQ(census.kinds[0].kind, "idle");
    EXPECT_EQ(census.kinds[0].ready + census.kinds[0].running, 0U);
    EXPECT_EQ(census.kinds[0].oldest_ready_ms, 0);

    // A finished job leaves the runner before its row leaves the journal: wait for both.
    JobCensus after;
    ASSERT_TRUE(test::eventually([&] {
        h.writer.flush();
        after = h.runner.census(5);
        return after.kinds[1].ready + after.kinds[1].running == 0;
    }));
    EXPECT_EQ(h.runner.totals().succeeded, 3U);
    EXPECT_EQ(after.kinds[1].oldest_ready_ms, 0) << "no lag once nothing waits";
}

TEST(JobCounts, SummaryNamesEveryCountAndAddsUp) {
    JobCounts a{1, 2, 3, 4, 5, 6, 7, 8, 9};
    EXPECT_EQ(a.summary(),
              "jobs enqueued=1 replayed=2 received=3 succeeded=4 retried=5 dead=6 skipped=7 "
              "deduplicated=8 kept=9");
    a += JobCounts{10, 20, 30, 40, 50, 60, 70, 80, 90};
    EXPECT_EQ(a.summary(),
              "jobs enqueued=11 replayed=22 received=33 succeeded=44 retried=55 dead=66 "
              "skipped=77 deduplicated=88 kept=99");
    EXPECT_EQ(JobCounts{}.summary(),
              "jobs enqueued=0 replayed=0 received=0 succeeded=0 retried=0 dead=0 skipped=0 "
              "deduplicated=0 kept=0");
}

}  // namespace
}  // namespace crosstown
