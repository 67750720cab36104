// Waiting in tests: on a condition, with a stated deadline, never on a bare sleep.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace crosstown::test {

using namespace std::chrono_literals;

// Generous: only a broken build waits this long.
inline constexpr auto kPatience = 10s;

// Polls `condition` every `every` until it holds (true) or `timeout` has passed (false); for
// states with no event to wait on. The condition is checked at least once, and once more at
// the deadline.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = kPatience,
                       std::chrono::milliseconds every = 1ms) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(every);
    }
    return true;
}

}  // namespace crosstown::test
