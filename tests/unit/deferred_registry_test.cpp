#include <gtest/gtest.h>

#include <atomic>
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/deferred/process_pool.hpp>
#include <crosstown/http/request_limits.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

// The per-request cap on callbacks, at the server's default.
constexpr std::size_t kCap = RequestLimits{}.max_deferred_per_request;

using namespace std::chrono_literals;

ResponseOutcome sent(int status, bool delivered = true) {
    return {.request_id = "req-1", .status = status, .delivered = delivered};
}

// Records what ran, from any thread.
class Trace {
  public:
    Callback step(std::string label) {
        return [this, label = std::move(label)] {
            std::lock_guard lock(mutex_);
            steps_.push_back(label);
        };
    }
    std::vector<std::string> steps() const {
        std::lock_guard lock(mutex_);
        return steps_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> steps_;
};

using Steps = std::vector<std::string>;

TEST(DeferredRegistry, NothingStartsBeforeDispatch) {
    Pool pool({.workers = 2});
    Trace trace;
    DeferredRegistry registry(kCap);
    registry.add({}, trace.step("a"));
    registry.add({.same_thread = true}, trace.step("b"));
    std::this_thread::sleep_for(20ms);  // margin for a wrongly eager pool to have run them
    EXPECT_TRUE(trace.steps().empty());
    EXPECT_EQ(pool.counters().snapshot().dispatched, 0U);
    registry.dispatch(pool, sent(200));
    pool.wait_idle();
    EXPECT_EQ(trace.steps().size(), 2U);
}

TEST(DeferredRegistry, PoolCallbacksStartInRegistrationOrder) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    for (const char* label : {"1", "2", "3", "4", "5"}) registry.add({}, trace.step(label));
    registry.dispatch(pool, sent(200));
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"1", "2", "3", "4", "5"}));
}

TEST(DeferredRegistry, SameThreadCallbacksRunInOrderOnTheDispatchingThreadAfterTheBatch) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    std::vector<std::thread::id> threads;
    std::uint64_t dispatched_when_first_ran = 0;
    registry.add({.same_thread = true}, [&] {
        threads.push_back(std::this_thread::get_id());
        dispatched_when_first_ran = pool.counters().snapshot().dispatched;
    });
    registry.add({}, trace.step("pool"));
    registry.add({.same_thread = true}, [&] { threads.push_back(std::this_thread::get_id()); });
    registry.dispatch(pool, sent(200));
    // Both ran before dispatch returned, on this thread, in order.
    ASSERT_EQ(threads.size(), 2U);
    EXPECT_EQ(threads[0], std::this_thread::get_id());
    EXPECT_EQ(threads[1], std::this_thread::get_id());
    // The pool batch was handed over before the first same_thread callback ran.
    EXPECT_EQ(dispatched_when_first_ran, 2U);
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"pool"}));
}

TEST(DeferredRegistry, DefaultGateSkipsErrorResponses) {
    for (int status : {400, 404, 500, 503}) {
        Pool pool({.workers = 1});
        Trace trace;
        DeferredRegistry registry(kCap);
        registry.add({}, trace.step("default"));
        registry.add({.same_thread = true}, trace.step("default-here"));
        registry.add({.run_on = always}, trace.step("always"));
        registry.dispatch(pool, sent(status));
        pool.wait_idle();
        EXPECT_EQ(trace.steps(), (Steps{"always"})) << status;
        EXPECT_EQ(pool.counters().snapshot().skipped, 2U);
    }
}

TEST(DeferredRegistry, DefaultGateRunsForSuccessAndRedirects) {
    for (int status : {100, 200, 202, 302}) {
        Pool pool({.workers = 1});
        Trace trace;
        DeferredRegistry registry(kCap);
        registry.add({}, trace.step("default"));
        registry.dispatch(pool, sent(status));
        pool.wait_idle();
        EXPECT_EQ(trace.steps(), (Steps{"default"})) << status;
    }
}

TEST(DeferredRegistry, CustomFiltersGateOnTheStatusSent) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    registry.add({.run_on = "2xx"}, trace.step("2xx"));
    registry.add({.run_on = "302"}, trace.step("302"));
    registry.add({.run_on = "400-405"}, trace.step("400-405"));
    registry.add({.run_on = "5xx, 404"}, trace.step("5xx,404"));
    registry.dispatch(pool, sent(404));
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"400-405", "5xx,404"}));
}

TEST(DeferredRegistry, UndeliveredResponsesRunByDefaultUnlessOptedOut) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    registry.add({}, trace.step("runs"));
    registry.add({.skip_if_undelivered = true}, trace.step("opted-out"));
    std::atomic<bool> delivered{true};
    registry.add({}, [&] { delivered = response_delivered(); });
    registry.dispatch(pool, sent(200, /*delivered=*/false));
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"runs"}));
    EXPECT_FALSE(delivered);
    EXPECT_EQ(pool.counters().snapshot().skipped, 1U);
}

TEST(DeferredRegistry, RequestDataLivesUntilItsLastCallbackHasFinished) {
    Pool pool({.workers = 2});
    auto body = std::make_shared<std::string>("numbers=5551234");
    std::weak_ptr<std::string> weak = body;
    test::Gate release_second;
    std::atomic<bool> first_saw_body{false};
    std::atomic<bool> second_started{false};
    DeferredRegistry registry(kCap);
    registry.add({}, [&] { first_saw_body = !weak.expired(); });
    registry.add({}, [&] {
        second_started = true;
        release_second.wait();
    });
    registry.dispatch(pool, {.request_id = "r", .status = 200, .keep_alive = std::move(body)});
    ASSERT_TRUE(test::eventually([&] { return second_started && first_saw_body; }));
    EXPECT_FALSE(weak.expired());  // the first callback is done, the second still runs
    release_second.open();
    pool.wait_idle();
    EXPECT_TRUE(weak.expired());
}

TEST(DeferredRegistry, LaterSameNameReplacesEarlierAndTakesItsPlace) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    registry.add({.name = "email"}, trace.step("email-v1"));
    registry.add({.name = "audit"}, trace.step("audit"));
    registry.add({.name = "email"}, trace.step("email-v2"));
    registry.dispatch(pool, sent(200));
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"audit", "email-v2"}));
    const auto counts = pool.counters().snapshot();
    EXPECT_EQ(counts.registered, 3U);
    EXPECT_EQ(counts.forgotten, 1U);
}

TEST(DeferredRegistry, ForgetCancelsByName) {
    Pool pool({.workers = 1});
    Trace trace;
    DeferredRegistry registry(kCap);
    registry.add({.name = "welcome-email"}, trace.step("welcome"));
    registry.add({}, trace.step("other"));
    EXPECT_TRUE(registry.forget("welcome-email"));
    EXPECT_FALSE(registry.forget("welcome-email"));
    EXPECT_FALSE(registry.forget("no-such"));
    registry.dispatch(pool, sent(200));
    pool.wait_idle();
    EXPECT_EQ(trace.steps(), (Steps{"other"}));
    EXPECT_EQ(pool.counters().snapshot().forgotten, 1U);
}

TEST(DeferredRegistry, CapStopsARunawayLoop) {
    DeferredRegistry registry(3);
    for (int i = 0; i < 3; ++i) registry.add({}, [] {});
    EXPECT_THROW(registry.add({}, [] {}), DeferredLimitExceeded);
    EXPECT_EQ(registry.callbacks().size(), 3U);
}

TEST(DeferredRegistry, ReplacingByNameAtTheCapIsAllowed) {
    DeferredRegistry registry(2);
    registry.add({.name = "a"}, [] {});
    registry.add({.name = "b"}, [] {});
    EXPECT_NO_THROW(registry.add({.name = "b"}, [] {}));
    EXPECT_EQ(registry.callbacks().size(), 2U);
}

TEST(DeferredRegistry, DispatchEmptiesTheRegistry) {
    Pool pool({.workers = 1});
    DeferredRegistry registry(kCap);
    registry.add({}, [] {});
    registry.dispatch(pool, sent(200));
    EXPECT_TRUE(registry.callbacks().empty());
    registry.dispatch(pool, sent(200));  // a second dispatch has nothing to count
    pool.drain(5s);
    EXPECT_EQ(pool.counters().snapshot().registered, 1U);
}

TEST(DeferredRegistry, EveryCallbackLandsInExactlyOneOutcome) {
    test::LogCapture quiet;  // rejections are logged; keep them out of the test output
    Pool pool({.workers = 2, .queue_capacity = 1, .overflow = Overflow::reject});
    test::Gate hold;
    DeferredRegistry registry(kCap);
    // A queue of one under Overflow::reject: of these four pool callbacks some run and some
    // are rejected, depending on how fast the workers pop; the totals do not depend on it.
    registry.add({.name = "held"}, [&] { hold.wait(); });
    registry.add({}, [&] { hold.wait(); });
    registry.add({.name = "x"}, [] {});  // replaced by the next one: forgotten
    registry.add({.name = "x"}, [] {});
    registry.add({}, [] {});
    registry.add({.run_on = "5xx"}, [] {});  // skipped
    registry.add({.name = "gone"}, [] {});
    registry.forget("gone");                                                     // forgotten
    registry.add({.same_thread = true}, [] { throw std::runtime_error("x"); });  // failed
    std::jthread opener([&] {
        std::this_thread::sleep_for(20ms);
        hold.open();
    });
    registry.dispatch(pool, sent(200));
    pool.drain(10s);
    const auto counts = pool.counters().snapshot();
    EXPECT_TRUE(counts.balanced()) << counts.summary();
    EXPECT_EQ(counts.registered, 8U) << counts.summary();
    EXPECT_EQ(counts.forgotten, 2U) << counts.summary();
    EXPECT_EQ(counts.skipped, 1U) << counts.summary();
    EXPECT_EQ(counts.failed, 1U) << counts.summary();
    EXPECT_EQ(counts.dispatched, 5U) << counts.summary();
}

TEST(DeferredRegistry, CallbacksRegisteredBySameThreadCallbacksFollowTheOutsidePolicy) {
    Pool pool({.workers = 1});
    DeferredRegistry registry(kCap);
    bool inner_ran = false;
    {
        RequestScope scope(registry);
        follow_response({.same_thread = true}, [&] {
            follow_response([&] { inner_ran = true; });  // run_now: no request any more
        });
    }
    registry.dispatch(pool, sent(200));
    EXPECT_TRUE(inner_ran);
    EXPECT_TRUE(registry.callbacks().empty());
}

TEST(DeferredRegistry, ItsDispatchRunsAnywhereOnlyWithoutSameThreadCallbacksAndWithRoomKept) {
    Pool pool({.workers = 1, .overflow = Overflow::block});
    struct ProcessPool {
        explicit ProcessPool(Pool& pool) { set_process_pool(&pool); }
        ~ProcessPool() { set_process_pool(nullptr); }
    } process(pool);
    DeferredRegistry nothing(kCap);
    EXPECT_TRUE(nothing.dispatch_runs_anywhere());

    DeferredRegistry kept(kCap);
    {
        RequestScope scope(kept);
        follow_response([] {});  // keeps a slot under block
    }
    EXPECT_EQ(kept.admission().kept(), 1U);
    EXPECT_TRUE(kept.dispatch_runs_anywhere());

    DeferredRegistry same_thread(kCap);
    {
        RequestScope scope(same_thread);
        follow_response({.same_thread = true}, [] {});
    }
    EXPECT_FALSE(same_thread.dispatch_runs_anywhere()) << "it runs on the dispatching thread";

    DeferredRegistry no_room(kCap);
    no_room.add({}, [] {});  // no slot kept: its dispatch may wait for one
    EXPECT_FALSE(no_room.dispatch_runs_anywhere());

    for (auto* registry : {&kept, &same_thread, &no_room}) registry->dispatch(pool, sent(200));
    pool.wait_idle();
}

}  // namespace
}  // namespace crosstown
