#include <gtest/gtest.h>

#include <crosstown/service/idle_trim.hpp>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace crosstown {
namespace {

class IdleTrimTest : public ::testing::Test {
  protected:
    int trims = 0;
    IdleTrim idle{3, [this] { ++trims; }};
};

TEST_F(IdleTrimTest, TrimsOnceAfterQuietSamplesFollowingWork) {
    EXPECT_FALSE(idle.sample(10, false));  // work finished since the start
    EXPECT_FALSE(idle.sample(10, false));
    EXPECT_FALSE(idle.sample(10, false));
    EXPECT_TRUE(idle.sample(10, false)) << "the third quiet sample in a row";
    for (int i = 0; i < 10; ++i) EXPECT_FALSE(idle.sample(10, false)) << "once per quiet spell";
    EXPECT_EQ(trims, 1);
}

TEST_F(IdleTrimTest, NeverTrimsAProcessThatDidNothing) {
    for (int i = 0; i < 10; ++i) EXPECT_FALSE(idle.sample(0, false));
    EXPECT_EQ(trims, 0);
}

TEST_F(IdleTrimTest, WorkInProgressOrFinishingPutsTheTrimOff) {
    idle.sample(1, false);
    idle.sample(1, false);
    idle.sample(1, true);  // a long request: nothing finished, but busy
    idle.sample(1, false);
    idle.sample(2, false);  // it finished
    idle.sample(2, false);
    idle.sample(2, false);
    EXPECT_EQ(trims, 0);
    EXPECT_TRUE(idle.sample(2, false));
    idle.sample(3, false);  // new work: another spell, another trim
    idle.sample(3, false);
    idle.sample(3, false);
    EXPECT_TRUE(idle.sample(3, false));
    EXPECT_EQ(trims, 2);
}

[[maybe_unused]] long resident_kib() {  // unused where the test skips
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

// 32 MB in small blocks, all freed but the last, which keeps the heap's top: free() can give
// none of it back, the trim gives back most of it.
TEST(TrimMallocHeaps, GivesBackWhatABurstFreedBelowALiveBlock) {
#if defined(CROSSTOWN_SANITIZED) || !defined(__GLIBC__)
    GTEST_SKIP() << "glibc's malloc only; the sanitizers bring their own";
#else
    constexpr std::size_t kBlocks = 32 * 1024;
    using Block = std::unique_ptr<char[]>;
    std::vector<Block> blocks;
    blocks.reserve(kBlocks);
    for (std::size_t i = 0; i < kBlocks; ++i) {
        blocks.push_back(std::make_unique<char[]>(1000));  // zeroed: resident
    }
    const auto last = std::move(blocks.back());
    blocks.clear();
    const auto freed = resident_kib();
    trim_malloc_heaps();
    const auto trimmed = resident_kib();
    EXPECT_LT(trimmed, freed - 16 * 1024) << "resident before the trim " << freed << " KiB";
#endif
}

}  // namespace
}  // namespace crosstown
