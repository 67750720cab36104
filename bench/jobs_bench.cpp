// Throughput of no-op durable jobs, end to end: each of 8 threads (standing for responders)
// commits one job per "request" through the journal's group commit and starts it, and the
// iteration ends when every job has run and its completion is written (the row deleted). Beside
// it, in the same binary and run, the same requests with an in-memory follow_response
// callback instead, so the figure reads as a ratio. The argument is --journal-sync: 0 normal,
// 1 full. The journal lives in a fresh directory under /tmp.
//
//   build/release/bench/jobs_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

namespace {

constexpr int kThreads = 8;
constexpr int kRequestsPerThread = 2'500;
constexpr int kJobs = kThreads * kRequestsPerThread;

// A journal in a directory of its own, removed afterwards.
struct ScratchJournal {
    std::filesystem::path dir;
    ScratchJournal() {
        std::string pattern = "/tmp/jobs_bench-XXXXXX";
        dir = ::mkdtemp(pattern.data());
    }
    ~ScratchJournal() { std::filesystem::remove_all(dir); }
    std::string path() const { return (dir / "jobs.db").string(); }
};

// Runs `request(thread, i)` kRequestsPerThread times on each of kThreads threads.
template <class Request>
void from_threads(Request request) {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&request, t] {
            for (int i = 0; i < kRequestsPerThread; ++i) request(t, i);
        });
    }
}

void durable_noop_jobs(benchmark::State& state) {
    const auto sync =
        state.range(0) == 1 ? crosstown::JournalSync::full : crosstown::JournalSync::normal;
    ScratchJournal scratch;
    crosstown::Pool pool;
    crosstown::JobKinds kinds;
    kinds.define("noop", {}, [](const crosstown::Job&, std::stop_token) {});
    crosstown::SqliteJobStore writer(crosstown::SqliteJobDatabase::open(
        scratch.path(), sync, crosstown::SqliteJobDatabase::Access::read_write));
    crosstown::JobRunner runner(kinds, writer, pool);
    const auto outcome = std::make_shared<const crosstown::ResponseOutcome>(
        crosstown::ResponseOutcome{"bench", 200, true, nullptr, {}});
    for (auto _ : state) {
        from_threads([&](int, int) {
            crosstown::JobBatch batch(&kinds, 1);
            batch.add("noop", "{}", {});
            runner.start(runner.commit(batch, 200, "bench"), outcome);
        });
        runner.wait_idle();
        writer.flush();
    }
    state.SetItemsProcessed(state.iterations() * kJobs);
    const auto sizes = writer.batch_sizes();
    state.counters["jobs_per_commit"] =
        sizes.count == 0 ? 0.0 : static_cast<double>(sizes.sum) / static_cast<double>(sizes.count);
}

void in_memory_noop_callbacks(benchmark::State& state) {
    crosstown::Pool pool;
    for (auto _ : state) {
        std::latch done(kJobs);
        from_threads([&](int, int) {
            pool.submit({[&done] { done.count_down(); }, "noop", nullptr, {}});
        });
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kJobs);
}

}  // namespace

BENCHMARK(in_memory_noop_callbacks)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(durable_noop_jobs)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
