#include <gtest/gtest.h>

#include <crosstown/observe/log.hpp>

#include "support/test_support.hpp"

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

TEST(Log, ClientBytesCannotSplitOrForgeALine) {
    test::LogCapture logs;
    log::info("access GET {} 404", "/x\r\n2026-01-01T00:00:00Z info forged\x1b[31m\\ caf\xc3\xa9");
    EXPECT_EQ(logs.lines(),
              (std::vector<std::string>{"access GET /x\\x0D\\x0A2026-01-01T00:00:00Z info forged"
                                        "\\x1B[31m\\x5C caf\\xC3\\xA9 404"}));
}

TEST(Log, PlainLinesAreUntouched) {
    test::LogCapture logs;
    log::info("access GET /calls?count=1&x=\"y\" 202 id=abc");
    EXPECT_EQ(logs.lines(),
              (std::vector<std::string>{"access GET /calls?count=1&x=\"y\" 202 id=abc"}));
}

}  // namespace
}  // namespace crosstown
