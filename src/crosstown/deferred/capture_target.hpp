// crosstown::detail::CaptureTarget: where follow_response sends registrations made outside any
// request while a testing::CaptureDeferred is alive, instead of the outside-request policy.
#pragma once

#include <string_view>

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_options.hpp"

namespace crosstown::detail {

class CaptureTarget {
  public:
    virtual void add(DeferredOptions options, Callback fn) = 0;
    virtual bool forget(std::string_view name) = 0;

  protected:
    ~CaptureTarget() = default;
};

// Makes `target` the current capture, above any live one. Any thread.
void add_capture_target(CaptureTarget* target);
// Removes `target` wherever it is (captures may end out of nesting order): the one below
// becomes current again. When this returns, no registration is running inside `target`.
void remove_capture_target(CaptureTarget* target);

}  // namespace crosstown::detail
