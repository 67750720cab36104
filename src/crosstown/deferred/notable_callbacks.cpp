#include "crosstown/deferred/notable_callbacks.hpp"

#include <algorithm>

namespace crosstown {

void NotableCallbacks::ran(std::string_view name, std::string_view request_id,
                           std::chrono::nanoseconds run_time) {
    if (run_time.count() <= floor_nanos_.load(std::memory_order_relaxed)) return;
    NotableCallback entry{std::string(name), std::string(request_id), run_time,
                          std::chrono::system_clock::now(), {}};
    std::lock_guard lock(mutex_);
    const auto at = std::find_if(slowest_.begin(), slowest_.end(),
                                 [&](const auto& kept) { return kept.run_time < run_time; });
    if (at == slowest_.end() && slowest_.size() == kSlowest) return;  // lost a race to the floor
    slowest_.insert(at, std::move(entry));
    if (slowest_.size() > kSlowest) slowest_.pop_back();
    if (slowest_.size() == kSlowest) {
        floor_nanos_.store(slowest_.back().run_time.count(), std::memory_order_relaxed);
    }
}

void NotableCallbacks::failed(std::string_view name, std::string_view request_id,
                              std::chrono::nanoseconds run_time, std::string_view error) {
    NotableCallback entry{std::string(name), std::string(request_id), run_time,
                          std::chrono::system_clock::now(), std::string(error)};
    std::lock_guard lock(mutex_);
    recent_failures_.push_front(std::move(entry));
    if (recent_failures_.size() > kFailures) recent_failures_.pop_back();
}

NotableCallbacks::Snapshot NotableCallbacks::snapshot() const {
    std::lock_guard lock(mutex_);
    return {slowest_, {recent_failures_.begin(), recent_failures_.end()}};
}

}  // namespace crosstown
