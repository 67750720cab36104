// crosstown::detail::unix_now_ms: the wall clock in Unix milliseconds, the time stores keep
// (enqueue and due times) since they outlive the process and its steady clock; unix_ms: a
// wall-clock time point in the same.
#pragma once

#include <chrono>
#include <cstdint>

namespace crosstown::detail {

inline std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline std::int64_t unix_now_ms() { return unix_ms(std::chrono::system_clock::now()); }

}  // namespace crosstown::detail
