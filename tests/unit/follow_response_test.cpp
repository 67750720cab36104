#include <gtest/gtest.h>

#include <atomic>
#include <crosstown/deferred/blocking_observer.hpp>
#include <crosstown/deferred/request_context.hpp>
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/deferred/process_pool.hpp>
#include <crosstown/http/request_limits.hpp>
#include <stdexcept>
#include <thread>

#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

// The per-request cap on callbacks, at the server's default.
constexpr std::size_t kCap = RequestLimits{}.max_deferred_per_request;

using namespace std::chrono_literals;

// Each test starts from the defaults and leaves them as it found them.
class FollowResponse : public ::testing::Test {
  protected:
    void TearDown() override {
        set_outside_request_policy(OutsideRequest::run_now);
        set_process_pool(nullptr);
    }
};

ResponseOutcome ok() { return {.request_id = "r", .status = 200}; }

TEST_F(FollowResponse, InsideARequestItJoinsTheRequestInsteadOfRunning) {
    DeferredRegistry registry(kCap);
    std::atomic<int> runs{0};
    {
        RequestScope scope(registry);
        follow_response([&] { ++runs; });
        follow_response({.name = "audit", .same_thread = true}, [&] { ++runs; });
    }
    EXPECT_EQ(runs, 0);
    ASSERT_EQ(registry.callbacks().size(), 2U);
    EXPECT_EQ(registry.callbacks()[1].options.name, "audit");
    EXPECT_TRUE(registry.callbacks()[1].options.same_thread);
    Pool pool({.workers = 1});
    registry.dispatch(pool, ok());
    pool.wait_idle();
    EXPECT_EQ(runs, 2);
}

TEST_F(FollowResponse, AcceptsCallbacksThatTakeAStopToken) {
    DeferredRegistry registry(kCap);
    RequestScope scope(registry);
    follow_response([](std::stop_token) {});
    follow_response({.name = "s"}, [](std::stop_token) {});
    EXPECT_EQ(registry.callbacks().size(), 2U);
}

TEST_F(FollowResponse, ForgetReachesTheCurrentRequest) {
    DeferredRegistry registry(kCap);
    RequestScope scope(registry);
    follow_response({.name = "welcome-email"}, [] {});
    EXPECT_TRUE(forget("welcome-email"));
    EXPECT_TRUE(registry.callbacks().empty());
    EXPECT_EQ(registry.forgotten(), 1U);
}

TEST_F(FollowResponse, ForgetOutsideARequestFindsNothing) { EXPECT_FALSE(forget("anything")); }

TEST_F(FollowResponse, BadFilterThrowsInTheHandlerAndRegistersNothing) {
    DeferredRegistry registry(kCap);
    RequestScope scope(registry);
    EXPECT_THROW(follow_response({.run_on = "9xx"}, [] {}), std::invalid_argument);
    EXPECT_TRUE(registry.callbacks().empty());
}

TEST_F(FollowResponse, CapThrowsInTheHandler) {
    DeferredRegistry registry(2);
    RequestScope scope(registry);
    follow_response([] {});
    follow_response([] {});
    EXPECT_THROW(follow_response([] {}), DeferredLimitExceeded);
}

// A pool of one worker held by `gate`, with `queued` callbacks waiting behind it.
void occupy(Pool& pool, test::Gate& gate, std::size_t queued) {
    pool.submit({[&gate] { gate.wait(); }, "held", nullptr, {}});
    ASSERT_TRUE(test::eventually([&] { return pool.busy_workers() == 1; }));
    for (std::size_t i = 0; i < queued; ++i) pool.submit({[] {}, "queued", nullptr, {}});
}

TEST_F(FollowResponse, ShedThrowsOverloadedWhenTheQueueHasNoRoom) {
    Pool pool({.workers = 1, .queue_capacity = 2, .overflow = Overflow::shed});
    set_process_pool(&pool);
    test::Gate gate;
    occupy(pool, gate, 1);  // room for one more
    DeferredRegistry registry(kCap);
    {
        RequestScope scope(registry);
        follow_response({.name = "fits"}, [] {});
        // The request's own earlier callback will need room at the same dispatch.
        EXPECT_THROW(follow_response({.name = "too-many"}, [] {}), Overloaded);
        // same_thread callbacks never enter the queue.
        follow_response({.same_thread = true}, [] {});
    }
    ASSERT_EQ(registry.callbacks().size(), 2U);
    EXPECT_EQ(pool.counters().snapshot().shed, 1U);
    EXPECT_EQ(pool.counters().snapshot().registered, 0U) << "shed callbacks never register";
    gate.open();
    registry.dispatch(pool, ok());
    pool.wait_idle();
    EXPECT_EQ(pool.counters().snapshot().registered, 2U);
}

TEST_F(FollowResponse, BlockWaitsAtRegistrationWhileTheQueueIsFull) {
    Pool pool({.workers = 1, .queue_capacity = 1, .overflow = Overflow::block});
    set_process_pool(&pool);
    test::Gate gate;
    occupy(pool, gate, 1);  // full
    std::atomic<bool> registered{false};
    struct Waits : detail::BlockingObserver {
        std::atomic<int> count{0};
        void blocking() noexcept override { ++count; }
        void unblocked() noexcept override {}
    } waits;
    std::jthread handler([&] {
        detail::request_context().observer = &waits;
        DeferredRegistry registry(kCap);
        {
            RequestScope scope(registry);
            follow_response([] {});
            registered = true;
        }
        registry.dispatch(pool, ok());
    });
    ASSERT_TRUE(test::eventually([&] { return waits.count == 1; }));
    EXPECT_FALSE(registered) << "the handler waits for room before its response";
    gate.open();
    ASSERT_TRUE(test::eventually([&] { return registered.load(); }));
    handler.join();
    pool.wait_idle();
    EXPECT_EQ(pool.counters().snapshot().completed, 3U);
}

// Under block a registration keeps its slot, so the room a request found before its response
// is still there at its dispatch: the dispatch never waits, whoever came meanwhile. Without
// the slot kept, a registration racing it could take the room and hold the responder after
// the response.
TEST_F(FollowResponse, BlockKeepsTheRoomARegistrationFoundForItsDispatch) {
    Pool pool({.workers = 1, .queue_capacity = 2, .overflow = Overflow::block});
    set_process_pool(&pool);
    test::Gate gate;
    occupy(pool, gate, 0);  // the worker held, the queue empty
    DeferredRegistry first(kCap);
    {
        RequestScope scope(first);
        follow_response([] {});
        follow_response([] {});
    }
    EXPECT_FALSE(pool.has_room_for(1)) << "both slots are kept for the first request";
    std::atomic<bool> second_registered{false};
    std::jthread second([&] {
        DeferredRegistry registry(kCap);
        {
            RequestScope scope(registry);
            follow_response([] {});
            second_registered = true;
        }
        registry.dispatch(pool, ok());
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(second_registered) << "a later registration waits for room of its own";
    std::atomic<bool> dispatched{false};
    std::jthread dispatch([&] {
        first.dispatch(pool, ok());
        dispatched = true;
    });
    EXPECT_TRUE(test::eventually([&] { return dispatched.load(); }, 2s))
        << "the first dispatch never waits: its room was kept";
    EXPECT_EQ(pool.queue_depth(), 2U);
    EXPECT_FALSE(second_registered);
    gate.open();
    second.join();
    pool.wait_idle();
    EXPECT_EQ(pool.counters().snapshot().completed, 4U);
}

// A request registering more callbacks than the queue holds, or two requests that each keep
// part of it, must not wait for room they keep themselves: past its first callback a request
// takes what is free and waits no more; the rest wait at dispatch, after the response.
TEST_F(FollowResponse, BlockNeverWaitsForRoomARequestKeepsItself) {
    Pool pool({.workers = 1, .queue_capacity = 2, .overflow = Overflow::block});
    set_process_pool(&pool);
    test::Gate gate;
    occupy(pool, gate, 0);
    DeferredRegistry a(kCap);
    DeferredRegistry b(kCap);
    std::atomic<bool> registered{false};
    std::jthread handlers([&] {
        {
            RequestScope scope(a);
            follow_response([] {});
        }
        {
            RequestScope scope(b);
            follow_response([] {});
            follow_response([] {});  // no room left: kept by a and b; does not wait
        }
        {
            RequestScope scope(a);
            follow_response([] {});  // the same
            follow_response([] {});
        }
        registered = true;
    });
    const bool returned = test::eventually([&] { return registered.load(); }, 2s);
    if (!returned) pool.drain(Pool::Duration::zero());  // lets the handler go, to fail cleanly
    ASSERT_TRUE(returned) << "a registration waited for room its own requests keep";
    EXPECT_EQ(a.admission().kept() + b.admission().kept(), 2U);
    handlers.join();
    std::jthread dispatch([&] {
        a.dispatch(pool, ok());  // 1 kept, 2 wait for room
        b.dispatch(pool, ok());
    });
    gate.open();
    dispatch.join();
    pool.wait_idle();
    EXPECT_EQ(pool.counters().snapshot().completed, 6U);
}

// Kept room that no callback uses goes back: callbacks the gate skips, a request that never
// dispatches (a handler that threw past its registrations), and a test capture's take().
TEST_F(FollowResponse, BlockGivesBackTheRoomItKeptButDidNotUse) {
    Pool pool({.workers = 1, .queue_capacity = 2, .overflow = Overflow::block});
    set_process_pool(&pool);
    test::Gate gate;
    occupy(pool, gate, 0);
    auto register_two = [](DeferredRegistry& registry) {
        RequestScope scope(registry);
        follow_response([] {});
        follow_response([] {});
    };
    {
        DeferredRegistry skipped(kCap);
        register_two(skipped);
        EXPECT_FALSE(pool.has_room_for(1));
        skipped.dispatch(pool, {.request_id = "r", .status = 500});  // 2xx only: both skipped
        EXPECT_TRUE(pool.has_room_for(2)) << "after a dispatch that queued nothing";
    }
    {
        DeferredRegistry never_dispatched(kCap);
        register_two(never_dispatched);
        EXPECT_FALSE(pool.has_room_for(1));
    }
    EXPECT_TRUE(pool.has_room_for(2)) << "after a registry that never dispatched";
    DeferredRegistry captured(kCap);
    register_two(captured);
    EXPECT_EQ(captured.take().size(), 2U);
    EXPECT_TRUE(pool.has_room_for(2)) << "after take()";
    gate.open();
    pool.wait_idle();
}

TEST_F(FollowResponse, CallerRunsAndRejectNeitherWaitNorShedAtRegistration) {
    for (const auto overflow : {Overflow::caller_runs, Overflow::reject}) {
        Pool pool({.workers = 1, .queue_capacity = 1, .overflow = overflow});
        set_process_pool(&pool);
        test::Gate gate;
        occupy(pool, gate, 1);  // full
        DeferredRegistry registry(kCap);
        {
            RequestScope scope(registry);
            EXPECT_NO_THROW(follow_response([] {})) << overflow_name(overflow);
        }
        gate.open();
        registry.dispatch(pool, ok());
        pool.wait_idle();
        set_process_pool(nullptr);
    }
}

TEST_F(FollowResponse, ScopesNestAndRestore) {
    DeferredRegistry outer(kCap);
    DeferredRegistry inner(kCap);
    {
        RequestScope a(outer);
        {
            RequestScope b(inner);
            follow_response([] {});
        }
        follow_response([] {});
        follow_response([] {});
    }
    EXPECT_EQ(inner.callbacks().size(), 1U);
    EXPECT_EQ(outer.callbacks().size(), 2U);
    EXPECT_EQ(current_registry(), nullptr);
}

TEST_F(FollowResponse, AThreadStartedByTheHandlerIsOutsideTheRequest) {
    DeferredRegistry registry(kCap);
    RequestScope scope(registry);
    bool ran_at_once = false;
    std::jthread([&] { follow_response([&] { ran_at_once = true; }); }).join();
    EXPECT_TRUE(ran_at_once);  // default policy run_now
    EXPECT_TRUE(registry.callbacks().empty());
}

TEST_F(FollowResponse, RunNowRunsSynchronouslyOnTheCaller) {
    std::thread::id ran_on;
    follow_response([&] { ran_on = std::this_thread::get_id(); });
    EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_F(FollowResponse, RunNowIsolatesAndCountsIntoTheProcessPool) {
    test::LogCapture logs;
    Pool pool({.workers = 1});
    set_process_pool(&pool);
    EXPECT_NO_THROW(follow_response({.name = "boom"}, [] { throw std::runtime_error("no"); }));
    follow_response([] {});
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.registered, 2U);
    EXPECT_EQ(counts.dispatched, 2U);
    EXPECT_EQ(counts.failed, 1U);
    EXPECT_EQ(counts.completed, 1U);
    EXPECT_TRUE(logs.contains("boom of request - failed: no"));
}

TEST_F(FollowResponse, RunNowWithoutAProcessPoolStillIsolates) {
    test::LogCapture logs;
    EXPECT_NO_THROW(follow_response([] { throw 7; }));
    EXPECT_TRUE(logs.contains("non-standard exception"));
}

TEST_F(FollowResponse, ThrowErrorPolicyThrowsNoCurrentRequest) {
    set_outside_request_policy(OutsideRequest::throw_error);
    bool ran = false;
    EXPECT_THROW(follow_response([&] { ran = true; }), NoCurrentRequest);
    EXPECT_FALSE(ran);
}

TEST_F(FollowResponse, ToPoolPolicySubmitsAtOnce) {
    Pool pool({.workers = 1});
    set_process_pool(&pool);
    set_outside_request_policy(OutsideRequest::to_pool);
    std::atomic<std::thread::id> ran_on{};
    follow_response([&] { ran_on = std::this_thread::get_id(); });
    pool.wait_idle();
    EXPECT_NE(ran_on.load(), std::thread::id{});
    EXPECT_NE(ran_on.load(), std::this_thread::get_id());
    EXPECT_EQ(pool.counters().snapshot().registered, 1U);
}

TEST_F(FollowResponse, ToPoolWithoutAPoolThrows) {
    set_outside_request_policy(OutsideRequest::to_pool);
    EXPECT_THROW(follow_response([] {}), NoCurrentRequest);
}

TEST_F(FollowResponse, ACallbackRegisteringACallbackIsOutsideTheRequest) {
    Pool pool({.workers = 1});
    set_process_pool(&pool);
    set_outside_request_policy(OutsideRequest::to_pool);
    std::atomic<int> runs{0};
    DeferredRegistry registry(kCap);
    {
        RequestScope scope(registry);
        follow_response([&] {
            ++runs;
            follow_response([&] { ++runs; });  // no request on a pool thread: to_pool
        });
    }
    registry.dispatch(pool, ok());
    ASSERT_TRUE(test::eventually([&] { return runs.load() == 2; }));
    pool.drain(5s);
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.registered, 2U);
    EXPECT_EQ(counts.completed, 2U);
    EXPECT_TRUE(counts.balanced()) << counts.summary();
}

}  // namespace
}  // namespace crosstown
