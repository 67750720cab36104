// The store contract: what every JobStore, with its JobAdmin, must do for the runner and the
// operator, stated once and run against each store (a typed suite): the in-memory store, a
// SQLite journal file and a real redis-server. Each store comes with a small backend that does
// what differs by design: how a committed job reaches the process that runs it (in memory and
// SQLite: it stays with the committing process; Redis: released, then taken from the stream),
// and how a job comes back after its process died (SQLite: replayed by the next process;
// Redis: claimed by a survivor; in memory: handed to a runner that takes over, the store
// outliving the first).
// Store-specific behaviour (group commit, heartbeats, held sets) has its own tests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/memory_job_store.hpp"
#include "crosstown/jobs/redis/redis_job_admin.hpp"
#include "crosstown/jobs/redis/redis_job_store.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_admin.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/eventually.hpp"
#include "support/journal_files.hpp"
#include "support/redis_server.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using Ids = std::vector<std::int64_t>;

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Jobs in this process's memory; the store outlives the runner that dies.
// kDeliveriesCount: whether a job handed to a process that died comes back with that delivery
// counted as an attempt (Redis knows its entries' deliveries; a journal file does not).
class MemoryBackend {
  public:
    static constexpr bool kDeliveriesCount = false;
    JobStore& store() { return store_; }
    std::vector<AdminJob> list(bool dead_only = false) { return store_.list(dead_only); }
    std::vector<StoredJob> run(const Ids& ids) {
        std::vector<StoredJob> jobs;
        for (const auto& row : list()) {
            if (std::ranges::count(ids, row.job.id) > 0) jobs.push_back(row.job);
        }
        return jobs;
    }
    void hand_over(const Ids&) {}  // the committing process runs them
    std::vector<StoredJob> resume() { return store_.live_jobs(); }
    std::uint64_t revive(std::optional<std::int64_t> id) { return store_.revive(id); }
    std::uint64_t purge_dead() { return store_.purge_dead(); }
    std::uint64_t cancel(std::optional<std::int64_t> id, std::optional<std::string> kind) {
        return store_.cancel(id, kind);
    }

  private:
    MemoryJobStore store_;
};

// A journal file, written by one process's SqliteJobStore.
class SqliteBackend {
  public:
    static constexpr bool kDeliveriesCount = false;
    JobStore& store() { return *writer_; }
    std::vector<AdminJob> list(bool dead_only = false) {
        writer_->flush();
        return SqliteJobAdmin(path_, false).list(dead_only);
    }
    // The committing process runs its jobs: as they are in the journal.
    std::vector<StoredJob> run(const Ids& ids) {
        std::vector<StoredJob> jobs;
        for (const auto& row : list()) {
            if (std::ranges::count(ids, row.job.id) > 0) jobs.push_back(row.job);
        }
        return jobs;
    }
    void hand_over(const Ids&) {}  // the committing process runs them
    // The process dies; the next one replays what is not dead, and writes from then on.
    std::vector<StoredJob> resume() {
        writer_->flush();
        writer_.reset();
        auto journal = test::open_rw(path_);
        auto jobs = journal.live_jobs();
        writer_.emplace(std::move(journal));
        return jobs;
    }
    std::uint64_t revive(std::optional<std::int64_t> id) {
        writer_->flush();
        writer_.reset();  // the file's owner must be gone for a change
        const auto n = SqliteJobAdmin(path_, true).revive(id);
        writer_.emplace(test::open_rw(path_));
        return n;
    }
    std::uint64_t purge_dead() {
        writer_->flush();
        writer_.reset();
        const auto n = SqliteJobAdmin(path_, true).purge_dead();
        writer_.emplace(test::open_rw(path_));
        return n;
    }
    std::uint64_t cancel(std::optional<std::int64_t> id, std::optional<std::string> kind) {
        writer_->flush();
        writer_.reset();
        const auto n = SqliteJobAdmin(path_, true).cancel(id, kind);
        writer_.emplace(test::open_rw(path_));
        return n;
    }

  private:
    test::TempDir dir_;
    std::string path_ = dir_ / "jobs.db";
    std::optional<SqliteJobStore> writer_{std::in_place, test::open_rw(path_)};
};

// Two instances sharing a redis-server: `a` commits and runs; when it dies, `b` claims.
class RedisBackend {
  public:
    static constexpr bool kDeliveriesCount = true;
    static constexpr auto kClaimAfter = 1000ms;
    JobStore& store() { return live_ ? *live_ : b_; }
    std::vector<AdminJob> list(bool dead_only = false) {
        return RedisJobAdmin(server_.unix_address(), options("admin")).list(dead_only);
    }
    // Released after the response, then taken from the stream by whichever instance is free,
    // once due.
    std::vector<StoredJob> run(const Ids& ids) {
        hand_over(ids);
        auto& journal = live_ ? *live_ : b_;
        std::vector<StoredJob> jobs;
        test::eventually([&] {
            journal.promote_due();
            for (auto& job : journal.take({{"k", 100}}, 100ms)) jobs.push_back(std::move(job));
            return jobs.size() >= ids.size();
        });
        return jobs;
    }
    void hand_over(const Ids& ids) { (live_ ? *live_ : b_).release(ids); }
    // `a` dies with its jobs taken; `b` claims them once `a` has been silent for the claim
    // time, and takes the retries that are due.
    std::vector<StoredJob> resume() {
        live_.reset();
        std::vector<StoredJob> jobs;
        test::eventually(
            [&] {
                for (auto& job : b_.claim({{"k", 100}})) jobs.push_back(std::move(job));
                return !jobs.empty() && b_.claim_scan_done({{"k", 100}});
            },
            4 * kClaimAfter, 20ms);
        b_.promote_due();
        for (auto& job : b_.take({{"k", 100}}, 100ms)) jobs.push_back(std::move(job));
        return jobs;
    }
    std::uint64_t revive(std::optional<std::int64_t> id) {
        return RedisJobAdmin(server_.unix_address(), options("admin")).revive(id);
    }
    std::uint64_t purge_dead() {
        return RedisJobAdmin(server_.unix_address(), options("admin")).purge_dead();
    }
    // Beside the running instances.
    std::uint64_t cancel(std::optional<std::int64_t> id, std::optional<std::string> kind) {
        return RedisJobAdmin(server_.unix_address(), options("admin")).cancel(id, kind);
    }

  private:
    static RedisJournalOptions options(const std::string& instance) {
        RedisJournalOptions o;
        o.prefix = "contract";
        o.instance = instance;
        o.claim_after = kClaimAfter;
        return o;
    }
    test::RedisServer server_;
    std::optional<RedisJobStore> live_{std::in_place, server_.unix_address(), options("a"),
                                       std::vector<std::string>{"k"}};
    RedisJobStore b_{server_.unix_address(), options("b"), {"k"}};
};

template <class Backend>
class JobStoreContract : public ::testing::Test {
  protected:
    Ids commit(std::vector<std::string> payloads, std::string request_id = "req-1") {
        std::vector<NewJob> jobs;
        for (const auto& p : payloads) jobs.push_back({"k", p, request_id});
        return backend.store().commit(jobs);
    }
    // One job of kind "k" with `key` as its unique key, kept `unique_for` once finished.
    std::int64_t commit_unique(std::string_view key, std::chrono::milliseconds unique_for = 1h) {
        const NewJob job{"k", "p", "req-1", key, unique_for.count()};
        const auto ids = backend.store().commit(std::span(&job, 1));
        return ids.size() == 1 ? ids[0] : -1;
    }
    std::optional<AdminJob> find(std::int64_t id, bool dead_only = false) {
        for (auto& row : backend.list(dead_only)) {
            if (row.job.id == id) return row;
        }
        return std::nullopt;
    }
    Backend backend;
};

using Backends = ::testing::Types<MemoryBackend, SqliteBackend, RedisBackend>;
class BackendNames {
  public:
    template <class T>
    static std::string GetName(int) {
        if (std::is_same_v<T, MemoryBackend>) return "Memory";
        return std::is_same_v<T, SqliteBackend> ? "Sqlite" : "Redis";
    }
};
TYPED_TEST_SUITE(JobStoreContract, Backends, BackendNames);

TYPED_TEST(JobStoreContract, ACommitKeepsEachJobWithADistinctIdInOrder) {
    const auto before = unix_ms_now();
    const auto ids = this->commit({"first", "second", "third"}, "req-7");
    ASSERT_EQ(ids.size(), 3U);
    EXPECT_EQ(std::set<std::int64_t>(ids.begin(), ids.end()).size(), 3U);
    const auto jobs = this->backend.run(ids);
    ASSERT_EQ(jobs.size(), 3U);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto job = std::ranges::find(jobs, ids[i], &StoredJob::id);
        ASSERT_NE(job, jobs.end()) << ids[i];
        EXPECT_EQ(job->kind, "k");
        EXPECT_EQ(job->payload, (std::array{"first", "second", "third"}[i]));
        EXPECT_EQ(job->request_id, "req-7");
        EXPECT_EQ(job->attempts, 0U);
        EXPECT_EQ(job->state, JobState::ready);
        EXPECT_GE(job->enqueued_ms, before - 1000);
    }
}

TYPED_TEST(JobStoreContract, APayloadKeepsEveryByte) {
    const std::string bytes("a\0b\xff\n\"'", 7);
    const auto ids = this->commit({bytes, ""});
    const auto jobs = this->backend.run(ids);
    ASSERT_EQ(jobs.size(), 2U);
    for (const auto& job : jobs) EXPECT_EQ(job.payload, job.id == ids[0] ? bytes : "");
}

// Cancel takes a job by id, or every job of a kind, that is ready, running or waiting for a
// retry, and leaves dead jobs and other kinds alone; a cancelled job's unique key is free.
TYPED_TEST(JobStoreContract, CancelRemovesLiveJobsByIdOrKindAndFreesTheirKeys) {
    const auto ids = this->commit({"ready", "retrying", "dead"});
    const NewJob other{"other", "p", "req-1"};
    const auto other_id = this->backend.store().commit(std::span(&other, 1)).at(0);
    const auto keyed = this->commit_unique("order-9");
    this->backend.run({ids[0], ids[1], ids[2], keyed});
    this->backend.hand_over({other_id});
    auto& store = this->backend.store();
    store.reschedule(ids[1], 1, unix_ms_now() + 60'000, "try later");
    store.bury(ids[2], 1, "gave up");
    store.flush();
    EXPECT_EQ(this->backend.cancel(ids[0], std::nullopt), 1U);
    EXPECT_EQ(this->backend.cancel(ids[2], std::nullopt), 0U) << "a dead job";
    EXPECT_EQ(this->backend.cancel(std::nullopt, "k"), 2U) << "the retrying one and the keyed one";
    std::set<std::int64_t> left;
    for (const auto& row : this->backend.list()) left.insert(row.job.id);
    EXPECT_EQ(left, (std::set<std::int64_t>{ids[2], other_id}));
    EXPECT_GT(this->commit_unique("order-9"), 0) << "the cancelled job's key is still taken";
}

// A cancelled job that was ready never runs. (In Redis its stream entry carries the job, so
// the cancel must delete the entry too.)
TYPED_TEST(JobStoreContract, ACancelledReadyJobIsNeverTaken) {
    const auto ids = this->commit({"cancelled", "kept"});
    this->backend.hand_over(ids);
    this->backend.store().flush();
    EXPECT_EQ(this->backend.cancel(ids[0], std::nullopt), 1U);
    const auto jobs = this->backend.run({ids[1]});
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, ids[1]);
}

// A job keeps its request's trace context to every process that runs it: the one that took it,
// and the one that takes over after a death.
TYPED_TEST(JobStoreContract, AJobKeepsItsTraceContextThroughADeath) {
    const std::string trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    NewJob traced{"k", "traced", "req-1"};
    traced.trace_parent = trace;
    const auto ids = this->backend.store().commit(std::span(&traced, 1));
    const auto untraced = this->commit({"untraced"});
    const auto jobs = this->backend.run({ids.at(0), untraced.at(0)});
    ASSERT_EQ(jobs.size(), 2U);
    for (const auto& job : jobs) EXPECT_EQ(job.trace_parent, job.id == ids[0] ? trace : "");
    this->backend.store().flush();
    const auto resumed = this->backend.resume();
    ASSERT_EQ(resumed.size(), 2U);
    for (const auto& job : resumed) EXPECT_EQ(job.trace_parent, job.id == ids[0] ? trace : "");
}

TYPED_TEST(JobStoreContract, ACompletedJobIsGone) {
    const auto ids = this->commit({"done", "stays"});
    this->backend.run(ids);
    this->backend.store().complete(ids[0]);
    this->backend.store().flush();
    EXPECT_FALSE(this->find(ids[0]).has_value());
    EXPECT_TRUE(this->find(ids[1]).has_value());
}

// Committed for a response that did not reach the client (skip_if_undelivered): discarded
// before it was ever run, it is gone and nobody runs it.
TYPED_TEST(JobStoreContract, AJobDiscardedBeforeItRanIsGoneUnrun) {
    const auto ids = this->commit({"never"});
    this->backend.store().discard(ids[0]);
    this->backend.store().flush();
    EXPECT_FALSE(this->find(ids[0]).has_value());
}

TYPED_TEST(JobStoreContract, ARescheduledJobWaitsForItsRetryWithItsError) {
    const auto ids = this->commit({"p"});
    this->backend.run(ids);
    const auto asked = unix_ms_now();
    const auto due = asked + 60'000;
    this->backend.store().reschedule(ids[0], 2, due, "503 from the API");
    this->backend.store().flush();
    const auto took = unix_ms_now() - asked;
    const auto row = this->find(ids[0]);
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->state, "retry");
    EXPECT_EQ(row->job.attempts, 2U);
    // Redis keeps the wait on the server's clock (server time + the wait asked for), so the time
    // kept may pass the one asked for by as long as the call took.
    EXPECT_GE(row->job.run_at_ms, due);
    EXPECT_LE(row->job.run_at_ms, due + took + 1);
    EXPECT_EQ(row->job.last_error, "503 from the API");
}

TYPED_TEST(JobStoreContract, ABuriedJobIsDeadUntilRevivedAndPurgeDeletesOnlyTheDead) {
    const auto ids = this->commit({"dies", "lives"});
    this->backend.run(ids);
    this->backend.store().bury(ids[0], 5, "gave up");
    this->backend.store().flush();
    const auto dead = this->backend.list(true);
    ASSERT_EQ(dead.size(), 1U);
    EXPECT_EQ(dead[0].job.id, ids[0]);
    EXPECT_EQ(dead[0].state, "dead");
    EXPECT_EQ(dead[0].job.attempts, 5U);
    EXPECT_EQ(dead[0].job.last_error, "gave up");

    EXPECT_EQ(this->backend.revive(ids[1]), 0U) << "a live job is not dead: nothing to revive";
    EXPECT_EQ(this->backend.revive(ids[0]), 1U);
    const auto revived = this->find(ids[0]);
    ASSERT_TRUE(revived.has_value());
    EXPECT_EQ(revived->state, "ready");
    EXPECT_EQ(revived->job.attempts, 0U);
    EXPECT_TRUE(this->backend.list(true).empty());

    this->backend.store().bury(ids[1], 5, "gave up too");
    this->backend.store().flush();
    EXPECT_EQ(this->backend.purge_dead(), 1U);
    EXPECT_FALSE(this->find(ids[1]).has_value());
    EXPECT_TRUE(this->find(ids[0]).has_value()) << "purge deleted a live job";
}

TYPED_TEST(JobStoreContract, ARecordedAttemptIsWhatADeathLeavesAndADeadJobIsLeftAlone) {
    const auto ids = this->commit({"running", "dead"});
    this->backend.run(ids);
    this->backend.store().record_attempt(ids[0], 3);
    const auto row = this->find(ids[0]);
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->job.attempts, 3U);
    EXPECT_EQ(row->job.last_error, died_during(3));
    this->backend.store().bury(ids[1], 2, "gave up");
    this->backend.store().flush();
    this->backend.store().record_attempt(ids[1], 3);
    const auto dead = this->find(ids[1], true);
    ASSERT_TRUE(dead.has_value());
    EXPECT_EQ(dead->job.attempts, 2U);
    EXPECT_EQ(dead->job.last_error, "gave up");
}

// The process that ran them dies: every job not finished comes back, with its recorded
// attempt and error, to the process that takes over (a due retry included); a finished or
// dead one does not.
TYPED_TEST(JobStoreContract, AfterItsProcessDiesEveryUnfinishedJobComesBackAsLeft) {
    const auto ids = this->commit({"fresh", "retrying", "running", "finished", "dead"});
    this->backend.run(ids);
    auto& store = this->backend.store();
    store.reschedule(ids[1], 1, unix_ms_now(), "try later");
    store.record_attempt(ids[2], 2);
    store.complete(ids[3]);
    store.bury(ids[4], 1, "gave up");
    store.flush();
    const auto resumed = this->backend.resume();
    Ids back;
    for (const auto& job : resumed) back.push_back(job.id);
    std::ranges::sort(back);
    Ids expected{ids[0], ids[1], ids[2]};
    std::ranges::sort(expected);
    EXPECT_EQ(back, expected);
    for (const auto& job : resumed) {
        if (job.id == ids[1]) {
            EXPECT_EQ(job.attempts, 1U);
            EXPECT_EQ(job.last_error, "try later");
        } else if (job.id == ids[2]) {
            EXPECT_EQ(job.attempts, 2U);
            EXPECT_EQ(job.last_error, died_during(2));
        } else if (TypeParam::kDeliveriesCount) {
            // Delivered to the process that died, so perhaps its first attempt: counted.
            EXPECT_EQ(job.attempts, 1U);
            EXPECT_EQ(job.last_error, died_during(1));
        } else {
            EXPECT_EQ(job.attempts, 0U);
        }
    }
    // The one that takes over finishes them, through its own store.
    for (const auto& job : resumed) this->backend.store().complete(job.id);
    this->backend.store().flush();
    const auto left = this->backend.list();
    ASSERT_EQ(left.size(), 1U);
    EXPECT_EQ(left[0].job.id, ids[4]);
}

// Writes after the response name a job by id alone, and may come late (a given-up attempt's
// handler that returns, a write kept while the store was unreachable). Once the job is gone,
// they touch nothing: the job does not come back, and no other job changes.
TYPED_TEST(JobStoreContract, WritesAboutAGoneJobTouchNothing) {
    const auto gone = this->commit({"gone"});
    this->backend.run(gone);
    auto& store = this->backend.store();
    store.complete(gone[0]);
    store.flush();
    const auto ids = this->commit({"new"});
    this->backend.run(ids);
    store.complete(gone[0]);
    store.reschedule(gone[0], 2, unix_ms_now() + 60'000, "stale retry");
    store.record_attempt(gone[0], 3);
    store.bury(gone[0], 3, "stale death");
    store.flush();
    const auto left = this->backend.list();
    ASSERT_EQ(left.size(), 1U) << "a stale write brought its job back";
    EXPECT_EQ(left[0].job.id, ids[0]);
    EXPECT_EQ(left[0].state, "ready");
    EXPECT_EQ(left[0].job.attempts, 0U);
    EXPECT_EQ(left[0].job.last_error, "");
}

// Ids are what a handler gives a remote API as its idempotency key: a job committed after the
// process that ran the others died never has the id of one of them, finished or not.
TYPED_TEST(JobStoreContract, IdsAreNeverReusedAfterTheProcessDies) {
    const auto before = this->commit({"first", "last"});
    this->backend.run(before);
    for (const auto id : before) this->backend.store().complete(id);  // the last id is free
    this->backend.store().flush();
    this->backend.resume();
    const auto after = this->commit({"a", "b", "c"});
    for (const auto id : after) EXPECT_EQ(std::ranges::count(before, id), 0) << id;
}

// DurableOptions::unique_key: one job per (kind, key) while it lives, whoever commits it.
TYPED_TEST(JobStoreContract, AUniqueKeyKeepsOneJobWhileItLives) {
    const auto first = this->commit_unique("order-1");
    ASSERT_GT(first, 0);
    EXPECT_EQ(this->commit_unique("order-1"), JobStore::kDuplicate);
    const auto other = this->commit_unique("order-2");
    EXPECT_GT(other, 0);
    const NewJob unkeyed{"k", "p", "req-1"};
    EXPECT_GT(this->backend.store().commit(std::span(&unkeyed, 1)).at(0), 0) << "no key, no limit";
    const auto jobs = this->backend.run({first, other});
    EXPECT_EQ(jobs.size(), 2U);
    EXPECT_EQ(this->backend.list().size(), 3U) << "the duplicate left nothing behind";
    this->backend.store().reschedule(first, 1, unix_ms_now() + 60'000, "503");
    this->backend.store().flush();
    EXPECT_EQ(this->commit_unique("order-1"), JobStore::kDuplicate) << "a retrying job lives";
}

TYPED_TEST(JobStoreContract, OfTwoJobsWithOneKeyInACommitTheFirstIsKept) {
    const std::vector<NewJob> jobs{{"k", "a", "r", "same", 3'600'000},
                                   {"k", "b", "r", "same", 3'600'000},
                                   {"k", "c", "r", "other", 3'600'000}};
    const auto ids = this->backend.store().commit(jobs);
    ASSERT_EQ(ids.size(), 3U);
    EXPECT_GT(ids[0], 0);
    EXPECT_EQ(ids[1], JobStore::kDuplicate);
    EXPECT_GT(ids[2], 0);
    const auto run = this->backend.run({ids[0], ids[2]});
    ASSERT_EQ(run.size(), 2U);
    for (const auto& job : run) EXPECT_EQ(job.payload, job.id == ids[0] ? "a" : "c");
}

// A finished job (succeeded or dead) keeps its key for unique_for, then frees it.
TYPED_TEST(JobStoreContract, AFinishedJobKeepsItsKeyForUniqueForThenFreesIt) {
    constexpr auto kUniqueFor = 3000ms;  // the two checks right after must fit in it, sanitized
    const auto done = this->commit_unique("done", kUniqueFor);
    const auto dead = this->commit_unique("dead", kUniqueFor);
    this->backend.run({done, dead});
    const auto finished = std::chrono::steady_clock::now();
    this->backend.store().complete(done);
    this->backend.store().bury(dead, 3, "gave up");
    this->backend.store().flush();
    EXPECT_EQ(this->commit_unique("done", kUniqueFor), JobStore::kDuplicate);
    EXPECT_EQ(this->commit_unique("dead", kUniqueFor), JobStore::kDuplicate);
    std::int64_t again = JobStore::kDuplicate;
    ASSERT_TRUE(
        test::eventually([&] { return (again = this->commit_unique("done", kUniqueFor)) > 0; },
                         10 * kUniqueFor, 50ms))
        << "the key of a job that succeeded was never freed";
    EXPECT_GE(std::chrono::steady_clock::now() - finished, kUniqueFor - 100ms)
        << "freed before unique_for";
    EXPECT_TRUE(test::eventually([&] { return this->commit_unique("dead", kUniqueFor) > 0; },
                                 10 * kUniqueFor, 50ms))
        << "the key of a dead job was never freed";
}

// Discarded (its response was not delivered): the client will retry, so the key is free now.
TYPED_TEST(JobStoreContract, ADiscardedJobFreesItsKeyAtOnce) {
    const auto discarded = this->commit_unique("retry-me");
    this->backend.store().discard(discarded);
    this->backend.store().flush();
    const auto retried = this->commit_unique("retry-me");
    EXPECT_GT(retried, 0);
    EXPECT_NE(retried, discarded);
}

// The key is the store's, not the process's: a job taken over after a death still holds it.
TYPED_TEST(JobStoreContract, AKeyOutlivesTheProcessThatCommittedIt) {
    const auto id = this->commit_unique("order-9");
    this->backend.run({id});
    const auto resumed = this->backend.resume();
    ASSERT_EQ(resumed.size(), 1U);
    EXPECT_EQ(this->commit_unique("order-9"), JobStore::kDuplicate);
}

// A job committed with a time ahead is kept with it, and a store that hands jobs out itself
// (Redis) hands it out no earlier.
TYPED_TEST(JobStoreContract, AJobWithATimeAheadKeepsItAndIsHandedOutOnlyThen) {
    const auto due = unix_ms_now() + 400;
    NewJob job{"k", "p", "req-1"};
    job.run_at_ms = due;
    const auto ids = this->backend.store().commit(std::span(&job, 1));
    const auto row = this->find(ids.at(0));
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(row->job.run_at_ms, due);
    const auto jobs = this->backend.run(ids);
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].run_at_ms, due);
    EXPECT_EQ(jobs[0].attempts, 0U);
    if (std::is_same_v<TypeParam, RedisBackend>) {
        EXPECT_GE(unix_ms_now(), due) << "handed out early";
    }
}

// A job scheduled an hour ahead outlives the process that committed it, with its time.
TYPED_TEST(JobStoreContract, AScheduledJobOutlivesItsProcessWithItsTime) {
    const auto due = unix_ms_now() + 3'600'000;
    NewJob job{"k", "later", "req-1"};
    job.run_at_ms = due;
    const auto ids = this->backend.store().commit(std::span(&job, 1));
    const auto other = this->commit({"now"});
    this->backend.run(other);  // something for the process to die with
    this->backend.hand_over(ids);
    this->backend.store().flush();
    this->backend.resume();
    const auto row = this->find(ids.at(0));
    ASSERT_TRUE(row.has_value()) << "lost with its process";
    EXPECT_EQ(row->job.run_at_ms, due);
    EXPECT_EQ(row->job.payload, "later");
    EXPECT_NE(row->state, "dead");
}

// The census counts what the store keeps, by state: a store that runs its own jobs cannot tell
// a taken job from one waiting (both are ready there; the runner tells them apart), a shared
// one can. The dead are listed the last to die first, and a revived job is no longer dead.
TYPED_TEST(JobStoreContract, ACensusCountsJobsByStateAndListsTheLatestDead) {
    const bool shared = this->backend.store().shared();
    const auto ids = this->commit({"runs", "retries", "dies-first", "dies-last"});
    this->backend.run(ids);
    this->backend.hand_over(this->commit({"waits-1", "waits-2"}));
    NewJob later{"k", "later", "req-1"};
    later.run_at_ms = unix_ms_now() + 3'600'000;
    this->backend.hand_over(this->backend.store().commit(std::span(&later, 1)));
    this->backend.store().reschedule(ids[1], 1, unix_ms_now() + 60'000, "503");
    this->backend.store().bury(ids[2], 5, "first death");
    std::this_thread::sleep_for(5ms);  // a later death, by the store's clock too
    this->backend.store().bury(ids[3], 4, "last death");
    this->backend.store().flush();

    const auto census = this->backend.store().census(10);
    ASSERT_EQ(census.kinds.size(), 1U);
    const auto& k = census.kinds[0];
    EXPECT_EQ(k.kind, "k");
    EXPECT_EQ(k.ready + k.running, 3U) << "the taken job and the two waiting";
    EXPECT_EQ(k.running, shared ? 1U : 0U);
    EXPECT_EQ(k.scheduled, 1U);
    EXPECT_EQ(k.retrying, 1U);
    EXPECT_EQ(k.dead, 2U);
    EXPECT_GT(k.oldest_ready_ms, unix_ms_now() - 60'000);
    EXPECT_LE(k.oldest_ready_ms, unix_ms_now());
    EXPECT_FALSE(census.partial);
    ASSERT_EQ(census.latest_dead.size(), 2U);
    EXPECT_EQ(census.latest_dead[0].id, ids[3]);
    EXPECT_EQ(census.latest_dead[0].kind, "k");
    EXPECT_EQ(census.latest_dead[0].attempts, 4U);
    EXPECT_EQ(census.latest_dead[0].last_error, "last death");
    EXPECT_EQ(census.latest_dead[0].request_id, "req-1");
    EXPECT_EQ(census.latest_dead[1].id, ids[2]);
    EXPECT_GT(census.latest_dead[0].run_at_ms, census.latest_dead[1].run_at_ms)
        << "a dead job's run_at is when it died";
    EXPECT_EQ(this->backend.store().census(1).latest_dead.size(), 1U);

    ASSERT_EQ(this->backend.revive(ids[2]), 1U);
    const auto after = this->backend.store().census(10);
    ASSERT_EQ(after.kinds.size(), 1U);
    EXPECT_EQ(after.kinds[0].dead, 1U);
    EXPECT_EQ(after.kinds[0].ready + after.kinds[0].running, 4U);
    ASSERT_EQ(after.latest_dead.size(), 1U);
    EXPECT_EQ(after.latest_dead[0].id, ids[3]);
}

}  // namespace
}  // namespace crosstown
