#include <gtest/gtest.h>

#include <crosstown/task.hpp>
#include <memory>
#include <stop_token>

namespace crosstown {
namespace {

TEST(Task, RunsAPlainCallable) {
    int calls = 0;
    Task task([&] { ++calls; });
    task(std::stop_token{});
    EXPECT_EQ(calls, 1);
}

TEST(Task, HandsTheStopTokenToCallablesThatTakeOne) {
    std::stop_source source;
    bool saw_stop = false;
    Task task([&](std::stop_token token) { saw_stop = token.stop_requested(); });
    source.request_stop();
    task(source.get_token());
    EXPECT_TRUE(saw_stop);
}

TEST(Task, HoldsMoveOnlyCaptures) {
    auto value = std::make_unique<int>(42);
    int seen = 0;
    Task task([v = std::move(value), &seen] { seen = *v; });
    Task moved = std::move(task);
    EXPECT_FALSE(task);  // NOLINT(bugprone-use-after-move): moved-from is empty by design
    moved(std::stop_token{});
    EXPECT_EQ(seen, 42);
}

TEST(Task, DestroysItsCaptureWithIt) {
    auto shared = std::make_shared<int>(1);
    std::weak_ptr<int> weak = shared;
    {
        Task task([s = std::move(shared)] {});
        EXPECT_FALSE(weak.expired());
    }
    EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace crosstown
