// No-op durable jobs through the Redis journal, the way Sidekiq's own load test measures
// itself: JOBS jobs are enqueued first (held and released in bulks of 100, as one request
// would hold its jobs), then one consumer with CONCURRENCY workers takes, runs and acknowledges
// them all. Prints one line of figures for bench/redis_jobs, which runs Sidekiq beside it on
// the same redis-server.
//
// Beside each rate, the round trips to Redis per job (the store's own count: a command, a
// script or a whole pipeline is one).
//
//   redis_jobs_bench ADDRESS JOBS CONCURRENCY
//   -> enqueue_per_s=N run_per_s=N enqueue_trips_per_job=N run_trips_per_job=N
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
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

double per_job(std::uint64_t n, std::size_t jobs) {
    return static_cast<double>(n) / static_cast<double>(jobs);
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

    const auto trips_at_start = journal.figures().round_trips;
    const auto enqueue_start = Clock::now();
    const std::vector<crosstown::NewJob> bulk(kBulk, crosstown::NewJob{"noop", "{}", ""});
    for (std::size_t done = 0; done < jobs; done += kBulk) {
        journal.release(journal.commit(bulk));
    }
    const auto enqueued = Clock::now();
    const auto trips_enqueued = journal.figures().round_trips;

    crosstown::JobRunner runner(kinds, journal, pool);
    const auto run_start = Clock::now();
    {
        crosstown::RedisJobFeed feed(journal, runner, true);
        while (runner.totals().succeeded < jobs)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const auto ran = Clock::now();
    const auto trips_ran = journal.figures().round_trips;
    runner.stop();
    pool.drain(std::chrono::seconds(5));
    journal.leave();
    std::printf("%s\n", fmt::format("enqueue_per_s={:.0f} run_per_s={:.0f} "
                                    "enqueue_trips_per_job={:.3f} run_trips_per_job={:.3f}",
                                    per_second(jobs, enqueued - enqueue_start),
                                    per_second(jobs, ran - run_start),
                                    per_job(trips_enqueued - trips_at_start, jobs),
                                    per_job(trips_ran - trips_enqueued, jobs))
                            .c_str());
    return 0;
}
