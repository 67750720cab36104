#include <gtest/gtest.h>

#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/pool.hpp>
#include <crosstown/observe/log.hpp>

#include "support/log_capture.hpp"

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

// Sets the level for the scope's lifetime and restores info, the level every other test expects.
class LevelScope {
  public:
    explicit LevelScope(log::Level level) { log::set_level(level); }
    ~LevelScope() { log::set_level(log::Level::info); }
    LevelScope(const LevelScope&) = delete;
    LevelScope& operator=(const LevelScope&) = delete;
};

TEST(Log, DebugLinesOnlyAtTheDebugLevel) {
    test::LogCapture logs;
    {
        LevelScope level(log::Level::debug);
        EXPECT_TRUE(log::enabled(log::Level::debug));
        log::debug("chatty {}", 1);
    }
    EXPECT_FALSE(log::enabled(log::Level::debug));
    EXPECT_TRUE(log::enabled(log::Level::info));
    log::debug("chatty {}", 2);
    EXPECT_EQ(logs.lines(), (std::vector<std::string>{"chatty 1"}));
}

// Registers two pool callbacks, one same_thread callback, one that the 404 skips and one that
// is forgotten, then dispatches.
void dispatch_a_request() {
    Pool pool({.workers = 1});
    DeferredRegistry registry(100);
    registry.add({}, [] {});
    registry.add({.run_on = always}, [] {});
    registry.add({.same_thread = true, .run_on = always}, [] {});
    registry.add({.name = "forgotten", .run_on = always}, [] {});
    registry.forget("forgotten");
    registry.add({.run_on = always}, [] {});
    registry.dispatch(pool, {.request_id = "req-7", .status = 404, .delivered = true});
    pool.wait_idle();
}

TEST(Log, AtDebugEachDispatchSaysWhereTheCallbacksWent) {
    test::LogCapture logs;
    {
        LevelScope level(log::Level::debug);
        dispatch_a_request();
    }
    EXPECT_TRUE(
        logs.contains("request req-7 (404, delivered): 2 callbacks to the pool, 1 on "
                      "this thread, 1 skipped, 1 forgotten"))
        << ::testing::PrintToString(logs.lines());
}

TEST(Log, AtInfoADispatchLogsNothing) {
    test::LogCapture logs;
    dispatch_a_request();
    EXPECT_EQ(logs.lines(), std::vector<std::string>{});
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
