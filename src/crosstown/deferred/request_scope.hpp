// crosstown::RequestScope: which request's registry follow_response reaches on this thread.
//
// The responder (and TestClient) open one around each handler; the thread's RequestContext
// holds it, so no context object has to be passed to the code that registers. Only the owning
// thread uses it.
#pragma once

namespace crosstown {

class DeferredRegistry;

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
