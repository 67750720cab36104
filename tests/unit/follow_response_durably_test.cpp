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
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/process_pool.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
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

// follow_response_durably: where a registration lands.
class FollowResponseDurably : public ::testing::Test {
  protected:
    void SetUp() override {
        kinds_.define("email", {}, [this](const Job& job, std::stop_token) {
            std::lock_guard lock(mutex_);
            ran_.push_back(job);
        });
    }
    void TearDown() override {
        set_process_job_runner(nullptr);
        set_process_pool(nullptr);
    }
    std::vector<Job> ran() {
        std::lock_guard lock(mutex_);
        return ran_;
    }

    JobKinds kinds_;
    std::mutex mutex_;
    std::vector<Job> ran_;  // guarded by mutex_
};

TEST_F(FollowResponseDurably, InsideARequestItJoinsTheRequestsBatch) {
    JobBatch batch(&kinds_, 10);
    EXPECT_EQ(current_job_batch(), nullptr);
    {
        JobBatchScope scope(&batch);
        EXPECT_EQ(current_job_batch(), &batch);
        follow_response_durably("email", "{\"to\":\"ada\"}", {.run_on = "2xx"});
        follow_response_durably("email", "second", {.skip_if_undelivered = true});
    }
    EXPECT_EQ(current_job_batch(), nullptr);
    ASSERT_EQ(batch.jobs().size(), 2U);
    EXPECT_EQ(batch.jobs()[0].kind, "email");
    EXPECT_EQ(batch.jobs()[0].payload, "{\"to\":\"ada\"}");
    EXPECT_TRUE(batch.jobs()[0].options.run_on.allows(204));
    EXPECT_FALSE(batch.jobs()[0].options.run_on.allows(302));
    EXPECT_TRUE(batch.jobs()[1].options.skip_if_undelivered);
    EXPECT_TRUE(ran().empty());
}

TEST_F(FollowResponseDurably, ScopesNestAndRestoreTheOuterBatch) {
    JobBatch outer(&kinds_, 10);
    JobBatch inner(&kinds_, 10);
    JobBatchScope outer_scope(&outer);
    {
        JobBatchScope inner_scope(&inner);
        follow_response_durably("email", "inner");
    }
    follow_response_durably("email", "outer");
    ASSERT_EQ(inner.jobs().size(), 1U);
    EXPECT_EQ(inner.jobs()[0].payload, "inner");
    ASSERT_EQ(outer.jobs().size(), 1U);
    EXPECT_EQ(outer.jobs()[0].payload, "outer");
}

TEST_F(FollowResponseDurably, AnUnknownKindThrowsInTheHandler) {
    JobBatch batch(&kinds_, 10);
    JobBatchScope scope(&batch);
    try {
        follow_response_durably("emial", "typo");
        FAIL() << "no UnknownJobKind";
    } catch (const UnknownJobKind& e) {
        EXPECT_THAT(e.what(), HasSubstr("'emial'"));
    }
    EXPECT_TRUE(batch.empty());
}

TEST_F(FollowResponseDurably, WithTheJournalOffItThrowsDurableJobsOff) {
    JobBatch batch(nullptr, 10);
    JobBatchScope scope(&batch);
    try {
        follow_response_durably("email", "x");
        FAIL() << "no DurableJobsOff";
    } catch (const DurableJobsOff& e) {
        EXPECT_THAT(e.what(), HasSubstr("--journal off"));
    }
    EXPECT_TRUE(batch.empty());
}

TEST_F(FollowResponseDurably, PastTheRequestsCapItThrows) {
    JobBatch batch(&kinds_, 2);
    JobBatchScope scope(&batch);
    follow_response_durably("email", "1");
    follow_response_durably("email", "2");
    EXPECT_THROW(follow_response_durably("email", "3"), DeferredLimitExceeded);
    EXPECT_EQ(batch.jobs().size(), 2U);
}

TEST_F(FollowResponseDurably, TakeGatedKeepsWhatTheStatusLetsThroughAndEmptiesTheBatch) {
    JobBatch batch(&kinds_, 10);
    batch.add("email", "default", {});
    batch.add("email", "always", {.run_on = always});
    const auto gated = batch.take_gated(503);
    ASSERT_EQ(gated.size(), 1U);
    EXPECT_EQ(gated[0].payload, "always");
    EXPECT_TRUE(batch.empty());
    // unchecked: any kind, for captures.
    auto unchecked = JobBatch::unchecked(10);
    unchecked.add("anything", "x", {});
    EXPECT_EQ(unchecked.take().size(), 1U);
    EXPECT_TRUE(unchecked.empty());
}

TEST_F(FollowResponseDurably, OutsideARequestWithNoServerItThrowsNoCurrentRequest) {
    ASSERT_EQ(process_job_runner(), nullptr);
    EXPECT_THROW(follow_response_durably("email", "x"), NoCurrentRequest);
}

TEST_F(FollowResponseDurably, OutsideARequestTheServersRunnerCommitsAndRunsItNow) {
    test::TempDir dir;
    Harness h(kinds_, dir / "jobs.db");
    set_process_job_runner(&h.runner);
    // Committed with no request id: an empty string_view must be stored as "", not NULL.
    ASSERT_NO_THROW(follow_response_durably("email", "from a cron thread"));
    EXPECT_THROW(follow_response_durably("nope", "x"), UnknownJobKind);
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 1; }));
    const auto jobs = ran();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].payload, "from a cron thread");
    EXPECT_EQ(jobs[0].attempt, 1U);
    EXPECT_EQ(jobs[0].request_id, "");
    EXPECT_GT(jobs[0].id, 0);
    EXPECT_EQ(h.runner.totals().enqueued, 1U);
    EXPECT_TRUE(h.journal().empty());
    // Its unique key holds outside a request too.
    follow_response_durably("email", "nightly", {.unique_key = "2026-12-07"});
    follow_response_durably("email", "nightly again", {.unique_key = "2026-12-07"});
    ASSERT_TRUE(test::eventually([&] { return h.runner.totals().succeeded == 2; }));
    EXPECT_EQ(h.runner.totals().deduplicated, 1U);
    EXPECT_EQ(ran().size(), 2U);
    set_process_job_runner(nullptr);
}

TEST_F(FollowResponseDurably, UnderSpillRegisteringNeverWaitsForRoomInThePool) {
    Pool pool({.workers = 1, .min_workers = 1, .queue_capacity = 1, .overflow = Overflow::spill});
    test::Gate release;
    std::atomic<bool> holding{false};
    std::atomic<bool> held_done{false};
    pool.submit(DeferredCallback{[&] {
                                     holding = true;
                                     release.wait();
                                     held_done = true;
                                 },
                                 "holder",
                                 {},
                                 {}});
    ASSERT_TRUE(test::eventually([&] { return holding.load(); }));
    pool.submit(DeferredCallback{[] {}, "filler", {}, {}});
    ASSERT_FALSE(pool.has_room_for(1));
    set_process_pool(&pool);
    JobBatch batch(&kinds_, 10);
    {
        JobBatchScope scope(&batch);
        follow_response_durably("email", "x");
    }
    EXPECT_FALSE(held_done);  // it returned while the pool was still full
    EXPECT_EQ(batch.jobs().size(), 1U);
    set_process_pool(nullptr);
    release.open();
    pool.wait_idle();
}

// Under block a request that has reserved room for its in-memory callbacks does not wait again for
// a durable job: the room it would wait for includes its own, so it could wait forever.
TEST_F(FollowResponseDurably, UnderBlockARequestKeepingRoomDoesNotWaitForItself) {
    Pool pool({.workers = 1, .min_workers = 1, .queue_capacity = 1, .overflow = Overflow::block});
    set_process_pool(&pool);
    JobBatch batch(&kinds_, 10);
    DeferredRegistry registry(10);
    std::atomic<bool> registered{false};
    std::jthread handler([&] {
        RequestScope requests(registry);
        JobBatchScope jobs(&batch);
        follow_response([] {});  // keeps the queue's only slot
        follow_response_durably("email", "x");
        registered = true;
    });
    const bool returned = test::eventually([&] { return registered.load(); }, 2s);
    if (!returned) pool.drain(Pool::Duration::zero());  // lets the handler go, to fail cleanly
    ASSERT_TRUE(returned) << "the durable registration waited for the request's own room";
    handler.join();
    EXPECT_EQ(registry.admission().kept(), 1U);
    EXPECT_EQ(batch.jobs().size(), 1U);
    registry.dispatch(pool, {.request_id = "r", .status = 200});
    pool.wait_idle();
    set_process_pool(nullptr);
}

TEST_F(FollowResponseDurably, ACaptureDeferredCapturesJobsOutsideARequest) {
    testing::CaptureDeferred captured;
    follow_response_durably("email", "captured", {.run_on = "2xx"});
    std::jthread([] { follow_response_durably("unknown-here", "from another thread"); }).join();
    const auto jobs = captured.jobs();
    ASSERT_EQ(jobs.size(), 2U);
    EXPECT_EQ(jobs[0].kind, "email");
    EXPECT_EQ(jobs[0].payload, "captured");
    EXPECT_EQ(jobs[0].response_status, std::nullopt);
    EXPECT_FALSE(jobs[0].will_run());  // no response behind it
    EXPECT_EQ(jobs[1].kind, "unknown-here");
    EXPECT_TRUE(ran().empty());

    const auto report = captured.run_jobs(kinds_, 200);
    EXPECT_EQ(report.ran, 2U);
    EXPECT_EQ(report.failed, 1U);
    ASSERT_EQ(report.errors.size(), 1U);
    EXPECT_THAT(report.errors[0], HasSubstr("'unknown-here'"));
    ASSERT_EQ(ran().size(), 1U);
    EXPECT_EQ(ran()[0].payload, "captured");
    EXPECT_EQ(ran()[0].attempt, 1U);
    EXPECT_TRUE(captured.jobs().empty());  // the run empties them
}

TEST_F(FollowResponseDurably, ACapturedRunIsGatedOnTheStatusGiven) {
    testing::CaptureDeferred captured;
    follow_response_durably("email", "2xx only", {.run_on = "2xx"});
    follow_response_durably("email", "always", {.run_on = always});
    const auto report = captured.run_jobs(kinds_, 500);
    EXPECT_EQ(report.ran, 1U);
    EXPECT_EQ(report.skipped, 1U);
    ASSERT_EQ(ran().size(), 1U);
    EXPECT_EQ(ran()[0].payload, "always");
}

TEST_F(FollowResponseDurably, ARequestsBatchWinsOverALiveCapture) {
    testing::CaptureDeferred captured;
    JobBatch batch(&kinds_, 10);
    {
        JobBatchScope scope(&batch);
        follow_response_durably("email", "in the request");
    }
    EXPECT_EQ(batch.jobs().size(), 1U);
    EXPECT_TRUE(captured.jobs().empty());
    captured.clear();
}

TEST_F(FollowResponseDurably, ClearDropsCapturedJobs) {
    testing::CaptureDeferred captured;
    follow_response_durably("email", "x");
    captured.clear();
    EXPECT_TRUE(captured.jobs().empty());
    EXPECT_EQ(captured.run_jobs(kinds_).ran, 0U);
}

class TestClientDurableJobs : public FollowResponseDurably {
  protected:
    TestClientDurableJobs() {
        router_.post("/calls", [](Request& req, Response& res) {
            follow_response_durably("email", "free function");
            req.follow_response_durably("email", "request method", {.run_on = always});
            res.status(201).text("queued\n");
        });
        router_.get("/forbidden", [](Request& req, Response& res) {
            req.follow_response_durably("email", "default gate");
            req.follow_response_durably("email", "always", {.run_on = always});
            res.status(403).text("no\n");
        });
        router_.get("/typo", [](Request& req, Response& res) {
            req.follow_response_durably("emial", "x");
            res.text("unreachable\n");
        });
        router_.post("/big", [](Request& req, Response& res) {
            req.follow_response_durably("email", "small");
            req.follow_response_durably("email", std::string(req.body()));
            res.status(201).text("queued\n");
        });
        router_.post("/big-caught", [](Request& req, Response& res) {
            try {
                req.follow_response_durably("email", std::string(req.body()));
            } catch (const JobPayloadTooLarge&) {
                res.status(202).text("too large to keep; dropped\n");
                return;
            }
            res.status(201).text("queued\n");
        });
    }
    Router router_;
};

TEST_F(TestClientDurableJobs, CapturesDurableJobsWithTheirResponsesStatus) {
    testing::TestClient client(router_);
    const auto res = client.post("/calls");
    EXPECT_EQ(res.status, 201);
    const auto& jobs = client.durable_jobs();
    ASSERT_EQ(jobs.size(), 2U);
    EXPECT_EQ(jobs[0].kind, "email");
    EXPECT_EQ(jobs[0].payload, "free function");
    EXPECT_EQ(jobs[1].payload, "request method");
    for (const auto& job : jobs) {
        EXPECT_EQ(job.response_status, 201);
        EXPECT_EQ(job.request_id, res.request_id);
        EXPECT_TRUE(job.will_run());
    }
    EXPECT_TRUE(ran().empty());  // captured, not run
}

// The request's Idempotency-Key keys each of its durable jobs by kind and place, unless a job
// has its own key; without the header, or with the option off, no key.
TEST_F(TestClientDurableJobs, AnIdempotencyKeyHeaderKeysTheRequestsJobs) {
    router_.post("/orders", [](Request& req, Response& res) {
        req.follow_response_durably("email", "a");
        req.follow_response_durably("email", "b");
        req.follow_response_durably("email", "c", {.unique_key = "own"});
        res.status(201).text("ok\n");
    });
    testing::TestClient client(router_);
    client.post("/orders", {}, {{"Idempotency-Key", "8e03978e"}});
    client.post("/orders");
    testing::TestClient other(router_, {.idempotency_header = "X-Retry"});
    other.post("/orders", {}, {{"X-Retry", "r1"}, {"Idempotency-Key", "ignored"}});
    testing::TestClient off(router_, {.idempotency_header = ""});
    off.post("/orders", {}, {{"Idempotency-Key", "8e03978e"}});
    const auto keys = [](const testing::TestClient& c) {
        std::vector<std::string> keys;
        for (const auto& job : c.durable_jobs()) keys.push_back(job.options.unique_key);
        return keys;
    };
    EXPECT_EQ(keys(client), (std::vector<std::string>{"8e03978e/email/0", "8e03978e/email/1", "own",
                                                      "", "", "own"}));
    EXPECT_EQ(keys(other), (std::vector<std::string>{"r1/email/0", "r1/email/1", "own"}));
    EXPECT_EQ(keys(off), (std::vector<std::string>{"", "", "own"}));
}

TEST_F(TestClientDurableJobs, RunDurableJobsRunsThoseWhoseGatePassedTheirResponse) {
    testing::TestClient client(router_);
    const auto created = client.post("/calls");
    const auto forbidden = client.get("/forbidden");
    EXPECT_EQ(forbidden.status, 403);
    ASSERT_EQ(client.durable_jobs().size(), 4U);
    EXPECT_FALSE(client.durable_jobs()[2].will_run());
    EXPECT_TRUE(client.durable_jobs()[3].will_run());

    const auto report = client.run_durable_jobs(kinds_);
    EXPECT_EQ(report.ran, 3U);
    EXPECT_EQ(report.skipped, 1U);
    EXPECT_EQ(report.failed, 0U);
    EXPECT_TRUE(client.durable_jobs().empty());
    const auto jobs = ran();
    ASSERT_EQ(jobs.size(), 3U);
    EXPECT_EQ(jobs[0].payload, "free function");
    EXPECT_EQ(jobs[0].request_id, created.request_id);
    EXPECT_EQ(jobs[2].payload, "always");
    EXPECT_EQ(jobs[2].request_id, forbidden.request_id);
    for (const auto& job : jobs) EXPECT_EQ(job.attempt, 1U);
}

TEST_F(TestClientDurableJobs, WithoutKindsEveryJobIsCaptured) {
    testing::TestClient client(router_);
    EXPECT_EQ(client.get("/typo").status, 200);
    ASSERT_EQ(client.durable_jobs().size(), 1U);
    EXPECT_EQ(client.durable_jobs()[0].kind, "emial");
    // And running it through the kinds reports the kind as a failure.
    const auto report = client.run_durable_jobs(kinds_);
    EXPECT_EQ(report.failed, 1U);
    ASSERT_EQ(report.errors.size(), 1U);
    EXPECT_THAT(report.errors[0], HasSubstr("'emial'"));
}

TEST_F(TestClientDurableJobs, WithKindsAnUnknownKindIsA500AsInProduction) {
    test::LogCapture logs;
    testing::TestClient client(router_, {.job_kinds = &kinds_});
    const auto res = client.get("/typo");
    EXPECT_EQ(res.status, 500);
    EXPECT_TRUE(client.durable_jobs().empty());
    EXPECT_TRUE(logs.contains("emial"));
    // Known kinds are captured as before.
    EXPECT_EQ(client.post("/calls").status, 201);
    EXPECT_EQ(client.durable_jobs().size(), 2U);
}

// A payload over --max-job-payload is refused at registration: uncaught, a 413 naming the
// kind and the limit, and none of the request's jobs kept; a handler may catch it instead.
TEST_F(TestClientDurableJobs, APayloadOverTheLimitIsA413UnlessTheHandlerCatchesIt) {
    RequestLimits limits;
    limits.max_job_payload = 16;
    testing::TestClient at_limit(router_, {.limits = limits, .job_kinds = &kinds_});
    EXPECT_EQ(at_limit.post("/big", std::string(16, 'x')).status, 201);
    EXPECT_EQ(at_limit.durable_jobs().size(), 2U);

    testing::TestClient over(router_, {.limits = limits, .job_kinds = &kinds_});
    const auto refused = over.post("/big", std::string(17, 'x'));
    EXPECT_EQ(refused.status, 413);
    EXPECT_THAT(refused.body, HasSubstr("'email'"));
    EXPECT_THAT(refused.body, HasSubstr("--max-job-payload"));
    for (const auto& job : over.durable_jobs()) {
        EXPECT_FALSE(job.will_run()) << "a job of a refused request would run: " << job.payload;
    }
    const auto caught = over.post("/big-caught", std::string(17, 'x'));
    EXPECT_EQ(caught.status, 202);
}

}  // namespace
}  // namespace crosstown
