// Helpers shared by the unit tests: log capture, a gate to hold workers, bounded waits.
// Tests wait on conditions with a stated deadline, never on bare sleeps.
#pragma once

#include <chrono>
#include <condition_variable>
#include <crosstown/observe/log.hpp>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crosstown::test {

using namespace std::chrono_literals;

// Generous: only a broken build waits this long.
inline constexpr auto kPatience = 10s;

// Collects log lines for the scope's lifetime.
class LogCapture {
  public:
    LogCapture() {
        log::set_sink([this](log::Level, std::string_view line) {
            std::lock_guard lock(mutex_);
            lines_.emplace_back(line);
        });
    }
    ~LogCapture() { log::set_sink(nullptr); }

    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }
    bool contains(std::string_view needle) const {
        for (const auto& line : lines()) {
            if (line.find(needle) != std::string::npos) return true;
        }
        return false;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

// A gate that blocks whoever waits on it until opened (bounded by kPatience).
class Gate {
  public:
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    // True when opened, false when kPatience ran out.
    bool wait() {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, kPatience, [&] { return open_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
};

// Polls `condition` until true or `timeout`; for states with no event to wait on.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = kPatience) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

}  // namespace crosstown::test
