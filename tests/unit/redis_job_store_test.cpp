// RedisJobStore against a real redis-server: the post-response rule (held jobs are invisible to
// every consumer until released), finishes, retries and delayed jobs that any instance takes
// when due, claims from a dead one, held jobs of a dead instance, and an unreachable server.
#include "crosstown/jobs/redis/redis_job_store.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <fstream>
#include <optional>
#include <memory>
#include <set>
#include <thread>

#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/redis/redis_job_admin.hpp"
#include "crosstown/jobs/redis/redis_job_feed.hpp"
#include "support/eventually.hpp"
#include "support/loopback.hpp"
#include "support/redis_server.hpp"
#include "support/reported_commit.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr auto kClaimAfter = 1500ms;

RedisJournalOptions options_for(const std::string& instance) {
    RedisJournalOptions options;
    options.prefix = "t";
    options.instance = instance;
    options.claim_after = kClaimAfter;
    return options;
}

struct RedisJobStoreTest : ::testing::Test {
    test::RedisServer server{{.appendonly = true}};
    std::optional<RedisJobStore> a{std::in_place, server.unix_address(), options_for("a"),
                                   std::vector<std::string>{"k"}};
    RedisJobStore b{server.unix_address(), options_for("b"), {"k"}};
    const std::map<std::string, std::size_t> openings{{"k", 10}};

    RedisConnection raw() {
        return RedisConnection::open(RedisAddress::parse(server.unix_address()), "", 2s);
    }
    long long integer(std::initializer_list<std::string_view> command) {
        return raw().command(command).integer();
    }
    // What `journal` claims once the dead consumer's entries have been idle for the claim time.
    std::vector<StoredJob> claim_when_due(RedisJobStore& journal) {
        std::vector<StoredJob> claimed;
        test::eventually(
            [&] {
                claimed = journal.claim(openings);
                return !claimed.empty();
            },
            3 * kClaimAfter, 50ms);
        return claimed;
    }
    // Holds, releases and so loads both scripts: no SCRIPT LOAD inside a test's CLIENT PAUSE.
    void load_scripts() {
        a->release(commit(*a, "warm"));
        a->flush();
    }
    std::vector<std::int64_t> commit(RedisJobStore& journal, std::string payload) {
        const NewJob job{"k", payload, "req-1"};
        return journal.commit(std::span(&job, 1));
    }
    // A thread of its own that commits a job to `a` with commit_then(), told into `report`;
    // `id` is the thread's.
    std::jthread commit_then_on_a_thread(std::thread::id& id, test::CommitReport& report) {
        return std::jthread([this, &id, &report] {
            id = std::this_thread::get_id();
            a->commit_then(std::make_unique<test::ReportedCommit>("first", report));
        });
    }
};

TEST_F(RedisJobStoreTest, HeldJobsReachNoConsumerUntilReleased) {
    const auto ids = commit(*a, "p1");
    ASSERT_EQ(ids.size(), 1U);
    EXPECT_TRUE(b.take(openings, 300ms).empty());
    EXPECT_TRUE(a->take(openings, 100ms).empty());
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);

    a->release(ids);
    const auto jobs = b.take(openings, 1000ms);
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, ids[0]);
    EXPECT_EQ(jobs[0].payload, "p1");
    EXPECT_EQ(jobs[0].request_id, "req-1");
    EXPECT_EQ(jobs[0].attempts, 0U);
    EXPECT_GT(jobs[0].enqueued_ms, 0);
    EXPECT_TRUE(a->take(openings, 100ms).empty()) << "one consumer group: taken once";
}

TEST_F(RedisJobStoreTest, ACompletedJobLeavesNothingBehind) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    ASSERT_EQ(b.streams().at(0).pending, 1U);
    b.complete(ids[0]);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(ids[0])}), 0);
    EXPECT_EQ(b.streams().at(0).pending, 0U);
}

TEST_F(RedisJobStoreTest, AJobCommittedForAnUndeliveredResponseIsDiscardedUnseen) {
    const auto ids = commit(*a, "p");
    a->complete(ids[0]);  // skip_if_undelivered: never released
    EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(ids[0])}), 0);
    EXPECT_EQ(integer({"SCARD", "t:held:a"}), 0);
    EXPECT_TRUE(b.take(openings, 200ms).empty());
}

TEST_F(RedisJobStoreTest, AConsumerLeavesTheGroupOnceItHasNothingPendingAndReadsNoMore) {
    const auto consumers = [&] {
        return raw().command({"XINFO", "CONSUMERS", "t:stream:k", "crosstown"}).size();
    };
    const auto first = commit(*a, "done");
    const auto second = commit(*a, "left running");
    a->release(first);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    a->complete(first[0]);
    a->release(second);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    ASSERT_EQ(consumers(), 1U) << "a read: a is a consumer";
    a.reset();  // gone (a clean leave: its heartbeat goes), an entry still pending

    // Its pending entry keeps it in the group until another instance claims the entry.
    std::this_thread::sleep_for(kClaimAfter + 200ms);
    b.beat();
    EXPECT_EQ(consumers(), 1U) << "a consumer with an entry pending is kept";
    ASSERT_EQ(claim_when_due(b).size(), 1U);
    b.complete(second[0]);
    // b claimed (a consumer, reading now) and a has nothing pending: a's turn to go, once idle.
    ASSERT_TRUE(test::eventually(
        [&] {
            b.beat();
            return consumers() == 1U;
        },
        3 * kClaimAfter, 100ms))
        << consumers() << " consumers";
    const auto left = raw().command({"XINFO", "CONSUMERS", "t:stream:k", "crosstown"});
    EXPECT_EQ(reply_string(reply_element(reply_element(left.get(), 0), 1)), "b");
}

// A failed attempt's job leaves the instance that ran it: its entry is acknowledged, and the
// retry waits in the scheduled set until due, then goes to whichever instance takes it, here b
// while a is alive and beating.
TEST_F(RedisJobStoreTest, ARetryGoesToWhicheverInstanceTakesItWhenDue) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    const auto due = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch() + 500ms)
                         .count();
    a->reschedule(ids[0], 1, due, "boom");
    a->beat();
    EXPECT_EQ(reply_integer(raw().command({"XPENDING", "t:stream:k", "crosstown"}).element(0)), 0)
        << "the retry stays taken by the instance that failed it";
    EXPECT_EQ(integer({"ZCARD", "t:scheduled"}), 1);
    b.promote_due();
    const auto early = b.take(openings, 100ms);
    const auto unix_now = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    if (unix_now() < due) {  // a machine slow enough may have reached the due time: no proof
        EXPECT_TRUE(early.empty()) << "taken before its retry was due";
    }
    std::vector<StoredJob> taken = early;
    ASSERT_TRUE(test::eventually(
        [&] {
            if (!taken.empty()) return true;
            std::this_thread::sleep_for(b.promote_due());
            taken = b.take(openings, 50ms);
            return !taken.empty();
        },
        5s, 1ms));
    EXPECT_GE(unix_now(), due);
    ASSERT_EQ(taken.size(), 1U);
    EXPECT_EQ(taken[0].id, ids[0]);
    EXPECT_EQ(taken[0].attempts, 1U);
    EXPECT_EQ(taken[0].state, JobState::retry);
    EXPECT_EQ(taken[0].last_error, "boom");
    EXPECT_FALSE(taken[0].resumed) << "a retry is no claim from a dead instance";
    EXPECT_EQ(b.figures().claimed, 0U);
    EXPECT_EQ(integer({"ZCARD", "t:scheduled"}), 0);
}

// The committing instance's feed looks for a delayed job when it is due after its release, even
// when its response outlasted the delay and a look meanwhile found nothing (it was held): not a
// second later, at the look for other instances' jobs.
TEST_F(RedisJobStoreTest, TheFeedLooksWhenADelayedJobIsDueThoughItsResponseOutlastedTheDelay) {
    NewJob job{"k", "p", "req-1"};
    job.delay_ms = 300;
    const auto ids = a->commit(std::span(&job, 1));
    std::this_thread::sleep_for(350ms);
    a->promote_due();  // a look while it is held: nothing is scheduled yet
    std::this_thread::sleep_for(250ms);
    a->release(ids);
    EXPECT_LE(a->promote_due(), 300ms) << "the next look is not when the job is due";
}

// A job released with a delay waits in the scheduled set for that long after its release, by
// the server's clock, then goes to its stream.
TEST_F(RedisJobStoreTest, ADelayCountsFromTheRelease) {
    NewJob job{"k", "p", "req-1"};
    job.delay_ms = 400;
    const auto ids = a->commit(std::span(&job, 1));
    std::this_thread::sleep_for(300ms);  // the response takes its time
    const auto released = std::chrono::steady_clock::now();
    a->release(ids);
    EXPECT_EQ(integer({"ZCARD", "t:scheduled"}), 1);
    std::vector<StoredJob> taken;
    ASSERT_TRUE(test::eventually(
        [&] {
            std::this_thread::sleep_for(b.promote_due());
            taken = b.take(openings, 20ms);
            return !taken.empty();
        },
        5s, 1ms));
    EXPECT_GE(std::chrono::steady_clock::now() - released, 400ms - 5ms)  // clocks' grain
        << "the delay counted from the commit";
    EXPECT_EQ(taken.at(0).attempts, 0U);
}

// A claim reads its jobs from their hashes. A transient error reply there (here WRONGTYPE,
// from a key of another type for a moment) is no proof that the job is gone: its entry stays
// pending, and is claimed once it is readable.
TEST_F(RedisJobStoreTest, AnErrorReplyReadingAClaimedJobKeepsItForALaterClaim) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    a.reset();  // dies with the job taken
    const auto job_key = "t:job:" + std::to_string(ids[0]);
    raw().command({"RENAME", job_key, "t:aside"});
    raw().command({"SET", job_key, "not a hash"});
    bool claimed_any = false;
    ASSERT_TRUE(test::eventually(
        [&] {
            claimed_any |= !b.claim(openings).empty();
            return b.figures().failed_commands >= 1;
        },
        3 * kClaimAfter, 50ms))
        << "the claim never read the job";
    EXPECT_FALSE(claimed_any);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 1) << "the entry was deleted";
    const auto pending = raw().command({"XPENDING", "t:stream:k", "crosstown"});
    EXPECT_EQ(reply_integer(pending.element(0)), 1) << "the entry was acknowledged";
    raw().command({"DEL", job_key});
    raw().command({"RENAME", "t:aside", job_key});
    const auto claimed = claim_when_due(b);
    ASSERT_EQ(claimed.size(), 1U);
    EXPECT_EQ(claimed[0].id, ids[0]);
    EXPECT_EQ(claimed[0].payload, "p");
}

// A ready job's entry carries the job, so a take is one round trip, however many jobs it
// takes; and the job is whole, as its hash has it.
TEST_F(RedisJobStoreTest, ATakeIsOneRoundTripForEveryJobItTakes) {
    std::vector<std::int64_t> ids;
    for (const auto payload : {"first", "second", "third"}) ids.push_back(commit(*a, payload)[0]);
    a->release(ids);
    a->flush();
    const auto before = a->figures().round_trips;
    auto taken = a->take(openings, 1000ms);
    EXPECT_EQ(a->figures().round_trips - before, 1U);
    ASSERT_EQ(taken.size(), 3U);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        EXPECT_EQ(taken[i].id, ids[i]);
        EXPECT_EQ(taken[i].kind, "k");
        EXPECT_EQ(taken[i].payload, (std::array{"first", "second", "third"}[i]));
        EXPECT_EQ(taken[i].request_id, "req-1");
        EXPECT_EQ(taken[i].state, JobState::ready);
    }
    a->complete(ids[0]);
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 2) << "the finished job's entry was not deleted";
}

// A job can have a second entry: a run taken over from a stalled instance finishes while the
// stalled one's retry of it is in the stream already. The entry carries the job, so the finish
// deletes the job's latest entry (its hash names it) too, and nothing runs it again.
TEST_F(RedisJobStoreTest, AFinishDeletesTheJobsOtherEntryToo) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    const auto job = "t:job:" + std::to_string(ids[0]);
    const auto other = raw().command({"XADD", "t:stream:k", "*", "id", std::to_string(ids[0]),
                                      "attempts", "1", "payload", "p", "state", "retry"});
    raw().command({"HSET", job, "entry", other.string()});
    a->complete(ids[0]);
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0) << "the other entry stays, and runs the job";
    EXPECT_TRUE(b.take(openings, 100ms).empty());
}

// A cancel deletes a ready job's entry, but not one an instance has taken: that one stays
// pending, counted as running, until the attempt ends.
TEST_F(RedisJobStoreTest, ACancelLeavesATakenEntryToItsInstance) {
    const auto ids = commit(*a, "taken");
    const auto ready = commit(*a, "ready");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    a->release(ready);
    a->flush();
    RedisJobAdmin admin(server.unix_address(), options_for("admin"));
    EXPECT_EQ(admin.cancel(std::nullopt, "k"), 2U);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 1);
    EXPECT_EQ(a->streams().at(0).pending, 1U);
    const auto census = a->census(10);
    ASSERT_EQ(census.kinds.size(), 1U);
    EXPECT_EQ(census.kinds[0].ready, 0U);
    EXPECT_EQ(census.kinds[0].running, 1U);
    a->complete(ids[0]);
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    EXPECT_EQ(a->streams().at(0).pending, 0U);
}

// An entry of only its job's id, as earlier versions wrote, is still taken: its job is read
// from its hash.
TEST_F(RedisJobStoreTest, AnEntryOfOnlyAnIdIsTakenWithItsJobFromItsHash) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    a->flush();
    raw().command({"DEL", "t:stream:k"});
    raw().command({"XGROUP", "CREATE", "t:stream:k", "crosstown", "$", "MKSTREAM"});
    raw().command({"XADD", "t:stream:k", "*", "id", std::to_string(ids[0])});
    const auto taken = a->take(openings, 1000ms);
    ASSERT_EQ(taken.size(), 1U);
    EXPECT_EQ(taken[0].id, ids[0]);
    EXPECT_EQ(taken[0].payload, "p");
    a->complete(ids[0]);
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
}

// Round trips are what batching saves, so they are counted: a pipeline of many commands is
// one, and each command alone is one.
TEST_F(RedisJobStoreTest, CountsAPipelineOfCommandsAsOneRoundTrip) {
    const auto before = a->figures().round_trips;
    const auto streams = a->streams();  // XLEN and XPENDING of each kind, in one pipeline
    ASSERT_FALSE(streams.empty());
    EXPECT_EQ(a->figures().round_trips - before, 1U);
    const auto ids = commit(*a, "p");
    ASSERT_EQ(ids.size(), 1U);
    EXPECT_GT(a->figures().round_trips - before, 1U);
}

// Finishes go out in groups: while one is on its way to the server (held here by CLIENT PAUSE),
// the others queue, and the next group carries them all in one round trip.
TEST_F(RedisJobStoreTest, FinishesQueuedWhileOneIsOnItsWayGoOutTogether) {
    constexpr std::size_t kJobs = 8;
    std::vector<std::int64_t> ids;
    for (std::size_t i = 0; i <= kJobs; ++i) ids.push_back(commit(*a, "p").at(0));
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), kJobs + 1);
    a->complete(ids.back());  // loads the script (once per process), and leaves an idle
    a->flush();               // connection: no SCRIPT LOAD or connecting inside the pause
    ids.pop_back();
    raw().command({"CLIENT", "PAUSE", "5000", "WRITE"});  // scripts wait, reads do not
    const auto before = a->figures().round_trips;
    {
        std::vector<std::jthread> finishing;
        for (const auto id : ids) finishing.emplace_back([&, id] { a->complete(id); });
        // Within the first group's command timeout (2 s), which would unsend it.
        const bool queued = test::eventually(
            [&] { return a->bookkeeping().at("queued") == kJobs - 1; }, 1500ms, 1ms);
        raw().command({"CLIENT", "UNPAUSE"});
        ASSERT_TRUE(queued) << a->bookkeeping().at("queued") << " queued";
    }
    EXPECT_EQ(a->figures().round_trips - before, 2U) << "the first finish, then the other seven";
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    EXPECT_EQ(a->streams().at(0).pending, 0U);
    EXPECT_EQ(a->bookkeeping().at("unsent"), 0U);
}

// Holds too: while one request's hold is on its way (held here by CLIENT PAUSE), the others
// queue, and the next pipeline carries them all; each request still gets its own ids.
TEST_F(RedisJobStoreTest, HoldsQueuedWhileOneIsOnItsWayGoOutTogether) {
    constexpr std::size_t kRequests = 8;
    commit(*a, "warm");  // loads the hold script and leaves an idle connection
    raw().command({"CLIENT", "PAUSE", "5000", "WRITE"});  // scripts wait, reads do not
    const auto before = a->figures().round_trips;
    std::vector<std::vector<std::int64_t>> ids(kRequests);
    {
        std::vector<std::jthread> committing;
        for (std::size_t i = 0; i < kRequests; ++i) {
            committing.emplace_back([&, i] {
                try {
                    ids[i] = commit(*a, "p" + std::to_string(i));
                } catch (const std::exception& e) {
                    ADD_FAILURE() << "commit " << i << ": " << e.what();
                }
            });
        }
        // Within the first hold's command timeout (2 s), which would fail it.
        const bool queued = test::eventually(
            [&] { return a->bookkeeping().at("holds_queued") == kRequests - 1; }, 1500ms, 1ms);
        raw().command({"CLIENT", "UNPAUSE"});
        ASSERT_TRUE(queued) << a->bookkeeping().at("holds_queued") << " queued";
    }
    EXPECT_EQ(a->figures().round_trips - before, 2U) << "the first hold, then the other seven";
    std::set<std::int64_t> distinct;
    for (const auto& request : ids) {
        ASSERT_EQ(request.size(), 1U);
        distinct.insert(request.at(0));
    }
    EXPECT_EQ(distinct.size(), kRequests);
    EXPECT_EQ(distinct.count(RedisJobStore::kDuplicate), 0U);
    for (const auto id : distinct) {
        EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(id)}), 1) << id;
    }
    a->release(std::vector<std::int64_t>(distinct.begin(), distinct.end()));
    EXPECT_EQ(a->take(openings, 1000ms).size(), kRequests);
}

TEST_F(RedisJobStoreTest, CommitThenWithNoGroupOnItsWayIsToldOnItsThreadBeforeItReturns) {
    test::CommitReport report;
    a->commit_then(std::make_unique<test::ReportedCommit>("alone", report));
    ASSERT_TRUE(report.is_told());
    EXPECT_EQ(report.thread, std::this_thread::get_id());
    EXPECT_FALSE(report.failure);
    ASSERT_EQ(report.ids.size(), 1U);
    EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(report.ids[0])}), 1);
    EXPECT_EQ(a->bookkeeping().at("commits_in_flight"), 0U);
}

// The feed and the writer thread of a journal, from start() to close(), with a runner that
// takes no jobs.
struct Started {
    explicit Started(RedisJobStore& journal) : journal(journal) {
        kinds.define("k", {}, [](const Job&, std::stop_token) {});
        journal.start(runner, false);
    }
    ~Started() {
        journal.close();
        runner.stop();
    }
    RedisJobStore& journal;
    JobKinds kinds;
    Pool pool{{.workers = 1, .min_workers = 1}};
    JobRunner runner{kinds, journal, pool};
};

// Holds wait in the server while a CLIENT PAUSE lasts: a group on its way, for as long as the
// test needs.
struct PausedWrites {
    // Until `journal` has a group of holds on its way.
    static bool group_on_way(const RedisJobStore& journal) {
        return test::eventually(
            [&] { return journal.bookkeeping().at("hold_groups_on_way") == 1; }, 1500ms, 1ms);
    }
    explicit PausedWrites(RedisConnection connection) : connection(std::move(connection)) {
        this->connection.command({"CLIENT", "PAUSE", "5000", "WRITE"});
    }
    ~PausedWrites() { resume(); }
    void resume() {
        if (!std::exchange(resumed, true)) connection.command({"CLIENT", "UNPAUSE"});
    }
    RedisConnection connection;
    bool resumed = false;
};

TEST_F(RedisJobStoreTest, ACommitThenWhileAGroupIsOnItsWayReturnsAtOnceAndItsSenderTellsIt) {
    commit(*a, "warm");  // loads the hold script
    PausedWrites paused(raw());
    test::CommitReport first;
    std::thread::id leader_thread;
    auto leader = commit_then_on_a_thread(leader_thread, first);
    ASSERT_TRUE(PausedWrites::group_on_way(*a));
    test::CommitReport second;
    a->commit_then(std::make_unique<test::ReportedCommit>("second", second));
    EXPECT_EQ(a->bookkeeping().at("holds_queued"), 1U);
    EXPECT_FALSE(second.is_told()) << "told before the group on its way came back";
    paused.resume();
    leader.join();
    ASSERT_TRUE(first.is_told());
    ASSERT_TRUE(second.is_told()) << "the leader returned without sending the next group";
    EXPECT_EQ(second.thread, leader_thread);
    EXPECT_FALSE(second.failure);
    ASSERT_EQ(second.ids.size(), 1U);
    EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(second.ids[0])}), 1);
    EXPECT_EQ(a->bookkeeping().at("commits_in_flight"), 0U);
}

// A commit() caller's request waits for it: it sends its own group, not the holds queued after
// it that nobody waits for. The writer thread, started with the feed, sends those.
TEST_F(RedisJobStoreTest, ACommitterThatWaitsLeavesTheHoldsQueuedAfterItsGroupToTheWriterThread) {
    const Started started(*a);
    commit(*a, "warm");
    PausedWrites paused(raw());
    std::thread::id committer_thread;
    std::jthread committer([&] {
        committer_thread = std::this_thread::get_id();
        EXPECT_EQ(commit(*a, "first").size(), 1U);
    });
    ASSERT_TRUE(PausedWrites::group_on_way(*a));
    test::CommitReport left;
    a->commit_then(std::make_unique<test::ReportedCommit>("left", left));
    EXPECT_EQ(a->bookkeeping().at("holds_queued"), 1U);
    paused.resume();
    committer.join();
    ASSERT_TRUE(test::eventually([&] { return left.is_told(); })) << "never told";
    EXPECT_NE(left.thread, committer_thread) << "the committer sent others' holds";
    EXPECT_NE(left.thread, std::this_thread::get_id());
    EXPECT_FALSE(left.failure);
}

TEST_F(RedisJobStoreTest, ACommitterThatWaitsLeavesTheCommitThenHoldsOfItsGroupToTheWriterThread) {
    // While a commit_then() leads a group held in the server, a commit() and another
    // commit_then() queue. The commit() sends the next group, with both holds in it, and
    // returns with its own answer: telling the other (its response, its release) is the
    // writer thread's.
    const Started started(*a);
    commit(*a, "warm");
    PausedWrites paused(raw());
    test::CommitReport first;
    std::thread::id leader_thread;
    auto leader = commit_then_on_a_thread(leader_thread, first);
    ASSERT_TRUE(PausedWrites::group_on_way(*a));
    std::thread::id committer_thread;
    std::jthread committer([&] {
        committer_thread = std::this_thread::get_id();
        EXPECT_EQ(commit(*a, "waits").size(), 1U);
    });
    ASSERT_TRUE(test::eventually([&] { return a->bookkeeping().at("holds_queued") == 1; }));
    test::CommitReport left;
    a->commit_then(std::make_unique<test::ReportedCommit>("left", left));
    EXPECT_EQ(a->bookkeeping().at("holds_queued"), 2U);
    paused.resume();
    leader.join();
    committer.join();
    ASSERT_TRUE(test::eventually([&] { return left.is_told(); })) << "never told";
    EXPECT_NE(left.thread, committer_thread) << "the committer told another request's hold";
    EXPECT_NE(left.thread, leader_thread);
    EXPECT_NE(left.thread, std::this_thread::get_id());
    EXPECT_FALSE(left.failure);
    EXPECT_EQ(a->bookkeeping().at("commits_in_flight"), 0U);
}

TEST_F(RedisJobStoreTest, ACommitThenThatTheServerRefusesIsToldWhy) {
    auto c = raw();
    c.command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
    c.command({"CONFIG", "SET", "maxmemory", "1"});
    test::CommitReport report;
    a->commit_then(std::make_unique<test::ReportedCommit>("p", report));
    c.command({"CONFIG", "SET", "maxmemory", "0"});
    ASSERT_TRUE(report.is_told());
    ASSERT_TRUE(report.failure);
    EXPECT_THROW(std::rethrow_exception(report.failure), JournalUnavailable);
    EXPECT_TRUE(report.ids.empty());
    EXPECT_EQ(a->bookkeeping().at("commits_in_flight"), 0U);
}

// A release goes out after the response, a completion after the job: once the feed (and its
// writer thread) runs, neither the responder nor the worker waits for them. flush() does.
TEST_F(RedisJobStoreTest, ReleasesAndCompletionsDoNotWaitOnceTheFeedRuns) {
    const Started started(*a);
    const auto ids = commit(*a, "p");
    const auto job = "t:job:" + std::to_string(ids[0]);
    // Waiting, each would wait out the pause, and fail at 2 s.
    const auto returns_at_once = [&](auto write) {
        PausedWrites paused(raw());
        const auto before = std::chrono::steady_clock::now();
        write();
        return std::chrono::steady_clock::now() - before < 1s;
    };
    EXPECT_TRUE(returns_at_once([&] { a->release(ids); }));
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 1);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    EXPECT_TRUE(returns_at_once([&] { a->complete(ids[0]); }));
    a->flush();
    EXPECT_EQ(integer({"EXISTS", job}), 0);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    EXPECT_EQ(a->figures().unwritten, 0U);
}

// A write queued while a group of holds is on its way, with more holds queued behind it, goes
// along in the next group's pipeline: one round trip for both, and both land.
TEST_F(RedisJobStoreTest, QueuedWritesGoAlongWithTheNextGroupOfHolds) {
    const Started started(*a);
    const auto ids = commit(*a, "p");
    load_scripts();
    const auto before = a->figures().writes_along;
    PausedWrites paused(raw());
    test::CommitReport first;
    std::thread::id leader_thread;
    auto leader = commit_then_on_a_thread(leader_thread, first);
    ASSERT_TRUE(PausedWrites::group_on_way(*a));
    a->release(ids);
    test::CommitReport second;
    a->commit_then(std::make_unique<test::ReportedCommit>("second", second));
    paused.resume();
    leader.join();
    ASSERT_TRUE(test::eventually([&] { return second.is_told(); }));
    a->flush();
    EXPECT_EQ(a->figures().writes_along - before, 1U) << "the release went on its own";
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 2) << "the release did not land";
    EXPECT_EQ(a->figures().unwritten, 0U);
}

// While a group of holds is on its way, the writer thread leaves the writes queued to go
// along with the next group, or to go once this one is back; either way they land.
TEST_F(RedisJobStoreTest, TheWriterThreadWaitsForAGroupOfHoldsOnItsWay) {
    const Started started(*a);
    const auto ids = commit(*a, "p");
    load_scripts();
    PausedWrites paused(raw());
    std::jthread committer([&] { EXPECT_EQ(commit(*a, "on its way").size(), 1U); });
    ASSERT_TRUE(PausedWrites::group_on_way(*a));
    a->release(ids);
    // The writer thread, woken by the release, would take it from the queue in microseconds.
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(a->bookkeeping().at("queued"), 1U) << "the writer did not wait for the holds";
    paused.resume();
    committer.join();
    a->flush();
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 2) << "the release did not land";
    EXPECT_EQ(a->bookkeeping().at("queued"), 0U);
}

// A dead consumer's pending entries, more than one claim's count: claim() carries its scan on
// where it stopped, and says when the scan has come round, so the feed claims them all at once.
TEST_F(RedisJobStoreTest, ClaimsCarryOnThroughADeadConsumersBacklogUntilTheScanComesRound) {
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 25; ++i) ids.push_back(commit(*a, "p" + std::to_string(i)).at(0));
    a->release(ids);
    std::size_t taken = 0;
    while (taken < ids.size()) taken += a->take({{"k", 25}}, 200ms).size();
    a.reset();
    std::this_thread::sleep_for(kClaimAfter + 100ms);
    std::set<std::int64_t> claimed;
    int calls = 0;
    do {
        for (const auto& job : b.claim(openings)) claimed.insert(job.id);
        ++calls;
    } while (!b.claim_scan_done(openings) && calls < 100);
    EXPECT_TRUE(b.claim_scan_done(openings));
    EXPECT_EQ(claimed.size(), ids.size());
    EXPECT_GE(calls, 3) << "ten at a time: the scan needs several calls";
}

// A fresh job's first attempt records nothing; when its instance dies in it, the claim counts
// that delivery as the attempt the death cut short, so a job that kills every instance that
// runs it is dead after max_attempts deaths, not one more.
TEST_F(RedisJobStoreTest, AClaimCountsTheDeliveryThatDiedAsAnAttempt) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    a.reset();  // dies in the first attempt, recorded nowhere
    const auto claimed = claim_when_due(b);
    ASSERT_EQ(claimed.size(), 1U);
    EXPECT_TRUE(claimed[0].resumed);
    EXPECT_EQ(claimed[0].attempts, 1U);
    EXPECT_EQ(claimed[0].last_error, "the process died during attempt 1");
}

// The same for a retry: its first attempt failed on b, the retry's delivery to a is not
// recorded either, and a dies in it: the claim counts attempt 2, not 1.
TEST_F(RedisJobStoreTest, AClaimCountsTheRetryDeliveryThatDiedAsTheNextAttempt) {
    const auto ids = commit(b, "p");
    b.release(ids);
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    b.reschedule(ids[0], 1, 0, "attempt 1 failed");
    std::vector<StoredJob> retry;
    ASSERT_TRUE(test::eventually([&] {
        a->promote_due();
        retry = a->take(openings, 50ms);
        return !retry.empty();
    }));
    EXPECT_EQ(retry.at(0).attempts, 1U);
    a.reset();  // dies in attempt 2, recorded nowhere
    const auto claimed = claim_when_due(b);
    ASSERT_EQ(claimed.size(), 1U);
    EXPECT_TRUE(claimed[0].resumed);
    EXPECT_EQ(claimed[0].attempts, 2U);
    EXPECT_EQ(claimed[0].last_error, "the process died during attempt 2");
}

// A job taken new is fresh; one claimed from a dead consumer is resumed, and carries the
// attempt recorded before its last run, which its instance's death did not undo.
TEST_F(RedisJobStoreTest, AClaimedJobIsResumedWithTheAttemptRecordedBeforeItsInstanceDied) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    const auto taken = a->take(openings, 1000ms);
    ASSERT_EQ(taken.size(), 1U);
    EXPECT_FALSE(taken[0].resumed);
    a->record_attempt(ids[0], 2);
    a.reset();  // dies mid-attempt
    const auto claimed = claim_when_due(b);
    ASSERT_EQ(claimed.size(), 1U);
    EXPECT_TRUE(claimed[0].resumed);
    EXPECT_EQ(claimed[0].attempts, 2U);
    EXPECT_EQ(claimed[0].last_error, "the process died during attempt 2");
    // A dead job is left alone.
    b.bury(ids[0], 2, "gave up");
    b.record_attempt(ids[0], 3);
    const auto error = raw().command({"HGET", "t:job:" + std::to_string(ids[0]), "last_error"});
    EXPECT_EQ(error.string(), "gave up");
}

// The server loses its data (FLUSHALL here) while instances hold and run jobs: new jobs get
// ids no live instance holds, and a live instance's late writes about its old jobs (a
// completion, a discard, a release) leave the new ones alone.
TEST_F(RedisJobStoreTest, AfterTheServerLostItsDataNewIdsDifferAndStaleWritesLeaveNewJobsAlone) {
    std::vector<std::int64_t> old_held, old_taken;
    for (int i = 0; i < 20; ++i) old_held.push_back(commit(*a, "old").at(0));
    const auto released = commit(*a, "old, taken");
    a->release(released);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    old_taken = released;
    raw().command({"FLUSHALL"});
    std::vector<std::int64_t> fresh;
    for (int i = 0; i < 21; ++i) {
        const auto id = commit(b, "new").at(0);
        fresh.push_back(id);
        EXPECT_EQ(std::ranges::count(old_held, id) + std::ranges::count(old_taken, id), 0)
            << "id " << id << " is still held or run by a live instance";
    }
    for (const auto id : old_held) a->complete(id);  // discards: never released
    a->release(old_held);
    a->complete(old_taken.at(0));
    for (const auto id : fresh) {
        EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(id)}), 1)
            << "a stale write removed new job " << id;
    }
    EXPECT_EQ(integer({"SCARD", "t:held:b"}), 21) << "a stale write released a new held job";
}

// The feed of a survivor whose runner has openings for 4 jobs at a time claims a dead consumer's
// 200 entries, taken and not finished, in one look past the claim time, as fast as it runs them:
// not 4 per beat, nor 4 per blocked read.
TEST_F(RedisJobStoreTest, AFeedClaimsADeadConsumersWholeBacklogAtOnce) {
    constexpr std::size_t kBacklog = 200;
    std::vector<std::int64_t> ids;
    for (std::size_t i = 0; i < kBacklog; ++i) ids.push_back(commit(*a, "p").at(0));
    a->release(ids);
    std::size_t taken = 0;
    while (taken < kBacklog) taken += a->take({{"k", kBacklog}}, 200ms).size();
    a.reset();  // dies with its backlog taken
    const auto died = std::chrono::steady_clock::now();

    JobKinds kinds;
    kinds.define("k", {}, [](const Job&, std::stop_token) {});
    Pool pool({.workers = 4, .min_workers = 4});
    JobRunner runner(kinds, b, pool);
    {
        RedisJobFeed feed(b, runner, true);
        ASSERT_TRUE(test::eventually([&] { return b.figures().claimed >= kBacklog; }, 20s, 10ms))
            << b.figures().claimed << " claimed";
        const auto took = std::chrono::steady_clock::now() - died;
        // A beat's openings at a time would take 50 beats past the claim time; at once, under one.
        EXPECT_LT(took, kClaimAfter + 10 * (kClaimAfter / 4))
            << "claimed a beat's openings at a time: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
        feed.stop();
    }
    pool.drain(1s, 1s);
    runner.stop();
}

TEST_F(RedisJobStoreTest, ABuriedJobGoesToTheDeadStreamWithItsLastError) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    b.bury(ids[0], 3, "gave up");
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    EXPECT_EQ(integer({"XLEN", "t:dead"}), 1);
    const auto error = raw().command({"HGET", "t:job:" + std::to_string(ids[0]), "last_error"});
    EXPECT_EQ(error.string(), "gave up");
}

TEST_F(RedisJobStoreTest, ALateRetryNoteNeitherRevivesADeadJobNorRecreatesAFinishedOne) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    b.bury(ids[0], 3, "gave up");
    b.reschedule(ids[0], 2, 0, "an older failure, written late");
    const auto job = "t:job:" + std::to_string(ids[0]);
    EXPECT_EQ(raw().command({"HGET", job, "state"}).string(), "dead");
    EXPECT_EQ(raw().command({"HGET", job, "last_error"}).string(), "gave up");
    EXPECT_EQ(integer({"XLEN", "t:dead"}), 1);

    const auto done = commit(*a, "q");
    a->release(done);
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    b.complete(done[0]);
    b.reschedule(done[0], 1, 0, "late");
    EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(done[0])}), 0);
}

TEST_F(RedisJobStoreTest, HeldJobsOfADeadInstanceAreReleasedOnlyOnceItsHeartbeatExpires) {
    const auto ids = commit(*a, "p");
    a->beat();
    b.beat();
    EXPECT_TRUE(b.take(openings, 100ms).empty()) << "released while its holder lives";
    a->beat();
    a.reset();  // a crash between hold and release: the heartbeat outlives it for a while
    b.beat();
    EXPECT_TRUE(b.take(openings, 100ms).empty()) << "released before the heartbeat expired";
    std::vector<StoredJob> jobs;
    ASSERT_TRUE(test::eventually(
        [&] {
            b.beat();
            jobs = b.take(openings, 50ms);
            return !jobs.empty();
        },
        5s, 50ms));
    EXPECT_EQ(jobs.at(0).id, ids[0]);
    EXPECT_EQ(b.figures().orphans_released, 1U);
}

TEST_F(RedisJobStoreTest, AHeldJobWhoseReleaseWasLostIsReleasedByItsOwnInstanceAtTheSecondBeat) {
    // A job in a's held set that no response of a's is writing: as after a release refused
    // for good. The hash and the held set as the hold script writes them.
    auto c = raw();
    c.command({"HSET", "t:job:900", "kind", "k", "payload", "lost", "request_id", "r",
               "enqueued_ms", "1", "attempts", "0", "run_at_ms", "0", "state", "held"});
    c.command({"SADD", "t:held:a", "900"});
    const auto in_flight = commit(*a, "in flight");  // its response is still being written
    a->beat();
    EXPECT_TRUE(b.take(openings, 100ms).empty()) << "released at the first look";
    a->beat();
    const auto jobs = b.take(openings, 1000ms);
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, 900);
    EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(in_flight[0])}), 1)
        << "a job whose response is in progress stays held";
}

TEST_F(RedisJobStoreTest, ANameInUseIsRefusedAndAReusedNameReleasesWhatItsPredecessorHeld) {
    {
        // a lives (and beats) all the while the second process waits for the name.
        std::jthread beating([&](std::stop_token stop) {
            while (!stop.stop_requested()) {
                a->beat();
                std::this_thread::sleep_for(kClaimAfter / 6);
            }
        });
        try {
            RedisJobStore twin(server.unix_address(), options_for("a"), {"k"});
            ADD_FAILURE() << "a second instance took a live instance's name";
        } catch (const JournalError& e) {
            EXPECT_THAT(e.what(), HasSubstr("'a' is in use"));
        }
    }
    const auto ids = commit(*a, "p");
    auto c = raw();
    c.command({"DEL", "t:alive:a"});  // a crashed and its heartbeat expired, in effect
    a.reset();
    RedisJobStore again(server.unix_address(), options_for("a"), {"k"});
    const auto jobs = b.take(openings, 1000ms);
    ASSERT_EQ(jobs.size(), 1U) << "the predecessor's held job was not released";
    EXPECT_EQ(jobs[0].id, ids[0]);
}

TEST_F(RedisJobStoreTest, ALostConsumerGroupIsCreatedAgain) {
    raw().command({"DEL", "t:stream:k"});             // a server that lost its data, say
    EXPECT_THROW(b.take(openings, 100ms), JournalError);  // NOGROUP: the group is created again
    const auto ids = commit(*a, "p");
    a->release(ids);
    EXPECT_EQ(b.take(openings, 1000ms).size(), 1U);
}

// A feed that is claiming meets the lost group first: the claim creates it again (so that the
// feed's reads go on) instead of failing at every turn.
TEST_F(RedisJobStoreTest, AClaimThatFindsTheGroupLostCreatesItAgain) {
    raw().command({"DEL", "t:stream:k"});
    EXPECT_TRUE(b.claim(openings).empty());
    const auto ids = commit(*a, "p");
    a->release(ids);
    EXPECT_EQ(b.take(openings, 1000ms).size(), 1U);
}

// A server that lost its scripts (a restart, SCRIPT FLUSH) refuses the group's EVALSHA with
// NOSCRIPT: the script is loaded and the holds go again, and nothing else is lost.
TEST_F(RedisJobStoreTest, HoldsGoAgainOnceTheScriptIsLoadedWhenTheServerLostIt) {
    commit(*a, "warm");  // the script's SHA1 is known from here on
    raw().command({"SCRIPT", "FLUSH"});
    const auto before = a->figures().round_trips;
    const auto ids = commit(*a, "p");
    ASSERT_EQ(ids.size(), 1U);
    EXPECT_NE(ids[0], RedisJobStore::kDuplicate);
    EXPECT_EQ(a->figures().round_trips - before, 3U) << "refused, SCRIPT LOAD, held";
    EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(ids[0])}), 1);
}

// The same for the writes after a response: a release and a finish, refused with NOSCRIPT, go
// again once their scripts are loaded.
TEST_F(RedisJobStoreTest, WritesGoAgainOnceTheirScriptsAreLoadedWhenTheServerLostThem) {
    const auto warm = commit(*a, "warm");
    const auto ids = commit(*a, "done");
    const auto later = commit(*a, "released");
    a->release(warm);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    a->complete(warm[0]);  // both scripts' SHA1 are known from here on
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    raw().command({"SCRIPT", "FLUSH"});
    a->complete(ids[0]);
    a->release(later);
    a->flush();
    EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(ids[0])}), 0) << "not completed";
    EXPECT_EQ(integer({"SISMEMBER", "t:held:a", std::to_string(later[0])}), 0) << "not released";
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 1);
    EXPECT_EQ(a->figures().unwritten, 0U);
    const auto taken = a->take(openings, 1000ms);
    ASSERT_EQ(taken.size(), 1U);
    EXPECT_EQ(taken[0].payload, "released");
}

TEST_F(RedisJobStoreTest, AServerOutOfMemoryRefusesHolds) {
    auto c = raw();
    c.command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
    c.command({"CONFIG", "SET", "maxmemory", "1"});
    EXPECT_THROW(commit(*a, "p"), JournalUnavailable);  // the response becomes a 503
    c.command({"CONFIG", "SET", "maxmemory", "0"});
    EXPECT_EQ(commit(*a, "p").size(), 1U);
}

TEST_F(RedisJobStoreTest, AReleaseRefusedForNowIsKeptAndWrittenOnceTheServerTakesWritesAgain) {
    const auto ids = commit(*a, "p");
    auto c = raw();
    // A primary demoted during a failover: READONLY to every write. Its data stays until it
    // syncs with a primary, and there is none at port 1.
    c.command({"REPLICAOF", "127.0.0.1", "1"});
    a->release(ids);
    EXPECT_EQ(a->figures().unwritten, 1U);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
    c.command({"REPLICAOF", "NO", "ONE"});
    a->beat();
    EXPECT_EQ(a->figures().unwritten, 0U);
    EXPECT_EQ(b.take(openings, 1000ms).size(), 1U);
}

TEST_F(RedisJobStoreTest, ACleanLeaveLetsOthersReleaseAtOnce) {
    commit(*a, "p");  // held, and never released by a (its release failed, say)
    a->leave();
    b.beat();
    EXPECT_EQ(b.take(openings, 500ms).size(), 1U);
}

TEST_F(RedisJobStoreTest, AnUnreachableServerRefusesCommitsAndKeepsFinishesForLater) {
    const auto ids = commit(*a, "p");
    a->release(ids);
    ASSERT_EQ(a->take(openings, 1000ms).size(), 1U);
    server.stop();
    EXPECT_THROW(commit(*a, "q"), JournalUnavailable);
    a->complete(ids[0]);
    EXPECT_EQ(a->figures().unwritten, 1U);
    EXPECT_GE(a->figures().failed_commands, 1U);
    server.start();  // append-only, fsync always: what was written is back
    ASSERT_TRUE(test::eventually(
        [&] {
            try {
                a->beat();
                return true;
            } catch (const JournalError&) {
                return false;
            }
        },
        5s, 100ms));
    EXPECT_EQ(a->figures().unwritten, 0U);
    EXPECT_EQ(integer({"EXISTS", "t:job:" + std::to_string(ids[0])}), 0);
    EXPECT_EQ(integer({"XLEN", "t:stream:k"}), 0);
}

TEST_F(RedisJobStoreTest, TheAdminListsRevivesAndPurgesDeadJobsBesideRunningInstances) {
    const auto ids = commit(*a, "p");
    const auto held = commit(*a, "held");
    a->release(std::span(ids.data(), 1));
    ASSERT_EQ(b.take(openings, 1000ms).size(), 1U);
    b.bury(ids[0], 3, "gave up");
    RedisJobAdmin admin(server.unix_address(), options_for("admin"));

    // Oldest first; two jobs committed in the same millisecond may come in either order.
    const auto all = admin.list(false);
    ASSERT_EQ(all.size(), 2U);
    const auto row = [&](std::int64_t id) {
        return *std::ranges::find(all, id, [](const AdminJob& r) { return r.job.id; });
    };
    EXPECT_LE(all[0].job.enqueued_ms, all[1].job.enqueued_ms);
    EXPECT_EQ(row(ids[0]).state, "dead");
    EXPECT_EQ(row(ids[0]).job.last_error, "gave up");
    EXPECT_EQ(row(ids[0]).job.attempts, 3U);
    EXPECT_EQ(row(held[0]).state, "held");
    ASSERT_EQ(admin.list(true).size(), 1U);
    EXPECT_EQ(admin.streams().at(0).length, 0U);

    EXPECT_EQ(admin.revive(held[0]), 0U) << "a job that is not dead is left alone";
    EXPECT_EQ(admin.revive(std::nullopt), 1U);
    const auto again = b.take(openings, 1000ms);
    ASSERT_EQ(again.size(), 1U) << "a revived job goes back to its stream";
    EXPECT_EQ(again[0].id, ids[0]);
    EXPECT_EQ(again[0].attempts, 0U);

    b.bury(ids[0], 1, "again");
    EXPECT_EQ(admin.purge_dead(), 1U);
    EXPECT_TRUE(admin.list(true).empty());
    EXPECT_EQ(admin.list(false).size(), 1U) << "only the dead are purged";
    EXPECT_EQ(integer({"EXISTS", "t:dead"}), 0);
}

// Redis restarted from an older snapshot: the jobs held since it are gone, and a counter in it
// would be back where it was. New ids still differ from those a live instance holds.
TEST(RedisJobStore, IdsAfterARestartFromAnOlderSnapshotDifferFromEveryIdALiveInstanceHolds) {
    test::RedisServer server;  // no append-only file: a restart loads the last snapshot
    RedisJobStore a(server.unix_address(), options_for("a"), {"k"});
    const NewJob job{"k", "p", "r"};
    a.commit(std::span(&job, 1));
    RedisConnection::open(RedisAddress::parse(server.unix_address()), "", 2s).command({"SAVE"});
    std::set<std::int64_t> held;
    for (int i = 0; i < 20; ++i) held.insert(a.commit(std::span(&job, 1)).at(0));
    server.stop(SIGKILL);
    server.start();
    auto options = options_for("b");
    options.wait = 5s;  // until the restarted server has loaded its snapshot
    RedisJobStore b(server.unix_address(), options, {"k"});
    for (int i = 0; i < 20; ++i) {
        const auto id = b.commit(std::span(&job, 1)).at(0);
        EXPECT_FALSE(held.contains(id)) << "id " << id << " is still held by a live instance";
    }
}

TEST(RedisJobStore, NoServerAtStartIsAnErrorNamingTheAddress) {
    const auto address = "redis://127.0.0.1:" + std::to_string(test::free_port());
    try {
        RedisJobStore journal(address, options_for("x"), {"k"});
        FAIL() << "connected to nothing";
    } catch (const JournalError& e) {
        EXPECT_THAT(e.what(), HasSubstr(address));
    }
}

TEST(RedisJobStore, APasswordComesFromItsFile) {
    test::RedisServer server;
    auto admin = RedisConnection::open(RedisAddress::parse(server.unix_address()), "", 2s);
    admin.command({"CONFIG", "SET", "requirepass", "s3cret"});
    auto options = options_for("x");
    EXPECT_THROW(RedisJobStore(server.unix_address(), options, {"k"}), JournalError);
    test::TempDir dir;
    std::ofstream(dir / "password") << "s3cret\n";
    options.password_file = dir / "password";
    EXPECT_NO_THROW(RedisJobStore(server.unix_address(), options, {"k"}));
}

TEST(RedisJobStore, ATcpAddressAndADatabaseWork) {
    test::RedisServer server{{.tcp = true}};
    RedisJobStore journal(server.tcp_address() + "/3", options_for("x"), {"k"});
    const NewJob job{"k", "p", "r"};
    journal.release(journal.commit(std::span(&job, 1)));
    EXPECT_EQ(journal.take({{"k", 1}}, 1000ms).size(), 1U);
    auto db3 = RedisConnection::open(RedisAddress::parse(server.tcp_address() + "/3"), "", 2s);
    EXPECT_EQ(db3.command({"XLEN", "t:stream:k"}).integer(), 1);
}

TEST(RedisAddress, ParsesWhatTheOptionDocuments) {
    const auto tcp = RedisAddress::parse("redis://10.0.0.5:6380/2");
    EXPECT_EQ(tcp.host, "10.0.0.5");
    EXPECT_EQ(tcp.port, 6380);
    EXPECT_EQ(tcp.db, 2);
    EXPECT_EQ(RedisAddress::parse("redis://localhost").port, 6379);
    EXPECT_EQ(RedisAddress::parse("redis://[::1]:7000").host, "::1");
    const auto unix_socket = RedisAddress::parse("unix:///run/redis/redis.sock?db=4");
    EXPECT_EQ(unix_socket.socket_path, "/run/redis/redis.sock");
    EXPECT_EQ(unix_socket.db, 4);
    for (const char* bad : {"redis://", "redis://h:0", "redis://h:99999", "redis://h:x",
                            "redis://user:pw@h:1", "unix://relative", "http://h"}) {
        EXPECT_THROW(RedisAddress::parse(bad), std::invalid_argument) << bad;
    }
}

}  // namespace
}  // namespace crosstown
