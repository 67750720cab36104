// crosstown::DeferredCounters: one counter for every outcome a deferred callback can have.
//
// Every callback ends in exactly one outcome. Once the process has stopped:
//   registered = skipped + forgotten + dispatched
//   dispatched = completed + failed + rejected + abandoned
// The registry counts registered/skipped/forgotten when a request dispatches; the pool counts
// the rest. Counters are atomics that any thread may read at any time; while work is in flight
// a snapshot need not balance yet.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace crosstown {

struct DeferredCounts {
    std::uint64_t registered = 0;
    std::uint64_t forgotten = 0;   // cancelled by forget() or replaced by a same-named callback
    std::uint64_t skipped = 0;     // the status gate or skip_if_undelivered said no
    std::uint64_t dispatched = 0;  // handed to the pool or run on the responder thread
    std::uint64_t completed = 0;
    std::uint64_t failed = 0;     // threw
    std::uint64_t rejected = 0;   // queue full under Overflow::reject
    std::uint64_t abandoned = 0;  // still queued (or stuck running) when the drain deadline passed

    // Both identities hold.
    bool balanced() const;
    // Nothing was lost: the process may exit 0.
    bool nothing_lost() const { return rejected == 0 && abandoned == 0; }
    // "deferred registered=N dispatched=N completed=N failed=N skipped=N rejected=N abandoned=N
    // forgotten=N": the shutdown summary line.
    std::string summary() const;

    friend bool operator==(const DeferredCounts&, const DeferredCounts&) = default;
};

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

    DeferredCounts snapshot() const;
};

// Adds n to a counter; counters are statistics, so relaxed ordering is enough.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace crosstown
