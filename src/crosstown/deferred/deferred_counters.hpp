// crosstown::DeferredCounters: the live counters behind DeferredCounts, one per outcome.
//
// The registry counts registered/skipped/forgotten when a request dispatches; the pool counts
// the rest. Relaxed atomics: any thread adds, any thread takes a snapshot; a count is a
// statistic, not a fence.
#pragma once

#include <atomic>
#include <cstdint>

#include "crosstown/deferred/deferred_counts.hpp"

namespace crosstown {

class DeferredCounters {
  public:
    std::atomic<std::uint64_t> registered{0};
    std::atomic<std::uint64_t> forgotten{0};
    std::atomic<std::uint64_t> skipped{0};
    std::atomic<std::uint64_t> dispatched{0};
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> abandoned{0};
    std::atomic<std::uint64_t> shed{0};

    DeferredCounts snapshot() const;
};

// Adds n to a counter.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace crosstown
