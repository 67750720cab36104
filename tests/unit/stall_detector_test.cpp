#include <gtest/gtest.h>

#include <crosstown/service/stall_detector.hpp>

namespace crosstown {
namespace {

using namespace std::chrono_literals;

class StallDetectorTest : public ::testing::Test {
  protected:
    StallDetector detector{1s};
    StallDetector::Clock::time_point t0{};
    bool at(std::chrono::milliseconds since, std::uint64_t done, bool waiting) {
        return detector.progressing(done, waiting, t0 + since);
    }
};

TEST_F(StallDetectorTest, IdleIsNeverAStall) {
    EXPECT_TRUE(at(0ms, 5, false));
    EXPECT_TRUE(at(10s, 5, false));
    EXPECT_TRUE(at(1h, 5, false));
}

TEST_F(StallDetectorTest, WaitingWorkThatKeepsFinishingIsNotAStall) {
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(at(std::chrono::milliseconds(900 * i), i, true));
}

TEST_F(StallDetectorTest, WaitingWorkWithNothingFinishingIsAStallAfterTheLimit) {
    EXPECT_TRUE(at(0ms, 7, true));
    EXPECT_TRUE(at(1000ms, 7, true));
    EXPECT_FALSE(at(1001ms, 7, true));
    EXPECT_FALSE(at(5s, 7, true));
    // One finished callback is progress again.
    EXPECT_TRUE(at(6s, 8, true));
    EXPECT_TRUE(at(6500ms, 8, true));
    EXPECT_FALSE(at(7500ms, 8, true));
}

TEST_F(StallDetectorTest, TheLimitCountsFromWhenWorkStartedWaiting) {
    EXPECT_TRUE(at(0ms, 1, false));
    EXPECT_TRUE(at(10s, 1, false));
    EXPECT_TRUE(at(10500ms, 1, true));  // waiting since 10.5 s only
    EXPECT_TRUE(at(11s, 1, true));
    EXPECT_FALSE(at(11600ms, 1, true));
}

// Samples come at intervals: work first seen waiting a whole limit after the last idle sample
// has only just started waiting, however late that sample came.
TEST_F(StallDetectorTest, WorkFirstSeenWaitingIsNotYetAStall) {
    EXPECT_TRUE(at(0ms, 1, false));
    EXPECT_TRUE(at(1500ms, 1, true));
    EXPECT_TRUE(at(2400ms, 1, true));
    EXPECT_FALSE(at(2600ms, 1, true));
}

}  // namespace
}  // namespace crosstown
