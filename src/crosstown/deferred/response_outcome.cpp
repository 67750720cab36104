#include <utility>

#include "crosstown/deferred/outcome_scope.hpp"
#include "crosstown/deferred/request_context.hpp"

namespace crosstown {

bool response_delivered() {
    const auto* outcome = current_response_outcome();
    return outcome == nullptr || outcome->delivered;
}

const ResponseOutcome* current_response_outcome() { return detail::request_context().outcome; }

detail::OutcomeScope::OutcomeScope(const ResponseOutcome* outcome)
    : previous_(std::exchange(request_context().outcome, outcome)) {}

detail::OutcomeScope::~OutcomeScope() { request_context().outcome = previous_; }

}  // namespace crosstown
