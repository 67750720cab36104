// crosstown::detail::JobCaptureTarget: where follow_response_durably sends jobs registered
// outside any request while a testing::CaptureDeferred is alive.
#pragma once

#include <string>
#include <string_view>

#include "crosstown/jobs/follow_response_durably.hpp"

namespace crosstown::detail {

class JobCaptureTarget {
  public:
    virtual void add_job(std::string_view kind, std::string payload, DurableOptions options) = 0;

  protected:
    ~JobCaptureTarget() = default;
};

// Makes `target` the current job capture, above any live one. Any thread.
void add_job_capture_target(JobCaptureTarget* target);
// Removes it wherever it is; when this returns, no registration is running inside it.
void remove_job_capture_target(JobCaptureTarget* target);

}  // namespace crosstown::detail
