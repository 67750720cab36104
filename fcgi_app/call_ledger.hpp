// fcgi_app::CallLedger: what happened to each batch of simulated phone calls.
//
// POST /calls opens a batch; each call (a deferred callback on the pool) reports when it
// started and how it ended; GET /calls/{batch} reads it back. Times are steady_clock
// (CLOCK_MONOTONIC on Linux) nanoseconds, so a test in another process on the same machine can
// compare them with its own clock. Only the most recent `capacity` batches are kept.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fcgi_app {

class CallBatch {
  public:
    using Clock = std::chrono::steady_clock;

    CallBatch(std::string id, std::uint64_t count) : id_(std::move(id)), count_(count) {}

    // The batch's response was finished (FCGX_Finish_r); the first report counts.
    void response_finished(Clock::time_point at);
    // A call starts; `finished_at` is when its response was finished, when the caller knows
    // (a callback or a job of this process does; a job taken from a shared journal does not,
    // and is compared with response_finished() when that came first).
    void call_started(std::optional<Clock::time_point> finished_at, Clock::time_point now);
    void call_ended(bool placed, Clock::time_point now);

    struct View {
        std::string id;
        std::uint64_t count, started, placed, failed, pending;
        std::int64_t response_finished_ns;    // 0 until known
        std::int64_t first_start_ns;          // 0 until then
        std::int64_t last_end_ns;             // 0 until a call ended
        std::int64_t min_start_delay_ns;      // smallest start - finish over the calls; -1: none
        std::uint64_t started_before_finish;  // must stay 0
    };
    View view() const;

  private:
    static constexpr auto kNone = std::numeric_limits<std::int64_t>::max();

    const std::string id_;
    const std::uint64_t count_;
    std::atomic<std::uint64_t> started_{0};
    std::atomic<std::uint64_t> placed_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> started_before_finish_{0};
    std::atomic<std::int64_t> response_finished_ns_{0};
    std::atomic<std::int64_t> first_start_ns_{kNone};
    std::atomic<std::int64_t> last_end_ns_{0};
    std::atomic<std::int64_t> min_start_delay_ns_{kNone};
};

class CallLedger {
  public:
    explicit CallLedger(std::size_t capacity = 1024) : capacity_(capacity) {}

    // A new batch; or, with an `id` (a retried request's), the batch of that id if the ledger
    // still has it, else a new one of that id.
    std::shared_ptr<CallBatch> open(std::uint64_t count, std::string_view id = {});
    // nullptr for an unknown or forgotten batch.
    std::shared_ptr<const CallBatch> find(std::string_view id) const;
    // The same, for a durable call that reports to its batch.
    std::shared_ptr<CallBatch> find_to_report(std::string_view id);

  private:
    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::uint64_t next_ = 1;                                               // guarded by mutex_
    std::deque<std::string> order_;                                        // guarded by mutex_
    std::unordered_map<std::string, std::shared_ptr<CallBatch>> batches_;  // guarded by mutex_
};

}  // namespace fcgi_app
