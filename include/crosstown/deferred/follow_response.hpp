// crosstown::follow_response: run work after the response has gone out.
//
//   crosstown::follow_response([number] { phone_api.place_call(number); });
//   crosstown::follow_response({.name = "audit", .run_on = crosstown::always}, write_audit);
//
// Inside a handler the callback joins the current request (found through the thread that runs
// the handler) and starts only after the FastCGI request is finished, that is once
// nginx has the whole response. Outside a request (a thread the handler started, a callback
// registering another, a unit test calling a helper) a process-wide policy decides; a live
// testing::CaptureDeferred captures instead. Any thread may call these functions.
#pragma once

#include <stdexcept>
#include <string_view>
#include <utility>

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_options.hpp"

namespace crosstown {

enum class OutsideRequest {
    run_now,      // run synchronously at once on the calling thread (default, as hendrix does)
    throw_error,  // throw NoCurrentRequest
    to_pool,      // submit to the process's pool at once
};

// follow_response outside a request under OutsideRequest::throw_error, or under to_pool with
// no server running.
class NoCurrentRequest : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

// Thrown by follow_response in a handler that registers more callbacks than the per-request
// cap (--max-deferred-per-request) allows; the handler's response becomes a 500.
class DeferredLimitExceeded : public std::length_error {
  public:
    using std::length_error::length_error;
};

// Thrown by follow_response in a handler under Overflow::shed when the pool's queue has no room
// for the callback (counting those the request registered before it). Catch it to answer in
// your own way; uncaught, the response becomes a 503 with Retry-After and the request id, and
// the request's other callbacks are gated by that 503 like by any other.
class Overloaded : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
    // The Retry-After, in seconds, of the automatic 503.
    static constexpr int kRetryAfterSeconds = 1;
};

void set_outside_request_policy(OutsideRequest policy);
OutsideRequest outside_request_policy();

namespace detail {
void follow_response(DeferredOptions&& options, Callback&& fn);
}  // namespace detail

template <deferred_callable F>
void follow_response(DeferredOptions options, F&& fn) {
    detail::follow_response(std::move(options), Callback(std::forward<F>(fn)));
}

template <deferred_callable F>
void follow_response(F&& fn) {
    detail::follow_response(DeferredOptions{}, Callback(std::forward<F>(fn)));
}

// Cancels the current request's callback of that name before dispatch. False when there is
// none (or no current request and no capture).
bool forget(std::string_view name);

}  // namespace crosstown
