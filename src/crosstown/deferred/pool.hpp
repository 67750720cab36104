// crosstown::Pool: the process's std::jthread workers that run deferred callbacks.
//
// - Elastic: min_workers start with the pool; another starts whenever callbacks wait and no
//   worker is idle or on its way, up to `workers`; one above the minimum that finds no work
//   for idle_timeout retires (and is joined by the next to retire, or by drain).
// - Bounded: at most `queue_capacity` callbacks wait. When the queue is full the configured
//   Overflow decides: block (the submitter waits for room: backpressure, nothing lost),
//   caller_runs (the submitter runs the callback itself) or reject (dropped, counted, logged
//   by name). A worker of this pool that submits to its own full queue under `block` runs the
//   callback itself instead, since waiting could deadlock the pool. Registration meets a full
//   queue first: Admission decides there, with the room kept below (reserve_room), so that a
//   dispatch, after the response, need not wait; here `shed` waits as `block` does. A thread
//   about to wait for room tells its BlockingObserver (the responder starts a spare thread).
// - Batches: submit_batch() enqueues a request's callbacks in order under one lock.
// - Isolated: an exception from a callback is caught, logged with the request id and the
//   callback's name, and counted as failed; the worker goes on.
// - Observed: the slowest callbacks and the latest failures are kept by name and request id,
//   one that runs longer than `slow_callback` is logged once and counted, and the sizes read
//   by the status page (queue_depth, busy_workers) are atomics: reading them never takes the
//   lock that submitters and workers share.
// - Drained: drain(timeout) runs everything queued until the timeout passes, then abandons
//   what is still queued (counted, logged by name), requests stop on the workers' stop tokens
//   so long callbacks can end early, waits `grace` for them and joins. The destructor drains
//   with no timeout if drain() was not called.
// Every member may be called from any thread, except drain() and the destructor, which one
// owner calls once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_callback.hpp"
#include "crosstown/deferred/deferred_counters.hpp"
#include "crosstown/deferred/notable_callbacks.hpp"
#include "crosstown/deferred/pool_config.hpp"
#include "crosstown/deferred/response_outcome.hpp"
#include "crosstown/observe/latency_histogram.hpp"

namespace crosstown {

struct DrainReport {
    bool finished_in_time = true;        // queue empty and all workers idle in time
    std::uint64_t abandoned_queued = 0;  // callbacks that never started
    // Callbacks still running `grace` after their stop tokens were requested. Their workers were
    // not joined: the owner should log and leave the process with _exit rather than wait on them.
    std::uint64_t stuck = 0;
    // Of those, callbacks their submitters keep (DeferredCallback::kept_by_submitter): not
    // counted abandoned, as nothing is lost.
    std::uint64_t stuck_kept = 0;
};

namespace detail {
// Runs a callback's fn with `stop`, with `outcome` current for response_delivered(). Returns the
// error text if it threw (std::exception or anything else), after logging it with the request
// id and the callback's name; std::nullopt when it completed.
std::optional<std::string> run_isolated(DeferredCallback& callback, std::stop_token stop);
}  // namespace detail

class Pool {
  public:
    using Duration = std::chrono::steady_clock::duration;
    static constexpr Duration kNoTimeout = Duration::max();

    explicit Pool(PoolConfig config = {});
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // Hands callbacks to the workers; counted as dispatched. After drain() they are abandoned.
    void submit(DeferredCallback callback);
    // `reserved`: slots this submitter reserved with reserve_room(). That many of the callbacks
    // go in at once, ahead of anyone waiting for room; slots left over are given back; the
    // rest wait for room under block, as any submission does.
    void submit_batch(std::vector<DeferredCallback> callbacks, std::size_t reserved = 0);

    // Queues as many of `callbacks` as fit now, in order, never waiting and whatever the
    // overflow policy, and returns how many: the first ones, moved from; the rest are left as
    // they were. None while others wait for room, or after drain. For a submitter with a line
    // of its own to keep the rest in (the durable jobs' runner).
    std::size_t try_submit(std::span<DeferredCallback> callbacks);

    // The room Admission uses at registration. wait_for_room returns once the queue has room
    // (at once when it has), in turn with the dispatches waiting for room, and keeps nothing.
    void wait_for_room();
    // The same wait, then keeps one slot of the queue for the caller until its submit_batch
    // (or give_back_room). Without it, a request whose registrations found room could meet a
    // full queue at dispatch, after its response: its client would send the next request at
    // once while the responder waited, and under saturation the waiting dispatches piled up
    // until no thread was left to serve anyone. False when it kept nothing: on one of this
    // pool's own workers (which never waits), or after drain.
    bool reserve_room();
    // Keeps a free slot if there is one, never waiting: for a caller that already keeps
    // some, since waiting while holding reserved room could wait for itself (a request registering
    // more callbacks than the queue holds), or for another that waits in turn. It goes ahead
    // of those waiting in line: a request that started finishes its registrations first.
    bool try_reserve_room();
    void give_back_room(std::size_t slots);

    // Runs a callback on the calling thread with the pool's isolation and accounting
    // (same_thread callbacks, Overflow::caller_runs). Its stop token never fires.
    void run_inline(DeferredCallback callback);

    // Blocks until the queue is empty and no worker is busy (tests and benchmarks).
    void wait_idle();

    DrainReport drain(Duration timeout, Duration grace = std::chrono::seconds(1));
    // Makes a drain under way (or the next one) stop waiting for the queue at once: what is
    // queued is abandoned and running callbacks see their stop tokens (a second SIGTERM).
    void cut_drain_short();

    DeferredCounters& counters() { return counters_; }
    const DeferredCounters& counters() const { return counters_; }
    // From submission to start, and from start to end, merged over all threads.
    LatencyHistogram::Snapshot queue_wait() const;
    LatencyHistogram::Snapshot run_time() const;
    std::size_t queue_depth() const { return queue_depth_.load(std::memory_order_relaxed); }
    // Slots reserved by reserve_room() and not yet used: room the queue does not show.
    std::size_t reserved_room() const { return reserved_room_.load(std::memory_order_relaxed); }
    // Whether `callbacks` more would fit in the queue now. Lock-free, so only a hint: others
    // may fill or empty it the next instant.
    bool has_room_for(std::size_t callbacks) const {
        return queue_depth() + reserved_room() + callbacks <= config_.queue_capacity;
    }
    unsigned busy_workers() const { return busy_workers_.load(std::memory_order_relaxed); }
    // Worker threads alive now, between config().min_workers and config().workers.
    unsigned live_workers() const { return live_workers_.load(std::memory_order_relaxed); }
    // Callbacks that ran longer than config().slow_callback.
    std::uint64_t slow_callbacks() const { return slow_.load(std::memory_order_relaxed); }
    NotableCallbacks::Snapshot notable_callbacks() const { return notable_.snapshot(); }
    const PoolConfig& config() const { return config_; }

  private:
    enum class Result { completed, failed };
    // Histograms written by one thread each, on their own cache lines.
    struct alignas(64) Stats {
        LatencyHistogram queue_wait;
        LatencyHistogram run_time;
    };
    using Clock = std::chrono::steady_clock;

    void enqueue(std::span<DeferredCallback> callbacks, std::size_t reserved = 0);
    // Whether the calling thread is one of this pool's workers, which never wait for room here:
    // they would wait for themselves.
    bool runs_on_own_worker() const;
    bool take_turn(std::unique_lock<std::mutex>& lock);
    void leave_line();
    void pass_turn();
    std::size_t room() const;
    struct RoomWaiter;
    bool has_turn_and_room(const RoomWaiter& waiter) const;
    std::size_t push_what_fits(std::span<DeferredCallback>& callbacks, Clock::time_point now);
    bool should_wake_one(std::size_t new_callbacks);
    void give_up(std::span<DeferredCallback> callbacks, std::atomic<std::uint64_t>& counter,
                 std::string_view why);
    void run_inline_counted(DeferredCallback& callback);
    void worker_loop(std::stop_token stop, unsigned slot);
    bool wait_for_work(std::unique_lock<std::mutex>& lock);
    void grow_if_needed();
    bool start_worker();
    void retire(unsigned slot, std::unique_lock<std::mutex>& lock);
    Result run_callback(DeferredCallback& callback, std::stop_token stop, Stats& stats,
                        Clock::time_point& clock);
    void take_note(const DeferredCallback& callback, Clock::duration run_time,
                   const std::optional<std::string>& error);
    void publish_sizes();

    const PoolConfig config_;
    DeferredCounters counters_;
    NotableCallbacks notable_;
    std::atomic<std::uint64_t> slow_{0};
    // Copies of queue_.size(), busy_ and live_, stored under mutex_ and read without it.
    std::atomic<std::size_t> queue_depth_{0};
    std::atomic<unsigned> busy_workers_{0};
    std::atomic<unsigned> live_workers_{0};
    std::atomic<std::size_t> reserved_room_{0};  // a copy of reserved_
    // One per worker slot, then one shared by inline runs (the spill-over of caller_runs and
    // same_thread callbacks, which are rarer). A slot's figures outlive its threads.
    std::unique_ptr<Stats[]> stats_;

    mutable std::mutex mutex_;
    std::condition_variable work_cv_;     // workers wait for callbacks
    std::condition_variable idle_cv_;     // wait_idle()/drain() wait for an idle pool
    std::deque<DeferredCallback> queue_;  // guarded by mutex_
    std::size_t reserved_ = 0;  // guarded by mutex_; slots reserved by reserve_room(), not yet used
    unsigned busy_ = 0;         // guarded by mutex_
    unsigned busy_kept_ = 0;    // guarded by mutex_; of busy_, kept by their submitters
    unsigned waiting_workers_ = 0;  // guarded by mutex_
    unsigned live_ = 0;             // guarded by mutex_; started and not retired
    unsigned starting_ = 0;         // guarded by mutex_; started, not yet looking for work
    bool waking_ = false;           // guarded by mutex_; a worker was notified, not yet up
    // Overflow::block submitters waiting for room, first come first served (mutex_).
    struct RoomWaiter {
        std::condition_variable cv;
    };
    std::deque<RoomWaiter*> waiting_for_room_;
    unsigned waiting_for_idle_ = 0;   // guarded by mutex_
    bool closed_ = false;             // guarded by mutex_; set by drain: no new work
    bool accounting_closed_ = false;  // guarded by mutex_; stuck callbacks were counted abandoned
    bool drained_ = false;            // guarded by mutex_
    bool cut_short_ = false;          // guarded by mutex_; see cut_drain_short()
    // One slot per possible worker: a thread, or an empty jthread when the slot is free.
    std::vector<std::jthread> workers_;  // guarded by mutex_
    std::vector<unsigned> free_slots_;   // guarded by mutex_
    // The last retired worker's thread, joined by the next to retire or by drain: a retiring
    // thread cannot join itself.
    std::jthread retired_;  // guarded by mutex_
};

}  // namespace crosstown
