#include "crosstown/deferred/notable_callbacks.hpp"

#include <algorithm>

namespace crosstown {

void NotableCallbacks::ran(std::string_view name, std::string_view request_id,
                           std::chrono::nanoseconds run_time) {
    if (run_time.count() <= floor_nanos_.load(std::memory_order_relaxed)) return;
    NotableCallback entry{
        std::string(name), std::string(request_id), run_time, std::chrono::system_clock::now(), {}};
    std::lock_guard lock(mutex_);
    const auto& slowest = current_->slowest;
    const auto at = std::find_if(slowest.begin(), slowest.end(),
                                 [&](const auto& c) { return c.run_time < run_time; });
    if (at == slowest.end() && slowest.size() == kSlowest) return;  // lost a race to the floor
    auto next = std::make_shared<Snapshot>(*current_);
    next->slowest.insert(next->slowest.begin() + (at - slowest.begin()), std::move(entry));
    if (next->slowest.size() > kSlowest) next->slowest.pop_back();
    if (next->slowest.size() == kSlowest) {
        floor_nanos_.store(next->slowest.back().run_time.count(), std::memory_order_relaxed);
    }
    current_ = std::move(next);
}

void NotableCallbacks::failed(std::string_view name, std::string_view request_id,
                              std::chrono::nanoseconds run_time, std::string_view error) {
    NotableCallback entry{std::string(name), std::string(request_id), run_time,
                          std::chrono::system_clock::now(), std::string(error)};
    std::lock_guard lock(mutex_);
    auto next = std::make_shared<Snapshot>(*current_);
    next->recent_failures.insert(next->recent_failures.begin(), std::move(entry));
    if (next->recent_failures.size() > kFailures) next->recent_failures.pop_back();
    current_ = std::move(next);
}

NotableCallbacks::Snapshot NotableCallbacks::snapshot() const {
    std::shared_ptr<const Snapshot> current;
    {
        std::lock_guard lock(mutex_);
        current = current_;
    }
    return *current;
}

}  // namespace crosstown
