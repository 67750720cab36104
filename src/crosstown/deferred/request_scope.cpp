#include "crosstown/deferred/request_scope.hpp"

namespace crosstown {
namespace {
thread_local DeferredRegistry* current = nullptr;
}

RequestScope::RequestScope(DeferredRegistry* registry) : previous_(current) { current = registry; }

RequestScope::~RequestScope() { current = previous_; }

DeferredRegistry* current_registry() { return current; }

}  // namespace crosstown
