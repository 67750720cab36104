// crosstown::StallDetector: tells a busy service from a wedged one, for the systemd watchdog.
//
// A service is wedged when work is waiting (callbacks queued, or every responder busy) and
// nothing has finished for longer than `limit`. An idle service is never wedged, and a busy one
// that keeps finishing work is not either, however long its queue. The watchdog is pinged only
// while progressing() holds, so a wedged pool stops the pings and systemd restarts the service
// (WatchdogSec), instead of a process that looks alive but serves nothing.
#pragma once

#include <chrono>
#include <cstdint>

namespace crosstown {

class StallDetector {
  public:
    using Clock = std::chrono::steady_clock;

    explicit StallDetector(Clock::duration limit) : limit_(limit) {}

    // work_done: a count that grows whenever a request or callback finishes.
    // The limit counts from the first sample that saw work waiting, not from the idle sample
    // before it: samples are taken at intervals, and a late one must not make a stall of work
    // that has only just arrived.
    bool progressing(std::uint64_t work_done, bool work_waiting, Clock::time_point now) {
        if (!work_waiting || !was_waiting_ || work_done != last_done_ || !seen_) {
            last_progress_ = now;
        }
        last_done_ = work_done;
        was_waiting_ = work_waiting;
        seen_ = true;
        return now - last_progress_ <= limit_;
    }

  private:
    Clock::duration limit_;
    std::uint64_t last_done_ = 0;
    bool seen_ = false;
    bool was_waiting_ = false;
    Clock::time_point last_progress_{};
};

}  // namespace crosstown
