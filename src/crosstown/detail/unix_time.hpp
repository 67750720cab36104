// crosstown::detail::unix_now_ms: the wall clock in Unix milliseconds, the time stores keep
// (enqueue and due times) since they outlive the process and its steady clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace crosstown::detail {

inline std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace crosstown::detail
