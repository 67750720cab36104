// crosstown::RequestStats: counters for the requests the responders served, for /metrics.
// Relaxed atomics: any thread records, any thread reads; a read is a statistic, not a fence.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "crosstown/observe/latency_histogram.hpp"

namespace crosstown {

class RequestStats {
  public:
    // One finished request: the status sent, the body bytes, the handler's time, and whether
    // the response reached nginx.
    void record(int status, std::size_t bytes, std::chrono::nanoseconds handler_time,
                bool delivered);
    void started() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
    void ended() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

    // Requests by status class: index 1 for 1xx .. 5 for 5xx.
    std::uint64_t requests(int status_class) const;
    std::uint64_t total() const;
    std::uint64_t undelivered() const { return undelivered_.load(std::memory_order_relaxed); }
    std::uint64_t response_bytes() const { return bytes_.load(std::memory_order_relaxed); }
    std::int64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
    LatencyHistogram::Snapshot handler_time() const { return handler_time_.snapshot(); }

  private:
    std::array<std::atomic<std::uint64_t>, 6> by_class_{};
    std::atomic<std::uint64_t> undelivered_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::int64_t> in_flight_{0};
    LatencyHistogram handler_time_;
};

}  // namespace crosstown
