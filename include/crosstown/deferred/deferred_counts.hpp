// crosstown::DeferredCounts: how many deferred callbacks ended in each outcome, read at once.
//
// Every callback ends in exactly one outcome. Once the process has stopped:
//   registered = skipped + forgotten + dispatched
//   dispatched = completed + failed + rejected + abandoned
// A snapshot taken while work is in flight need not balance yet. A plain value: copy it freely.
#pragma once

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
    // Refused at registration under Overflow::shed: never registered, the client got a 503.
    std::uint64_t shed = 0;

    // Both identities hold.
    bool balanced() const;
    // Nothing was lost: the process may exit 0.
    bool nothing_lost() const { return rejected == 0 && abandoned == 0; }
    // "deferred registered=N dispatched=N completed=N failed=N skipped=N rejected=N abandoned=N
    // forgotten=N shed=N": the shutdown summary line.
    std::string summary() const;

    friend bool operator==(const DeferredCounts&, const DeferredCounts&) = default;
};

}  // namespace crosstown
