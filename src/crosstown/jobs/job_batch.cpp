#include "crosstown/jobs/job_batch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/deferred/request_context.hpp"

namespace crosstown {

JobBatch::JobBatch(const JobKinds* kinds, std::size_t max_jobs, std::size_t max_payload)
    : JobBatch(kinds, max_jobs, max_payload, true) {}

JobBatch::JobBatch(const JobKinds* kinds, std::size_t max_jobs, std::size_t max_payload, bool check)
    : kinds_(kinds), max_jobs_(max_jobs), max_payload_(max_payload), check_(check) {}

JobBatch JobBatch::unchecked(std::size_t max_jobs, std::size_t max_payload) {
    return JobBatch(nullptr, max_jobs, max_payload, false);
}

void JobBatch::add(std::string_view kind, std::string payload, DurableOptions options) {
    if (check_ && kinds_ == nullptr) {
        throw DurableJobsOff(fmt::format(
            "durable job '{}' registered, but durable jobs are off (--journal off)", kind));
    }
    if (check_ && kinds_->find(kind) == nullptr) {
        throw UnknownJobKind(fmt::format("durable job kind '{}' is not defined", kind));
    }
    if (payload.size() > max_payload_) {
        throw JobPayloadTooLarge(fmt::format(
            "durable job '{}': its payload is {} bytes, over the limit of {} (--max-job-payload)",
            kind, payload.size(), max_payload_));
    }
    if (jobs_.size() >= max_jobs_) {
        throw DeferredLimitExceeded(
            fmt::format("crosstown: more than {} durable jobs in one request", max_jobs_));
    }
    // Not a job dropped when its response is lost: the client's retry, deduplicated against it
    // before it is dropped, would run nothing.
    if (options.unique_key.empty() && !idempotency_key_.empty() && !options.skip_if_undelivered) {
        options.unique_key = fmt::format("{}/{}/{}", idempotency_key_, kind, jobs_.size());
    }
    jobs_.push_back({std::string(kind), std::move(payload), std::move(options)});
}

std::vector<DurableRegistration> JobBatch::take_gated(int status) {
    auto jobs = take();
    std::erase_if(jobs, [status](const auto& job) { return !job.options.run_on.allows(status); });
    return jobs;
}

std::vector<DurableRegistration> JobBatch::take() { return std::exchange(jobs_, {}); }

JobBatchScope::JobBatchScope(JobBatch* batch)
    : previous_(std::exchange(detail::request_context().job_batch, batch)) {}
JobBatchScope::~JobBatchScope() { detail::request_context().job_batch = previous_; }
JobBatch* current_job_batch() { return detail::request_context().job_batch; }

}  // namespace crosstown
