// crosstown::DeferredRegistry: the callbacks one request registered, waiting for its response.
//
// The responder owns one per request. It is not thread-safe: one thread at a time uses it, the
// request's, or the one that writes the request's commit once the request is left to it
// (handed over through the commit's lock):
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

#include "crosstown/deferred/admission.hpp"
#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_options.hpp"
#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/request_scope.hpp"
#include "crosstown/deferred/response_outcome.hpp"

namespace crosstown {

// A callback as a handler registered it, with its options, waiting for the response.
struct Registration {
    DeferredOptions options;
    Callback fn;
};

class DeferredRegistry {
  public:
    explicit DeferredRegistry(std::size_t max_callbacks);
    ~DeferredRegistry();  // logs any callbacks that were never dispatched
    DeferredRegistry(const DeferredRegistry&) = delete;
    DeferredRegistry& operator=(const DeferredRegistry&) = delete;

    // Appends a callback. A named one first removes an earlier one of the same name (the new
    // one takes the later place). Throws DeferredLimitExceeded past max_callbacks.
    void add(DeferredOptions options, Callback fn);
    // Whether its callbacks get into a full queue, and the slots kept for them: dispatch hands
    // those over, anything else gives them back.
    Admission& admission() { return admission_; }
    // Cancels the callback of that name; false when there is none.
    bool forget(std::string_view name);

    const std::vector<Registration>& callbacks() const { return callbacks_; }
    // Whether dispatch() may run on any thread: it neither runs a callback where it is called
    // (same_thread) nor waits for room (each callback has a slot kept), so it cannot hold up
    // whatever else that thread does.
    bool dispatch_runs_anywhere() const;
    std::uint64_t forgotten() const { return forgotten_; }

    // Counts and gates everything collected, then dispatches; leaves the registry empty.
    void dispatch(Pool& pool, ResponseOutcome outcome);
    // Hands everything collected to the caller instead (test capture), and gives back the
    // room kept for it; leaves it empty.
    std::vector<Registration> take();

  private:
    std::vector<Registration> take_registrations();

    std::size_t max_callbacks_;
    Admission admission_;
    std::vector<Registration> callbacks_;
    std::uint64_t forgotten_ = 0;
};

}  // namespace crosstown
