// crosstown::SqliteJobStore: writes the journal, one transaction at a time, with group commit.
//
// Responders commit their request's jobs, waiting (commit) or not (commit_then); completions,
// retries and deaths are handed over without waiting. Whatever gathered while the previous
// transaction ran goes into the next one, so under load one transaction (and with sync=full one
// fsync) covers many requests, and completions cost no transaction of their own. A committer
// that finds no transaction under way writes the next one itself (leader and followers); the
// writer's own thread writes the changes handed over while no committer comes. A commit_then()
// that finds one under way leaves its jobs to the next round and returns, so its thread serves
// on: the thread that writes that round tells it (a responder's: writes its response), and
// writes rounds for as long as such commits wait, or, if it waited for its own commit, hands
// them to the writer thread. A lost completion only means the job runs again after a restart,
// which at-least-once allows.
//
// When a transaction fails (disk full, I/O error), the requests in it are told (commit throws
// JournalUnavailable, commit_then tells it, so they answer 503); the completions, retries and
// deaths in it are written again on their own in the next transaction, and kept queued until
// one succeeds.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/detail/log_throttle.hpp"
#include "crosstown/jobs/job_store.hpp"
#include "crosstown/jobs/sqlite/journal_owner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"
#include "crosstown/observe/latency_histogram.hpp"

namespace crosstown {

class SqliteJobStore final : public JobStore {
  public:
    // Jobs per transaction, for the batch-size histogram: upper bounds, then +Inf.
    static constexpr std::array<std::uint64_t, 9> kBatchBounds{1, 2, 4, 8, 16, 32, 64, 128, 256};
    struct BatchSizes {
        std::array<std::uint64_t, kBatchBounds.size() + 1> buckets{};
        std::uint64_t count = 0;
        std::uint64_t sum = 0;
    };

    // Reads the jobs that are not dead, for start() to replay. `owner`: this process's claim on
    // the file, held until the store is gone (open_job_store claims it; tests need not).
    explicit SqliteJobStore(SqliteJobDatabase journal, std::optional<JournalOwner> owner = {});
    ~SqliteJobStore() override;  // writes what is queued (one last try), then stops
    SqliteJobStore(const SqliteJobStore&) = delete;
    SqliteJobStore& operator=(const SqliteJobStore&) = delete;

    // Inserts the jobs in a transaction shared with whatever else waits, and returns their ids
    // in order once it is committed. Throws JournalUnavailable when it failed.
    std::vector<std::int64_t> commit(std::span<const NewJob> jobs) override;
    // Writes the round itself when none is under way, as commit() does; otherwise leaves the
    // jobs to the next round, whose thread calls pending->done().
    void commit_then(std::unique_ptr<PendingCommit> pending) noexcept override;
    bool shared() const override { return false; }
    void release(std::span<const std::int64_t>) override {}  // this process runs them
    void complete(std::int64_t id) override;
    void discard(std::int64_t id) override;
    void reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                    std::string error) override;
    void bury(std::int64_t id, unsigned attempts, std::string error) override;
    void record_attempt(std::int64_t id, unsigned attempt) override;
    // Returns once everything handed over before it was written, or failed to be.
    void flush() override;
    // Completions and deaths handed over but not written yet (a transaction failed): those
    // jobs are still live in the journal and would run again at the next start.
    std::size_t unwritten_finishes() const;

    // Replays the jobs read at construction (a job the runner does not know goes dead there).
    void start(JobRunner& runner, bool take) override;
    // Flushes; logs and returns unwritten_finishes().
    std::uint64_t close() override;
    std::map<std::string, std::size_t> bookkeeping() const override;
    JobCensus census(std::size_t latest_dead) const override;

    const std::string& path() const override { return path_; }
    // From commit() to its transaction's end, and jobs per transaction.
    LatencyHistogram::Snapshot commit_latency() const { return commit_latency_.snapshot(); }
    BatchSizes batch_sizes() const;
    std::uint64_t failed_transactions() const { return failed_.load(std::memory_order_relaxed); }
    // Unique keys held (by live jobs, or within their unique_for), in memory: as of the last
    // transaction.
    std::size_t unique_keys_held() const { return keys_held_.load(std::memory_order_relaxed); }

  private:
    struct Ticket;  // a commit() waiting, or a commit_then() left to a round
    // A change whose caller waits for its round (record_attempt): told whether it was written.
    struct Waiter {
        bool done = false;
        bool written = false;
    };
    struct Change {
        enum class Type { remove, discard, reschedule, bury, record_attempt } type;
        std::int64_t id;
        unsigned attempts;
        std::int64_t run_at_ms;  // reschedule: the next attempt's; bury: when it died
        std::string error;
        Waiter* waiter = nullptr;  // not kept for a later round when its round fails
    };

    void hand_over(Change change);
    void loop(std::stop_token stop);
    bool lead(std::unique_lock<std::mutex>& lock);
    bool unled() const;
    bool round(std::unique_lock<std::mutex>& lock, bool tell_here = true);
    bool leave_to_writer(std::vector<Ticket*>& tickets);
    void tell(std::vector<Ticket*> tickets, std::unique_lock<std::mutex>& lock);
    void tell_one(std::unique_ptr<Ticket> ticket);
    std::string why_failed(const Ticket& ticket) const;
    bool write(std::vector<Ticket*>& tickets, std::vector<Change>& changes);
    void record_batch(std::size_t jobs);

    std::optional<JournalOwner> owner_;  // first: released last
    SqliteJobDatabase journal_;  // used by the thread that runs a round (writing_), one at a time
    const std::string path_;
    std::vector<StoredJob> replay_;  // until start()
    LatencyHistogram commit_latency_;
    std::array<std::atomic<std::uint64_t>, kBatchBounds.size() + 1> batch_buckets_{};
    std::atomic<std::uint64_t> batch_jobs_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::size_t> keys_held_{0};
    // While the disk stays full the writer retries every 100 ms: one log line per 5 s is enough.
    detail::LogThrottle failure_log_{std::chrono::seconds(5)};

    mutable std::mutex census_mutex_;
    mutable std::optional<SqliteJobDatabase> census_reader_;  // guarded by census_mutex_

    mutable std::mutex mutex_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    std::vector<Ticket*> tickets_;     // guarded by mutex_
    std::size_t waiting_tickets_ = 0;  // guarded by mutex_; those in tickets_ of commit()
    // guarded by mutex_; commit_then() tickets whose round a commit() wrote: the writer tells them
    std::vector<Ticket*> untold_;
    std::vector<Change> changes_;  // guarded by mutex_
    std::uint64_t written_ = 0;    // guarded by mutex_; rounds finished
    std::uint64_t taken_ = 0;      // guarded by mutex_; rounds started
    bool writing_ = false;         // guarded by mutex_; a round is under way
    bool flush_wanted_ = false;    // guarded by mutex_; flush() waits: write changes now
    bool writer_idle_ = false;     // guarded by mutex_; the writer thread waits for a change
    std::jthread thread_;          // last: starts once the members above exist
};

}  // namespace crosstown
