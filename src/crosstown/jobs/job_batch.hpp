// crosstown::JobBatch: the durable jobs one request registered, waiting for its response.
//
// The responder (and TestClient) own one per request, beside its DeferredRegistry, and make it
// current with a JobBatchScope while the handler runs. When the handler has returned, the jobs
// whose gate passes the status are committed (JobRunner::commit) before the response is
// written. Only the request's own thread uses it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/jobs/job_kinds.hpp"

namespace crosstown {

// A durable job as a handler registered it.
struct DurableRegistration {
    std::string kind;
    std::string payload;
    DurableOptions options;
};

class JobBatch {
  public:
    // The default for max_payload, and for --max-job-payload: 1 MiB.
    static constexpr std::size_t kMaxPayload = std::size_t{1} << 20;

    // `kinds` null: durable jobs are off, and add() throws DurableJobsOff.
    JobBatch(const JobKinds* kinds, std::size_t max_jobs, std::size_t max_payload = kMaxPayload);
    // Accepts any kind: a test capture, whose jobs are checked when they are run.
    static JobBatch unchecked(std::size_t max_jobs, std::size_t max_payload = kMaxPayload);

    // The request header whose value makes the default unique key of its durable jobs
    // ("Idempotency-Key"; empty: none), and that value once the request is read: a job added
    // without a unique_key (nor skip_if_undelivered) then gets "VALUE/KIND/N", N its place
    // among the request's jobs, so a client retrying the same request with the same header
    // makes no second job.
    // `name` is the server's (or test client's) setting, which outlives the request: not copied
    // for each request.
    void set_idempotency_header(std::string_view name) { idempotency_header_ = name; }
    std::string_view idempotency_header() const { return idempotency_header_; }
    void set_idempotency_key(std::string value) { idempotency_key_ = std::move(value); }
    // The request's W3C traceparent (Request::trace_parent), kept with each of its jobs. A view
    // of the request's own string, which outlives the batch.
    void set_trace_parent(std::string_view value) { trace_parent_ = value; }
    std::string_view trace_parent() const { return trace_parent_; }

    // Throws DurableJobsOff, UnknownJobKind, DeferredLimitExceeded past max_jobs, or
    // JobPayloadTooLarge past max_payload bytes.
    void add(std::string_view kind, std::string payload, DurableOptions options);

    const std::vector<DurableRegistration>& jobs() const { return jobs_; }
    bool empty() const { return jobs_.empty(); }
    // The jobs whose gate passes `status`; leaves the batch empty.
    std::vector<DurableRegistration> take_gated(int status);
    std::vector<DurableRegistration> take();

  private:
    JobBatch(const JobKinds* kinds, std::size_t max_jobs, std::size_t max_payload, bool check);

    const JobKinds* kinds_;
    std::size_t max_jobs_;
    std::size_t max_payload_;
    bool check_;
    std::string_view idempotency_header_;
    std::string idempotency_key_;
    std::string_view trace_parent_;
    std::vector<DurableRegistration> jobs_;
};

// Makes `batch` the current request's durable jobs on this thread for the scope's lifetime.
class JobBatchScope {
  public:
    explicit JobBatchScope(JobBatch* batch);
    ~JobBatchScope();
    JobBatchScope(const JobBatchScope&) = delete;
    JobBatchScope& operator=(const JobBatchScope&) = delete;

  private:
    JobBatch* previous_;
};

JobBatch* current_job_batch();

}  // namespace crosstown
