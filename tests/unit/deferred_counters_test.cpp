#include <gtest/gtest.h>

#include <crosstown/deferred/deferred_counters.hpp>

namespace crosstown {
namespace {

// A balanced set in which every outcome occurs.
constexpr DeferredCounts kBalanced{.registered = 10,
                                   .forgotten = 1,
                                   .skipped = 2,
                                   .dispatched = 7,
                                   .completed = 4,
                                   .failed = 1,
                                   .rejected = 1,
                                   .abandoned = 1,
                                   .shed = 2};

TEST(DeferredCounts, SummaryLineHasEveryOutcome) {
    EXPECT_EQ(kBalanced.summary(),
              "deferred registered=10 dispatched=7 completed=4 failed=1 skipped=2 rejected=1 "
              "abandoned=1 forgotten=1 shed=2");
}

TEST(DeferredCounts, BalancedChecksBothIdentities) {
    DeferredCounts counts = kBalanced;
    EXPECT_TRUE(counts.balanced());
    ++counts.completed;
    EXPECT_FALSE(counts.balanced());
    --counts.completed;
    ++counts.skipped;
    EXPECT_FALSE(counts.balanced());
}

TEST(DeferredCounts, NothingLostOnlyWithoutRejectedOrAbandoned) {
    EXPECT_TRUE((DeferredCounts{.failed = 3}.nothing_lost()));
    EXPECT_FALSE((DeferredCounts{.rejected = 1}.nothing_lost()));
    EXPECT_FALSE((DeferredCounts{.abandoned = 1}.nothing_lost()));
}

TEST(DeferredCounters, SnapshotReadsEachCounter) {
    DeferredCounters counters;
    bump(counters.registered, 8);
    bump(counters.forgotten, 1);
    bump(counters.skipped, 2);
    bump(counters.dispatched, 5);
    bump(counters.completed, 2);
    bump(counters.failed);
    bump(counters.rejected);
    bump(counters.abandoned);
    bump(counters.shed, 3);
    EXPECT_EQ(counters.snapshot(), (DeferredCounts{.registered = 8,
                                                   .forgotten = 1,
                                                   .skipped = 2,
                                                   .dispatched = 5,
                                                   .completed = 2,
                                                   .failed = 1,
                                                   .rejected = 1,
                                                   .abandoned = 1,
                                                   .shed = 3}));
}

}  // namespace
}  // namespace crosstown
