// crosstown::detail::LogThrottle: counts a repeated event and says when to log it, at most
// once per interval with the count since the last line, so that a flood (descriptors running
// out, a port scan) cannot flood the log as well. Any thread may call it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace crosstown::detail {

class LogThrottle {
  public:
    explicit LogThrottle(std::chrono::seconds every) : every_(every.count()) {}

    // Counts one event; returns how many to report when a line is due now, else 0.
    std::uint64_t count() {
        const auto events = events_.fetch_add(1) + 1;
        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
        auto last = last_.load();
        if (now - last < every_ || !last_.compare_exchange_strong(last, now)) return 0;
        events_.store(0);
        return events;
    }

  private:
    const std::int64_t every_;
    std::atomic<std::int64_t> last_{0};  // steady-clock seconds
    std::atomic<std::uint64_t> events_{0};
};

}  // namespace crosstown::detail
