#include "crosstown/deferred/follow_response.hpp"

#include <atomic>

#include "crosstown/deferred/capture_target.hpp"
#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/process_pool.hpp"

namespace crosstown {
namespace {

std::atomic<OutsideRequest> policy{OutsideRequest::run_now};
std::atomic<Pool*> pool_of_process{nullptr};
std::atomic<detail::CaptureTarget*> capture_target{nullptr};

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

detail::CaptureTarget* detail::exchange_capture_target(CaptureTarget* target) {
    return capture_target.exchange(target);
}

void detail::follow_response(DeferredOptions&& options, Callback&& fn) {
    if (auto* registry = current_registry()) {
        registry->add(std::move(options), std::move(fn));
    } else if (auto* capture = capture_target.load()) {
        capture->add(std::move(options), std::move(fn));
    } else {
        outside_request(std::move(options), std::move(fn));
    }
}

bool forget(std::string_view name) {
    if (auto* registry = current_registry()) return registry->forget(name);
    if (auto* capture = capture_target.load()) return capture->forget(name);
    return false;
}

}  // namespace crosstown
