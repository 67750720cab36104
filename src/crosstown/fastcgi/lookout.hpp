// crosstown::Lookout: which responder thread waits in epoll_wait for the next request.
//
// At most one thread (the watcher) sleeps in epoll_wait. When it takes a request it leaves to
// serve it and wakes nobody; when it is done it watches again. So while requests are quick,
// the next one waits a few microseconds for the thread serving, instead of waking a sleeping
// thread for each request: measured behind nginx on two cores, that wake-up (and its context
// switches) was a fifth of fcgi_app's CPU per request.
//
// A handler may take long, so one idle thread (the sentry) looks again kWatchDelay after the
// watcher leaves: if nobody watches then, the sentry becomes the watcher, so a slow handler
// holds other connections' requests for at most about that long. A thread about to block for
// room in the pool (promote_now) hands over at once. The other idle threads stand by on a
// condition variable. While the watcher watches, the sentry sleeps until the watcher leaves
// (which wakes it) or, while spare threads run, until it is time to look whether it should
// leave as surplus: an idle process makes no wake-ups. A request after a quiet spell costs a
// wake-up of the sentry; requests that keep coming do not.
//
// A thread that finishes a request while another watches first takes a request already
// waiting (epoll_wait with a zero timeout), so under a backlog every thread keeps serving,
// and under a backlog that lasts the threads serving grow by one each kWatchDelay.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

struct epoll_event;

namespace crosstown {

class Lookout {
  public:
    static constexpr std::chrono::milliseconds kWatchDelay{1};

    explicit Lookout(int epoll_fd) : epoll_fd_(epoll_fd) {}

    // One event for the calling thread, as epoll_wait(epoll_fd, &event, 1, timeout_ms) would
    // return it: 1 with `event`, 0 when there is none yet (also after standing by, or
    // timeout_ms passing: call again), -1 with errno.
    int next(epoll_event& event, int timeout_ms);
    // The calling thread is about to block: the sentry takes over watching now.
    void promote_now();
    // Wakes every thread standing by; from then on next() never waits outside epoll_wait.
    void stop();

  private:
    int watch(epoll_event& event, int timeout_ms);
    void stand_by(int timeout_ms);
    void keep_watch(std::unique_lock<std::mutex>& lock, int timeout_ms);
    void wake_sentry();

    const int epoll_fd_;
    std::atomic<bool> watching_{false};        // a thread is in (or about to enter) epoll_wait
    std::atomic<bool> sentry_resting_{false};  // the sentry sleeps until the watcher leaves
    std::mutex mutex_;
    std::condition_variable sentry_wake_;
    std::condition_variable standby_wake_;
    bool sentry_ = false;    // guarded by mutex_
    bool promote_ = false;   // guarded by mutex_
    bool stopping_ = false;  // guarded by mutex_
};

}  // namespace crosstown
