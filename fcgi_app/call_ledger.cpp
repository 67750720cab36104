#include "call_ledger.hpp"

#include <fmt/format.h>

#include <random>

namespace fcgi_app {
namespace {

std::int64_t nanos(CallBatch::Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

void lower_to(std::atomic<std::int64_t>& value, std::int64_t candidate) {
    auto current = value.load();
    while (candidate < current && !value.compare_exchange_weak(current, candidate)) {
    }
}

void raise_to(std::atomic<std::int64_t>& value, std::int64_t candidate) {
    auto current = value.load();
    while (candidate > current && !value.compare_exchange_weak(current, candidate)) {
    }
}

}  // namespace

void CallBatch::response_finished(Clock::time_point at) {
    std::int64_t unknown = 0;
    response_finished_ns_.compare_exchange_strong(unknown, nanos(at));
}

void CallBatch::call_started(std::optional<Clock::time_point> finished_at, Clock::time_point now) {
    if (finished_at) response_finished(*finished_at);
    lower_to(first_start_ns_, nanos(now));
    const auto finished_ns = response_finished_ns_.load();
    if (finished_ns != 0) {
        const auto delay = nanos(now) - finished_ns;
        if (delay < 0) started_before_finish_.fetch_add(1);
        lower_to(min_start_delay_ns_, delay);
    }
    started_.fetch_add(1);
}

void CallBatch::call_ended(bool placed, Clock::time_point now) {
    raise_to(last_end_ns_, nanos(now));
    (placed ? placed_ : failed_).fetch_add(1);
}

CallBatch::View CallBatch::view() const {
    View v{};
    v.id = id_;
    v.count = count_;
    v.started = started_.load();
    v.placed = placed_.load();
    v.failed = failed_.load();
    v.pending = count_ - v.placed - v.failed;
    v.response_finished_ns = response_finished_ns_.load();
    const auto first = first_start_ns_.load();
    v.first_start_ns = first == kNone ? 0 : first;
    v.last_end_ns = last_end_ns_.load();
    const auto delay = min_start_delay_ns_.load();
    v.min_start_delay_ns = delay == kNone ? -1 : delay;
    v.started_before_finish = started_before_finish_.load();
    return v;
}

std::shared_ptr<CallBatch> CallLedger::open(std::uint64_t count, std::string_view given) {
    thread_local std::mt19937 random{std::random_device{}()};
    std::lock_guard lock(mutex_);
    if (!given.empty()) {
        if (const auto it = batches_.find(std::string(given)); it != batches_.end()) {
            return it->second;
        }
    }
    // A sequence number for order, a random tail so ids cannot be guessed from each other.
    auto id = !given.empty() ? std::string(given)
                             : fmt::format("b{}-{:06x}", next_++, random() & 0xffffff);
    auto batch = std::make_shared<CallBatch>(id, count);
    batches_.emplace(id, batch);
    order_.push_back(std::move(id));
    if (order_.size() > capacity_) {
        batches_.erase(order_.front());
        order_.pop_front();
    }
    return batch;
}

std::shared_ptr<const CallBatch> CallLedger::find(std::string_view id) const {
    std::lock_guard lock(mutex_);
    const auto it = batches_.find(std::string(id));
    return it == batches_.end() ? nullptr : it->second;
}

std::shared_ptr<CallBatch> CallLedger::find_to_report(std::string_view id) {
    std::lock_guard lock(mutex_);
    const auto it = batches_.find(std::string(id));
    return it == batches_.end() ? nullptr : it->second;
}

}  // namespace fcgi_app
