// crosstown::ServiceNotifier: keeps systemd informed about a Type=notify service (sd_notify(3)).
//
//   READY=1             once every responder is accepting (ready())
//   STATUS=...          a one-line live summary, refreshed every 2 s (systemctl status)
//   WATCHDOG=1          at most WatchdogSec/2 apart, but only while StallDetector says the service
//   makes
//                       progress: a wedged pool lets the watchdog fire
//   STOPPING=1          when the drain starts (stopping())
//   EXTEND_TIMEOUT_USEC while the drain proceeds, so a drain deadline longer than
//                       TimeoutStopSec is not cut short by systemd
// Without NOTIFY_SOCKET (not run by systemd) every call is a no-op and no thread starts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace crosstown {

struct ServiceSample {
    std::uint64_t work_done = 0;  // requests answered plus callbacks finished, so far
    bool work_waiting = false;    // callbacks queued or every responder busy
    std::string status;           // the STATUS= line
};

class ServiceNotifier {
  public:
    using Sampler = std::function<ServiceSample()>;
    using Clock = std::chrono::steady_clock;

    explicit ServiceNotifier(Sampler sample);
    ~ServiceNotifier();  // stops the heartbeat thread
    ServiceNotifier(const ServiceNotifier&) = delete;
    ServiceNotifier& operator=(const ServiceNotifier&) = delete;

    // READY=1, then the heartbeat thread sends STATUS= and WATCHDOG=1.
    void ready();
    // STOPPING=1; until destruction the heartbeat asks for time up to drain_deadline + 5 s.
    void stopping(Clock::time_point drain_deadline);

  private:
    void heartbeat(std::stop_token stop);
    void beat(class StallDetector& stalls, std::optional<Clock::time_point> drain_deadline);

    Sampler sample_;
    bool active_ = false;
    std::optional<std::chrono::microseconds> watchdog_;
    std::mutex mutex_;
    std::condition_variable_any wake_;
    std::optional<Clock::time_point> drain_deadline_;  // guarded by mutex_
    bool poked_ = false;                               // guarded by mutex_
    bool withholding_ = false;                         // heartbeat thread only
    std::jthread thread_;
};

}  // namespace crosstown
