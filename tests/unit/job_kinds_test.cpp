#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <crosstown/jobs/job_kinds.hpp>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(JobKinds, DefineRefusesWhatCannotRun) {
    JobKinds kinds;
    auto noop = [](const Job&, std::stop_token) {};
    EXPECT_TRUE(kinds.empty());
    EXPECT_THROW(kinds.define("", {}, noop), std::invalid_argument);
    EXPECT_THROW(kinds.define("k", {}, nullptr), std::invalid_argument);
    EXPECT_THROW(kinds.define("k", {.max_attempts = 0}, noop), std::invalid_argument);
    const auto refusal = [&](JobKindOptions options) {
        try {
            kinds.define("k", options, noop);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    // A timeout that overflows the clock would time every attempt out at once.
    EXPECT_THAT(refusal({.timeout = std::chrono::milliseconds::max()}), HasSubstr("timeout"));
    EXPECT_THAT(refusal({.timeout = 0ms}), HasSubstr("timeout"));
    EXPECT_THAT(refusal({.backoff = 0ms}), HasSubstr("backoff"));
    EXPECT_THAT(refusal({.backoff = -5ms}), HasSubstr("backoff"));
    EXPECT_THAT(refusal({.backoff = 10s, .max_backoff = 1s}), HasSubstr("max_backoff"));
    EXPECT_THAT(refusal({.max_backoff = JobKindOptions::kLongest + 1ms}), HasSubstr("max_backoff"));
    EXPECT_THAT(refusal({.unique_for = -1ms}), HasSubstr("unique_for"));
    EXPECT_THAT(refusal({.unique_for = JobKindOptions::kLongest + 1ms}), HasSubstr("unique_for"));
    EXPECT_THAT(refusal({.rate = {.per_second = -1}}), HasSubstr("rate"));
    EXPECT_THAT(refusal({.rate = {.per_second = 5, .burst = 0}}), HasSubstr("rate"));
    EXPECT_THAT(refusal({.rate = {.per_second = std::numeric_limits<double>::quiet_NaN()}}),
                HasSubstr("rate"));
    EXPECT_TRUE(kinds.empty()) << "a refused kind was defined all the same";
    kinds.define("k", {}, noop);
    EXPECT_THROW(kinds.define("k", {}, noop), std::invalid_argument);
    kinds.define("a", {.concurrency = 2}, noop);
    EXPECT_EQ(kinds.names(), (std::vector<std::string>{"a", "k"}));
    ASSERT_NE(kinds.find("a"), nullptr);
    EXPECT_EQ(kinds.find("a")->options.concurrency, 2U);
    EXPECT_EQ(kinds.find("nope"), nullptr);
}

}  // namespace
}  // namespace crosstown
