#include "crosstown/deferred/outcome_scope.hpp"

namespace crosstown {
namespace {
thread_local const ResponseOutcome* current_outcome = nullptr;
}

bool response_delivered() { return current_outcome == nullptr || current_outcome->delivered; }

const ResponseOutcome* current_response_outcome() { return current_outcome; }

detail::OutcomeScope::OutcomeScope(const ResponseOutcome* outcome) : previous_(current_outcome) {
    current_outcome = outcome;
}

detail::OutcomeScope::~OutcomeScope() { current_outcome = previous_; }

}  // namespace crosstown
