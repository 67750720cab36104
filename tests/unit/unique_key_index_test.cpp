// UniqueKeyIndex on its own: holds, their expiry, what a file's rows load, and the undo of a
// transaction. The journal's own tests check it inside SqliteJobDatabase.
#include "crosstown/jobs/sqlite/unique_key_index.hpp"

#include <gtest/gtest.h>

namespace crosstown {
namespace {

TEST(UniqueKeyIndex, ALiveJobHoldsItsKeyThenItsUniqueForAfterItFinished) {
    UniqueKeyIndex keys;
    keys.take("k", "order-1", 7, 1'000);
    EXPECT_TRUE(keys.taken("k", "order-1", 1'000'000)) << "while its job lives, whenever";
    EXPECT_FALSE(keys.taken("other-kind", "order-1", 0));
    const auto finished = keys.finish(7, 500);
    ASSERT_TRUE(finished.has_value());
    EXPECT_EQ(finished->kind, "k");
    EXPECT_EQ(finished->key, "order-1");
    EXPECT_EQ(finished->expires_ms, 1'500);
    EXPECT_TRUE(keys.taken("k", "order-1", 1'499));
    EXPECT_FALSE(keys.taken("k", "order-1", 1'500));
    EXPECT_FALSE(keys.finish(8, 500).has_value()) << "a job without a key";
}

TEST(UniqueKeyIndex, KindAndKeyNeverRunTogether) {
    UniqueKeyIndex keys;
    keys.take("ab", "c", 1, 1'000);
    EXPECT_FALSE(keys.taken("a", "bc", 0));
    EXPECT_TRUE(keys.taken("ab", "c", 0));
}

TEST(UniqueKeyIndex, AFreedKeyIsFreeAtOnce) {
    UniqueKeyIndex keys;
    keys.take("k", "x", 1, 1'000);
    keys.free(1);
    EXPECT_FALSE(keys.taken("k", "x", 0));
    EXPECT_EQ(keys.size(), 0U);
}

TEST(UniqueKeyIndex, ALiveHoldLoadedWinsOverAFinishedOneAndTheLaterFinishedWins) {
    UniqueKeyIndex keys;
    keys.load("k", "x", 0, 0, 2'000);
    keys.load("k", "x", 5, 1'000, 0);
    keys.load("k", "x", 0, 0, 9'000);
    EXPECT_TRUE(keys.taken("k", "x", 1'000'000)) << "held by its live job";
    EXPECT_EQ(keys.finish(5, 100)->expires_ms, 1'100);
    keys.load("k", "y", 0, 0, 3'000);
    keys.load("k", "y", 0, 0, 2'000);
    EXPECT_TRUE(keys.taken("k", "y", 2'500));
}

TEST(UniqueKeyIndex, ARollbackUndoesWhatTheTransactionChanged) {
    UniqueKeyIndex keys;
    keys.take("k", "kept", 1, 1'000);
    keys.take("k", "finished", 2, 1'000);
    keys.begin();
    keys.take("k", "new", 3, 1'000);
    keys.free(1);
    keys.finish(2, 100);
    keys.take("k", "kept", 4, 1'000);
    keys.rollback();
    EXPECT_FALSE(keys.taken("k", "new", 0));
    EXPECT_TRUE(keys.taken("k", "kept", 1'000'000));
    EXPECT_TRUE(keys.taken("k", "finished", 1'000'000)) << "live again";
    EXPECT_EQ(keys.finish(1, 0)->key, "kept") << "held by job 1 again";
    EXPECT_FALSE(keys.finish(3, 0).has_value());
    EXPECT_FALSE(keys.finish(4, 0).has_value());
}

TEST(UniqueKeyIndex, ASweepForgetsExpiredHoldsOnly) {
    UniqueKeyIndex keys;
    for (int i = 0; i < 100; ++i) {
        keys.take("k", std::to_string(i), i + 1, 1'000);
        if (i % 2 == 0) keys.finish(i + 1, 0);  // held until 1000
    }
    keys.sweep(999, 1'000'000);
    EXPECT_EQ(keys.size(), 100U) << "none expired yet";
    keys.sweep(1'000, 1'000'000);
    EXPECT_EQ(keys.size(), 50U) << "the finished ones expired; the live ones stay";
    EXPECT_TRUE(keys.taken("k", "1", 5'000));
}

// A sweep skips everything before the soonest a hold can expire; a hold finished since the last
// full pass with an earlier expiry brings that time forward.
TEST(UniqueKeyIndex, AHoldFinishedAfterAFullPassIsSweptAtItsOwnTime) {
    UniqueKeyIndex keys;
    keys.take("k", "long", 1, 10'000);
    keys.finish(1, 0);             // until 10000
    keys.sweep(5'000, 1'000'000);  // nothing can expire before 10000: skipped
    keys.take("k", "short", 2, 1'000);
    keys.finish(2, 0);  // until 1000
    keys.sweep(2'000, 1'000'000);
    EXPECT_EQ(keys.size(), 1U) << "the short hold was swept";
    keys.sweep(10'000, 1'000'000);
    EXPECT_EQ(keys.size(), 0U);
}

// A bucket at a time, while finishing goes on and the table grows (and rehashes) between
// sweeps: every expired hold goes in the end, and only those.
TEST(UniqueKeyIndex, SweepsOfOneBucketAcrossRehashesForgetEveryExpiredHoldInTheEnd) {
    UniqueKeyIndex keys;
    for (int i = 0; i < 500; ++i) {
        keys.take("k", std::to_string(i), i + 1, i % 3 == 0 ? 1'000'000 : 100);
        if (i % 2 == 0) keys.finish(i + 1, 0);  // until 100, or 1000000 for every third
        keys.sweep(200, 1);
    }
    // Held: the 250 live ones, and the 84 finished with the long hold (the even multiples of 3
    // below 500).
    constexpr std::size_t kHeld = 250 + 84;
    for (int i = 0; i < 20'000 && keys.size() > kHeld; ++i) keys.sweep(200, 1);
    EXPECT_EQ(keys.size(), kHeld);
    EXPECT_TRUE(keys.taken("k", "0", 200)) << "finished, held until 1000000";
    EXPECT_FALSE(keys.taken("k", "2", 200)) << "finished, held until 100";
    EXPECT_TRUE(keys.taken("k", "1", 200)) << "live";
}

// A rollback that brings back holds a sweep erased (they had expired) leaves them to a later
// sweep, however far the next expiry was.
TEST(UniqueKeyIndex, HoldsARollbackBringsBackAreSweptLater) {
    UniqueKeyIndex keys;
    keys.take("k", "short", 1, 100);
    keys.finish(1, 0);  // until 100
    keys.take("k", "long", 2, 1'000'000);
    keys.finish(2, 0);  // until 1000000
    keys.begin();
    keys.sweep(200, 1'000'000);  // forgets "short"; a full pass: the next expiry is 1000000
    EXPECT_EQ(keys.size(), 1U);
    keys.rollback();
    EXPECT_EQ(keys.size(), 2U) << "back with the rollback";
    keys.sweep(300, 1'000'000);
    EXPECT_EQ(keys.size(), 1U) << "swept again, not left until 1000000";
}

}  // namespace
}  // namespace crosstown
