#include "crosstown/deferred/deferred_registry.hpp"

#include <algorithm>

#include "crosstown/observe/log.hpp"

namespace crosstown {

DeferredRegistry::DeferredRegistry(std::size_t max_callbacks) : max_callbacks_(max_callbacks) {}

DeferredRegistry::~DeferredRegistry() {
    admission_.give_back();
    if (!callbacks_.empty()) {
        log::warn("{} deferred callbacks were registered but never dispatched", callbacks_.size());
    }
}

void DeferredRegistry::add(DeferredOptions options, Callback fn) {
    if (!options.name.empty()) forget(options.name);
    if (callbacks_.size() >= max_callbacks_) {
        throw DeferredLimitExceeded(fmt::format(
            "crosstown: more than {} deferred callbacks in one request", max_callbacks_));
    }
    callbacks_.push_back({std::move(options), std::move(fn)});
}

bool DeferredRegistry::forget(std::string_view name) {
    const auto it = std::find_if(callbacks_.begin(), callbacks_.end(),
                                 [&](const auto& cb) { return cb.options.name == name; });
    if (it == callbacks_.end()) return false;
    callbacks_.erase(it);
    ++forgotten_;
    return true;
}

void DeferredRegistry::dispatch(Pool& pool, ResponseOutcome sent) {
    // One shared copy for all of this request's callbacks: the last one to finish frees it.
    auto outcome = std::make_shared<const ResponseOutcome>(std::move(sent));
    auto& counters = pool.counters();
    bump(counters.registered, callbacks_.size() + forgotten_);
    bump(counters.forgotten, forgotten_);

    const auto forgotten = forgotten_;
    std::vector<DeferredCallback> to_pool;
    std::vector<DeferredCallback> here;
    std::uint64_t skipped = 0;
    for (auto& registration : take_registrations()) {
        if (!registration.options.should_run(outcome->status, outcome->delivered)) {
            ++skipped;
            continue;
        }
        auto& target = registration.options.same_thread ? here : to_pool;
        target.push_back(
            {std::move(registration.fn), std::move(registration.options.name), outcome, {}});
    }
    bump(counters.skipped, skipped);
    if (skipped + forgotten + to_pool.size() + here.size() > 0) {
        log::debug(
            "request {} ({}, {}): {} callbacks to the pool, {} on this thread, {} skipped, {} "
            "forgotten",
            outcome->request_id, outcome->status, outcome->delivered ? "delivered" : "undelivered",
            to_pool.size(), here.size(), skipped, forgotten);
    }

    const auto reserved = admission_.hand_over(pool);
    if (!to_pool.empty() || reserved > 0) pool.submit_batch(std::move(to_pool), reserved);
    // same_thread callbacks run outside any request: what they register follows the
    // outside-request policy instead of landing in a registry that was already dispatched.
    RequestScope no_request(nullptr);
    for (auto& callback : here) pool.run_inline(std::move(callback));
}

bool DeferredRegistry::dispatch_runs_anywhere() const {
    return admission_.kept() >= callbacks_.size() &&
           std::ranges::none_of(callbacks_, [](const Registration& registration) {
               return registration.options.same_thread;
           });
}

std::vector<Registration> DeferredRegistry::take() {
    admission_.give_back();
    return take_registrations();
}

std::vector<Registration> DeferredRegistry::take_registrations() {
    forgotten_ = 0;
    return std::exchange(callbacks_, {});
}

}  // namespace crosstown
