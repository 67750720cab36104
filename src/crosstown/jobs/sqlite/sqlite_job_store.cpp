#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

// How long the writer waits before writing changes again after a failed transaction.
constexpr auto kRetryPause = std::chrono::milliseconds(100);
// How long changes wait for a committer's transaction to take them along.
constexpr auto kGather = std::chrono::milliseconds(5);

}  // namespace

struct SqliteJobStore::Ticket {
    std::span<const NewJob> jobs;
    std::chrono::steady_clock::time_point started;
    std::vector<std::int64_t> ids;
    bool failed = false;
    std::string error;  // why it failed, when there was memory to say so
    bool done = false;
    // commit_then(): nobody waits; the round's thread tells it, and owns the ticket by then.
    std::unique_ptr<PendingCommit> pending;
};

namespace {

// An insert of one ticket's jobs failed for that ticket's own reason (a value SQLite refuses):
// its request alone is refused, and the transaction is written again without it.
struct TicketFailed {
    std::size_t index;
    std::string why;
};

}  // namespace

SqliteJobStore::SqliteJobStore(SqliteJobDatabase journal, std::optional<JournalOwner> owner)
    : owner_(std::move(owner)),
      journal_(std::move(journal)),
      path_(journal_.path()),
      // The keys at start too, so that no request's commit waits while they are read.
      replay_([this] {
          journal_.load_keys();
          return journal_.live_jobs();
      }()),
      thread_([this](std::stop_token stop) { loop(std::move(stop)); }) {}

SqliteJobStore::~SqliteJobStore() {
    {
        // Under the lock, so that the thread cannot miss it between its check and its wait.
        std::lock_guard lock(mutex_);
        thread_.request_stop();
    }
    work_cv_.notify_all();
}

// Leader-follower group commit: a committer that finds no round under way writes one itself,
// with every ticket and change gathered so far; the others wait for a round that takes
// theirs. The request's thread doing the write saves handing it to the writer thread and
// back: two wake-ups, which on a loaded machine cost more than the transaction. Only a
// follower tells the thread's BlockingObserver that it waits: the leader's transaction is work,
// and telling it cost a wake-up per round for a thread to watch meanwhile. Under sync full the
// leader also waits for fdatasync, but for far less than the responder's watch delay, after
// which another thread watches for requests anyway.
// A ticket in tickets_ promises a round that takes every change queued with it (hand_over does
// not wake the writer thread then): a committer leaves only once a round has taken its ticket,
// and tickets that no thread waits for (commit_then) get rounds from the thread that ended the
// last one (lead), or from the writer thread, to which a committer that waits hands them on,
// and hands the telling of those in its own round: its own response must not wait for other
// requests' rounds, nor for their responses.
std::vector<std::int64_t> SqliteJobStore::commit(std::span<const NewJob> jobs) {
    Ticket ticket{jobs, std::chrono::steady_clock::now()};
    {
        std::unique_lock lock(mutex_);
        tickets_.push_back(&ticket);
        ++waiting_tickets_;
        while (!ticket.done) {
            if (!writing_) {
                round(lock, /*tell_here=*/false);  // its own answer first: others' are the writer's
                continue;
            }
            // Told with the lock released: the observer may start a thread, which must not
            // hold up the committers and the round's end that need the lock.
            lock.unlock();
            const detail::BlockingNotice waiting_for_round;
            lock.lock();
            done_cv_.wait(lock, [&] { return ticket.done || !writing_; });
        }
        if (unled()) work_cv_.notify_one();
    }
    commit_latency_.record(std::chrono::steady_clock::now() - ticket.started);
    if (ticket.failed) throw JournalUnavailable(why_failed(ticket));
    return std::move(ticket.ids);
}

// The follower's wait and its wake-up are what this saves: under load about one context
// switch per request, which on a small machine cost more than the request's share of the
// transaction.
void SqliteJobStore::commit_then(std::unique_ptr<PendingCommit> pending) noexcept {
    std::unique_lock lock(mutex_);
    std::unique_ptr<Ticket> ticket;
    try {
        ticket = std::make_unique<Ticket>();
        tickets_.push_back(ticket.get());
    } catch (...) {
        lock.unlock();
        // Out of memory before it was queued: refused, as a failed round would.
        pending->done({}, std::current_exception());
        return;
    }
    // Filled in under the lock, before any round can take it.
    ticket->jobs = pending->jobs();
    ticket->started = std::chrono::steady_clock::now();
    ticket->pending = std::move(pending);
    ticket.release();  // the round that takes it owns it
    if (!writing_) lead(lock);
}

void SqliteJobStore::complete(std::int64_t id) { hand_over({Change::Type::remove, id, 0, 0, {}}); }

void SqliteJobStore::discard(std::int64_t id) { hand_over({Change::Type::discard, id, 0, 0, {}}); }

void SqliteJobStore::reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                                std::string error) {
    hand_over({Change::Type::reschedule, id, attempts, run_at_ms, std::move(error)});
}

void SqliteJobStore::bury(std::int64_t id, unsigned attempts, std::string error) {
    // When it died, not when the change is written: a write may wait for a round, or retry.
    hand_over({Change::Type::bury, id, attempts, detail::unix_now_ms(), std::move(error)});
}

// Through the group commit, like a completion, but waited for: a replay of thousands of jobs
// costs a transaction per round, not one each.
void SqliteJobStore::record_attempt(std::int64_t id, unsigned attempt) {
    Waiter waiter;
    {
        std::unique_lock lock(mutex_);
        changes_.push_back({Change::Type::record_attempt, id, attempt, 0, {}, &waiter});
        flush_wanted_ = true;  // the writer thread writes it at once if no committer does
        work_cv_.notify_one();
        done_cv_.wait(lock, [&] { return waiter.done; });
    }
    // Not written: dropped, not kept for later, so that a record the caller was told failed
    // cannot land after all and count a death that never happened.
    if (!waiter.written) {
        throw JournalUnavailable(fmt::format(
            "journal {}: attempt {} of job {} could not be recorded", path_, attempt, id));
    }
}

// The writer thread is woken only when no committer will take the change along: none waits
// and no round is under way (a round that ends with changes left and no committer waiting
// wakes it then). Under load the committers carry every change, and the writer sleeps. Only
// while it waits for a first change: gathering, it looks again at the end of kGather anyway,
// and a wake-up then would cost a context switch per round.
void SqliteJobStore::hand_over(Change change) {
    std::lock_guard lock(mutex_);
    changes_.push_back(std::move(change));
    if (writer_idle_ && !writing_ && tickets_.empty()) work_cv_.notify_one();
}

void SqliteJobStore::flush() {
    std::unique_lock lock(mutex_);
    // Everything handed over so far is written by the round after the one running now.
    const auto target = taken_ + 1;
    flush_wanted_ = true;
    work_cv_.notify_one();
    done_cv_.wait(lock, [&] {
        return written_ >= target || (tickets_.empty() && changes_.empty() && written_ == taken_);
    });
}

std::size_t SqliteJobStore::unwritten_finishes() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::ranges::count_if(changes_, [](const Change& c) {
        return c.type == Change::Type::remove || c.type == Change::Type::discard ||
               c.type == Change::Type::bury;
    }));
}

void SqliteJobStore::start(JobRunner& runner, bool /*take: this process runs its own*/) {
    log::info("journal {} (sync {}): {} jobs replayed", path_,
              journal_.sync() == JournalSync::full ? "full" : "normal", replay_.size());
    runner.replay(std::exchange(replay_, {}));
}

// Finished, but the journal could not be told (disk full): still there, so kept, and they run
// again at the next start.
std::uint64_t SqliteJobStore::close() {
    flush();
    const auto unwritten = unwritten_finishes();
    if (unwritten > 0) {
        log::error(
            "journal {}: {} jobs finished but their completion could not be written; "
            "they stay in the journal and run again at the next start",
            path_, unwritten);
    }
    return unwritten;
}

// The writer thread writes completions, retries and deaths that no committer took along: it
// waits kGather after the first of them, since under load the next commit's transaction
// carries them at no cost, and waking this thread for each would cost a context switch per job.
// It also writes the rounds of tickets handed on to it (commit()), at once.
void SqliteJobStore::loop(std::stop_token stop) {
    detail::name_this_thread("ct-journal");
    std::unique_lock lock(mutex_);
    for (;;) {
        writer_idle_ = true;
        work_cv_.wait(lock, [&] {
            return stop.stop_requested() || !changes_.empty() || unled() || !untold_.empty();
        });
        writer_idle_ = false;
        if (!untold_.empty()) {
            tell(std::exchange(untold_, {}), lock);
            continue;
        }
        if (unled()) {
            lead(lock);
            continue;
        }
        if (changes_.empty()) return;  // stopping, nothing left
        work_cv_.wait_for(lock, kGather, [&] {
            return stop.stop_requested() || flush_wanted_ || changes_.empty() || unled() ||
                   !untold_.empty();
        });
        // A committer took them along, or something else comes first.
        if (changes_.empty() || !untold_.empty()) continue;
        if (writing_) {
            done_cv_.wait(lock, [&] { return !writing_; });
            continue;
        }
        flush_wanted_ = false;
        if (!lead(lock)) {
            if (stop.stop_requested()) return;  // kept in the journal as they were: replayed
            work_cv_.wait_for(lock, kRetryPause,
                              [&] { return stop.stop_requested() || unled() || !untold_.empty(); });
        }
    }
}

// Tickets wait, no round is under way to end with a round for them, and no committer waits
// to write one (commit(): woken by the last round's end, it does). Requires mutex_.
bool SqliteJobStore::unled() const {
    return !writing_ && !tickets_.empty() && waiting_tickets_ == 0;
}

// One round, by whichever thread holds `lock` and finds no round under way: writes what has
// gathered in one transaction (the lock released meanwhile), marks its tickets done and wakes
// their threads, then tells the commit_then() tickets, with the lock released again, or, unless
// `tell_here`, leaves them to the writer thread. False when the changes could not be written:
// they wait for the next round, ahead of newer ones.
bool SqliteJobStore::round(std::unique_lock<std::mutex>& lock, bool tell_here) {
    auto tickets = std::exchange(tickets_, {});
    waiting_tickets_ = 0;
    auto changes = std::exchange(changes_, {});
    ++taken_;
    writing_ = true;
    lock.unlock();
    bool ok = false;
    try {
        ok = write(tickets, changes);
    } catch (...) {
        // Out of memory while telling the tickets why: they failed all the same, and the round
        // must end, or writing_ would stay set and every later commit wait for ever.
        for (auto* ticket : tickets) ticket->failed = true;
    }
    lock.lock();
    writing_ = false;
    const auto ended = std::chrono::steady_clock::now();
    bool left = false;  // commit_then() tickets, told below; the others' committers are told now
    for (auto*& ticket : tickets) {
        if (ticket->pending) {
            commit_latency_.record(ended - ticket->started);
            left = true;
            continue;
        }
        ticket->done = true;
        ticket = nullptr;  // its committer may be gone once the lock is released
    }
    for (const auto& change : changes) {
        if (change.waiter) *change.waiter = {true, ok};
    }
    if (!ok) {
        std::erase_if(changes, [](const Change& c) { return c.waiter != nullptr; });
        try {
            changes.insert(changes.end(), std::make_move_iterator(changes_.begin()),
                           std::make_move_iterator(changes_.end()));
            changes_ = std::move(changes);
        } catch (...) {
            // Out of memory: this round's changes are lost (their jobs run again at the next
            // start, which at least once allows); the round ends all the same.
        }
    }
    ++written_;
    done_cv_.notify_all();
    if (!changes_.empty() && writer_idle_ && tickets_.empty()) work_cv_.notify_one();
    if (left) {
        std::erase(tickets, nullptr);
        if (!tell_here && leave_to_writer(tickets)) return ok;
        tell(std::move(tickets), lock);
    }
    return ok;
}

// False when there is no memory to queue them: told here after all.
bool SqliteJobStore::leave_to_writer(std::vector<Ticket*>& tickets) {
    try {
        untold_.reserve(untold_.size() + tickets.size());
    } catch (...) {
        return false;
    }
    untold_.insert(untold_.end(), tickets.begin(), tickets.end());
    work_cv_.notify_one();
    return true;
}

// commit_then() tickets whose round has ended: each committer learns how, with the lock
// released, on this thread.
void SqliteJobStore::tell(std::vector<Ticket*> tickets, std::unique_lock<std::mutex>& lock) {
    lock.unlock();
    for (auto* ticket : tickets) tell_one(std::unique_ptr<Ticket>(ticket));
    lock.lock();
}

// Rounds until no ticket is left waiting for one: a commit_then() ticket queued during a
// round has no thread of its own to write the next, so the thread that ends a round does,
// unless another has begun one meanwhile. False when the last round's changes were not
// written.
bool SqliteJobStore::lead(std::unique_lock<std::mutex>& lock) {
    bool ok = true;
    do {
        ok = round(lock);
    } while (unled());
    return ok;
}

// A commit_then() ticket's round has ended: its committer learns how, on this thread.
void SqliteJobStore::tell_one(std::unique_ptr<Ticket> ticket) {
    if (!ticket->failed) {
        ticket->pending->done(std::move(ticket->ids), nullptr);
        return;
    }
    std::exception_ptr failure;
    try {
        failure = std::make_exception_ptr(JournalUnavailable(why_failed(*ticket)));
    } catch (...) {
        failure = std::current_exception();
    }
    ticket->pending->done({}, failure);
}

std::string SqliteJobStore::why_failed(const Ticket& ticket) const {
    return ticket.error.empty() ? "journal " + path_ + ": out of memory" : ticket.error;
}

// One transaction for all of it. A ticket whose own insert fails is refused alone and the rest
// written again without it. When the transaction fails otherwise (disk full, I/O error, out of
// memory) with commits in it, the commits are refused and the changes are tried once more on
// their own, so a request that cannot commit does not hold back the completions of others.
// False when the changes were not written.
bool SqliteJobStore::write(std::vector<Ticket*>& tickets, std::vector<Change>& changes) {
    std::vector<Ticket*> live = tickets;  // the tickets not refused yet
    auto apply = [&](bool with_tickets) {
        journal_.begin();
        try {
            const auto now = detail::unix_now_ms();
            // The changes first: a key discarded in this round is free for its commits.
            for (const auto& change : changes) {
                switch (change.type) {
                    case Change::Type::remove:
                        journal_.remove(change.id, now);
                        break;
                    case Change::Type::discard:
                        journal_.discard(change.id);
                        break;
                    case Change::Type::reschedule:
                        journal_.reschedule(change.id, change.attempts, change.run_at_ms,
                                            change.error);
                        break;
                    case Change::Type::bury:
                        journal_.bury(change.id, change.attempts, change.error, change.run_at_ms);
                        break;
                    case Change::Type::record_attempt:
                        journal_.record_attempt(change.id, change.attempts);
                        break;
                }
            }
            std::size_t inserted = 0;
            for (std::size_t i = 0; with_tickets && i < live.size(); ++i) {
                auto* ticket = live[i];
                ticket->ids.clear();
                try {
                    for (const auto& job : ticket->jobs) {
                        ticket->ids.push_back(journal_.insert(job, now));
                    }
                } catch (const JobRefused& e) {
                    throw TicketFailed{i, e.what()};
                }
                inserted += ticket->jobs.size();
            }
            journal_.forget_expired_keys(now);
            journal_.commit();
            keys_held_.store(journal_.unique_keys_held(), std::memory_order_relaxed);
            if (inserted > 0) record_batch(inserted);
        } catch (...) {
            journal_.rollback();
            throw;
        }
    };
    for (;;) {
        try {
            apply(true);
            return true;
        } catch (const TicketFailed& f) {
            log::error("{}; that request's jobs are refused, the others' committed", f.why);
            live[f.index]->failed = true;
            live[f.index]->error = f.why;
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(f.index));
        } catch (const std::exception& e) {
            failed_.fetch_add(1, std::memory_order_relaxed);
            if (const auto failures = failure_log_.count()) {
                log::error("{} ({} failed journal transactions since the last such line)", e.what(),
                           failures);
            }
            for (auto* ticket : live) {
                ticket->failed = true;
                ticket->error = e.what();
            }
            break;
        }
    }
    if (changes.empty()) return true;
    if (live.empty()) return false;  // the changes failed on their own
    try {
        apply(false);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

void SqliteJobStore::record_batch(std::size_t jobs) {
    const auto bucket = std::lower_bound(kBatchBounds.begin(), kBatchBounds.end(), jobs);
    batch_buckets_[static_cast<std::size_t>(bucket - kBatchBounds.begin())].fetch_add(
        1, std::memory_order_relaxed);
    batch_jobs_.fetch_add(jobs, std::memory_order_relaxed);
}

SqliteJobStore::BatchSizes SqliteJobStore::batch_sizes() const {
    BatchSizes sizes;
    for (std::size_t i = 0; i < sizes.buckets.size(); ++i) {
        sizes.buckets[i] = batch_buckets_[i].load(std::memory_order_relaxed);
        sizes.count += sizes.buckets[i];
    }
    sizes.sum = batch_jobs_.load(std::memory_order_relaxed);
    return sizes;
}

// A connection of its own, opened at the first census: WAL lets it read beside the writer, and
// the writer never waits for it.
JobCensus SqliteJobStore::census(std::size_t latest_dead) const {
    std::lock_guard lock(census_mutex_);
    if (!census_reader_) {
        census_reader_.emplace(SqliteJobDatabase::open(path_, JournalSync::normal,
                                                       SqliteJobDatabase::Access::read_only));
    }
    return census_reader_->census(detail::unix_now_ms(), latest_dead);
}

std::map<std::string, std::size_t> SqliteJobStore::bookkeeping() const {
    std::lock_guard lock(mutex_);
    return {{"changes", changes_.size()}, {"tickets", tickets_.size()}};
}

}  // namespace crosstown
