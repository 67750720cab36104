// crosstown::NotableCallbacks: the few deferred callbacks an operator asks about first: the
// slowest ones so far and the most recent failures, with their names and request ids, for the
// status page.
//
// Workers record; any thread takes a snapshot. Once the slowest list is full, a relaxed atomic
// floor keeps every callback that would not enter it off the mutex (one load); the others, and
// failures, build a new list under the mutex (copy on write). A snapshot holds the mutex only
// to copy a pointer, so a page being read never holds up a worker for longer than that. The
// pool's own mutex is never involved.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
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
    // Replaced, never changed in place: a reader's copy of the pointer stays valid.
    std::shared_ptr<const Snapshot> current_ = std::make_shared<Snapshot>();  // mutex_
};

}  // namespace crosstown
