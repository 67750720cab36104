// crosstown::testing::CapturedJob: a durable job as TestClient or CaptureDeferred captured it,
// not committed anywhere and not run; run_jobs() runs captured jobs through their kinds'
// handlers. No journal is needed in unit tests.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/jobs/job_kinds.hpp"
#include "crosstown/testing/capture_deferred.hpp"

namespace crosstown::testing {

struct CapturedJob {
    std::string kind;
    std::string payload;
    DurableOptions options;
    // The status of the response it follows, when there was one (TestClient).
    std::optional<int> response_status;
    std::string request_id;
    std::string trace_parent;  // its request's W3C traceparent (TestClient), else empty

    // Whether it will be committed and run after the response it follows.
    bool will_run() const { return response_status && options.run_on.allows(*response_status); }
};

// Runs each job whose gate passes `status` (or its own response's status when it has one) once,
// on this thread, in order, through its kind's handler, as attempt 1 with ids 1, 2, ...
// A kind that `kinds` does not define counts as a failure naming it. Retries are not
// simulated: a failure is reported, as the first attempt's would be logged.
RunReport run_jobs(std::vector<CapturedJob> jobs, const JobKinds& kinds, int status = 200);

}  // namespace crosstown::testing
