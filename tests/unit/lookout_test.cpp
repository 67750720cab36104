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
#include <string>
#include <thread>
#include <vector>

#include "support/context_switches.hpp"
#include "support/eventually.hpp"
#include "support/gate.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kThreadName = "lookout-test";

// An epoll set with a stop eventfd (level-triggered, as the responder's) and a few one-shot
// eventfds standing for requests.
class LookoutTest : public ::testing::Test {
  protected:
    LookoutTest() {
        stop_fd_ = add(EPOLLIN);
        for (auto& fd : requests_) fd = add(EPOLLIN | EPOLLONESHOT);
    }
    ~LookoutTest() override {
        stop();
        for (auto& thread : threads_) thread.join();
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
    void stop() {
        signal(stop_fd_);
        lookout_.stop();
    }

    // A thread that takes events until the stop fd, and runs `serve` for each request taken.
    template <typename Serve>
    void start_thread(Serve serve) {
        threads_.emplace_back([this, serve] {
            ::pthread_setname_np(::pthread_self(), kThreadName);
            for (;;) {
                epoll_event event{};
                const int n = lookout_.next(event, -1);
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
    std::vector<std::thread> threads_;
};

TEST_F(LookoutTest, EveryEventIsTakenOnceByOneOfTheThreads) {
    std::atomic<int> taken{0};
    for (int i = 0; i < 4; ++i) start_thread([&](int) { taken.fetch_add(1); });
    for (const int fd : requests_) signal(fd);
    EXPECT_TRUE(test::eventually([&] { return taken.load() == 3; }));
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(taken.load(), 3) << "one-shot events are each taken once";
}

// The watcher takes the first request and stays away (a slow handler); the second must not
// wait for it: the sentry takes over watching within about kWatchDelay.
TEST_F(LookoutTest, AnEventIsTakenWhileTheThreadThatTookTheLastOneIsAway) {
    test::Gate release;
    std::atomic<int> second_taken_by{-1};
    std::atomic<Clock::rep> second_taken_at{0};
    std::atomic<int> slow_thread{-1};
    for (int i = 0; i < 3; ++i) {
        start_thread([&, i](int fd) {
            if (fd == requests_[0]) {
                slow_thread.store(i);
                release.wait();
            } else {
                second_taken_at.store(Clock::now().time_since_epoch().count());
                second_taken_by.store(i);
            }
        });
    }
    std::this_thread::sleep_for(20ms);  // one watches, one is the sentry, one stands by
    signal(requests_[0]);
    ASSERT_TRUE(test::eventually([&] { return slow_thread.load() >= 0; }));
    const auto sent = Clock::now();
    signal(requests_[1]);
    const bool taken = test::eventually([&] { return second_taken_by.load() >= 0; }, 2s);
    release.open();
    ASSERT_TRUE(taken) << "the second event waited for the thread that was away";
    EXPECT_NE(second_taken_by.load(), slow_thread.load());
    const auto waited = Clock::time_point(Clock::duration(second_taken_at.load())) - sent;
    EXPECT_LT(waited, 500ms) << "about kWatchDelay, with room for a loaded machine";
}

// Threads with nothing to do sleep without a deadline: no timed polling while idle.
TEST_F(LookoutTest, IdleThreadsDoNotWakeUp) {
    std::atomic<int> taken{0};
    for (int i = 0; i < 4; ++i) start_thread([&](int) { taken.fetch_add(1); });
    // Some traffic first, so the roles have moved around.
    for (const int fd : requests_) signal(fd);
    ASSERT_TRUE(test::eventually([&] { return taken.load() == 3; }));
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
    stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    EXPECT_LT(Clock::now() - started, 1s);
}

}  // namespace
}  // namespace crosstown
