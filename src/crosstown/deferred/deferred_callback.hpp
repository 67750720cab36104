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
    // Its work is kept by its submitter, which counts it too (a durable job's attempt: its job
    // stays in the journal). DeferredCounters leave it out, and when the pool gives it up
    // (drained, or stuck past the grace) nothing is lost.
    bool kept_by_submitter = false;
};

}  // namespace crosstown
