// crosstown::testing::CaptureDeferred: capture follow_response registrations in a unit test.
//
//   crosstown::testing::CaptureDeferred captured;
//   send_welcome(user);                      // calls crosstown::follow_response(...)
//   ASSERT_EQ(captured.list().size(), 1);
//   EXPECT_EQ(captured.list()[0].name, "welcome-email");
//   auto report = captured.run(200);         // runs what the gate lets through, here, in order
//
// While it lives, registrations made outside any request, from any thread, are captured
// instead of following the outside-request policy; they obey the same name replacement and
// forget() as a request. Scopes nest; the destructor restores the previous state and drops
// whatever was not run.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crosstown/deferred/deferred_options.hpp"

namespace crosstown {
class JobKinds;
}

namespace crosstown::testing {

struct CapturedJob;

// A registration as captured: what the handler (or helper) asked for, not yet run.
struct CapturedRegistration {
    std::string name;
    DeferredOptions options;
    // The status of the response it follows, when there was one (TestClient).
    std::optional<int> response_status;

    // Whether the gate would run it after a response with this status.
    bool would_run(int status, bool delivered = true) const {
        return options.should_run(status, delivered);
    }
    // Whether it will run after the response it follows.
    bool will_run() const { return response_status && would_run(*response_status); }
};

// What running captured callbacks did.
struct RunReport {
    std::size_t ran = 0;      // completed or failed
    std::size_t skipped = 0;  // the gate said no
    std::size_t failed = 0;
    std::vector<std::string> errors;  // what() of each failure, in order
};

class CaptureDeferred {
  public:
    CaptureDeferred();
    ~CaptureDeferred();
    CaptureDeferred(const CaptureDeferred&) = delete;
    CaptureDeferred& operator=(const CaptureDeferred&) = delete;

    std::vector<CapturedRegistration> list() const;
    std::size_t size() const;
    // Runs what was captured, synchronously on this thread, in order, gated on `status` as after
    // a response, each callback isolated as on the pool; empties the capture.
    RunReport run(int status = 200, bool delivered = true);
    // Durable jobs registered outside any request (crosstown::follow_response_durably), and a
    // run of them through `kinds` gated on `status` (see run_jobs in captured_job.hpp, which
    // declares CapturedJob); the run empties them.
    std::vector<CapturedJob> jobs() const;
    RunReport run_jobs(const JobKinds& kinds, int status = 200);
    // Drops the captured callbacks and jobs.
    void clear();

  private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace crosstown::testing
