// No-op durable jobs through the Redis journal, the way Sidekiq's own load test measures
// itself: JOBS jobs are enqueued first (held and released in bulks of 100, as one request
// would hold its jobs), then one consumer with CONCURRENCY workers takes, runs and acknowledges
// them all. Prints one line of figures for bench/redis_jobs, which runs Sidekiq beside it on
// the same redis-server.
//
//   redis_jobs_bench ADDRESS JOBS CONCURRENCY
//   -> enqueue_per_s=N run_per_s=N
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/redis/redis_job_feed.hpp"
#include "crosstown/jobs/redis/redis_job_store.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kBulk = 100;

double per_second(std::size_t n, Clock::duration d) {
    return static_cast<double>(n) / std::chrono::duration<double>(d).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s ADDRESS JOBS CONCURRENCY\n", argv[0]);
        return 2;
    }
    const std::string address = argv[1];
    const auto jobs = static_cast<std::size_t>(std::strtoull(argv[2], nullptr, 10));
    const auto concurrency = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10));

    crosstown::JobKinds kinds;
    kinds.define("noop", {.concurrency = concurrency},
                 [](const crosstown::Job&, std::stop_token) {});
    crosstown::PoolConfig pool_config;
    pool_config.workers = pool_config.min_workers = concurrency;
    crosstown::Pool pool(pool_config);
    crosstown::RedisJournalOptions options;
    options.prefix = "bench";
    options.instance = "bench";
    crosstown::RedisJobStore journal(address, options, {"noop"});

    const auto enqueue_start = Clock::now();
    const std::vector<crosstown::NewJob> bulk(kBulk, crosstown::NewJob{"noop", "{}", ""});
    for (std::size_t done = 0; done < jobs; done += kBulk) {
        journal.release(journal.commit(bulk));
    }
    const auto enqueued = Clock::now();

    crosstown::JobRunner runner(kinds, journal, pool);
    const auto run_start = Clock::now();
    {
        crosstown::RedisJobFeed feed(journal, runner, true);
        while (runner.totals().succeeded < jobs)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const auto ran = Clock::now();
    runner.stop();
    pool.drain(std::chrono::seconds(5));
    journal.leave();
    std::printf("%s\n", fmt::format("enqueue_per_s={:.0f} run_per_s={:.0f}",
                                    per_second(jobs, enqueued - enqueue_start),
                                    per_second(jobs, ran - run_start))
                            .c_str());
    return 0;
}
