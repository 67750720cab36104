#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/service/metrics.hpp>
#include <sstream>
#include <thread>

#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/journal_files.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The value on the line that starts with `series ` exactly, or -1.
double value_of(const std::string& text, const std::string& series) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
}

TEST(Metrics, CountsRequestsByClass) {
    RequestStats stats;
    stats.record(200, 6, 1ms, true);
    stats.record(204, 0, 1ms, true);
    stats.record(404, 10, 1ms, true);
    stats.record(500, 30, 20ms, false);
    Pool pool({.workers = 1});
    const auto text = render_metrics(stats, pool, 3);
    EXPECT_EQ(value_of(text, "crosstown_requests_total{code=\"2xx\"}"), 2);
    EXPECT_EQ(value_of(text, "crosstown_requests_total{code=\"4xx\"}"), 1);
    EXPECT_EQ(value_of(text, "crosstown_requests_total{code=\"5xx\"}"), 1);
    EXPECT_EQ(value_of(text, "crosstown_responses_undelivered_total"), 1);
    EXPECT_EQ(value_of(text, "crosstown_response_body_bytes_total"), 46);
    EXPECT_EQ(value_of(text, "crosstown_responders_busy"), 3);
    EXPECT_EQ(value_of(text, "crosstown_handler_seconds_count"), 4);
    EXPECT_EQ(value_of(text, "crosstown_handler_seconds_bucket{le=\"0.001\"}"), 3);
    EXPECT_EQ(value_of(text, "crosstown_handler_seconds_bucket{le=\"0.025\"}"), 4);
    EXPECT_EQ(value_of(text, "crosstown_handler_seconds_bucket{le=\"+Inf\"}"), 4);
}

TEST(Metrics, ReportsThePool) {
    RequestStats stats;
    // Far apart: under ThreadSanitizer on a loaded machine an empty callback was seen to take
    // 7 ms (its thread descheduled).
    Pool pool({.workers = 2, .queue_capacity = 50, .slow_callback = 100ms});
    pool.submit({[] {}, "one", nullptr, {}});
    pool.submit({[] { std::this_thread::sleep_for(150ms); }, "slow", nullptr, {}});
    pool.wait_idle();
    const auto text = render_metrics(stats, pool, 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_slow_total"), 1);
    EXPECT_EQ(value_of(text, "crosstown_deferred_total{outcome=\"dispatched\"}"), 2);
    EXPECT_EQ(value_of(text, "crosstown_deferred_total{outcome=\"completed\"}"), 2);
    EXPECT_EQ(value_of(text, "crosstown_deferred_total{outcome=\"shed\"}"), 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_total{outcome=\"abandoned\"}"), 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_queue_depth"), 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_queue_reserved"), 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_queue_capacity"), 50);
    EXPECT_EQ(value_of(text, "crosstown_pool_workers"), 2);
    EXPECT_EQ(value_of(text, "crosstown_pool_busy_workers"), 0);
    EXPECT_EQ(value_of(text, "crosstown_deferred_run_seconds_count"), 2);
    EXPECT_EQ(value_of(text, "crosstown_deferred_queue_wait_seconds_count"), 2);
}

TEST(Metrics, EveryFamilyHasHelpAndType) {
    RequestStats stats;
    Pool pool({.workers = 1});
    const auto text = render_metrics(stats, pool, 0);
    std::istringstream lines(text);
    std::string previous;
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("# TYPE ", 0) == 0) {
            EXPECT_EQ(previous.rfind("# HELP ", 0), 0u) << line;
        }
        EXPECT_FALSE(line.empty());
        previous = line;
    }
    EXPECT_THAT(text, HasSubstr("# TYPE crosstown_handler_seconds histogram"));
    EXPECT_EQ(text.back(), '\n');
}

TEST(Metrics, LabelValuesAreEscaped) {
    EXPECT_EQ(escape_label_value("plain-kind"), "plain-kind");
    EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

// A kind name the application chose, with a quote, a backslash and a newline: every line of
// the exposition is still one sample or one comment, and the kind's series reads back.
TEST(Metrics, AKindNamedWithQuotesAndNewlinesCannotBreakTheExposition) {
    test::TempDir dir;
    const std::string name = "say \"hi\"\\\nnow";
    JobKinds kinds;
    kinds.define(name, {}, [](const Job&, std::stop_token) {});
    Pool pool({.workers = 1});
    SqliteJobStore writer(test::open_rw(dir / "jobs.db"));
    JobRunner runner(kinds, writer, pool);
    RequestStats stats;
    const auto text = render_metrics(stats, pool, 0, &runner);
    EXPECT_EQ(
        value_of(text,
                 "crosstown_jobs_total{kind=\"say \\\"hi\\\"\\\\\\nnow\",outcome=\"enqueued\"}"),
        0);
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        EXPECT_TRUE(line.starts_with("# ") || line.starts_with("crosstown_")) << line;
    }
    pool.drain(1s, 1s);
    runner.stop();
}

}  // namespace
}  // namespace crosstown
