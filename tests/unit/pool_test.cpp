#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <crosstown/deferred/blocking_observer.hpp>
#include <crosstown/deferred/request_context.hpp>
#include <crosstown/deferred/pool.hpp>
#include <latch>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support/counting_observer.hpp"
#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using test::Gate;
using test::LogCapture;

DeferredCallback callback(Callback fn, std::string name = {}) {
    return DeferredCallback{std::move(fn), std::move(name), {}, {}};
}

TEST(Pool, RejectsAnEmptyConfiguration) {
    EXPECT_THROW(Pool({.workers = 0}), std::invalid_argument);
    EXPECT_THROW(Pool({.workers = 1, .queue_capacity = 0}), std::invalid_argument);
}

TEST(Pool, FailingToStartAWorkerThrowsInsteadOfHanging) {
    // A child process limited to three tasks (threads) starts two workers and fails on the third
    // (as under systemd's TasksMax); the two started must be released, not joined forever.
    // RLIMIT_NPROC binds only unprivileged users, so the child drops to nobody.
    if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to an unprivileged user";
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        alarm(10);  // a hang fails the test through SIGALRM instead of stalling the suite
        const rlimit three{3, 3};
        if (setrlimit(RLIMIT_NPROC, &three) != 0 || setuid(65534) != 0) _exit(3);
        try {
            Pool pool({.workers = 8});
        } catch (const std::system_error&) {
            _exit(0);
        }
        _exit(1);  // the threads started after all: the limit did not bind
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "child ended by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(Pool, RunsEverySubmittedJob) {
    Pool pool({.workers = 3});
    std::atomic<int> runs{0};
    for (int i = 0; i < 100; ++i) pool.submit(callback([&] { ++runs; }));
    pool.wait_idle();
    EXPECT_EQ(runs, 100);
    EXPECT_EQ(pool.counters().snapshot().completed, 100U);
    EXPECT_EQ(pool.counters().snapshot().dispatched, 100U);
}

// top -H and ps -L tell the pool's threads from the responders by name.
TEST(Pool, WorkersAreNamed) {
    Pool pool({.workers = 1});
    std::string name;
    pool.submit(callback([&] {
        char buffer[16]{};
        ::pthread_getname_np(::pthread_self(), buffer, sizeof buffer);
        name = buffer;
    }));
    pool.wait_idle();
    EXPECT_EQ(name, "ct-worker");
}

TEST(Pool, BatchStartsInSubmissionOrder) {
    Pool pool({.workers = 1});
    std::vector<int> order;
    std::vector<DeferredCallback> batch;
    for (int i = 0; i < 50; ++i) batch.push_back(callback([&order, i] { order.push_back(i); }));
    pool.submit_batch(std::move(batch));
    pool.wait_idle();
    ASSERT_EQ(order.size(), 50U);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(Pool, BatchRunsConcurrently) {
    // Four callbacks that each wait for all four to have started: only concurrent workers finish.
    Pool pool({.workers = 4});
    std::atomic<int> started{0};
    std::atomic<int> met{0};
    std::vector<DeferredCallback> batch;
    for (int i = 0; i < 4; ++i) {
        batch.push_back(callback([&] {
            ++started;
            if (test::eventually([&] { return started.load() == 4; })) ++met;
        }));
    }
    pool.submit_batch(std::move(batch));
    pool.wait_idle();
    EXPECT_EQ(met, 4);
}

TEST(Pool, BatchGoesInWhole) {
    // Two batches racing into a one-worker pool run as two unbroken runs: each batch was
    // queued under one lock, not callback by callback.
    Pool pool({.workers = 1});
    Gate hold;
    pool.submit(callback([&] { hold.wait(); }));
    std::mutex mutex;
    std::vector<char> order;
    auto make_batch = [&](char tag) {
        std::vector<DeferredCallback> batch;
        for (int i = 0; i < 200; ++i) {
            batch.push_back(callback([&, tag] {
                std::lock_guard lock(mutex);
                order.push_back(tag);
            }));
        }
        return batch;
    };
    std::jthread a([&] { pool.submit_batch(make_batch('a')); });
    std::jthread b([&] { pool.submit_batch(make_batch('b')); });
    a.join();
    b.join();
    hold.open();
    pool.wait_idle();
    ASSERT_EQ(order.size(), 400U);
    int switches = 0;
    for (std::size_t i = 1; i < order.size(); ++i) switches += order[i] != order[i - 1];
    EXPECT_EQ(switches, 1);
}

TEST(Pool, IsolatesThrowingJobs) {
    LogCapture logs;
    Pool pool({.workers = 1});
    auto outcome = std::make_shared<ResponseOutcome>(ResponseOutcome{.request_id = "req-7"});
    std::atomic<int> later{0};
    pool.submit({[] { throw std::runtime_error("phone line busy"); }, "call-1", outcome, {}});
    pool.submit({[] { throw 42; }, "call-2", outcome, {}});
    pool.submit(callback([&] { ++later; }));
    pool.wait_idle();
    EXPECT_EQ(later, 1);  // the same single worker went on
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.failed, 2U);
    EXPECT_EQ(counts.completed, 1U);
    EXPECT_TRUE(logs.contains("call-1 of request req-7 failed: phone line busy"));
    EXPECT_TRUE(logs.contains("call-2 of request req-7 failed: non-standard exception"));
}

TEST(Pool, LogsASlowCallbackOnceWithItsNameAndRequestId) {
    LogCapture logs;
    Pool pool({.workers = 2, .slow_callback = 100ms});
    auto outcome = std::make_shared<ResponseOutcome>(ResponseOutcome{.request_id = "req-9"});
    pool.submit({[] { std::this_thread::sleep_for(300ms); }, "place-call", outcome, {}});
    pool.submit({[] {}, "quick", outcome, {}});
    pool.wait_idle();
    EXPECT_EQ(pool.slow_callbacks(), 1U);
    int slow_lines = 0;
    const std::regex slow(R"(slow deferred callback place-call of request req-9: ran (\d+) ms)");
    for (const auto& line : logs.lines()) {
        if (line.find("slow deferred callback") == std::string::npos) continue;
        ++slow_lines;
        std::smatch ran;
        ASSERT_TRUE(std::regex_search(line, ran, slow)) << line;
        EXPECT_GE(std::stoi(ran[1]), 300) << line;
    }
    EXPECT_EQ(slow_lines, 1);
}

TEST(Pool, KeepsTheSlowestAndTheFailedByName) {
    Pool pool({.workers = 1});
    auto outcome = std::make_shared<ResponseOutcome>(ResponseOutcome{.request_id = "req-3"});
    pool.submit({[] { std::this_thread::sleep_for(20ms); }, "slow-one", outcome, {}});
    pool.submit({[] { throw std::runtime_error("line busy"); }, "sms-1", outcome, {}});
    pool.wait_idle();
    const auto notable = pool.notable_callbacks();
    ASSERT_FALSE(notable.slowest.empty());
    EXPECT_EQ(notable.slowest.front().name, "slow-one");
    EXPECT_EQ(notable.slowest.front().request_id, "req-3");
    ASSERT_EQ(notable.recent_failures.size(), 1U);
    EXPECT_EQ(notable.recent_failures.front().name, "sms-1");
    EXPECT_EQ(notable.recent_failures.front().error, "line busy");
}

TEST(Pool, ReportsItsQueueDepthAndBusyWorkers) {
    Pool pool({.workers = 1, .queue_capacity = 4});
    Gate gate;
    pool.submit(callback([&] { gate.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    pool.submit(callback([] {}));
    pool.submit(callback([] {}));
    EXPECT_EQ(pool.queue_depth(), 2U);
    gate.open();
    pool.wait_idle();
    EXPECT_EQ(pool.queue_depth(), 0U);
    EXPECT_EQ(pool.busy_workers(), 0U);
}

TEST(Pool, StartsItsMinimumAndGrowsOnDemandUpToItsMaximum) {
    Pool pool({.workers = 6, .min_workers = 2});
    EXPECT_EQ(pool.live_workers(), 2U);
    Gate gate;
    for (int i = 0; i < 8; ++i) pool.submit(callback([&] { gate.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 6; }));
    EXPECT_EQ(pool.live_workers(), 6U);
    EXPECT_EQ(pool.queue_depth(), 2U) << "never past the maximum";
    gate.open();
    pool.wait_idle();
    EXPECT_EQ(pool.counters().snapshot().completed, 8U);
}

TEST(Pool, IdleWorkersAboveTheMinimumRetire) {
    Pool pool({.workers = 8, .min_workers = 1, .idle_timeout = 50ms});
    Gate gate;
    for (int i = 0; i < 8; ++i) pool.submit(callback([&] { gate.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.live_workers() == 8; }));
    gate.open();
    pool.wait_idle();
    ASSERT_TRUE(test::eventually([&] { return pool.live_workers() == 1; }));
    // And it grows again.
    Gate again;
    for (int i = 0; i < 3; ++i) pool.submit(callback([&] { again.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 3; }));
    again.open();
    pool.wait_idle();
}

TEST(Pool, AFixedPoolStartsEveryWorkerUpFrontAndKeepsThem) {
    Pool pool({.workers = 3, .min_workers = 3, .idle_timeout = 1ms});
    EXPECT_EQ(pool.live_workers(), 3U);
    pool.submit(callback([] {}));
    pool.wait_idle();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(pool.live_workers(), 3U);
}

TEST(Pool, ABurstOfSlowCallbacksRunsAllAtOnce) {
    Pool pool({.workers = 128, .min_workers = 4});
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    Gate gate;
    for (int i = 0; i < 100; ++i) {
        pool.submit(callback([&] {
            const int now = ++running;
            int seen = most.load();
            while (now > seen && !most.compare_exchange_weak(seen, now)) {
            }
            gate.wait();
            --running;
        }));
    }
    EXPECT_TRUE(test::eventually([&] { return most.load() == 100; })) << most.load();
    gate.open();
    pool.wait_idle();
}

using test::CountingObserver;

TEST(Pool, WaitForRoomReturnsAtOnceWhileTheQueueHasRoom) {
    Pool pool({.workers = 1, .queue_capacity = 2});
    CountingObserver observer;
    detail::request_context().observer = &observer;
    pool.wait_for_room();
    detail::request_context().observer = nullptr;
    EXPECT_EQ(observer.blocked, 0);
}

TEST(Pool, WaitForRoomWaitsWhileTheQueueIsFullAndTellsTheObserver) {
    Pool pool({.workers = 1, .queue_capacity = 1});
    Gate gate;
    pool.submit(callback([&] { gate.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    pool.submit(callback([] {}));  // full
    CountingObserver observer;
    std::atomic<bool> returned{false};
    std::jthread handler([&] {
        detail::request_context().observer = &observer;
        pool.wait_for_room();
        returned = true;
    });
    ASSERT_TRUE(test::eventually([&] { return observer.blocked == 1; }));
    EXPECT_FALSE(returned);
    gate.open();  // the worker takes the queued callback: room
    ASSERT_TRUE(test::eventually([&] { return returned.load(); }));
    EXPECT_EQ(observer.unblocked_count, 1);
    pool.wait_idle();
}

// A reserved slot is room nobody else takes: reserve_room() waits in the line like
// wait_for_room() while none is free, the batch that brings the reserved callbacks goes in
// ahead of the line, and a slot given back goes to the first in line.
TEST(Pool, ReservedRoomIsKeptForItsBatchAndGivenBackToTheLine) {
    Pool pool({.workers = 1, .queue_capacity = 2});
    Gate gate;
    pool.submit(callback([&] { gate.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    ASSERT_TRUE(pool.reserve_room());
    ASSERT_TRUE(pool.reserve_room());
    EXPECT_EQ(pool.reserved_room(), 2U);
    EXPECT_FALSE(pool.has_room_for(1));
    CountingObserver observer;
    std::atomic<bool> third{false};
    std::jthread waiter([&] {
        detail::request_context().observer = &observer;
        EXPECT_TRUE(pool.reserve_room());
        third = true;
    });
    ASSERT_TRUE(test::eventually([&] { return observer.blocked == 1; }));
    std::atomic<int> runs{0};
    std::vector<DeferredCallback> batch;
    batch.push_back(callback([&] { ++runs; }));
    pool.submit_batch(std::move(batch), 2);  // one slot used, one left over: given back
    ASSERT_TRUE(test::eventually([&] { return third.load(); })) << "the slot left over";
    EXPECT_EQ(pool.queue_depth(), 1U);
    EXPECT_FALSE(pool.has_room_for(1)) << "the waiter keeps the slot it was given";
    pool.give_back_room(1);
    EXPECT_TRUE(pool.has_room_for(1));
    gate.open();
    pool.wait_idle();
    EXPECT_EQ(runs, 1);
    pool.drain(Pool::kNoTimeout);
    EXPECT_FALSE(pool.reserve_room()) << "after drain nothing is kept";
}

TEST(Pool, BlockOverflowMakesTheSubmitterWait) {
    Pool pool({.workers = 1, .queue_capacity = 2, .overflow = Overflow::block});
    Gate hold;
    std::atomic<int> runs{0};
    pool.submit(callback([&] { hold.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    pool.submit(callback([&] { ++runs; }));
    pool.submit(callback([&] { ++runs; }));  // the queue is now full
    std::atomic<bool> returned{false};
    std::jthread submitter([&] {
        pool.submit(callback([&] { ++runs; }));
        returned = true;
    });
    // Margin: 100 ms is ample for a non-blocking submit to return; a blocked one cannot.
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(returned);
    hold.open();
    submitter.join();
    pool.wait_idle();
    EXPECT_EQ(runs, 3);
    EXPECT_EQ(pool.counters().snapshot().rejected, 0U);
}

// Under Overflow::block, room goes to submitters in the order they started waiting, and a
// newcomer queues behind them even when it arrives just as room appears: under saturation no
// request is overtaken again and again.
TEST(Pool, BlockedSubmittersGetRoomInArrivalOrder) {
    Pool pool({.workers = 1, .queue_capacity = 1, .overflow = Overflow::block});
    Gate hold;
    std::mutex mutex;
    std::vector<int> order;
    const auto record = [&](int who) {
        return callback([&, who] {
            std::lock_guard lock(mutex);
            order.push_back(who);
        });
    };
    pool.submit(callback([&] { hold.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    pool.submit(record(-1));  // the queue is now full
    std::vector<std::jthread> waiting;
    for (int who = 0; who < 6; ++who) {
        waiting.emplace_back([&, who] { pool.submit(record(who)); });
        std::this_thread::sleep_for(20ms);  // so that they arrive one after another
    }
    hold.open();
    pool.submit(record(99));  // arrives as the first room appears
    waiting.clear();          // joins
    pool.wait_idle();
    EXPECT_EQ(order, (std::vector<int>{-1, 0, 1, 2, 3, 4, 5, 99}));
}

TEST(Pool, CallerRunsOverflowRunsOnTheSubmitter) {
    Pool pool({.workers = 1, .queue_capacity = 1, .overflow = Overflow::caller_runs});
    Gate hold;
    pool.submit(callback([&] { hold.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    std::thread::id queued_on;
    std::thread::id overflow_on;
    pool.submit(callback([&] { queued_on = std::this_thread::get_id(); }));
    pool.submit(callback([&] { overflow_on = std::this_thread::get_id(); }));
    EXPECT_EQ(overflow_on, std::this_thread::get_id());  // ran before submit returned
    hold.open();
    pool.wait_idle();
    EXPECT_NE(queued_on, std::this_thread::get_id());
    EXPECT_EQ(pool.counters().snapshot().completed, 3U);
}

TEST(Pool, RejectOverflowDropsCountsAndNamesThem) {
    LogCapture logs;
    Pool pool({.workers = 1, .queue_capacity = 1, .overflow = Overflow::reject});
    Gate hold;
    std::atomic<int> runs{0};
    pool.submit(callback([&] { hold.wait(); }));
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    std::vector<DeferredCallback> batch;
    batch.push_back(callback([&] { ++runs; }, "kept"));
    batch.push_back(callback([&] { ++runs; }, "sms-1"));
    batch.push_back(callback([&] { ++runs; }, "sms-2"));
    pool.submit_batch(std::move(batch));
    hold.open();
    pool.wait_idle();
    EXPECT_EQ(runs, 1);
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.rejected, 2U);
    EXPECT_EQ(counts.dispatched, 4U);
    EXPECT_TRUE(logs.contains("sms-1 of request - not run: queue full"));
    EXPECT_TRUE(logs.contains("sms-2 of request - not run: queue full"));
    EXPECT_FALSE(logs.contains("kept"));
}

TEST(Pool, OwnWorkerDoesNotDeadlockOnAFullBlockingQueue) {
    Pool pool({.workers = 1, .queue_capacity = 1, .overflow = Overflow::block});
    std::atomic<int> runs{0};
    pool.submit(callback([&] {
        for (int i = 0; i < 5; ++i) pool.submit(callback([&] { ++runs; }));
    }));
    pool.wait_idle();
    EXPECT_EQ(runs, 5);
}

TEST(Pool, DrainRunsEverythingQueuedWithinTheDeadline) {
    Pool pool({.workers = 2});
    std::atomic<int> runs{0};
    for (int i = 0; i < 40; ++i) {
        pool.submit(callback([&] {
            std::this_thread::sleep_for(2ms);
            ++runs;
        }));
    }
    const auto report = pool.drain(10s);
    EXPECT_TRUE(report.finished_in_time);
    EXPECT_EQ(report.abandoned_queued, 0U);
    EXPECT_EQ(runs, 40);
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.completed, 40U);
    EXPECT_TRUE(counts.nothing_lost());
}

TEST(Pool, DeadlineRequestsStopAndAbandonsWhatNeverStarted) {
    LogCapture logs;
    Pool pool({.workers = 1});
    std::atomic<bool> saw_stop{false};
    std::atomic<bool> started{false};
    pool.submit(callback(
        [&](std::stop_token stop) {
            started = true;
            saw_stop = test::eventually([&] { return stop.stop_requested(); });
        },
        "long-export"));
    pool.submit(callback([] {}, "never-started"));
    ASSERT_TRUE(test::eventually([&] { return started.load(); }));
    const auto report = pool.drain(50ms);
    EXPECT_FALSE(report.finished_in_time);
    EXPECT_EQ(report.abandoned_queued, 1U);
    EXPECT_EQ(report.stuck, 0U);
    EXPECT_TRUE(saw_stop);
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.completed, 1U);  // it returned once told to stop
    EXPECT_EQ(counts.abandoned, 1U);
    EXPECT_EQ(counts.dispatched,
              counts.completed + counts.failed + counts.rejected + counts.abandoned);
    EXPECT_TRUE(logs.contains("never-started of request - not run: abandoned"));
}

TEST(Pool, JobIgnoringItsStopTokenIsReportedStuckAndCountedOnce) {
    LogCapture logs;
    Gate release;
    auto pool = std::make_unique<Pool>(PoolConfig{.workers = 1});
    std::atomic<bool> started{false};
    pool->submit(callback([&] {
        started = true;
        release.wait();
    }));
    ASSERT_TRUE(test::eventually([&] { return started.load(); }));
    const auto report = pool->drain(10ms, 50ms);
    EXPECT_EQ(report.stuck, 1U);
    EXPECT_TRUE(logs.contains("1 deferred callbacks still running"));
    release.open();
    pool->wait_idle();
    const auto counts = pool->counters().snapshot();
    EXPECT_EQ(counts.abandoned, 1U);
    EXPECT_EQ(counts.completed, 0U);  // finishing late does not count it twice
    pool.reset();                     // joins the worker now that it returned
}

TEST(Pool, SubmitAfterDrainIsAbandonedNotLost) {
    LogCapture logs;
    Pool pool({.workers = 1});
    pool.drain(1s);
    bool ran = false;
    pool.submit(callback([&] { ran = true; }, "late"));
    EXPECT_FALSE(ran);
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.dispatched, 1U);
    EXPECT_EQ(counts.abandoned, 1U);
    EXPECT_TRUE(logs.contains("late of request - not run: submitted after the pool was drained"));
}

TEST(Pool, DestructorRunsWhatIsQueued) {
    std::atomic<int> runs{0};
    {
        Pool pool({.workers = 1});
        for (int i = 0; i < 20; ++i) pool.submit(callback([&] { ++runs; }));
    }
    EXPECT_EQ(runs, 20);
}

TEST(Pool, RunInlineIsIsolatedAndCounted) {
    LogCapture logs;
    Pool pool({.workers = 1});
    pool.run_inline(callback([] { throw std::logic_error("bad"); }, "inline"));
    std::thread::id ran_on;
    pool.run_inline(callback([&] { ran_on = std::this_thread::get_id(); }));
    EXPECT_EQ(ran_on, std::this_thread::get_id());
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.dispatched, 2U);
    EXPECT_EQ(counts.failed, 1U);
    EXPECT_EQ(counts.completed, 1U);
}

TEST(Pool, JobSeesItsRequestOutcomeAndKeepsItAlive) {
    Pool pool({.workers = 2});
    auto data = std::make_shared<std::string>("request body");
    std::weak_ptr<std::string> weak = data;
    auto outcome = std::make_shared<ResponseOutcome>(ResponseOutcome{
        .request_id = "r1", .status = 200, .delivered = false, .keep_alive = std::move(data)});
    std::atomic<bool> delivered{true};
    std::atomic<bool> alive{false};
    pool.submit({[&] {
                     delivered = response_delivered();
                     alive = !weak.expired();
                 },
                 "",
                 std::move(outcome),
                 {}});
    pool.wait_idle();
    EXPECT_FALSE(delivered);
    EXPECT_TRUE(alive);
    EXPECT_TRUE(test::eventually([&] { return weak.expired(); }));
    EXPECT_TRUE(response_delivered());  // no request behind the test thread
}

TEST(Pool, RecordsQueueWaitAndRunTime) {
    Pool pool({.workers = 1});
    for (int i = 0; i < 10; ++i) pool.submit(callback([] {}));
    pool.wait_idle();
    EXPECT_EQ(pool.queue_wait().count, 10U);
    EXPECT_EQ(pool.run_time().count, 10U);
}

}  // namespace
}  // namespace crosstown
