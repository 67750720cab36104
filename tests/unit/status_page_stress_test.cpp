// The status page read in a loop while the pool is busy with callbacks that complete, fail and
// run slow, and the sampler adds samples: nothing is lost, every page renders, and under the
// tsan preset no read of the page races with the workers.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/sample_ring.hpp"
#include "crosstown/service/status_page.hpp"
#include "crosstown/service/status_report.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;

constexpr int kSubmitters = 3;
constexpr int kPerSubmitter = 20000;

DeferredCallback numbered(int i, std::shared_ptr<const ResponseOutcome> outcome) {
    Callback fn = [i] {
        if (i % 10 == 3) throw std::runtime_error("failure " + std::to_string(i));
        if (i % 500 == 0) std::this_thread::sleep_for(2ms);  // past slow_callback
    };
    return {std::move(fn), "callback-" + std::to_string(i), std::move(outcome), {}};
}

TEST(StatusPageStress, RendersWhileTheWorkersRun) {
    test::LogCapture quiet;  // failures and slow callbacks log
    RequestStats stats;
    Pool pool({.workers = 4, .queue_capacity = 256, .slow_callback = 1ms});
    SampleRing samples;
    std::atomic<bool> done{false};
    std::atomic<int> pages{0};

    std::vector<std::jthread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&, r] {
            while (!done.load()) {
                const auto report = collect_status({.requests = stats,
                                                    .pool = pool,
                                                    .samples = samples,
                                                    .responders = 8,
                                                    .busy_responders = 0,
                                                    .accepting = true,
                                                    .started = std::chrono::steady_clock::now()});
                const auto page =
                    render_status(report, r == 0 ? StatusFormat::html : StatusFormat::json);
                if (!page.empty()) pages.fetch_add(1);
            }
        });
    }
    std::jthread sampler([&] {
        while (!done.load()) {
            samples.add(take_sample(stats, pool, 0, nullptr));
            std::this_thread::sleep_for(1ms);
        }
    });
    {
        std::vector<std::jthread> submitters;
        for (int s = 0; s < kSubmitters; ++s) {
            submitters.emplace_back([&, s] {
                auto outcome = std::make_shared<ResponseOutcome>(
                    ResponseOutcome{.request_id = "req-" + std::to_string(s)});
                for (int i = 1; i <= kPerSubmitter; ++i) {
                    stats.started();
                    pool.submit(numbered(i, outcome));
                    stats.record(200, 0, 1us, true);
                    stats.ended();
                }
            });
        }
    }
    pool.wait_idle();
    done.store(true);
    readers.clear();

    const auto counts = pool.counters().snapshot();
    constexpr auto kTotal = static_cast<std::uint64_t>(kSubmitters * kPerSubmitter);
    EXPECT_EQ(counts.dispatched, kTotal);
    EXPECT_EQ(counts.completed + counts.failed, kTotal);
    EXPECT_EQ(counts.failed, kTotal / 10);
    // At least the sleeping ones; a preempted quick one may count too.
    EXPECT_GE(pool.slow_callbacks(), static_cast<std::uint64_t>(kSubmitters * kPerSubmitter / 500));
    EXPECT_GT(pages.load(), 0);
    const auto notable = pool.notable_callbacks();
    EXPECT_EQ(notable.recent_failures.size(), NotableCallbacks::kFailures);
    ASSERT_FALSE(notable.slowest.empty());
    EXPECT_GE(notable.slowest.front().run_time, 2ms);
}

}  // namespace
}  // namespace crosstown
