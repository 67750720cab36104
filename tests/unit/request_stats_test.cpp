// RequestStats: what the responders record for /metrics, by status class, delivery, bytes,
// requests in flight and handler time.
#include <gtest/gtest.h>

#include <crosstown/observe/request_stats.hpp>
#include <thread>
#include <vector>

namespace crosstown {
namespace {

using namespace std::chrono_literals;

TEST(RequestStats, StartsAtZero) {
    const RequestStats stats;
    for (int c = 1; c <= 5; ++c) EXPECT_EQ(stats.requests(c), 0U) << c << "xx";
    EXPECT_EQ(stats.total(), 0U);
    EXPECT_EQ(stats.undelivered(), 0U);
    EXPECT_EQ(stats.response_bytes(), 0U);
    EXPECT_EQ(stats.in_flight(), 0);
    EXPECT_EQ(stats.handler_time().count, 0U);
}

TEST(RequestStats, CountsEachRequestInItsStatusClass) {
    RequestStats stats;
    for (const int status : {101, 200, 201, 204, 299, 302, 404, 500, 503}) {
        stats.record(status, 0, 1ms, true);
    }
    EXPECT_EQ(stats.requests(1), 1U);
    EXPECT_EQ(stats.requests(2), 4U);
    EXPECT_EQ(stats.requests(3), 1U);
    EXPECT_EQ(stats.requests(4), 1U);
    EXPECT_EQ(stats.requests(5), 2U);
    EXPECT_EQ(stats.total(), 9U);
}

TEST(RequestStats, AStatusOutsideTheClassesCountsInNoneButItsTimeAndBytesDo) {
    RequestStats stats;
    stats.record(99, 10, 1ms, true);
    stats.record(600, 20, 1ms, true);
    stats.record(200, 30, 1ms, true);
    EXPECT_EQ(stats.total(), 1U);
    EXPECT_EQ(stats.requests(0), 0U);
    EXPECT_EQ(stats.requests(6), 0U);
    EXPECT_EQ(stats.requests(-1), 0U);
    EXPECT_EQ(stats.response_bytes(), 60U);
    EXPECT_EQ(stats.handler_time().count, 3U);
}

TEST(RequestStats, CountsUndeliveredResponsesAndAddsUpTheBodyBytes) {
    RequestStats stats;
    stats.record(200, 6, 1ms, true);
    stats.record(200, 1000, 1ms, false);  // the client went away
    stats.record(404, 0, 1ms, true);
    stats.record(500, 54, 1ms, false);
    EXPECT_EQ(stats.undelivered(), 2U);
    EXPECT_EQ(stats.response_bytes(), 1060U);
    EXPECT_EQ(stats.total(), 4U) << "undelivered responses are requests answered all the same";
}

TEST(RequestStats, InFlightFollowsStartedAndEnded) {
    RequestStats stats;
    stats.started();
    stats.started();
    stats.started();
    EXPECT_EQ(stats.in_flight(), 3);
    stats.ended();
    EXPECT_EQ(stats.in_flight(), 2);
    stats.ended();
    stats.ended();
    EXPECT_EQ(stats.in_flight(), 0);
    EXPECT_EQ(stats.total(), 0U) << "only record() counts a request as answered";
}

TEST(RequestStats, HandlerTimeGoesToTheHistogram) {
    RequestStats stats;
    stats.record(200, 0, 40us, true);  // <= 50 us: bucket 0
    stats.record(200, 0, 3ms, true);   // <= 5 ms: bucket 6
    stats.record(500, 0, 12s, true);   // past 10 s: +Inf
    const auto time = stats.handler_time();
    EXPECT_EQ(time.count, 3U);
    EXPECT_EQ(time.buckets[0], 1U);
    EXPECT_EQ(time.buckets[6], 1U);
    EXPECT_EQ(time.buckets.back(), 1U);
    EXPECT_NEAR(time.sum_seconds, 12.00304, 1e-9);
}

TEST(RequestStats, RecordsFromManyThreadsAreAllCounted) {
    RequestStats stats;
    constexpr int kThreads = 4;
    constexpr int kEach = 10'000;
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&stats, t] {
                for (int i = 0; i < kEach; ++i) {
                    stats.started();
                    stats.record(t % 2 == 0 ? 200 : 503, 2, 1us, i % 10 != 0);
                    stats.ended();
                }
            });
        }
    }
    EXPECT_EQ(stats.total(), std::uint64_t{kThreads} * kEach);
    EXPECT_EQ(stats.requests(2), std::uint64_t{kThreads / 2} * kEach);
    EXPECT_EQ(stats.requests(5), std::uint64_t{kThreads / 2} * kEach);
    EXPECT_EQ(stats.undelivered(), std::uint64_t{kThreads} * kEach / 10);
    EXPECT_EQ(stats.response_bytes(), std::uint64_t{kThreads} * kEach * 2);
    EXPECT_EQ(stats.handler_time().count, std::uint64_t{kThreads} * kEach);
    EXPECT_EQ(stats.in_flight(), 0);
}

}  // namespace
}  // namespace crosstown
