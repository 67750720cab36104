// crosstown::follow_response_durably: work that survives a crash, started right after the
// response.
//
//   crosstown::follow_response_durably("place-call", number);
//   crosstown::follow_response_durably("audit", json, {.run_on = crosstown::always});
//   crosstown::follow_response_durably("reminder", json, {.delay = std::chrono::minutes(10)});
//
// In a handler, the job joins the current request. When the handler has returned, the
// request's jobs whose gate passes are committed to the journal in one transaction before the
// response is written: a client that sees a 2xx can rely on them. If the commit fails (disk
// full, I/O error) the response becomes a 503 with Retry-After and the request id, and none of
// the request's jobs run. Committed jobs start after FCGX_Finish_r, like every deferred
// callback, and leave the journal only when their handler returned normally; see JobKind for
// retries, and Server for replay at start and `kept` at shutdown.
//
// Outside a request, a live testing::CaptureDeferred captures the job; otherwise it is
// committed at once and started, when a server with a journal runs, and NoCurrentRequest is
// thrown when none does.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

#include "crosstown/deferred/status_gate.hpp"

namespace crosstown {

struct DurableOptions {
    // Statuses after which the job is committed and runs: 1xx-3xx by default.
    StatusGate run_on{};
    // Drop the job (it was committed) when the response did not reach nginx.
    bool skip_if_undelivered = false;
    // At most one job per (kind, unique_key) while it lives and for its kind's unique_for after
    // it finished (succeeded or dead), across every instance sharing the store: a later one is
    // not committed, and the request goes on as if it were (counted as deduplicated). Empty:
    // none. So a client retrying a request whose response it lost makes no second job. A job
    // skipped because its response was not delivered frees its key at once.
    std::string unique_key{};
    // Not before this long after the response (counted from FCGX_Finish_r), nor before run_at:
    // the job is committed with the request as always, and waits in the store, not in a worker,
    // until then. After a crash of the process that committed it, a SQLite journal keeps its
    // commit time + delay (a job replayed may start those few milliseconds of the response
    // earlier); on Redis, a job whose response never finished counts its delay from when another
    // instance releases it. Zero and the epoch (the defaults): at once. On Redis any instance
    // runs it when due.
    std::chrono::milliseconds delay{0};
    std::chrono::system_clock::time_point run_at{};
};

// Durable jobs registered while the journal is off (--journal off).
class DurableJobsOff : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

// A kind that was not defined with JobKinds::define.
class UnknownJobKind : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

// A payload larger than --max-job-payload (RequestLimits::max_job_payload), thrown when a
// handler registers it, so that it never reaches the store, where it could fail the commit it
// shares with other requests. A handler may catch it; uncaught, the answer is a 413 naming the
// kind. (Outside a request there is no such limit: a job the journal refuses fails alone.)
class JobPayloadTooLarge : public std::length_error {
  public:
    using std::length_error::length_error;
};

// The journal could not commit the request's jobs; the response becomes a 503.
class JournalUnavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
    static constexpr int kRetryAfterSeconds = 1;
};

void follow_response_durably(std::string_view kind, std::string payload,
                             DurableOptions options = {});

}  // namespace crosstown
