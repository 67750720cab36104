#include "crosstown/deferred/follow_response.hpp"

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "crosstown/deferred/capture_target.hpp"
#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/process_pool.hpp"

namespace crosstown {
namespace {

std::atomic<OutsideRequest> policy{OutsideRequest::run_now};
std::atomic<Pool*> pool_of_process{nullptr};
// Live captures, the latest last; registrations go to the latest. A capture may end on one
// thread while another registers into it: the mutex keeps the target alive for the whole call.
// Only registrations outside any request take it.
std::mutex capture_mutex;
std::vector<detail::CaptureTarget*> capture_targets;  // guarded by capture_mutex

detail::CaptureTarget* current_capture() {
    return capture_targets.empty() ? nullptr : capture_targets.back();
}

void outside_request(DeferredOptions&& options, Callback&& fn) {
    Pool* pool = process_pool();
    DeferredCallback callback{std::move(fn), std::move(options.name), nullptr, {}};
    switch (outside_request_policy()) {
        case OutsideRequest::throw_error:
            throw NoCurrentRequest("crosstown::follow_response called outside a request");
        case OutsideRequest::to_pool:
            if (pool == nullptr) {
                throw NoCurrentRequest(
                    "crosstown::follow_response outside a request: policy to_pool, but no "
                    "process pool is set");
            }
            bump(pool->counters().registered);
            pool->submit(std::move(callback));
            return;
        case OutsideRequest::run_now:
            if (pool == nullptr) {
                detail::run_isolated(callback, std::stop_token{});
                return;
            }
            bump(pool->counters().registered);
            pool->run_inline(std::move(callback));
            return;
    }
}

}  // namespace

void set_outside_request_policy(OutsideRequest p) { policy.store(p); }
OutsideRequest outside_request_policy() { return policy.load(); }

void set_process_pool(Pool* pool) { pool_of_process.store(pool); }
Pool* process_pool() { return pool_of_process.load(); }

void detail::add_capture_target(CaptureTarget* target) {
    std::lock_guard lock(capture_mutex);
    capture_targets.push_back(target);
}

void detail::remove_capture_target(CaptureTarget* target) {
    std::lock_guard lock(capture_mutex);
    std::erase(capture_targets, target);
}

void detail::follow_response(DeferredOptions&& options, Callback&& fn) {
    if (auto* registry = current_registry()) {
        auto& admission = registry->admission();
        admission.check_room(registry->callbacks().size(), options);
        const bool same_thread = options.same_thread;
        registry->add(std::move(options), std::move(fn));
        admission.keep_room(same_thread);
        return;
    }
    {
        std::lock_guard lock(capture_mutex);
        if (auto* capture = current_capture()) {
            capture->add(std::move(options), std::move(fn));
            return;
        }
    }
    outside_request(std::move(options), std::move(fn));
}

bool forget(std::string_view name) {
    if (auto* registry = current_registry()) return registry->forget(name);
    std::lock_guard lock(capture_mutex);
    auto* capture = current_capture();
    return capture != nullptr && capture->forget(name);
}

}  // namespace crosstown
