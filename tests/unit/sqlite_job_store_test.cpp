#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/request_context.hpp"
#include "crosstown/jobs/follow_response_durably.hpp"
#include "support/counting_observer.hpp"
#include "support/eventually.hpp"
#include "support/journal_files.hpp"
#include "support/log_capture.hpp"
#include "support/reported_commit.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;

using test::CommitReport;
using test::ids_of;
using test::open_rw;
using test::ReportedCommit;
using test::stored;

std::vector<std::int64_t> commit(SqliteJobStore& writer, const std::vector<std::string>& payloads,
                                 std::string_view request_id = "r") {
    std::vector<NewJob> jobs;
    for (const auto& payload : payloads) jobs.push_back({"k", payload, request_id});
    return writer.commit(jobs);
}

// Waits for a forked child, which must not outlive the test, and returns its exit code, or
// 128 + the signal that ended it.
int wait_for_child(pid_t child) {
    int status = 0;
    if (waitpid(child, &status, 0) != child) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(SqliteJobStore, CommitReturnsTheIdsInOrder) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    EXPECT_EQ(writer.path(), path);
    const auto ids = commit(writer, {"first", "second", "third"}, "req-7");
    ASSERT_EQ(ids.size(), 3U);
    EXPECT_LT(ids[0], ids[1]);
    EXPECT_LT(ids[1], ids[2]);
    // Committed when commit() returns: another connection sees them, each with its payload.
    const auto jobs = stored(path);
    ASSERT_EQ(ids_of(jobs), ids);
    EXPECT_EQ(jobs[0].payload, "first");
    EXPECT_EQ(jobs[1].payload, "second");
    EXPECT_EQ(jobs[2].payload, "third");
    EXPECT_EQ(jobs[2].request_id, "req-7");
    EXPECT_EQ(jobs[2].state, JobState::ready);
    // The next commit continues after them.
    const auto more = commit(writer, {"fourth"});
    ASSERT_EQ(more.size(), 1U);
    EXPECT_GT(more[0], ids[2]);
}

TEST(SqliteJobStore, AnEmptyCommitReturnsNoIds) {
    test::TempDir dir;
    SqliteJobStore writer(open_rw(dir / "jobs.db"));
    EXPECT_TRUE(writer.commit({}).empty());
}

TEST(SqliteJobStore, ConcurrentCommitsGetDistinctIdsAndAllAreInTheJournal) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    constexpr int kThreads = 8;
    constexpr int kCommitsEach = 40;
    std::mutex mutex;
    std::map<std::int64_t, std::string> payload_of;  // guarded by mutex
    std::atomic<int> wrong_sizes{0};
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < kCommitsEach; ++i) {
                    // One to three jobs per request.
                    std::vector<std::string> payloads;
                    for (int j = 0; j <= i % 3; ++j) {
                        payloads.push_back(std::to_string(t) + "/" + std::to_string(i) + "/" +
                                           std::to_string(j));
                    }
                    const auto ids = commit(writer, payloads);
                    if (ids.size() != payloads.size() || !std::ranges::is_sorted(ids)) {
                        ++wrong_sizes;
                        continue;
                    }
                    std::lock_guard lock(mutex);
                    for (std::size_t j = 0; j < ids.size(); ++j) {
                        if (!payload_of.emplace(ids[j], payloads[j]).second) ++wrong_sizes;
                    }
                }
            });
        }
    }
    EXPECT_EQ(wrong_sizes, 0);
    std::size_t expected = 0;
    for (int i = 0; i < kCommitsEach; ++i) expected += static_cast<std::size_t>(i % 3 + 1);
    ASSERT_EQ(payload_of.size(), expected * kThreads);  // distinct ids, one per job
    const auto jobs = stored(path);
    ASSERT_EQ(jobs.size(), payload_of.size());
    for (const auto& job : jobs) {
        const auto it = payload_of.find(job.id);
        ASSERT_NE(it, payload_of.end()) << "job " << job.id << " was never returned";
        EXPECT_EQ(job.payload, it->second) << "job " << job.id;
    }
    // Group commit: never more transactions than commits, and every job counted once.
    const auto sizes = writer.batch_sizes();
    EXPECT_LE(sizes.count, static_cast<std::uint64_t>(kThreads * kCommitsEach));
    EXPECT_EQ(sizes.sum, payload_of.size());
    EXPECT_EQ(writer.failed_transactions(), 0U);
    EXPECT_EQ(writer.commit_latency().count, static_cast<std::uint64_t>(kThreads * kCommitsEach));
}

TEST(SqliteJobStore, CompleteThenFlushDeletes) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    const auto ids = commit(writer, {"a", "b", "c"});
    writer.complete(ids[0]);
    writer.complete(ids[2]);
    writer.flush();
    EXPECT_EQ(writer.unwritten_finishes(), 0U);
    EXPECT_EQ(ids_of(stored(path)), (std::vector<std::int64_t>{ids[1]}));
    writer.complete(ids[1]);
    writer.flush();
    EXPECT_TRUE(stored(path).empty());
}

TEST(SqliteJobStore, FlushWithNothingHandedOverReturns) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    writer.flush();  // idle: returns at once
    const auto ids = commit(writer, {"a"});
    writer.flush();
    writer.flush();
    EXPECT_EQ(ids_of(stored(path)), ids);
    EXPECT_EQ(writer.batch_sizes().count, 1U);
}

TEST(SqliteJobStore, RescheduleAndBuryAreVisibleAfterFlush) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    const auto ids = commit(writer, {"retry me", "bury me"});
    writer.reschedule(ids[0], 1, 4'000'000'000'000, "503 from twilio");
    writer.bury(ids[1], 10, "gave up");
    writer.flush();
    const auto jobs = stored(path);
    ASSERT_EQ(jobs.size(), 2U);
    EXPECT_EQ(jobs[0].state, JobState::retry);
    EXPECT_EQ(jobs[0].attempts, 1U);
    EXPECT_EQ(jobs[0].run_at_ms, 4'000'000'000'000);
    EXPECT_EQ(jobs[0].last_error, "503 from twilio");
    EXPECT_EQ(jobs[1].state, JobState::dead);
    EXPECT_EQ(jobs[1].attempts, 10U);
    EXPECT_EQ(jobs[1].last_error, "gave up");
}

TEST(SqliteJobStore, ChangesFromManyThreadsAreAllWritten) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    std::vector<std::string> payloads(200, "p");
    const auto ids = commit(writer, payloads);
    {
        std::vector<std::jthread> threads;
        for (std::size_t t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                for (std::size_t i = t; i < ids.size(); i += 4) {
                    if (i % 2 == 0) {
                        writer.complete(ids[i]);
                    } else {
                        writer.bury(ids[i], 3, "odd");
                    }
                }
            });
        }
    }
    writer.flush();
    const auto jobs = stored(path);
    ASSERT_EQ(jobs.size(), 100U);
    for (const auto& job : jobs) EXPECT_EQ(job.state, JobState::dead) << job.id;
}

TEST(SqliteJobStore, BatchSizesCountTransactionsByJobs) {
    test::TempDir dir;
    SqliteJobStore writer(open_rw(dir / "jobs.db"));
    commit(writer, {"a"});
    commit(writer, {"a", "b", "c"});
    commit(writer, {"a", "b", "c", "d", "e"});
    commit(writer, std::vector<std::string>(300, "x"));
    // A round of changes only inserts nothing: not a batch.
    writer.complete(1);
    writer.flush();
    const auto sizes = writer.batch_sizes();
    EXPECT_EQ(sizes.count, 4U);
    EXPECT_EQ(sizes.sum, 309U);
    // Upper bounds 1, 2, 4, 8, ..., 256, then +Inf.
    std::array<std::uint64_t, SqliteJobStore::kBatchBounds.size() + 1> expected{};
    expected[0] = 1;                                    // 1
    expected[2] = 1;                                    // 3 <= 4
    expected[3] = 1;                                    // 5 <= 8
    expected[SqliteJobStore::kBatchBounds.size()] = 1;  // 300 > 256
    EXPECT_EQ(sizes.buckets, expected);
}

TEST(SqliteJobStore, CommitsThatWaitTogetherShareATransaction) {
    // Another connection holds the write lock, so the writer's first transaction waits in
    // BEGIN (SQLite's busy timeout) while more requests commit: those go into one later
    // transaction, not one each.
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    auto blocker = open_rw(path);
    blocker.begin();
    constexpr int kRequests = 10;
    std::atomic<int> about_to_commit{0};
    std::atomic<int> committed{0};
    std::vector<std::jthread> threads;
    for (int i = 0; i < kRequests; ++i) {
        threads.emplace_back([&] {
            ++about_to_commit;
            if (commit(writer, {"j"}).size() == 1) ++committed;
        });
    }
    ASSERT_TRUE(test::eventually([&] { return about_to_commit.load() == kRequests; }));
    std::this_thread::sleep_for(100ms);  // setup: lets them reach commit(); not asserted on
    EXPECT_EQ(committed, 0);             // the lock holds them all
    blocker.rollback();
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(committed, kRequests);
    const auto sizes = writer.batch_sizes();
    EXPECT_EQ(sizes.sum, static_cast<std::uint64_t>(kRequests));
    EXPECT_LT(sizes.count, static_cast<std::uint64_t>(kRequests));
    EXPECT_EQ(stored(path).size(), static_cast<std::size_t>(kRequests));
}

TEST(SqliteJobStore, ACompletionHandedOverDuringACommittersRoundIsWrittenWithNoCommitAfter) {
    // A committer's round is held in BEGIN by another connection's write lock while a job
    // completes: the round took the queued changes before, so the completion waits for the
    // next. No commit comes after it and nobody flushes: the writer thread must write it.
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    const auto ids = commit(writer, {"done"});
    auto blocker = open_rw(path);
    blocker.begin();
    std::jthread committer([&] { EXPECT_EQ(commit(writer, {"other"}).size(), 1U); });
    std::this_thread::sleep_for(100ms);  // setup: lets its round start; not asserted on
    writer.complete(ids[0]);
    EXPECT_EQ(stored(path).size(), 1U) << "nothing is written while the lock is held";
    blocker.rollback();
    committer.join();
    EXPECT_TRUE(test::eventually([&] {
        const auto left = ids_of(stored(path));
        return std::ranges::find(left, ids[0]) == left.end();
    })) << "the completion was never written";
}

// A journal whose next transaction another connection's write lock holds in BEGIN, until
// release(), and threads that commit into it.
struct HeldJournal {
    HeldJournal() { blocker.begin(); }
    void release() { blocker.rollback(); }

    // A thread that commits `payload` (a literal: it outlives the commit) with commit_then(),
    // told into `report`, or with commit() when there is none. Returns once the thread has had
    // 100 ms to reach the store (setup, not asserted on): the first such thread leads the
    // round that the lock holds.
    std::jthread committer(std::thread::id& id, std::string_view payload,
                           CommitReport* report = nullptr) {
        std::jthread thread([this, &id, payload, report] {
            id = std::this_thread::get_id();
            if (report != nullptr) {
                writer.commit_then(std::make_unique<ReportedCommit>(payload, *report));
            } else {
                EXPECT_EQ(commit(writer, {std::string(payload)}).size(), 1U);
            }
        });
        std::this_thread::sleep_for(100ms);
        return thread;
    }

    test::TempDir dir;
    std::string path = dir / "jobs.db";
    SqliteJobStore writer{open_rw(path)};
    SqliteJobDatabase blocker = open_rw(path);
};

TEST(SqliteJobStore, CommitThenWithNoRoundUnderWayIsToldOnItsThreadBeforeItReturns) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    CommitReport report;
    writer.commit_then(std::make_unique<ReportedCommit>("alone", report));
    ASSERT_TRUE(report.told);
    EXPECT_EQ(report.thread, std::this_thread::get_id());
    EXPECT_FALSE(report.failure);
    ASSERT_EQ(report.ids.size(), 1U);
    EXPECT_EQ(ids_of(stored(path)), report.ids);
}

TEST(SqliteJobStore, CommitThenDuringARoundReturnsAtOnceAndTheRoundsThreadWritesAndTellsIt) {
    // A commit_then() leads a round held in BEGIN. A second one neither waits for it nor is
    // told before it ends; then the thread that ended it writes one more round, for the ticket
    // that has no thread of its own, and tells it.
    HeldJournal journal;
    CommitReport first;
    std::thread::id leader_thread;
    auto leader = journal.committer(leader_thread, "first", &first);
    CommitReport second;
    journal.writer.commit_then(std::make_unique<ReportedCommit>("second", second));
    EXPECT_FALSE(second.is_told()) << "told before the round under way ended";
    journal.release();
    leader.join();
    ASSERT_TRUE(first.is_told());
    ASSERT_TRUE(test::eventually([&] { return second.is_told(); })) << "never told";
    EXPECT_FALSE(second.failure);
    ASSERT_EQ(second.ids.size(), 1U);
    EXPECT_EQ(second.thread, leader_thread) << "not told by the thread that ended the round";
    EXPECT_EQ(ids_of(stored(journal.path)), (std::vector{first.ids[0], second.ids[0]}));
}

TEST(SqliteJobStore, ACommitterThatWaitsHandsTheTicketsLeftAfterItsRoundToTheWriterThread) {
    // As above, but the round's leader waits for its own commit (commit()): it returns with its
    // round, and the writer thread writes and tells the ticket left behind.
    HeldJournal journal;
    std::thread::id committer_thread;
    auto committer = journal.committer(committer_thread, "first");
    CommitReport report;
    journal.writer.commit_then(std::make_unique<ReportedCommit>("second", report));
    EXPECT_FALSE(report.is_told()) << "told before the round under way ended";
    journal.release();
    committer.join();
    ASSERT_TRUE(test::eventually([&] { return report.is_told(); })) << "never told";
    EXPECT_FALSE(report.failure);
    ASSERT_EQ(report.ids.size(), 1U);
    EXPECT_NE(report.thread, committer_thread) << "the committer wrote others' rounds";
    EXPECT_NE(report.thread, std::this_thread::get_id());
    EXPECT_EQ(stored(journal.path).size(), 2U);
}

TEST(SqliteJobStore, AWaitingCommitterLeavesTheCommitThenTicketsOfItsRoundToTheWriterThread) {
    // While a commit_then() leads a round held in BEGIN, a commit() and another commit_then()
    // queue. The commit() writes the next round, with both tickets in it, and returns with
    // its own answer: the other's is the writer thread's to tell, not its own to write first.
    HeldJournal journal;
    CommitReport first;
    std::thread::id leader_thread;
    auto leader = journal.committer(leader_thread, "first", &first);
    std::thread::id committer_thread;
    auto committer = journal.committer(committer_thread, "waits");
    CommitReport left;
    journal.writer.commit_then(std::make_unique<ReportedCommit>("left", left));
    journal.release();
    leader.join();
    committer.join();
    ASSERT_TRUE(test::eventually([&] { return left.is_told(); })) << "never told";
    EXPECT_FALSE(left.failure);
    EXPECT_NE(left.thread, committer_thread) << "the waiting committer told it";
    EXPECT_NE(left.thread, leader_thread);
    EXPECT_NE(left.thread, std::this_thread::get_id());
    EXPECT_EQ(stored(journal.path).size(), 3U);
}

TEST(SqliteJobStore, OnlyAFollowerWaitingForARoundTellsItsThreadsObserver) {
    // The first committer leads a round, held in BEGIN by another connection's write lock: it
    // works, and says nothing. The second waits for that round to end, and says so, so that a
    // responder would serve others meanwhile.
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    auto blocker = open_rw(path);
    blocker.begin();
    std::array<test::CountingObserver, 2> observers;
    std::vector<std::jthread> threads;
    for (auto& observer : observers) {
        threads.emplace_back([&writer, &observer] {
            detail::request_context().observer = &observer;
            try {
                EXPECT_EQ(commit(writer, {"j"}).size(), 1u);
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
            }
        });
    }
    const auto told = [&] {
        return observers[0].blocked.load() + observers[1].blocked.load();
    };
    // Within SQLite's busy timeout (5 s), after which the leader would fail.
    const bool waiting = test::eventually([&] { return told() > 0; }, 3s);
    blocker.rollback();
    for (auto& thread : threads) thread.join();
    ASSERT_TRUE(waiting) << "no committer said it waits";
    // Exactly one thread led the first round, and it was never told.
    const int leaders = static_cast<int>(std::ranges::count_if(
        observers, [](const test::CountingObserver& o) { return o.blocked.load() == 0; }));
    EXPECT_EQ(leaders, 1);
    for (const auto& observer : observers) {
        EXPECT_EQ(observer.blocked.load(), observer.unblocked_count.load());
    }
    EXPECT_EQ(stored(path).size(), 2u);
}

// A payload past SQLite's own limit (1 GB), mapped but never written or read: SQLite refuses it
// by its length alone.
class HugePayload {
  public:
    static constexpr std::size_t kSize = 1'000'000'001;
    HugePayload() : data_(::mmap(nullptr, kSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) {}
    ~HugePayload() {
        if (data_ != MAP_FAILED) ::munmap(data_, kSize);
    }
    bool ok() const { return data_ != MAP_FAILED; }
    std::string_view view() const { return {static_cast<const char*>(data_), kSize}; }

  private:
    void* data_;
};

// One request's payload that SQLite refuses shares a group commit with others: it fails alone.
TEST(SqliteJobStore, ARefusedJobFailsOnlyItsOwnCommitInAGroup) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    HugePayload huge;
    ASSERT_TRUE(huge.ok());
    auto blocker = open_rw(path);
    blocker.begin();  // the first round waits in BEGIN while the others gather behind it
    std::atomic<int> about_to_commit{0};
    std::string huge_error;
    std::vector<std::int64_t> small_ids;
    std::mutex mutex;
    std::vector<std::jthread> threads;
    for (int i = 0; i < 3; ++i) {
        // The first waits in BEGIN, leading the first round; the refused one and the last
        // commit gather behind it, for one round together.
        if (i == 1) std::this_thread::sleep_for(100ms);  // setup: not asserted on
        threads.emplace_back([&, i] {
            ++about_to_commit;
            try {
                const NewJob job{"k", i == 1 ? huge.view() : std::string_view("small"), "r"};
                const auto ids = writer.commit(std::span(&job, 1));
                std::lock_guard lock(mutex);
                small_ids.insert(small_ids.end(), ids.begin(), ids.end());
            } catch (const JournalUnavailable& e) {
                std::lock_guard lock(mutex);
                if (i == 1) {
                    huge_error = e.what();
                } else {
                    small_ids.push_back(-1);
                }
            }
        });
    }
    ASSERT_TRUE(test::eventually([&] { return about_to_commit.load() == 3; }));
    std::this_thread::sleep_for(100ms);  // setup: lets them reach commit(); not asserted on
    blocker.rollback();
    threads.clear();
    EXPECT_NE(huge_error.find("too big"), std::string::npos) << huge_error;
    ASSERT_EQ(small_ids.size(), 2U);
    EXPECT_GT(small_ids[0], 0) << "a small job failed beside the refused one";
    EXPECT_GT(small_ids[1], 0) << "a small job failed beside the refused one";
    EXPECT_EQ(stored(path).size(), 2U);
    EXPECT_LT(writer.batch_sizes().count, 3U) << "no two commits shared a round: the test proves "
                                                 "little";
}

TEST(SqliteJobStore, ACommitThenThatSqliteRefusesIsToldWhy) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(open_rw(path));
    HugePayload huge;
    ASSERT_TRUE(huge.ok());
    CommitReport report;
    writer.commit_then(std::make_unique<ReportedCommit>(huge.view(), report));
    ASSERT_TRUE(report.told);
    ASSERT_TRUE(report.failure);
    EXPECT_TRUE(report.ids.empty());
    try {
        std::rethrow_exception(report.failure);
    } catch (const JournalUnavailable& e) {
        EXPECT_NE(std::string(e.what()).find("too big"), std::string::npos) << e.what();
    } catch (...) {
        ADD_FAILURE() << "not a JournalUnavailable";
    }
    EXPECT_TRUE(stored(path).empty());
}

TEST(SqliteJobStore, DestructionWritesWhatIsQueued) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::vector<std::int64_t> ids;
    {
        SqliteJobStore writer(open_rw(path));
        ids = commit(writer, {"a", "b", "c"});
        writer.complete(ids[0]);
        writer.bury(ids[1], 2, "x");
        // no flush
    }
    const auto jobs = stored(path);
    ASSERT_EQ(ids_of(jobs), (std::vector<std::int64_t>{ids[1], ids[2]}));
    EXPECT_EQ(jobs[0].state, JobState::dead);
}

// Exit codes of the disk-full child.
enum : int {
    kFailedAsExpected = 0,
    kNeverFailed = 1,
    kWrongException = 2,
    kDidNotRecover = 3,
    kSetupFailed = 4,
    kNotCounted = 5,
    kCompletionLost = 6,
};

TEST(SqliteJobStore, ACommitThatCannotBeWrittenThrowsJournalUnavailable) {
    // A real write failure: a child process whose files may not grow past 256 KiB (EFBIG, with
    // SIGXFSZ ignored), as on a full disk, commits large payloads until SQLite fails.
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::fflush(nullptr);  // or the child's copy of unwritten output is written twice
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        alarm(30);  // a hang fails the test through SIGALRM instead of stalling the suite
        test::LogCapture quiet;
        signal(SIGXFSZ, SIG_IGN);
        try {
            SqliteJobStore writer(open_rw(path));
            const auto early = commit(writer, {"small"});
            rlimit limit{};
            if (getrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(kSetupFailed);
            limit.rlim_cur = 256 * 1024;
            if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(kSetupFailed);
            const std::string big(64 * 1024, 'x');
            bool failed = false;
            for (int i = 0; i < 1000 && !failed; ++i) {
                try {
                    commit(writer, {big});
                } catch (const JournalUnavailable& e) {
                    failed = std::string(e.what()).find(path) != std::string::npos;
                    if (!failed) _exit(kWrongException);  // must name the journal
                }
            }
            if (!failed) _exit(kNeverFailed);
            if (writer.failed_transactions() == 0) _exit(kNotCounted);
            // A completion handed over while the disk is full is kept, and written once there
            // is room again; new commits go through again too.
            writer.complete(early.at(0));
            limit.rlim_cur = RLIM_INFINITY;
            if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(kSetupFailed);
            if (commit(writer, {"after"}).size() != 1) _exit(kDidNotRecover);
            writer.flush();
            if (writer.unwritten_finishes() != 0) _exit(kCompletionLost);
            for (const auto& job : stored(path)) {
                if (job.id == early[0]) _exit(kCompletionLost);
            }
        } catch (const JournalUnavailable&) {
            _exit(kDidNotRecover);
        } catch (...) {
            _exit(kWrongException);
        }
        _exit(kFailedAsExpected);
    }
    EXPECT_EQ(wait_for_child(child), kFailedAsExpected)
        << "1: never failed, 2: not JournalUnavailable naming the file, 3: no recovery, "
           "4: setup, 5: not counted, 6: completion lost, 128+N: signal N (14: hung)";
}

TEST(SqliteJobStore, DestroyingItRightAfterStartingItDoesNotHang) {
    // The writer waits on a condition variable whose predicate reads the stop token: a stop
    // requested between its check and its wait, without the writer's mutex, would never be
    // seen, and the join would hang. A race: the loop gives it many chances.
    // Run in a child: a hang is reported through SIGALRM instead of stalling the suite.
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { open_rw(path); }
    std::fflush(nullptr);  // or the child's copy of unwritten output is written twice
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        alarm(30);
        try {
            // Up to 3000 writers, for at most 10 s (sanitizers are slow): a hang is then a
            // hang, not a slow build.
            const auto until = std::chrono::steady_clock::now() + 10s;
            for (int i = 0; i < 3000 && std::chrono::steady_clock::now() < until; ++i) {
                SqliteJobStore writer(open_rw(path));
            }
        } catch (...) {
            _exit(2);
        }
        _exit(0);
    }
    EXPECT_EQ(wait_for_child(child), 0) << "128+14: a destructor hung (lost wake-up)";
}

}  // namespace
}  // namespace crosstown
