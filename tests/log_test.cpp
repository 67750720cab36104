#include <gtest/gtest.h>

#include <crosstown/log.hpp>

#include "test_support.hpp"

namespace crosstown {
namespace {

TEST(Log, DropsLinesBelowTheLevel) {
    test::LogCapture logs;
    log::set_level(log::Level::warn);
    log::info("quiet {}", 1);
    log::warn("loud {}", 2);
    log::set_level(log::Level::info);
    EXPECT_EQ(logs.lines(), (std::vector<std::string>{"loud 2"}));
}

TEST(Log, DefaultSinkWritesOneTimestampedLineToStderr) {
    ::testing::internal::CaptureStderr();
    log::error("request {} failed", "abc");
    const auto out = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find("Z error request abc failed\n"), std::string::npos) << out;
    EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
}

}  // namespace
}  // namespace crosstown
