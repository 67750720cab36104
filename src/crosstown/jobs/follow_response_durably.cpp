#include "crosstown/jobs/follow_response_durably.hpp"

#include <mutex>
#include <vector>

#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/process_pool.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_capture_target.hpp"
#include "crosstown/jobs/job_runner.hpp"

namespace crosstown {
namespace {

std::mutex capture_mutex;
std::vector<detail::JobCaptureTarget*> capture_targets;  // guarded by capture_mutex

// Under spill a handler never waits to register a durable job: it waits in the runner once
// committed. Under the other policies a full queue, or as many jobs of its kind waiting in
// the runner, makes it wait here, before its response, as an in-memory callback would under
// block, so that durable work too pushes back on the clients that make it. Not while the
// request has reserved room in the queue for its in-memory callbacks (Pool::reserve_room): that
// room is part of what it would wait for, so it could wait for itself; it has waited already.
void make_room(std::string_view kind) {
    Pool* pool = process_pool();
    if (pool == nullptr || pool->config().overflow == Overflow::spill) return;
    if (const auto* registry = current_registry(); registry && registry->reserved() > 0) return;
    if (!pool->has_room_for(1)) pool->wait_for_room();
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
