// ServiceNotifier against a NOTIFY_SOCKET of our own: the sd_notify(3) datagrams it sends, as
// systemd would read them. Each test sets the variables sd_notify reads and unsets them after.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <crosstown/service/service_notifier.hpp>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "support/eventually.hpp"
#include "support/log_capture.hpp"
#include "support/notify_socket.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using test::kPatience;
using ::testing::HasSubstr;
using ::testing::Not;

// A sampler the test steers: work done so far, whether work waits, frozen or not.
class FakeService {
  public:
    ServiceNotifier::Sampler sampler() {
        return [this] {
            ++samples_;
            // Progressing: something finished since the last sample.
            const auto done = frozen_.load() ? done_.load() : ++done_;
            return ServiceSample{.work_done = done,
                                 .work_waiting = waiting_.load(),
                                 .status = "serving: " + std::to_string(done) + " requests"};
        };
    }
    void freeze(bool frozen) { frozen_.store(frozen); }
    void set_waiting(bool waiting) { waiting_.store(waiting); }
    int samples() const { return samples_.load(); }
    std::uint64_t done() const { return done_.load(); }

  private:
    std::atomic<std::uint64_t> done_{7};
    std::atomic<bool> frozen_{true};
    std::atomic<bool> waiting_{false};
    std::atomic<int> samples_{0};
};

class ServiceNotifierTest : public ::testing::Test {
  protected:
    ServiceNotifierTest() { clear_environment(); }
    ~ServiceNotifierTest() override { clear_environment(); }

    static void clear_environment() {
        for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) {
            ::unsetenv(name);
        }
    }
    // The environment of a Type=notify unit, with WatchdogSec= when `watchdog_usec` is set.
    void run_as_systemd_would(const char* watchdog_usec = nullptr) {
        ::setenv("NOTIFY_SOCKET", notify_.path().c_str(), 1);
        if (watchdog_usec != nullptr) {
            ::setenv("WATCHDOG_USEC", watchdog_usec, 1);
            ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
        }
    }
    // The next `n` messages (fewer when kPatience runs out first).
    std::vector<std::string> next_messages(int n) {
        std::vector<std::string> messages;
        while (static_cast<int>(messages.size()) < n) {
            auto message = notify_.next(kPatience);
            if (message.empty()) break;
            messages.push_back(std::move(message));
        }
        return messages;
    }

    test::LogCapture log_;  // outlives the notifier, whose thread logs
    test::TempDir dir_{"crosstown-notify"};
    test::NotifySocket notify_{dir_ / "notify.sock"};
    FakeService service_;
};

TEST_F(ServiceNotifierTest, ReadySendsReadyWithTheSamplersStatus) {
    run_as_systemd_would();
    ServiceNotifier notifier(service_.sampler());
    EXPECT_EQ(service_.samples(), 0) << "nothing is sampled before ready()";
    notifier.ready();
    EXPECT_EQ(notify_.next(kPatience), "READY=1\nSTATUS=serving: 7 requests");
    // Then the heartbeat: STATUS= alone, with no watchdog configured.
    const auto beat = notify_.next(kPatience);
    EXPECT_EQ(beat, "STATUS=serving: 7 requests");
    EXPECT_THAT(beat, Not(HasSubstr("WATCHDOG=1")));
}

TEST_F(ServiceNotifierTest, WatchdogPingsWhileProgressingAndStopsWhenStalled) {
    run_as_systemd_would("200000");  // WatchdogSec=200ms: a beat every 100 ms
    service_.set_waiting(true);
    service_.freeze(false);  // work waits, and some finishes between any two samples
    ServiceNotifier notifier(service_.sampler());
    notifier.ready();
    ASSERT_THAT(notify_.next(kPatience), HasSubstr("READY=1"));
    for (const auto& beat : next_messages(3)) {
        EXPECT_THAT(beat, HasSubstr("WATCHDOG=1")) << "progressing";
        EXPECT_THAT(beat, HasSubstr("STATUS=serving: "));
    }
    EXPECT_FALSE(log_.contains("stalled"));

    // Work still waits, but nothing finishes any more: past the limit (100 ms) the notifier
    // says so, and the beats that follow carry no ping, so that systemd's watchdog fires.
    service_.freeze(true);
    ASSERT_TRUE(test::eventually([&] { return log_.contains("stalled"); })) << "no stall seen";
    EXPECT_TRUE(log_.contains(
        "stalled: work is waiting and nothing has finished for 100ms; withholding the watchdog "
        "ping"));
    notify_.discard();  // everything sent before the stall was logged
    const auto frozen_at = "STATUS=serving: " + std::to_string(service_.done()) + " requests";
    const auto stalled = next_messages(3);
    ASSERT_EQ(stalled.size(), 3U) << "the heartbeat goes on";
    for (const auto& beat : stalled) {
        EXPECT_EQ(beat, frozen_at) << "no WATCHDOG=1 while stalled";
    }

    // Progress again: the pings resume.
    service_.freeze(false);
    EXPECT_THAT(notify_.until("WATCHDOG=1", kPatience), HasSubstr("WATCHDOG=1"));
    EXPECT_TRUE(log_.contains("progressing again; watchdog pings resumed"));
}

TEST_F(ServiceNotifierTest, AnIdleServiceIsNeverStalled) {
    run_as_systemd_would("200000");
    service_.set_waiting(false);  // nothing waits, and nothing finishes either
    ServiceNotifier notifier(service_.sampler());
    notifier.ready();
    ASSERT_THAT(notify_.next(kPatience), HasSubstr("READY=1"));
    // Four beats span more than the stall limit (100 ms): each still pings.
    const auto beats = next_messages(4);
    ASSERT_EQ(beats.size(), 4U);
    for (const auto& beat : beats) EXPECT_THAT(beat, HasSubstr("WATCHDOG=1"));
    EXPECT_FALSE(log_.contains("stalled"));
}

TEST_F(ServiceNotifierTest, AWatchdogForAnotherProcessIsNotOurs) {
    run_as_systemd_would("200000");
    ::setenv("WATCHDOG_PID", std::to_string(::getppid()).c_str(), 1);
    ServiceNotifier notifier(service_.sampler());
    notifier.ready();
    ASSERT_THAT(notify_.next(kPatience), HasSubstr("READY=1"));
    // Without a watchdog of ours, the first beat is a bare STATUS=.
    EXPECT_EQ(notify_.next(kPatience), "STATUS=serving: 7 requests");
}

TEST_F(ServiceNotifierTest, StoppingSendsStoppingThenAsksForTheDrainTimePlusAMargin) {
    run_as_systemd_would();
    ServiceNotifier notifier(service_.sampler());
    notifier.ready();
    ASSERT_THAT(notify_.next(kPatience), HasSubstr("READY=1"));
    const auto deadline = ServiceNotifier::Clock::now() + 10s;
    notifier.stopping(deadline);
    EXPECT_THAT(notify_.until("STOPPING=1", kPatience),
                HasSubstr("STOPPING=1\nSTATUS=draining deferred work"));
    // The heartbeat is woken at once to ask for more time: up to the drain deadline plus 5 s,
    // counted from the beat. Had it waited for its next beat (2 s), it would ask for 13 s.
    const auto extend = notify_.until("EXTEND_TIMEOUT_USEC=", kPatience);
    ASSERT_THAT(extend, HasSubstr("EXTEND_TIMEOUT_USEC="));
    EXPECT_THAT(extend, HasSubstr("STATUS=serving: 7 requests"));
    const auto usec = std::stoll(extend.substr(extend.find("EXTEND_TIMEOUT_USEC=") + 20));
    EXPECT_LE(usec, 15'000'000);
    EXPECT_GT(usec, 14'000'000) << "asked at once, not a status interval later";
}

TEST_F(ServiceNotifierTest, StoppingAfterTheDrainDeadlinePlusItsMarginAsksForNoMoreTime) {
    run_as_systemd_would();
    ServiceNotifier notifier(service_.sampler());
    notifier.ready();
    ASSERT_THAT(notify_.next(kPatience), HasSubstr("READY=1"));
    ASSERT_EQ(notify_.next(kPatience), "STATUS=serving: 7 requests");  // the first beat
    notifier.stopping(ServiceNotifier::Clock::now() - 6s);  // past the deadline and the 5 s
    // STOPPING=1, then the beat it wakes: a STATUS= without EXTEND_TIMEOUT_USEC.
    EXPECT_EQ(next_messages(2),
              (std::vector<std::string>{"STOPPING=1\nSTATUS=draining deferred work",
                                        "STATUS=serving: 7 requests"}));
}

TEST_F(ServiceNotifierTest, SilentWithoutNotifySocket) {
    // The socket is there, but nobody told the process about it.
    for (const char* value : {static_cast<const char*>(nullptr), ""}) {
        if (value != nullptr) ::setenv("NOTIFY_SOCKET", value, 1);
        {
            ServiceNotifier notifier(service_.sampler());
            notifier.ready();
            notifier.stopping(ServiceNotifier::Clock::now() + 10s);
        }
        // Every call returned at once, without sampling, sending or starting a thread: a
        // datagram from them would already be waiting.
        EXPECT_EQ(service_.samples(), 0) << (value ? "empty NOTIFY_SOCKET" : "no NOTIFY_SOCKET");
        EXPECT_EQ(notify_.next(0ms), "");
    }
    EXPECT_FALSE(log_.contains("sd_notify"));
}

}  // namespace
}  // namespace crosstown
