#include "crosstown/deferred/deferred_counters.hpp"

#include <fmt/format.h>

namespace crosstown {

bool DeferredCounts::balanced() const {
    return registered == skipped + forgotten + dispatched &&
           dispatched == completed + failed + rejected + abandoned;
}

std::string DeferredCounts::summary() const {
    return fmt::format(
        "deferred registered={} dispatched={} completed={} failed={} skipped={} rejected={} "
        "abandoned={} forgotten={} shed={}",
        registered, dispatched, completed, failed, skipped, rejected, abandoned, forgotten, shed);
}

DeferredCounts DeferredCounters::snapshot() const {
    const auto read = [](const std::atomic<std::uint64_t>& c) {
        return c.load(std::memory_order_relaxed);
    };
    return {read(registered), read(forgotten), read(skipped),  read(dispatched),
            read(completed),  read(failed),    read(rejected), read(abandoned),
            read(shed)};
}

}  // namespace crosstown
