// crosstown::ResponseOutcome: what a request's response ended as, shared by its callbacks.
//
// The server fills one in once the FastCGI request is finished (status sent, whether it reached
// nginx) and every callback of that request holds it, so the request's owned data (keep_alive)
// lives until the last callback has finished. A callback asks crosstown::response_delivered() to
// learn whether the client got the response.
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace crosstown {

struct ResponseOutcome {
    std::string request_id;
    int status = 200;
    bool delivered = true;
    std::shared_ptr<const void> keep_alive;  // the request's data; freed with the last callback
    // When FCGX_Finish_r returned: the earliest any callback of the request may start.
    std::chrono::steady_clock::time_point finished_at{};
    // The request's W3C traceparent (Request::trace_parent), for a callback's own tracing.
    std::string trace_parent{};
};

// Inside a deferred callback: whether its request's response reached nginx.
// Elsewhere (no request behind the running code): true.
bool response_delivered();

// Inside a deferred callback: its request's outcome; elsewhere nullptr.
const ResponseOutcome* current_response_outcome();

}  // namespace crosstown
