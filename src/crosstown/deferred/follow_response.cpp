#include "crosstown/deferred/follow_response.hpp"

#include <fmt/format.h>

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

// A full queue is met here, at registration, while the handler can still answer, rather than
// only at dispatch, when the response has gone out and holding the thread holds up everyone:
// - shed: Overloaded, so the request gets a 503 (the request's earlier callbacks count too:
//   they will need room at the same dispatch);
// - block: the handler waits for room and reserves it (Pool::reserve_room), so the client whose
//   request defers work waits, and the responder serves others with a spare thread meanwhile.
//   Only its first callback waits: once it has reserved room, a request takes what is free (ahead
//   of those waiting for their first, so that it finishes what it started) and never waits again
//   (which could deadlock); a callback that found none waits at dispatch.
void refuse_if_full(const DeferredRegistry& registry, const DeferredOptions& options) {
    Pool* pool = process_pool();
    if (pool == nullptr || options.same_thread || pool->config().overflow != Overflow::shed) {
        return;
    }
    if (pool->has_room_for(registry.callbacks().size() + 1)) return;
    bump(pool->counters().shed);
    throw Overloaded(fmt::format("the deferred work queue is full ({} of {} waiting)",
                                 pool->queue_depth(), pool->config().queue_capacity));
}

// After the callback joined the registry, so that one refused there (past the request's cap)
// reserves no room.
void reserve_room_for(DeferredRegistry& registry, bool same_thread) {
    Pool* pool = process_pool();
    if (pool == nullptr || same_thread) return;
    const auto overflow = pool->config().overflow;
    if (overflow != Overflow::block && overflow != Overflow::spill) return;
    if (registry.reserved() > 0 ? pool->try_reserve_room() : pool->reserve_room()) {
        registry.add_reserved(*pool);
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
        refuse_if_full(*registry, options);
        const bool same_thread = options.same_thread;
        registry->add(std::move(options), std::move(fn));
        reserve_room_for(*registry, same_thread);
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
