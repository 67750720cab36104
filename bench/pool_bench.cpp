// Throughput of trivial deferred callbacks, end to end (submit -> run -> all done), through
// crosstown::Pool beside boost::asio::thread_pool and beside one std::jthread per fn, in one
// binary and one run so machine noise hits them alike. The argument is the worker count, of a
// fixed pool; crosstown_default_pool is the server's default elastic pool (4..128 workers),
// which starts workers while callbacks wait. jthread_per_task has none: it starts a thread
// for every callback.
//
//   build/release/bench/pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <crosstown/deferred/pool.hpp>
#include <latch>
#include <thread>
#include <vector>

namespace {

constexpr int kCallbacks = 10'000;
constexpr int kBatch = 100;

crosstown::DeferredCallback trivial(std::latch& done) {
    return crosstown::DeferredCallback{[&done] { done.count_down(); }, {}, {}, {}};
}

crosstown::PoolConfig config_for(const benchmark::State& state) {
    const auto workers = static_cast<unsigned>(state.range(0));
    return {.workers = workers, .min_workers = workers, .queue_capacity = 100'000};
}

void submit_in_batches(crosstown::Pool& pool, std::latch& done) {
    for (int b = 0; b < kCallbacks / kBatch; ++b) {
        std::vector<crosstown::DeferredCallback> batch;
        batch.reserve(kBatch);
        for (int i = 0; i < kBatch; ++i) batch.push_back(trivial(done));
        pool.submit_batch(std::move(batch));
    }
}

void crosstown_one_by_one(benchmark::State& state) {
    crosstown::Pool pool(config_for(state));
    for (auto _ : state) {
        std::latch done(kCallbacks);
        for (int i = 0; i < kCallbacks; ++i) pool.submit(trivial(done));
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kCallbacks);
}

void crosstown_batches_of_100(benchmark::State& state) {
    crosstown::Pool pool(config_for(state));
    for (auto _ : state) {
        std::latch done(kCallbacks);
        submit_in_batches(pool, done);
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kCallbacks);
}

// The same through the default elastic pool, queue as large as the others'.
void crosstown_default_pool_batches_of_100(benchmark::State& state) {
    crosstown::Pool pool({.queue_capacity = 100'000});
    for (auto _ : state) {
        std::latch done(kCallbacks);
        submit_in_batches(pool, done);
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kCallbacks);
    state.counters["workers"] = pool.live_workers();
}

// What dispatch costs the responder thread: wrap 100 callbacks and hand them over, with the
// workers idle at the start of each batch (waiting for them is not timed).
void crosstown_submit_one_batch_of_100(benchmark::State& state) {
    crosstown::Pool pool(config_for(state));
    for (auto _ : state) {
        std::latch done(kBatch);
        std::vector<crosstown::DeferredCallback> batch;
        batch.reserve(kBatch);
        for (int i = 0; i < kBatch; ++i) batch.push_back(trivial(done));
        pool.submit_batch(std::move(batch));
        state.PauseTiming();
        done.wait();
        pool.wait_idle();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
}

void asio_thread_pool(benchmark::State& state) {
    boost::asio::thread_pool pool(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        std::latch done(kCallbacks);
        for (int i = 0; i < kCallbacks; ++i)
            boost::asio::post(pool, [&done] { done.count_down(); });
        done.wait();
    }
    pool.join();
    state.SetItemsProcessed(state.iterations() * kCallbacks);
}

void jthread_per_task(benchmark::State& state) {
    constexpr int kThreads = 1'000;  // fewer: each costs a clone() and a join
    for (auto _ : state) {
        std::latch done(kThreads);
        std::vector<std::jthread> threads;
        threads.reserve(kThreads);
        for (int i = 0; i < kThreads; ++i) threads.emplace_back([&done] { done.count_down(); });
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kThreads);
}

}  // namespace

BENCHMARK(crosstown_one_by_one)->Arg(2)->Arg(8)->UseRealTime();
BENCHMARK(crosstown_batches_of_100)->Arg(2)->Arg(8)->UseRealTime();
BENCHMARK(crosstown_default_pool_batches_of_100)->UseRealTime();
BENCHMARK(asio_thread_pool)->Arg(2)->Arg(8)->UseRealTime();
BENCHMARK(jthread_per_task)->UseRealTime();
BENCHMARK(crosstown_submit_one_batch_of_100)->Arg(2)->Arg(8)->UseRealTime();
