// crosstown::DeferredCallback: what the pool queues and runs. Moved from thread to thread, owned
// by one at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/response_outcome.hpp"

namespace crosstown {

// A callback on its way to a worker: the callable, and what its log lines and
// response_delivered() need.
struct DeferredCallback {
    Callback fn;
    std::string name;                                 // for logs; may be empty
    std::shared_ptr<const ResponseOutcome> outcome;   // null when no request is behind it
    std::chrono::steady_clock::time_point queued_at;  // set by the pool
    // An attempt of a durable job: its runner counts it (JobCounts), not DeferredCounters, and
    // when the pool gives it up (drained) the job simply stays in the journal.
    bool durable_job = false;
};

}  // namespace crosstown
