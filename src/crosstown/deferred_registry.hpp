// crosstown::DeferredRegistry: the callbacks one request registered, waiting for its response.
//
// The responder owns one per request, on the request's own thread (it is not thread-safe):
//
//   DeferredRegistry deferred(limits.max_deferred_per_request);
//   {
//       RequestScope scope(deferred);  // follow_response() on this thread now lands here
//       handler(request, response);
//   }
//   ... write the response, note FCGX_GetError, FCGX_Finish_r ...
//   deferred.dispatch(pool, outcome);  // only now does any callback start
//
// dispatch() gates each callback on the status actually sent, hands the pool callbacks to the
// pool as one batch in registration order, then runs the same_thread ones here, in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "crosstown/deferred_options.hpp"
#include "crosstown/pool.hpp"
#include "crosstown/response_outcome.hpp"
#include "crosstown/task.hpp"

namespace crosstown {

struct DeferredCallback {
    DeferredOptions options;
    Task task;
};

// Thrown by follow_response in a handler that registers more callbacks than the per-request
// cap allows; the handler's response becomes a 500.
class DeferredLimitExceeded : public std::length_error {
  public:
    using std::length_error::length_error;
};

class DeferredRegistry {
  public:
    static constexpr std::size_t kDefaultMaxCallbacks = 1000;

    explicit DeferredRegistry(std::size_t max_callbacks = kDefaultMaxCallbacks);
    ~DeferredRegistry();  // logs any callbacks that were never dispatched
    DeferredRegistry(const DeferredRegistry&) = delete;
    DeferredRegistry& operator=(const DeferredRegistry&) = delete;

    // Appends a callback. A named one first removes an earlier one of the same name (the new
    // one takes the later place). Throws DeferredLimitExceeded past max_callbacks.
    void add(DeferredOptions options, Task task);
    // Cancels the callback of that name; false when there is none.
    bool forget(std::string_view name);

    const std::vector<DeferredCallback>& callbacks() const { return callbacks_; }
    std::uint64_t forgotten() const { return forgotten_; }

    // Counts and gates everything collected, then dispatches; leaves the registry empty.
    void dispatch(Pool& pool, ResponseOutcome outcome);
    // Hands everything collected to the caller instead (test capture); leaves it empty.
    std::vector<DeferredCallback> take();

  private:
    std::size_t max_callbacks_;
    std::vector<DeferredCallback> callbacks_;
    std::uint64_t forgotten_ = 0;
};

// Makes `registry` the current request of this thread for the scope's lifetime, so
// crosstown::follow_response() and crosstown::forget() reach it. Scopes nest; nullptr means
// "no current request".
class RequestScope {
  public:
    explicit RequestScope(DeferredRegistry* registry);
    explicit RequestScope(DeferredRegistry& registry) : RequestScope(&registry) {}
    ~RequestScope();
    RequestScope(const RequestScope&) = delete;
    RequestScope& operator=(const RequestScope&) = delete;

  private:
    DeferredRegistry* previous_;
};

// This thread's current request's registry, or nullptr.
DeferredRegistry* current_registry();

}  // namespace crosstown
