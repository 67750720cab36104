// crosstown::PoolConfig: the size of the process's pool of workers for deferred callbacks,
// and what happens when its queue is full. The defaults here are the server's defaults.
//
// The pool is elastic: it keeps `min_workers` threads, starts more on demand (when callbacks
// wait and no worker is idle) up to `workers`, and retires those above the minimum after
// `idle_timeout` without work, as Twisted's thread pool and PHP-FPM's pm = dynamic do. The
// defaults run a burst of 100 slow calls (the phone-call example) all at once, and leave an
// idle process with four. min_workers = workers makes a fixed pool, started up front.
#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

namespace crosstown {

// When the queue is full:
enum class Overflow {
    // Nothing is lost: a handler registering a callback while the queue is full waits for room
    // (its client waits: backpressure), and a dispatch that finds no room waits for it. The
    // server keeps serving requests that defer nothing with spare responder threads.
    block,
    caller_runs,  // the responder runs the callback itself, after its response
    reject,       // dropped, counted and logged by name (opt-in loss)
    // Decided at registration instead: follow_response throws Overloaded while the handler can
    // still answer, and the request gets a 503 with Retry-After. Should the queue fill up between
    // registration and dispatch anyway, the dispatch waits for room as under block.
    shed,
    // For durable jobs (follow_response_durably): a handler registering one never waits for
    // room, since the job is kept by its store once committed; it waits in the journal's
    // runner until the queue has room. In-memory callbacks are treated as under block. (Under
    // the other policies, a durable job's registration waits for room as a callback's does
    // under block; once committed, no durable job ever makes a responder wait.)
    spill,
};

// "block", "caller_runs", "reject", "shed", "spill": the option's spelling.
constexpr std::string_view overflow_name(Overflow overflow) {
    constexpr std::string_view names[] = {"block", "caller_runs", "reject", "shed", "spill"};
    return names[static_cast<int>(overflow)];
}

struct PoolConfig {
    unsigned workers = 128;     // the most worker threads
    unsigned min_workers = 4;   // kept when idle; clamped to `workers`
    std::chrono::milliseconds idle_timeout{10'000};
    std::size_t queue_capacity = 10'000;
    Overflow overflow = Overflow::block;
    // A callback that runs longer is logged once when it ends, with its name, request id and
    // run time, and counted (like PHP-FPM's request_slowlog_timeout). Zero: off.
    std::chrono::milliseconds slow_callback{0};
};

}  // namespace crosstown
