#include "crosstown/deferred/request_scope.hpp"

#include <utility>

#include "crosstown/deferred/request_context.hpp"

namespace crosstown {

RequestScope::RequestScope(DeferredRegistry* registry)
    : previous_(std::exchange(detail::request_context().registry, registry)) {}

RequestScope::~RequestScope() { detail::request_context().registry = previous_; }

DeferredRegistry* current_registry() { return detail::request_context().registry; }

}  // namespace crosstown
