#include "crosstown/deferred/pool.hpp"

#include <algorithm>
#include <cassert>
#include <exception>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/deferred/outcome_scope.hpp"
#include "crosstown/deferred/request_context.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using Clock = std::chrono::steady_clock;

std::string_view request_id_of(const DeferredCallback& callback) {
    return callback.outcome ? std::string_view(callback.outcome->request_id)
                            : std::string_view("-");
}

std::string_view name_of(const DeferredCallback& callback) {
    return callback.name.empty() ? std::string_view("(unnamed)") : std::string_view(callback.name);
}

// Under shed the callback passed registration: it is owed a run, so its dispatch waits.
// Under spill an in-memory callback waits as under block (only durable jobs spill).
bool waits_for_room(Overflow overflow) {
    return overflow == Overflow::block || overflow == Overflow::shed || overflow == Overflow::spill;
}

// Callbacks that DeferredCounters count: all but those their submitters keep.
std::uint64_t counted(std::span<const DeferredCallback> callbacks) {
    return static_cast<std::uint64_t>(
        std::ranges::count_if(callbacks, [](const auto& c) { return !c.kept_by_submitter; }));
}

// A far-off time point instead of an overflowing now() + Duration::max().
Clock::time_point deadline_from_now(Pool::Duration timeout) {
    constexpr auto kCentury = std::chrono::hours(24 * 365 * 100);
    return Clock::now() + std::min<Pool::Duration>(timeout, kCentury);
}

}  // namespace

namespace {

PoolConfig checked(PoolConfig config) {
    if (config.workers == 0) throw std::invalid_argument("crosstown::Pool: workers must be > 0");
    if (config.queue_capacity == 0) {
        throw std::invalid_argument("crosstown::Pool: queue_capacity must be > 0");
    }
    config.min_workers = std::min(config.min_workers, config.workers);
    return config;
}

}  // namespace

Pool::Pool(PoolConfig config)
    : config_(checked(config)),
      stats_(std::make_unique<Stats[]>(config_.workers + 1)),
      workers_(config_.workers) {
    for (unsigned slot = config_.workers; slot > 0; --slot) free_slots_.push_back(slot - 1);
    std::unique_lock lock(mutex_);
    while (live_ < config_.min_workers) {
        if (!start_worker()) {
            // Thread creation failed (EAGAIN under systemd's TasksMax, say). The destructor
            // will not run, so release the workers already started or their join would wait
            // forever.
            closed_ = true;
            lock.unlock();
            work_cv_.notify_all();
            workers_.clear();
            throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                    "crosstown::Pool: cannot start its workers");
        }
    }
}

Pool::~Pool() { drain(kNoTimeout); }

void Pool::submit(DeferredCallback callback) { enqueue(std::span<DeferredCallback>(&callback, 1)); }

void Pool::submit_batch(std::vector<DeferredCallback> callbacks, std::size_t reserved) {
    enqueue(callbacks, reserved);
}

std::size_t Pool::try_submit(std::span<DeferredCallback> callbacks) {
    const auto now = Clock::now();
    auto rest = callbacks;
    std::unique_lock lock(mutex_);
    // Submitters waiting for room have their turn first; after drain nothing is taken.
    if (closed_ || !waiting_for_room_.empty()) return 0;
    const bool wake = should_wake_one(push_what_fits(rest, now));
    grow_if_needed();
    lock.unlock();
    if (wake) work_cv_.notify_one();
    const auto queued = callbacks.size() - rest.size();
    bump(counters_.dispatched, counted(callbacks.first(queued)));
    return queued;
}

bool Pool::runs_on_own_worker() const { return detail::request_context().worker_of == this; }

// Workers are notified after the lock is released, so a woken worker does not immediately
// block on the mutex the submitter still holds.
//
// Overflow::block serves submitters waiting for room in arrival order: each waits on its own
// condition variable in a line, and a worker that makes room wakes the first in line only. A
// newcomer finding others in line queues behind them instead of taking the room a worker just
// made for the first. Without that, under saturation the same request could be overtaken again
// and again; with it, a request waits about as long as the line ahead of it.
//
// Callbacks with a reserved slot go in first, without a turn: their slots were counted as
// taken since their registration, so they fit.
void Pool::enqueue(std::span<DeferredCallback> callbacks, std::size_t reserved) {
    bump(counters_.dispatched, counted(callbacks));
    const auto now = Clock::now();
    const bool own_worker = runs_on_own_worker();
    std::optional<RoomWaiter> me;  // made only when this submitter has to wait
    std::unique_lock lock(mutex_);
    bool woken = false;  // a worker is to be notified for the reserved ones
    if (reserved > 0) {
        assert(reserved <= reserved_);
        reserved_ -= reserved;
        publish_sizes();
        if (!closed_) {  // closed: the loop below gives them all up
            auto into_reserved = callbacks.first(std::min(reserved, callbacks.size()));
            callbacks = callbacks.subspan(into_reserved.size());
            woken = should_wake_one(push_what_fits(into_reserved, now));
            grow_if_needed();
            if (reserved > into_reserved.size()) pass_turn();
        }
    }
    if (callbacks.empty()) {
        lock.unlock();
        if (woken) work_cv_.notify_one();
        return;
    }
    while (!callbacks.empty()) {
        if (closed_) {
            if (me) std::erase(waiting_for_room_, &*me);
            lock.unlock();
            give_up(callbacks, counters_.abandoned, "submitted after the pool was drained");
            return;
        }
        const bool my_turn =
            own_worker || (me ? waiting_for_room_.front() == &*me : waiting_for_room_.empty());
        const bool pushed = my_turn && should_wake_one(push_what_fits(callbacks, now));
        const bool wake = std::exchange(woken, false) || pushed;
        grow_if_needed();
        if (callbacks.empty()) {
            if (me) leave_line();
            lock.unlock();
            if (wake) work_cv_.notify_one();
            return;
        }
        // The queue is full, or others wait for room ahead of this submitter.
        if (waits_for_room(config_.overflow) && !own_worker) {
            if (wake) work_cv_.notify_one();
            if (!me) waiting_for_room_.push_back(&me.emplace());
            const detail::BlockingNotice notice;
            me->cv.wait(lock, [&] { return closed_ || has_turn_and_room(*me); });
            continue;
        }
        lock.unlock();
        if (wake) work_cv_.notify_one();
        if (config_.overflow == Overflow::reject) {
            give_up(callbacks, counters_.rejected, "queue full (overflow=reject)");
            return;
        }
        // caller_runs, or block from one of this pool's own workers.
        run_inline_counted(callbacks.front());
        callbacks = callbacks.subspan(1);
        lock.lock();
    }
}

// At registration (see Admission): while the queue is full a handler registering a callback
// waits here, before its response, so the backpressure reaches the client whose request
// defers work, not everyone behind it (the responder starts a spare thread for the others,
// see BlockingObserver). It takes its turn in the same line as the dispatches waiting for room.
// wait_for_room (a durable job's registration) leaves the room to others; reserve_room (an
// in-memory callback's) keeps a slot until the request's dispatch.
void Pool::wait_for_room() {
    if (runs_on_own_worker()) return;
    std::unique_lock lock(mutex_);
    if (take_turn(lock)) pass_turn();
}

bool Pool::reserve_room() {
    if (runs_on_own_worker()) return false;
    std::unique_lock lock(mutex_);
    if (!take_turn(lock)) return false;
    ++reserved_;
    publish_sizes();
    pass_turn();
    return true;
}

bool Pool::try_reserve_room() {
    if (runs_on_own_worker()) return false;
    std::lock_guard lock(mutex_);
    if (closed_ || room() == 0) return false;
    ++reserved_;
    publish_sizes();
    return true;
}

void Pool::give_back_room(std::size_t slots) {
    if (slots == 0) return;
    std::lock_guard lock(mutex_);
    assert(slots <= reserved_);
    reserved_ -= slots;
    publish_sizes();
    pass_turn();
}

// Returns with room for one and nobody ahead, out of the line; false when the pool closed
// (then it is out of the line too). Requires mutex_, held by `lock`.
bool Pool::take_turn(std::unique_lock<std::mutex>& lock) {
    if (closed_) return false;
    if (waiting_for_room_.empty() && room() > 0) return true;
    RoomWaiter me;
    waiting_for_room_.push_back(&me);
    {
        const detail::BlockingNotice notice;
        me.cv.wait(lock, [&] { return closed_ || has_turn_and_room(me); });
    }
    if (closed_) {
        std::erase(waiting_for_room_, &me);
        return false;
    }
    waiting_for_room_.pop_front();
    return true;
}

// Free slots: neither queued nor reserved. Requires mutex_.
std::size_t Pool::room() const { return config_.queue_capacity - queue_.size() - reserved_; }

// Requires mutex_.
bool Pool::has_turn_and_room(const RoomWaiter& waiter) const {
    return waiting_for_room_.front() == &waiter && room() > 0;
}

// The first in line has queued all it had: the next one may go if room is left. Requires
// mutex_.
void Pool::leave_line() {
    waiting_for_room_.pop_front();
    pass_turn();
}

// Wakes the first in line if there is room for it. Requires mutex_.
void Pool::pass_turn() {
    if (!waiting_for_room_.empty() && room() > 0) waiting_for_room_.front()->cv.notify_one();
}

// Moves the leading callbacks that fit into the queue; returns how many. Requires mutex_.
std::size_t Pool::push_what_fits(std::span<DeferredCallback>& callbacks, Clock::time_point now) {
    const auto pushed = std::min(room(), callbacks.size());
    for (auto& callback : callbacks.first(pushed)) {
        callback.queued_at = now;
        queue_.push_back(std::move(callback));
    }
    callbacks = callbacks.subspan(pushed);
    publish_sizes();
    return pushed;
}

// Wakes at most one worker, and only when none is already on its way: a burst then ramps
// the workers up one by one (each woken worker that finds more work behind its callback wakes the
// next, see worker_loop) instead of waking them all to fight over the lock on two cores.
// The ramp costs a wake-up latency per worker, microseconds against callbacks that take
// milliseconds.
bool Pool::should_wake_one(std::size_t new_callbacks) {
    if (new_callbacks == 0 || waking_ || waiting_workers_ == 0) return false;
    waking_ = true;
    return true;
}

void Pool::give_up(std::span<DeferredCallback> callbacks, std::atomic<std::uint64_t>& counter,
                   std::string_view why) {
    bump(counter, counted(callbacks));
    for (const auto& callback : callbacks) {
        if (callback.kept_by_submitter) continue;  // not lost: its submitter keeps it
        log::warn("deferred callback {} of request {} not run: {}", name_of(callback),
                  request_id_of(callback), why);
    }
}

void Pool::run_inline(DeferredCallback callback) {
    if (!callback.kept_by_submitter) bump(counters_.dispatched);
    run_inline_counted(callback);
}

void Pool::run_inline_counted(DeferredCallback& callback) {
    auto clock = Clock::now();
    const auto result = run_callback(callback, std::stop_token{}, stats_[config_.workers], clock);
    if (!callback.kept_by_submitter)
        bump(result == Result::completed ? counters_.completed : counters_.failed);
}

void Pool::worker_loop(std::stop_token stop, unsigned slot) {
    detail::name_this_thread("ct-worker");
    detail::request_context().worker_of = this;
    Stats& stats = stats_[slot];
    auto clock = Clock::now();
    std::unique_lock lock(mutex_);
    --starting_;
    for (;;) {
        const bool will_wait = queue_.empty();
        if (!wait_for_work(lock)) {
            if (!closed_) {
                retire(slot, lock);
            } else {  // closed with nothing left: drain joins this thread
                --live_;
                publish_sizes();
            }
            return;
        }

        DeferredCallback callback = std::move(queue_.front());
        queue_.pop_front();
        const bool counted = !callback.kept_by_submitter;
        ++busy_;
        if (!counted) ++busy_kept_;
        publish_sizes();
        pass_turn();
        const bool wake = should_wake_one(queue_.size());
        grow_if_needed();
        lock.unlock();
        if (wake) work_cv_.notify_one();

        // One clock read per callback while busy: the previous callback's end stands for this
        // start.
        if (will_wait) clock = Clock::now();
        const auto result = run_callback(callback, stop, stats, clock);
        callback =
            DeferredCallback{};  // release the callable and the request's data outside the lock

        lock.lock();
        --busy_;
        if (!counted) --busy_kept_;
        publish_sizes();
        if (!accounting_closed_ && counted) {
            bump(result == Result::completed ? counters_.completed : counters_.failed);
        }
        if (waiting_for_idle_ > 0 && busy_ == 0 && queue_.empty()) idle_cv_.notify_all();
    }
}

// Waits until a callback is queued: true. False when the pool is closed with nothing left, or
// when this worker, one above the minimum, found no work for idle_timeout. Requires mutex_.
bool Pool::wait_for_work(std::unique_lock<std::mutex>& lock) {
    while (queue_.empty() && !closed_) {
        ++waiting_workers_;
        bool idle_too_long = false;
        if (live_ > config_.min_workers) {
            idle_too_long =
                work_cv_.wait_for(lock, config_.idle_timeout) == std::cv_status::timeout;
        } else {
            work_cv_.wait(lock);
        }
        --waiting_workers_;
        // Whoever wakes (notified, timed out or spuriously) ends the pending wake, so waking_
        // can only err towards an extra notify, never leave sleeping workers with work queued.
        waking_ = false;
        if (idle_too_long && queue_.empty() && live_ > config_.min_workers) return false;
    }
    return !queue_.empty();
}

// Starts workers when callbacks wait and no worker is idle or on its way to them: one for
// each waiting callback, up to config_.workers and at most kStartAtOnce per call, so that the
// lock is held for a bounded time (a thread start costs tens of microseconds). Each new worker
// does the same when it takes a callback, so 100 slow calls find 100 threads within
// milliseconds. Requires mutex_.
void Pool::grow_if_needed() {
    constexpr std::size_t kStartAtOnce = 16;
    if (closed_ || waiting_workers_ > 0 || waking_ || queue_.size() <= starting_) return;
    auto wanted = std::min<std::size_t>(queue_.size() - starting_, kStartAtOnce);
    wanted = std::min<std::size_t>(wanted, config_.workers - live_);
    while (wanted-- > 0 && start_worker()) {
    }
}

// Requires mutex_. False on failure (EAGAIN under systemd's TasksMax, say): the pool goes on
// with the workers it has.
bool Pool::start_worker() {
    const unsigned slot = free_slots_.back();
    try {
        workers_[slot] = std::jthread(
            [this, slot](std::stop_token stop) { worker_loop(std::move(stop), slot); });
    } catch (const std::exception& e) {
        // Never unwind from here: a submitter may be in the line for room.
        try {
            log::warn("deferred pool: cannot start a worker ({}); going on with {}", e.what(),
                      live_);
        } catch (...) {
        }
        return false;
    }
    free_slots_.pop_back();
    ++live_;
    ++starting_;
    publish_sizes();
    return true;
}

// This worker's thread ends: its slot is free again. The previous retiree's thread, which has
// ended by now, is joined here, outside the lock. Requires mutex_; returns with it released.
void Pool::retire(unsigned slot, std::unique_lock<std::mutex>& lock) {
    std::jthread previous = std::move(retired_);
    retired_ = std::move(workers_[slot]);
    free_slots_.push_back(slot);
    --live_;
    publish_sizes();
    lock.unlock();
}

// `clock` is "now" on entry and the callback's end on return.
Pool::Result Pool::run_callback(DeferredCallback& callback, std::stop_token stop, Stats& stats,
                                Clock::time_point& clock) {
    if (callback.queued_at != Clock::time_point{})
        stats.queue_wait.record(clock - callback.queued_at);
    const auto error = detail::run_isolated(callback, std::move(stop));
    // Its captures are freed now, on its own time, not on the next callback's.
    callback.fn = {};
    const auto ended = Clock::now();
    stats.run_time.record(ended - clock);
    take_note(callback, ended - clock, error);
    clock = ended;
    return error ? Result::failed : Result::completed;
}

void Pool::take_note(const DeferredCallback& callback, Clock::duration run_time,
                     const std::optional<std::string>& error) {
    if (error) {
        notable_.failed(name_of(callback), request_id_of(callback), run_time, *error);
    }
    notable_.ran(name_of(callback), request_id_of(callback), run_time);
    if (config_.slow_callback.count() > 0 && run_time > config_.slow_callback) {
        bump(slow_);
        log::warn("slow deferred callback {} of request {}: ran {} ms (slow above {} ms)",
                  name_of(callback), request_id_of(callback),
                  std::chrono::duration_cast<std::chrono::milliseconds>(run_time).count(),
                  config_.slow_callback.count());
    }
}

// Requires mutex_.
void Pool::publish_sizes() {
    queue_depth_.store(queue_.size(), std::memory_order_relaxed);
    busy_workers_.store(busy_, std::memory_order_relaxed);
    live_workers_.store(live_, std::memory_order_relaxed);
    reserved_room_.store(reserved_, std::memory_order_relaxed);
}

std::optional<std::string> detail::run_isolated(DeferredCallback& callback, std::stop_token stop) {
    detail::OutcomeScope scope(callback.outcome.get());
    std::optional<std::string> error;
    try {
        callback.fn(std::move(stop));
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "non-standard exception";
    }
    if (error) {
        log::error("deferred callback {} of request {} failed: {}", name_of(callback),
                   request_id_of(callback), *error);
    }
    return error;
}

void Pool::cut_drain_short() {
    {
        std::lock_guard lock(mutex_);
        cut_short_ = true;
    }
    idle_cv_.notify_all();
}

void Pool::wait_idle() {
    std::unique_lock lock(mutex_);
    ++waiting_for_idle_;
    idle_cv_.wait(lock, [&] { return queue_.empty() && busy_ == 0; });
    --waiting_for_idle_;
}

DrainReport Pool::drain(Duration timeout, Duration grace) {
    std::unique_lock lock(mutex_);
    if (drained_) return {};
    DrainReport report;
    ++waiting_for_idle_;
    report.finished_in_time =
        idle_cv_.wait_until(lock, deadline_from_now(cut_short_ ? Duration::zero() : timeout),
                            [&] { return cut_short_ || (queue_.empty() && busy_ == 0); }) &&
        queue_.empty() && busy_ == 0;
    std::vector<DeferredCallback> left(std::make_move_iterator(queue_.begin()),
                                       std::make_move_iterator(queue_.end()));
    queue_.clear();
    publish_sizes();
    closed_ = true;
    work_cv_.notify_all();
    for (auto* waiter : waiting_for_room_) waiter->cv.notify_one();
    lock.unlock();

    report.abandoned_queued = left.size();
    give_up(left, counters_.abandoned, "abandoned: the drain deadline passed before it started");
    // Closed: no worker starts or retires from here on, so the slots stay as they are.
    for (auto& worker : workers_) worker.request_stop();

    lock.lock();
    const bool joined =
        idle_cv_.wait_until(lock, deadline_from_now(grace), [&] { return busy_ == 0; });
    --waiting_for_idle_;
    if (!joined) {
        report.stuck = busy_;
        report.stuck_kept = busy_kept_;
        bump(counters_.abandoned, busy_ - busy_kept_);  // the kept ones are not lost
        accounting_closed_ = true;
        log::error("{} deferred callbacks still running {} ms after stop was requested", busy_,
                   std::chrono::duration_cast<std::chrono::milliseconds>(grace).count());
    }
    drained_ = true;
    std::jthread retired = std::move(retired_);
    lock.unlock();
    if (joined) workers_.clear();  // joins
    return report;
}

LatencyHistogram::Snapshot Pool::queue_wait() const {
    LatencyHistogram::Snapshot total;
    for (unsigned i = 0; i <= config_.workers; ++i) total += stats_[i].queue_wait.snapshot();
    return total;
}

LatencyHistogram::Snapshot Pool::run_time() const {
    LatencyHistogram::Snapshot total;
    for (unsigned i = 0; i <= config_.workers; ++i) total += stats_[i].run_time.snapshot();
    return total;
}

}  // namespace crosstown
