// crosstown::detail::OutcomeScope: makes a request's outcome current on this thread while one
// of its callbacks runs, so that response_delivered() can answer from inside the callback.
#pragma once

#include "crosstown/deferred/response_outcome.hpp"

namespace crosstown::detail {

class OutcomeScope {
  public:
    explicit OutcomeScope(const ResponseOutcome* outcome);
    ~OutcomeScope();
    OutcomeScope(const OutcomeScope&) = delete;
    OutcomeScope& operator=(const OutcomeScope&) = delete;

  private:
    const ResponseOutcome* previous_;
};

}  // namespace crosstown::detail
