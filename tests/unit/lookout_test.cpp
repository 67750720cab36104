// The Lookout on a real epoll set of eventfds: which thread takes which event, how long an
// event waits while the thread that took the last one is away, and what idle threads cost.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <crosstown/fastcgi/lookout.hpp>
#include <thread>
#include <vector>

#include "support/eventually.hpp"
#include "support/gate.hpp"
#include "support/process_threads.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kThreadName = "lookout-test";

// An epoll set with a stop eventfd (level-triggered, as the responder's) and a few one-shot
// eventfds standing for requests. What the threads touch belongs to the fixture, which joins
// them before any of it goes.
class LookoutTest : public ::testing::Test {
  protected:
    LookoutTest() {
        stop_fd_ = add(EPOLLIN);
        for (auto& fd : requests_) fd = add(EPOLLIN | EPOLLONESHOT);
    }
    ~LookoutTest() override {
        finish();
        for (const int fd : requests_) ::close(fd);
        ::close(stop_fd_);
        ::close(epoll_fd_);
    }

    int add(std::uint32_t events) {
        const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        epoll_event event{events, {.fd = fd}};
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
        return fd;
    }
    static void signal(int fd) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
    }
    // Reads the request's eventfd and arms it again, for the next signal.
    void rearm(int fd) {
        std::uint64_t count = 0;
        [[maybe_unused]] const auto n = ::read(fd, &count, sizeof count);
        epoll_event event{EPOLLIN | EPOLLONESHOT, {.fd = fd}};
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
    }
    void stop() {
        signal(stop_fd_);
        lookout_.stop();
    }
    void finish() {
        release_.open();
        stop();
        for (auto& thread : threads_) thread.join();
        threads_.clear();
    }

    // A thread that takes events until the stop fd (with `timeout_ms` for each wait), and runs
    // `serve` for each request taken; with `once`, it leaves after its first wait instead.
    template <typename Serve>
    void start_thread(Serve serve, int timeout_ms = -1, bool once = false) {
        threads_.emplace_back([this, serve, timeout_ms, once] {
            ::pthread_setname_np(::pthread_self(), kThreadName);
            for (;;) {
                epoll_event event{};
                const int n = lookout_.next(event, timeout_ms);
                if (once) return;
                if (n <= 0) continue;
                if (event.data.fd == stop_fd_) return;
                serve(event.data.fd);
            }
        });
    }

    int epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    int stop_fd_ = -1;
    std::array<int, 3> requests_{};
    Lookout lookout_{epoll_fd_};
    test::Gate release_;  // holds a slow "handler"; opened by finish()
    std::atomic<int> taken_{0};
    std::atomic<int> slow_thread_{-1};
    std::atomic<int> second_taken_by_{-1};
    std::atomic<Clock::rep> second_taken_at_{0};
    std::atomic<std::thread::id> first_by_;
    std::atomic<std::thread::id> second_by_;
    std::vector<std::thread> threads_;  // last: joined in finish() before the rest goes
};

TEST_F(LookoutTest, EveryEventIsTakenOnceByOneOfTheThreads) {
    for (int i = 0; i < 4; ++i) start_thread([this](int) { taken_.fetch_add(1); });
    for (const int fd : requests_) signal(fd);
    EXPECT_TRUE(test::eventually([&] { return taken_.load() == 3; }));
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(taken_.load(), 3) << "one-shot events are each taken once";
}

// What the Lookout is for: a request that comes while the thread that took the last one is
// still busy (briefly) waits for it, instead of waking another thread. With every thread in
// epoll_wait, another one would take it at once.
TEST_F(LookoutTest, AQuickRequestIsServedByTheThreadBusyWithTheLastOneAndWakesNobody) {
    for (int i = 0; i < 3; ++i) {
        start_thread([this](int fd) {
            if (fd == requests_[0]) {
                first_by_.store(std::this_thread::get_id());
                signal(requests_[1]);
                std::this_thread::sleep_for(100us);  // well under kWatchDelay
            } else {
                second_by_.store(std::this_thread::get_id());
                taken_.fetch_add(1);
            }
        });
    }
    int same = 0;
    constexpr int kRounds = 20;
    for (int round = 0; round < kRounds; ++round) {
        const int before = taken_.load();
        signal(requests_[0]);
        ASSERT_TRUE(test::eventually([&] { return taken_.load() == before + 1; }));
        if (first_by_.load() == second_by_.load()) ++same;
        rearm(requests_[0]);
        rearm(requests_[1]);
        // Apart, so that the sentry has looked (and found the watcher back) since the last
        // round: it looks kWatchDelay after each time the watcher leaves.
        std::this_thread::sleep_for(3ms);
    }
    finish();
    // A machine stalled for over kWatchDelay lets the sentry take one now and then.
    EXPECT_GE(same, kRounds * 3 / 4);
}

// The watcher takes the first request and stays away (a slow handler); the second must not
// wait for it: the sentry takes over watching within about kWatchDelay.
TEST_F(LookoutTest, AnEventIsTakenWhileTheThreadThatTookTheLastOneIsAway) {
    for (int i = 0; i < 3; ++i) {
        start_thread([this, i](int fd) {
            if (fd == requests_[0]) {
                slow_thread_.store(i);
                release_.wait();
            } else {
                second_taken_at_.store(Clock::now().time_since_epoch().count());
                second_taken_by_.store(i);
            }
        });
    }
    std::this_thread::sleep_for(20ms);  // one watches, one is the sentry, one stands by
    signal(requests_[0]);
    ASSERT_TRUE(test::eventually([&] { return slow_thread_.load() >= 0; }));
    const auto sent = Clock::now();
    signal(requests_[1]);
    const bool taken = test::eventually([&] { return second_taken_by_.load() >= 0; }, 2s);
    release_.open();
    ASSERT_TRUE(taken) << "the second event waited for the thread that was away";
    EXPECT_NE(second_taken_by_.load(), slow_thread_.load());
    const auto waited = Clock::time_point(Clock::duration(second_taken_at_.load())) - sent;
    EXPECT_LT(waited, 500ms) << "about kWatchDelay, with room for a loaded machine";
}

// A watcher may leave without an event and not come back (a spare thread leaving as
// surplus): the sentry resting meanwhile must be woken to take over.
TEST_F(LookoutTest, TheSentryTakesOverFromAWatcherThatLeavesForGood) {
    start_thread([](int) {}, 50, true);  // watches once, for 50 ms, then ends
    std::this_thread::sleep_for(10ms);
    start_thread([this](int) { taken_.fetch_add(1); });  // finds a watcher: the sentry, resting
    std::this_thread::sleep_for(100ms);                  // the first has left
    signal(requests_[0]);
    EXPECT_TRUE(test::eventually([&] { return taken_.load() == 1; }, 1s));
}

// Threads with nothing to do sleep without a deadline: no timed polling while idle.
TEST_F(LookoutTest, IdleThreadsDoNotWakeUp) {
    for (int i = 0; i < 4; ++i) start_thread([this](int) { taken_.fetch_add(1); });
    // Some traffic first, so the roles have moved around.
    for (const int fd : requests_) signal(fd);
    ASSERT_TRUE(test::eventually([&] { return taken_.load() == 3; }));
    std::this_thread::sleep_for(50ms);
    const long before = test::voluntary_context_switches(kThreadName);
    std::this_thread::sleep_for(300ms);
    // Timed waits of kWatchDelay would make about 300 here.
    EXPECT_LE(test::voluntary_context_switches(kThreadName) - before, 10);
}

TEST_F(LookoutTest, StopReleasesEveryThread) {
    for (int i = 0; i < 4; ++i) start_thread([](int) {});
    std::this_thread::sleep_for(20ms);
    const auto started = Clock::now();
    finish();
    EXPECT_LT(Clock::now() - started, 1s);
}

}  // namespace
}  // namespace crosstown
