#include <gtest/gtest.h>

#include <crosstown/deferred/callback.hpp>
#include <memory>
#include <stop_token>

namespace crosstown {
namespace {

TEST(Callback, RunsAPlainCallable) {
    int calls = 0;
    Callback fn([&] { ++calls; });
    fn(std::stop_token{});
    EXPECT_EQ(calls, 1);
}

TEST(Callback, HandsTheStopTokenToCallablesThatTakeOne) {
    std::stop_source source;
    bool saw_stop = false;
    Callback fn([&](std::stop_token token) { saw_stop = token.stop_requested(); });
    source.request_stop();
    fn(source.get_token());
    EXPECT_TRUE(saw_stop);
}

TEST(Callback, HoldsMoveOnlyCaptures) {
    auto value = std::make_unique<int>(42);
    int seen = 0;
    Callback fn([v = std::move(value), &seen] { seen = *v; });
    Callback moved = std::move(fn);
    EXPECT_FALSE(fn);  // NOLINT(bugprone-use-after-move): moved-from is empty by design
    moved(std::stop_token{});
    EXPECT_EQ(seen, 42);
}

TEST(Callback, DestroysItsCaptureWithIt) {
    auto shared = std::make_shared<int>(1);
    std::weak_ptr<int> weak = shared;
    {
        Callback fn([s = std::move(shared)] {});
        EXPECT_FALSE(weak.expired());
    }
    EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace crosstown
