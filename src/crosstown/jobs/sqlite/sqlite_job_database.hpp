// crosstown::SqliteJobDatabase: the SQLite file that keeps durable jobs, one row per job.
//
// A job's row is written when its request commits, rewritten when an attempt fails (the next
// attempt's due time and the error), marked dead after its last attempt, and deleted when it
// succeeds. Nothing marks a job as running: every row not dead is replayed at the next start,
// which is what at-least-once needs, at no extra write per job.
//
// Opening checks what the file is, and refuses (JournalError, naming the file) rather than
// starting fresh over jobs: a file that is not SQLite or fails its integrity check, a SQLite
// database of another application (application_id), a schema version from the future. The
// writer gives ids in order from a block it reserved in the file (job_ids), so an id is not
// reused after its job is gone; each writer's open moves the reservation far ahead, so not
// after a power cut either, which under synchronous=NORMAL rolls it back with the last
// commits. Ids are unique among one writer's at a time: JournalOwner keeps it one.
//
// A job's unique key is kept in its row, and a completed job's, for its unique_for, in an
// append-only table; the writer checks keys in memory (UniqueKeyIndex), read from the file
// before its first write.
//
// Not thread-safe: one thread writes (SqliteJobStore); readers (`fcgi_app jobs list`) open
// their own read-only connection, which WAL lets run beside the writer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/job_census.hpp"
#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/jobs/journal_error.hpp"
#include "crosstown/jobs/sqlite/unique_key_index.hpp"
#include "crosstown/jobs/stored_job.hpp"

struct sqlite3;

namespace crosstown {

struct SqliteJobDatabaseStats {
    struct Row {
        std::string kind;
        JobState state;
        std::uint64_t jobs;
    };
    std::vector<Row> rows;  // by kind, then state
    std::uint64_t count(JobState state) const;
};

class SqliteJobDatabase {
  public:
    enum class Access { read_write, read_only };

    // Creates the file (read_write) when it does not exist. Throws JournalError.
    static SqliteJobDatabase open(const std::string& path, JournalSync sync, Access access);
    SqliteJobDatabase(SqliteJobDatabase&&) noexcept;
    SqliteJobDatabase& operator=(SqliteJobDatabase&&) noexcept;
    ~SqliteJobDatabase();

    const std::string& path() const { return path_; }
    JournalSync sync() const { return sync_; }

    // Writes, between begin() and commit(); a throw leaves the transaction to rollback().
    void begin();
    void commit();
    void rollback() noexcept;
    // The new job's id, or 0 when its unique key is taken (nothing is written then).
    std::int64_t insert(const NewJob& job, std::int64_t now_ms);
    // Succeeded: the row goes, and its unique key stays taken for its unique_for from now_ms.
    void remove(std::int64_t id, std::int64_t now_ms);
    // Not to run: the row goes, and its unique key with it.
    void discard(std::int64_t id);
    void reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                    std::string_view error);
    // Dead: kept, and its unique key stays taken for its unique_for from now_ms.
    void bury(std::int64_t id, unsigned attempts, std::string_view error, std::int64_t now_ms);
    // The unique keys of jobs that finished longer than their unique_for ago go (once in
    // kForgetEvery; before, it does nothing).
    void forget_expired_keys(std::int64_t now_ms);
    // Reads every unique key the file holds into memory (UniqueKeyIndex), once; a writer does
    // before its first write, or earlier (at start, not on a request's commit). Throws
    // JournalError.
    void load_keys();
    // The unique keys in memory: held, or expired and not swept yet.
    std::size_t unique_keys_held() const { return keys_.size(); }
    // Attempt `attempt` starts: `attempts` becomes it and `last_error` says it was cut short,
    // as they stay if the process dies in it (a dead job is left alone).
    void record_attempt(std::int64_t id, unsigned attempt);

    // Every job that is not dead, oldest first (replay at start).
    std::vector<StoredJob> live_jobs();
    std::vector<StoredJob> list(std::optional<JobState> only = std::nullopt);
    SqliteJobDatabaseStats stats();
    // JobStore::census as this file knows it: due jobs are all ready (nothing marks a job as
    // running), and a dead job's run_at is when it died.
    JobCensus census(std::int64_t now_ms, std::size_t latest_dead);
    // Makes dead jobs ready again with their attempts reset (one id, or all when empty); how many.
    std::uint64_t revive(std::optional<std::int64_t> id);
    // Deletes the dead jobs; how many.
    std::uint64_t purge_dead();
    // JobAdmin::cancel, with the file owned by nobody else.
    std::uint64_t cancel(std::optional<std::int64_t> id, const std::optional<std::string>& kind);

  private:
    SqliteJobDatabase(std::string path, sqlite3* db);
    std::int64_t insert_row(const NewJob& job, std::int64_t now_ms);
    template <class Change>
    std::uint64_t changing_dead(Change change, const std::string& which);
    void exec(const char* sql);
    void skip_ids_a_power_cut_may_have_lost();
    void reserve_ids();
    [[noreturn]] void fail(std::string_view doing) const;
    void check_identity(Access access);
    std::vector<StoredJob> select(const std::string& where);

    std::string path_;
    JournalSync sync_ = JournalSync::normal;
    int schema_ = 0;  // the file's schema version, once checked
    sqlite3* db_ = nullptr;
    struct Statements;
    std::unique_ptr<Statements> statements_;
    // The writer's: the keys the file holds, read before the first write (and again after an
    // operator's change).
    static constexpr std::size_t kKeyBucketsPerSweep = 64;
    static constexpr std::chrono::milliseconds kForgetEvery{100};
    UniqueKeyIndex keys_;
    bool keys_loaded_ = false;
    std::int64_t next_forget_ms_ = 0;  // forget_expired_keys() does nothing before
    // The writer's ids: the next to give, the last of those reserved in the file, and that
    // at the start of the transaction under way (its rollback takes a reservation made in it
    // back).
    std::int64_t next_id_ = 0;
    std::int64_t last_reserved_id_ = 0;
    std::int64_t reserved_at_begin_ = 0;
};

}  // namespace crosstown
