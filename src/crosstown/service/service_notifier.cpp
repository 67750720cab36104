#include "crosstown/service/service_notifier.hpp"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "crosstown/detail/thread_name.hpp"
#include "crosstown/observe/log.hpp"
#include "crosstown/service/stall_detector.hpp"

namespace crosstown {
namespace {

constexpr auto kStatusInterval = std::chrono::seconds(2);
// Time asked for beyond the drain deadline: the summary line and _exit need a moment.
constexpr auto kDrainMargin = std::chrono::seconds(5);

void notify(const std::string& message) {
    const int rc = sd_notify(0, message.c_str());
    if (rc < 0) log::warn("sd_notify: {}", std::strerror(-rc));
}

}  // namespace

ServiceNotifier::ServiceNotifier(Sampler sample) : sample_(std::move(sample)) {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    active_ = socket != nullptr && *socket != '\0';
    std::uint64_t usec = 0;
    if (active_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        watchdog_ = std::chrono::microseconds(usec);
    }
}

ServiceNotifier::~ServiceNotifier() {
    if (thread_.joinable()) {
        thread_.request_stop();
        wake_.notify_all();
    }
}

void ServiceNotifier::ready() {
    if (!active_) return;
    notify(fmt::format("READY=1\nSTATUS={}", sample_().status));
    thread_ = std::jthread([this](std::stop_token stop) { heartbeat(stop); });
}

void ServiceNotifier::stopping(Clock::time_point drain_deadline) {
    if (!active_) return;
    {
        std::lock_guard lock(mutex_);
        drain_deadline_ = drain_deadline;
        poked_ = true;
    }
    notify("STOPPING=1\nSTATUS=draining deferred work");
    wake_.notify_all();  // the heartbeat asks for the extension at once
}

void ServiceNotifier::heartbeat(std::stop_token stop) {
    detail::name_this_thread("ct-notifier");
    // Pings at most WatchdogSec/2 apart; STATUS every 2 s at most.
    const auto half = watchdog_ ? std::chrono::duration_cast<Clock::duration>(*watchdog_ / 2)
                                : Clock::duration(kStatusInterval);
    const auto tick = std::min<Clock::duration>(half, kStatusInterval);
    StallDetector stalls(half);
    std::unique_lock lock(mutex_);
    while (!stop.stop_requested()) {
        const auto deadline = drain_deadline_;
        lock.unlock();
        beat(stalls, deadline);
        lock.lock();
        wake_.wait_for(lock, stop, tick, [this] { return std::exchange(poked_, false); });
    }
}

void ServiceNotifier::beat(StallDetector& stalls, std::optional<Clock::time_point> drain_deadline) {
    const auto now = Clock::now();
    const auto sample = sample_();
    std::string message = "STATUS=" + sample.status;
    if (drain_deadline && now < *drain_deadline + kDrainMargin) {
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(*drain_deadline +
                                                                                kDrainMargin - now);
        message += fmt::format("\nEXTEND_TIMEOUT_USEC={}", left.count());
    }
    const bool progressing = stalls.progressing(sample.work_done, sample.work_waiting, now);
    if (watchdog_ && progressing) message += "\nWATCHDOG=1";
    if (watchdog_ && progressing == withholding_) {
        withholding_ = !progressing;
        if (withholding_) {
            log::error(
                "stalled: work is waiting and nothing has finished for {}ms; withholding "
                "the watchdog ping",
                std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_ / 2).count());
        } else {
            log::info("progressing again; watchdog pings resumed");
        }
    }
    notify(message);
}

}  // namespace crosstown
