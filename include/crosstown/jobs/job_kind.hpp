// crosstown::JobKind: what runs a durable job of one kind, and how it is retried.
//
//   server.jobs().define("place-call", {.max_attempts = 8, .timeout = 30s, .concurrency = 50},
//                        [](const crosstown::Job& job, std::stop_token stop) { ... });
//
// A handler that throws, or is still running at `timeout` (its stop token is requested then), has
// failed the attempt, even if it returns normally after that; one still running 500 ms later is
// given up, and its place in the kind's concurrency freed for the next job. The job runs again
// after a backoff (doubling from `backoff`, capped at `max_backoff`, with jitter), until
// `max_attempts`; then it is dead, kept in the journal with its last error (`fcgi_app jobs list
// --dead`, `jobs retry`). The defaults suit a web application's side work: ten attempts over about
// nine minutes, not the days a batch queue would retry for.
#pragma once

#include <chrono>
#include <functional>
#include <stop_token>
#include <string>

#include "crosstown/jobs/job.hpp"

namespace crosstown {

using JobHandler = std::function<void(const Job&, std::stop_token)>;

// At most `per_second` starts a second on average, and `burst` at once after a quiet spell (a
// token bucket). per_second 0: no limit.
struct JobRate {
    double per_second = 0;
    unsigned burst = 1;
};

struct JobKindOptions {
    // The longest timeout, backoff, max_backoff or unique_for that define() takes: 30 days.
    static constexpr std::chrono::milliseconds kLongest{30LL * 24 * 3'600'000};

    unsigned max_attempts = 10;
    std::chrono::milliseconds backoff{1'000};  // before the second attempt; then doubling
    std::chrono::milliseconds max_backoff{300'000};
    std::chrono::milliseconds timeout{60'000};
    // At most this many jobs of the kind run at once (0: as many as the pool has workers), so
    // one slow kind cannot take every worker.
    unsigned concurrency = 0;
    // How long a job's unique key (DurableOptions::unique_key) stays taken after it finished.
    std::chrono::milliseconds unique_for{24LL * 3'600'000};
    // Jobs of the kind start at most at this rate (a third-party API's limit): across every
    // instance sharing a Redis journal, in the process with SQLite or in memory. A job above
    // the rate waits in the store or in its kind's line, not in a worker, and does not fail.
    // Jobs taken over from a dead Redis instance start at once.
    JobRate rate{};
};

struct JobKind {
    std::string name;
    JobKindOptions options;
    JobHandler handler;
};

}  // namespace crosstown
