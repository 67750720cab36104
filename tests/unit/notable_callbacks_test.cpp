#include <gtest/gtest.h>

#include <crosstown/deferred/notable_callbacks.hpp>
#include <string>
#include <thread>
#include <vector>

namespace crosstown {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> names(const std::vector<NotableCallback>& callbacks) {
    std::vector<std::string> out;
    for (const auto& c : callbacks) out.push_back(c.name);
    return out;
}

TEST(NotableCallbacks, KeepsTheSlowestSlowestFirst) {
    NotableCallbacks notable;
    const std::pair<const char*, std::chrono::milliseconds> runs[] = {
        {"a", 5ms}, {"b", 50ms}, {"c", 1ms}, {"d", 40ms}, {"e", 30ms},
        {"f", 2ms}, {"g", 60ms}, {"h", 3ms}, {"i", 45ms}};
    for (const auto& [name, time] : runs) notable.ran(name, "req", time);
    const auto slowest = notable.snapshot().slowest;
    EXPECT_EQ(names(slowest), (std::vector<std::string>{"g", "b", "i", "d", "e"}));
    EXPECT_EQ(slowest.front().run_time, 60ms);
    EXPECT_EQ(slowest.front().request_id, "req");
}

TEST(NotableCallbacks, KeepsTheLatestFailuresNewestFirst) {
    NotableCallbacks notable;
    for (int i = 1; i <= 12; ++i) {
        notable.failed("call-" + std::to_string(i), "req-1", 1ms, "busy " + std::to_string(i));
    }
    const auto failures = notable.snapshot().recent_failures;
    ASSERT_EQ(failures.size(), NotableCallbacks::kFailures);
    EXPECT_EQ(failures.front().name, "call-12");
    EXPECT_EQ(failures.front().error, "busy 12");
    EXPECT_EQ(failures.back().name, "call-3");
}

TEST(NotableCallbacks, KeepsTheSlowestWhenManyThreadsRecord) {
    NotableCallbacks notable;
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&notable, t] {
            for (int i = 0; i < 2000; ++i) {
                notable.ran("t" + std::to_string(t), "-", std::chrono::microseconds(i * 4 + t));
            }
        });
    }
    threads.clear();
    const auto slowest = notable.snapshot().slowest;
    ASSERT_EQ(slowest.size(), NotableCallbacks::kSlowest);
    for (std::size_t i = 0; i < slowest.size(); ++i) {  // 7999us, 7998us, ... by thread 3, 2, ...
        EXPECT_EQ(slowest[i].run_time, std::chrono::microseconds(7999 - i)) << i;
    }
}

}  // namespace
}  // namespace crosstown
