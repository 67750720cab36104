#include <gtest/gtest.h>

#include <crosstown/observe/latency_histogram.hpp>

namespace crosstown {
namespace {

using namespace std::chrono_literals;

TEST(LatencyHistogram, BucketsByUpperBoundInclusive) {
    LatencyHistogram histogram;
    histogram.record(10us);  // <= 50 us: bucket 0
    histogram.record(50us);  // on the bound: still bucket 0
    histogram.record(51us);  // bucket 1 (<= 100 us)
    histogram.record(3ms);   // <= 5 ms: bucket 6
    histogram.record(11s);   // past 10 s: +Inf
    histogram.record(-5us);  // a clock step backwards counts as zero
    const auto snap = histogram.snapshot();
    EXPECT_EQ(snap.count, 6U);
    EXPECT_EQ(snap.buckets[0], 3U);
    EXPECT_EQ(snap.buckets[1], 1U);
    EXPECT_EQ(snap.buckets[6], 1U);
    EXPECT_EQ(snap.buckets.back(), 1U);
    EXPECT_NEAR(snap.sum_seconds, 11.003111, 1e-9);
}

TEST(LatencyHistogram, SnapshotsMerge) {
    LatencyHistogram a;
    LatencyHistogram b;
    a.record(1ms);
    b.record(1ms);
    b.record(20ms);
    auto total = a.snapshot();
    total += b.snapshot();
    EXPECT_EQ(total.count, 3U);
    EXPECT_EQ(total.buckets[4], 2U);  // <= 1 ms
    EXPECT_EQ(total.buckets[8], 1U);  // <= 25 ms
    EXPECT_NEAR(total.sum_seconds, 0.022, 1e-12);
}

TEST(LatencyHistogram, QuantilesInterpolateInsideTheirBucket) {
    LatencyHistogram histogram;
    EXPECT_EQ(histogram.snapshot().quantile(0.5), 0);  // empty
    for (int i = 0; i < 50; ++i) histogram.record(30us);  // bucket 0: up to 50 us
    for (int i = 0; i < 50; ++i) histogram.record(3ms);   // bucket 6: 2.5 .. 5 ms
    const auto snap = histogram.snapshot();
    EXPECT_NEAR(snap.quantile(0.5), 50e-6, 1e-12);  // all of bucket 0: its upper bound
    EXPECT_NEAR(snap.quantile(0.25), 25e-6, 1e-12);  // half way into bucket 0
    EXPECT_NEAR(snap.quantile(0.75), 0.00375, 1e-12);  // half way into 2.5 .. 5 ms
    EXPECT_NEAR(snap.quantile(1.0), 0.005, 1e-12);
}

TEST(LatencyHistogram, AQuantileBeyondTheLastBoundReadsAsTheLastBound) {
    LatencyHistogram histogram;
    histogram.record(1ms);
    histogram.record(30s);
    EXPECT_EQ(histogram.snapshot().quantile(0.99), 10.0);
}

}  // namespace
}  // namespace crosstown
