// crosstown::testing::run_synchronously: runs registrations on this thread, in order, as a
// dispatch would after a response, each isolated as on the pool. Shared by CaptureDeferred
// (gated on a status the test names) and TestClient (gated on each response actually sent,
// with its request kept alive).
#pragma once

#include <memory>
#include <vector>

#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/response_outcome.hpp"
#include "crosstown/testing/capture_deferred.hpp"

namespace crosstown::testing {

RunReport run_synchronously(std::vector<Registration> registrations, int status, bool delivered);
RunReport run_synchronously(std::vector<Registration> registrations,
                            std::shared_ptr<const ResponseOutcome> outcome);

}  // namespace crosstown::testing
