// Many producers, mixed options, a small queue: every callback must land in exactly one
// outcome, and every one that ran must have run exactly once. Run under the tsan preset too.
#include <gtest/gtest.h>

#include <atomic>
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/http/request_limits.hpp>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/log_capture.hpp"

namespace crosstown {
namespace {

// The per-request cap on callbacks, at the server's default.
constexpr std::size_t kCap = RequestLimits{}.max_deferred_per_request;

constexpr int kProducers = 8;
constexpr int kPerProducer = 50'000;
constexpr int kPerRequest = 25;  // callbacks registered by each simulated request

struct Slots {
    explicit Slots(std::size_t n) : runs(n) {}
    std::vector<std::atomic<std::uint8_t>> runs;
};

// A simulated handler: registers kPerRequest callbacks with a mix of options, some of them
// forgotten or replaced, then dispatches with a status that gates some of them out.
void serve_requests(Pool& pool, Slots& slots, int producer) {
    const int base = producer * kPerProducer;
    for (int first = 0; first < kPerProducer; first += kPerRequest) {
        DeferredRegistry registry(kCap);
        {
            RequestScope scope(registry);
            for (int k = first; k < first + kPerRequest && k < kPerProducer; ++k) {
                const auto slot = static_cast<std::size_t>(base + k);
                auto mark = [&slots, slot] { slots.runs[slot].fetch_add(1); };
                switch (k % 7) {
                    case 0:
                        follow_response({.same_thread = true}, mark);
                        break;
                    case 1:
                        follow_response({.name = "dup"}, mark);
                        break;  // replaced or kept
                    case 2:
                        follow_response({.run_on = "5xx"}, mark);
                        break;
                    case 3:
                        follow_response({.name = "gone"}, mark);
                        forget("gone");
                        break;
                    case 4:
                        follow_response({.run_on = always}, [mark](std::stop_token) { mark(); });
                        break;
                    default:
                        follow_response(mark);
                        break;
                }
            }
        }
        const int status = (first / kPerRequest) % 5 == 0 ? 500 : 200;
        registry.dispatch(pool, {.request_id = "stress", .status = status});
    }
}

// kProducers threads serving requests into `pool`; joined when the vector is cleared or gone.
std::vector<std::jthread> start_producers(Pool& pool, Slots& slots) {
    std::vector<std::jthread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([&pool, &slots, p] { serve_requests(pool, slots, p); });
    }
    return producers;
}

// How many callbacks ran; a callback that ran twice fails the test.
std::uint64_t ran_once(const Slots& slots) {
    std::uint64_t ran = 0;
    for (const auto& runs : slots.runs) {
        EXPECT_LE(runs.load(), 1U);
        ran += runs.load();
    }
    return ran;
}

class PoolStress : public ::testing::TestWithParam<Overflow> {};

TEST_P(PoolStress, EveryCallbackRunsAtMostOnceAndTheCountsAddUp) {
    test::LogCapture quiet;  // reject logs each dropped callback
    Slots slots(static_cast<std::size_t>(kProducers) * kPerProducer);
    Pool pool({.workers = 4, .queue_capacity = 64, .overflow = GetParam()});
    start_producers(pool, slots).clear();  // joins
    const auto report = pool.drain(std::chrono::seconds(60));
    EXPECT_TRUE(report.finished_in_time);

    const auto ran = ran_once(slots);
    const auto counts = pool.counters().snapshot();
    EXPECT_TRUE(counts.balanced()) << counts.summary();
    EXPECT_EQ(counts.registered, slots.runs.size()) << counts.summary();
    EXPECT_EQ(counts.completed, ran) << counts.summary();
    EXPECT_EQ(counts.failed, 0U);
    EXPECT_EQ(counts.abandoned, 0U);
    if (GetParam() != Overflow::reject) {
        EXPECT_EQ(counts.rejected, 0U);
        EXPECT_EQ(counts.completed, counts.dispatched) << counts.summary();
    }
    EXPECT_GT(counts.forgotten, 0U);
    EXPECT_GT(counts.skipped, 0U);
}

// An elastic pool that grows and retires workers all the time (a short idle timeout against
// bursty producers): the same promises hold.
TEST(PoolStress, AnElasticPoolGrowingAndShrinkingKeepsEveryPromise) {
    Slots slots(static_cast<std::size_t>(kProducers) * kPerProducer);
    Pool pool({.workers = 16, .min_workers = 1, .idle_timeout = std::chrono::milliseconds(2),
               .queue_capacity = 64});
    start_producers(pool, slots).clear();  // joins
    EXPECT_TRUE(pool.drain(std::chrono::seconds(60)).finished_in_time);
    const auto counts = pool.counters().snapshot();
    EXPECT_TRUE(counts.balanced()) << counts.summary();
    EXPECT_EQ(counts.completed, ran_once(slots)) << counts.summary();
    EXPECT_EQ(counts.completed, counts.dispatched) << counts.summary();
}

// Drain while producers still submit and the pool grows: whatever was dispatched is run or
// counted abandoned, never lost, and drain returns with every worker joined.
TEST(PoolStress, DrainingWhileTheElasticPoolGrows) {
    // Each callback submitted after the drain is logged as abandoned: hundreds of thousands of
    // lines, discarded rather than kept.
    log::set_sink([](log::Level, std::string_view) {});
    Slots slots(static_cast<std::size_t>(kProducers) * kPerProducer);
    Pool pool({.workers = 32, .min_workers = 1, .idle_timeout = std::chrono::milliseconds(2),
               .queue_capacity = 64});
    auto producers = start_producers(pool, slots);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto report = pool.drain(std::chrono::milliseconds(0));
    producers.clear();  // they go on submitting into the drained pool: abandoned at once
    EXPECT_EQ(report.stuck, 0U);
    EXPECT_EQ(pool.live_workers(), 0U) << "every worker joined";
    const auto counts = pool.counters().snapshot();
    EXPECT_TRUE(counts.balanced()) << counts.summary();
    EXPECT_EQ(counts.completed, ran_once(slots)) << counts.summary();
    log::set_sink(nullptr);
}

INSTANTIATE_TEST_SUITE_P(Overflow, PoolStress,
                         ::testing::Values(Overflow::block, Overflow::caller_runs,
                                           Overflow::reject),
                         [](const auto& info) { return std::string(overflow_name(info.param)); });

}  // namespace
}  // namespace crosstown
