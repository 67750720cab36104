// crosstown::MemoryJobStore: a JobStore that keeps jobs in this process's memory, with the
// JobAdmin view of them. Nothing survives the process, so it promises none of what a journal
// does; it is the store the runner's own tests run on (no file, no server), and it meets the
// same contract as the real stores while the process lives: the contract suite runs on it
// too. live_jobs() gives what a journal would replay, for a runner that takes over.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/job_store.hpp"

namespace crosstown {

class MemoryJobStore final : public JobStore, public JobAdmin {
  public:
    std::vector<std::int64_t> commit(std::span<const NewJob> jobs) override;
    bool shared() const override { return false; }
    void release(std::span<const std::int64_t>) override {}  // this process runs them
    void complete(std::int64_t id) override;
    void discard(std::int64_t id) override;
    void reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                    std::string error) override;
    void bury(std::int64_t id, unsigned attempts, std::string error) override;
    void record_attempt(std::int64_t id, unsigned attempt) override;
    void flush() override {}
    const std::string& path() const override { return path_; }
    // Replays live_jobs(), like a journal at start: `runner` takes over from the last one.
    void start(JobRunner& runner, bool take) override;
    std::uint64_t close() override { return 0; }  // every write is done when it returns
    std::map<std::string, std::size_t> bookkeeping() const override;
    JobCensus census(std::size_t latest_dead) const override;

    std::vector<AdminJob> list(bool dead_only) override;
    std::uint64_t revive(std::optional<std::int64_t> id) override;
    std::uint64_t purge_dead() override;
    std::uint64_t cancel(std::optional<std::int64_t> id,
                         const std::optional<std::string>& kind) override;
    std::string_view revived_run() const override { return "a runner that takes over runs them"; }

    // Every job that is not dead, oldest first: what a journal would replay.
    std::vector<StoredJob> live_jobs() const;

  private:
    using UniqueKey = std::pair<std::string, std::string>;  // kind, key
    struct UniqueHold {
        std::int64_t job_id;
        std::int64_t unique_for_ms;
        std::int64_t expires_ms = 0;  // 0 while the job lives
    };
    // Under mutex_: true when `key` is free at `now` (an expired hold is forgotten).
    bool key_free(const UniqueKey& key, std::int64_t now);
    // Under mutex_: the job's key, if any, stays taken for its unique_for from `now`, or is
    // freed at once.
    void finish_key(std::int64_t id, std::int64_t now, bool free_now);

    const std::string path_ = "memory";
    mutable std::mutex mutex_;
    std::int64_t last_id_ = 0;                  // guarded by mutex_
    std::map<std::int64_t, StoredJob> jobs_;    // guarded by mutex_; by id, so oldest first
    std::map<UniqueKey, UniqueHold> holds_;     // guarded by mutex_
    std::map<std::int64_t, UniqueKey> key_of_;  // guarded by mutex_; the live jobs' keys
    std::int64_t next_sweep_ms_ = 0;            // guarded by mutex_
};

}  // namespace crosstown
