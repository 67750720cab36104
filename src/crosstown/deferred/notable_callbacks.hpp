// crosstown::NotableCallbacks: the few deferred callbacks an operator asks about first: the
// slowest ones so far and the most recent failures, with their names and request ids, for the
// status page.
//
// Workers record; any thread takes a snapshot. A worker takes the mutex only for a callback
// that enters the slowest list (a relaxed atomic floor filters the rest, so the common fast
// callback costs one load) or that failed; a snapshot holds it for a copy of at most
// kSlowest + kFailures entries. The pool's own mutex is never involved.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace crosstown {

struct NotableCallback {
    std::string name;
    std::string request_id;
    std::chrono::nanoseconds run_time{0};
    std::chrono::system_clock::time_point ended_at;
    std::string error;  // failures only
};

class NotableCallbacks {
  public:
    static constexpr std::size_t kSlowest = 5;
    static constexpr std::size_t kFailures = 10;

    // A callback that ended after `run_time`; kept if it is among the slowest so far.
    void ran(std::string_view name, std::string_view request_id, std::chrono::nanoseconds run_time);
    void failed(std::string_view name, std::string_view request_id,
                std::chrono::nanoseconds run_time, std::string_view error);

    struct Snapshot {
        std::vector<NotableCallback> slowest;          // slowest first
        std::vector<NotableCallback> recent_failures;  // newest first
    };
    Snapshot snapshot() const;

  private:
    // The run time a callback must exceed to enter the full slowest list.
    std::atomic<std::int64_t> floor_nanos_{-1};
    mutable std::mutex mutex_;
    std::vector<NotableCallback> slowest_;         // guarded by mutex_; slowest first
    std::deque<NotableCallback> recent_failures_;  // guarded by mutex_; newest first
};

}  // namespace crosstown
