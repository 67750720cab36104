// What a status page costs the server: collect_status + render, with 128 workers all busy, a
// full queue of 10 000 callbacks, full slowest and failure lists and five minutes of samples,
// as on a saturated process. The goal is well under 50 ms a page. A /metrics scrape of the
// same process runs beside it, as the yardstick.
//
//   build/release/bench/status_page_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/observe/log.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/metrics.hpp"
#include "crosstown/service/sample_ring.hpp"
#include "crosstown/service/status_page.hpp"
#include "crosstown/service/status_report.hpp"

namespace {

using namespace std::chrono_literals;
using crosstown::DeferredCallback;

constexpr unsigned kWorkers = 128;
constexpr std::size_t kQueue = 10'000;

// A saturated process: every worker blocked in a callback until release(), the queue full.
class SaturatedProcess {
  public:
    SaturatedProcess() {
        crosstown::log::set_sink([](crosstown::log::Level, std::string_view) {});  // failures
        auto outcome = std::make_shared<crosstown::ResponseOutcome>(
            crosstown::ResponseOutcome{.request_id = "0123456789abcdef0123456789abcdef"});
        for (int i = 0; i < 20; ++i) {  // fill the lists of failures and slowest callbacks
            pool_.submit({[] { throw std::runtime_error("the remote API said 503"); },
                          "place-call-" + std::to_string(i), outcome, {}});
        }
        pool_.wait_idle();
        for (unsigned i = 0; i < kWorkers; ++i) {
            pool_.submit({[this](std::stop_token) { released_.wait(); }, "blocked", outcome, {}});
        }
        while (pool_.busy_workers() < kWorkers) std::this_thread::sleep_for(1ms);
        for (std::size_t i = 0; i < kQueue; ++i) pool_.submit({[] {}, "queued", outcome, {}});
        for (int i = 0; i < 100'000; ++i) stats_.record(200, 100, 50us, true);
        for (std::size_t i = 0; i < crosstown::SampleRing::kCapacity; ++i) {
            samples_.add(crosstown::take_sample(stats_, pool_, 8, nullptr));
        }
    }
    ~SaturatedProcess() {
        released_.count_down();
        pool_.wait_idle();
        crosstown::log::set_sink(nullptr);
    }

    crosstown::StatusReport report() const {
        return crosstown::collect_status({.requests = stats_,
                                          .pool = pool_,
                                          .samples = samples_,
                                          .responders = 8,
                                          .busy_responders = 8,
                                          .accepting = true,
                                          .started = std::chrono::steady_clock::now() - 1h});
    }
    std::string metrics() const { return crosstown::render_metrics(stats_, pool_, 8); }
    std::size_t queue_depth() const { return pool_.queue_depth(); }

  private:
    std::latch released_{1};
    crosstown::RequestStats stats_;
    crosstown::Pool pool_{{.workers = kWorkers,
                           .queue_capacity = kQueue,
                           .overflow = crosstown::Overflow::reject}};
    crosstown::SampleRing samples_;
};

void status_page(benchmark::State& state, crosstown::StatusFormat format) {
    SaturatedProcess process;
    if (process.queue_depth() != kQueue) state.SkipWithError("the queue is not full");
    std::size_t bytes = 0;
    for (auto _ : state) {
        const auto page = crosstown::render_status(process.report(), format);
        bytes = page.size();
        benchmark::DoNotOptimize(page.data());
    }
    state.counters["page_bytes"] = static_cast<double>(bytes);
}

void status_page_html(benchmark::State& state) { status_page(state, crosstown::StatusFormat::html); }
void status_page_json(benchmark::State& state) { status_page(state, crosstown::StatusFormat::json); }

void metrics_text(benchmark::State& state) {
    SaturatedProcess process;
    if (process.queue_depth() != kQueue) state.SkipWithError("the queue is not full");
    for (auto _ : state) {
        const auto text = process.metrics();
        benchmark::DoNotOptimize(text.data());
    }
}

}  // namespace

BENCHMARK(status_page_html)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(status_page_json)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(metrics_text)->Unit(benchmark::kMillisecond)->UseRealTime();
