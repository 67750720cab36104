#include <gtest/gtest.h>

#include "crosstown/service/sample_ring.hpp"

namespace crosstown {
namespace {

TEST(SampleRing, GivesTheSamplesOldestFirst) {
    SampleRing ring;
    EXPECT_TRUE(ring.samples().empty());
    for (std::uint64_t i = 1; i <= 3; ++i) ring.add({.requests = i});
    const auto samples = ring.samples();
    ASSERT_EQ(samples.size(), 3U);
    EXPECT_EQ(samples.front().requests, 1U);
    EXPECT_EQ(samples.back().requests, 3U);
}

TEST(SampleRing, KeepsOnlyTheLastCapacitySamples) {
    SampleRing ring;
    const auto total = SampleRing::kCapacity + 7;
    for (std::uint64_t i = 1; i <= total; ++i) ring.add({.requests = i});
    const auto samples = ring.samples();
    ASSERT_EQ(samples.size(), SampleRing::kCapacity);
    EXPECT_EQ(samples.front().requests, 8U);
    EXPECT_EQ(samples.back().requests, total);
    for (std::size_t i = 1; i < samples.size(); ++i) {
        EXPECT_EQ(samples[i].requests, samples[i - 1].requests + 1);
    }
}

}  // namespace
}  // namespace crosstown
