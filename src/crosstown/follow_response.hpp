// crosstown::follow_response: run work after the response has gone out.
//
//   crosstown::follow_response([number] { phone_api.place_call(number); });
//   crosstown::follow_response({.name = "audit", .run_on = crosstown::always}, write_audit);
//
// Inside a handler the callback joins the current request (found through the responder
// thread, see RequestScope) and starts only after FCGX_Finish_r has returned. Outside a
// request (a thread the handler started, a callback registering another, a unit test calling a
// helper) a process-wide policy decides; a live testing::CaptureDeferred captures instead.
#pragma once

#include <stdexcept>
#include <string_view>
#include <utility>

#include "crosstown/deferred_options.hpp"
#include "crosstown/task.hpp"

namespace crosstown {

class Pool;

enum class OutsideRequest {
    run_now,      // run synchronously at once on the calling thread (default, as hendrix does)
    throw_error,  // throw NoCurrentRequest
    to_pool,      // submit to the process pool at once
};

class NoCurrentRequest : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

void set_outside_request_policy(OutsideRequest policy);
OutsideRequest outside_request_policy();

// The pool that to_pool submits to and that run_now counts into. The server sets it at start;
// nullptr (the default) makes to_pool throw NoCurrentRequest and run_now run uncounted.
void set_process_pool(Pool* pool);
Pool* process_pool();

namespace detail {
void follow_response(DeferredOptions&& options, Task&& task);

// Where registrations outside any request go while a testing::CaptureDeferred is alive.
class CaptureTarget {
  public:
    virtual void add(DeferredOptions options, Task task) = 0;
    virtual bool forget(std::string_view name) = 0;

  protected:
    ~CaptureTarget() = default;
};
// Installs `target` (nullptr: none) and returns the previous one.
CaptureTarget* exchange_capture_target(CaptureTarget* target);
}  // namespace detail

template <deferred_callable F>
void follow_response(DeferredOptions options, F&& fn) {
    detail::follow_response(std::move(options), Task(std::forward<F>(fn)));
}

template <deferred_callable F>
void follow_response(F&& fn) {
    detail::follow_response(DeferredOptions{}, Task(std::forward<F>(fn)));
}

// Cancels the current request's callback of that name before dispatch. False when there is
// none (or no current request and no capture).
bool forget(std::string_view name);

}  // namespace crosstown
