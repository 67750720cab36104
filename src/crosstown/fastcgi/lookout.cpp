#include "crosstown/fastcgi/lookout.hpp"

#include <sys/epoll.h>

#include <cerrno>

namespace crosstown {

using Clock = std::chrono::steady_clock;

int Lookout::next(epoll_event& event, int timeout_ms) {
    bool expected = false;
    if (watching_.compare_exchange_strong(expected, true)) return watch(event, timeout_ms);
    const int n = ::epoll_wait(epoll_fd_, &event, 1, 0);
    if (n != 0) return n;
    stand_by(timeout_ms);
    return 0;
}

// The watcher leaves without waking anyone, unless the sentry rests: it then has to start
// timing this absence. Also when it leaves without an event: it may not come back (a spare
// leaving as surplus).
int Lookout::watch(epoll_event& event, int timeout_ms) {
    const int n = ::epoll_wait(epoll_fd_, &event, 1, timeout_ms);
    const int error = errno;
    watching_.store(false);
    if (sentry_resting_.load()) wake_sentry();
    errno = error;
    return n;
}

void Lookout::wake_sentry() {
    std::lock_guard lock(mutex_);
    sentry_resting_.store(false);
    sentry_wake_.notify_one();
}

// Only while nobody watches: a watcher that leaves wakes a resting sentry anyway. Only to a
// sentry on duty: a request to one that comes later would send it watching for nothing.
void Lookout::promote_now() {
    if (watching_.load()) return;
    std::lock_guard lock(mutex_);
    if (!sentry_) return;
    promote_ = true;
    sentry_wake_.notify_one();
}

void Lookout::stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    sentry_wake_.notify_all();
    standby_wake_.notify_all();
}

// A thread standing by waits for the sentry's post to be free and takes it: so while any
// thread stands by, one of them is the sentry. It returns to the caller after timeout_ms (to
// look whether it should leave as surplus), on stop, or when, as the sentry, it should watch.
void Lookout::stand_by(int timeout_ms) {
    std::unique_lock lock(mutex_);
    const auto post_free = [this] { return stopping_ || !sentry_; };
    if (timeout_ms < 0) {
        standby_wake_.wait(lock, post_free);
    } else if (!standby_wake_.wait_for(lock, std::chrono::milliseconds(timeout_ms), post_free)) {
        return;
    }
    if (stopping_) return;
    sentry_ = true;
    keep_watch(lock, timeout_ms);
    sentry_ = false;
    standby_wake_.notify_one();
}

// Returns when the sentry should watch (nobody does kWatchDelay after the watcher left, or
// promote_now), on stop, or after timeout_ms. Resting, it sets sentry_resting_ before it
// looks at watching_, and the watcher clears watching_ before it looks at sentry_resting_
// (both sequentially consistent), so at least one of them sees the other: the sentry never
// rests while nobody watches.
void Lookout::keep_watch(std::unique_lock<std::mutex>& lock, int timeout_ms) {
    const auto deadline = timeout_ms < 0 ? Clock::time_point::max()
                                         : Clock::now() + std::chrono::milliseconds(timeout_ms);
    const auto woken = [this] { return !sentry_resting_.load() || stopping_ || promote_; };
    while (!stopping_ && Clock::now() < deadline) {
        if (promote_) {
            promote_ = false;
            return;
        }
        if (watching_.load()) {
            sentry_resting_.store(true);
            if (watching_.load()) {
                if (timeout_ms < 0) {
                    sentry_wake_.wait(lock, woken);
                } else {
                    sentry_wake_.wait_until(lock, deadline, woken);
                }
            }
            sentry_resting_.store(false);
            continue;
        }
        sentry_wake_.wait_for(lock, kWatchDelay, [this] { return stopping_ || promote_; });
        if (!watching_.load()) return;
    }
}

}  // namespace crosstown
