#include "crosstown/jobs/follow_response_durably.hpp"

#include <mutex>
#include <vector>

#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_capture_target.hpp"
#include "crosstown/jobs/job_runner.hpp"

namespace crosstown {
namespace {

std::mutex capture_mutex;
std::vector<detail::JobCaptureTarget*> capture_targets;  // guarded by capture_mutex

// The queue's room first (Admission), then the kind's line in the runner.
void make_room(std::string_view kind) {
    Admission outside_any_registry;
    auto* registry = current_registry();
    auto& admission = registry != nullptr ? registry->admission() : outside_any_registry;
    if (!admission.make_room_for_job()) return;
    if (auto* runner = process_job_runner()) runner->wait_for_room(kind);
}

}  // namespace

void detail::add_job_capture_target(JobCaptureTarget* target) {
    std::lock_guard lock(capture_mutex);
    capture_targets.push_back(target);
}

void detail::remove_job_capture_target(JobCaptureTarget* target) {
    std::lock_guard lock(capture_mutex);
    std::erase(capture_targets, target);
}

void follow_response_durably(std::string_view kind, std::string payload, DurableOptions options) {
    if (auto* batch = current_job_batch()) {
        batch->add(kind, std::move(payload), std::move(options));
        make_room(kind);
        return;
    }
    {
        std::lock_guard lock(capture_mutex);
        if (!capture_targets.empty()) {
            capture_targets.back()->add_job(kind, std::move(payload), std::move(options));
            return;
        }
    }
    if (auto* runner = process_job_runner()) {
        runner->enqueue_now(kind, std::move(payload), options);
        return;
    }
    throw NoCurrentRequest(
        "crosstown::follow_response_durably called outside a request, with no server running "
        "durable jobs");
}

}  // namespace crosstown
