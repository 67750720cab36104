// crosstown::JobStore: where JobRunner keeps durable jobs, whatever keeps them.
//
// Three stores exist, each checked against the same contract. SqliteJobStore (a SQLite file
// this process owns) keeps the jobs of one process, which runs them itself after each
// response. RedisJobStore keeps them in a Redis server shared by instances on many hosts:
// commit() holds the request's jobs for this instance, release() after FCGX_Finish_r makes
// them visible to every instance's consumer, and whichever instance takes a job runs it and
// reports back here. MemoryJobStore keeps them in memory, for tests: nothing survives the
// process. open_job_store() opens the one that --journal names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "crosstown/jobs/job_census.hpp"
#include "crosstown/jobs/stored_job.hpp"

namespace crosstown {

class JobRunner;

// A commit whose committer does not wait for it (JobStore::commit_then): the jobs, and what
// follows once they are kept or refused.
class PendingCommit {
  public:
    virtual ~PendingCommit() = default;
    virtual std::span<const NewJob> jobs() const = 0;
    // Called once: the ids as commit() returns them, or `failure`, what commit() would have
    // thrown (JournalUnavailable: the response becomes a 503).
    virtual void done(std::vector<std::int64_t> ids, std::exception_ptr failure) noexcept = 0;
};

class JobStore {
  public:
    virtual ~JobStore() = default;

    // The id commit() gives a job it did not keep: its (kind, unique_key) is taken, by a job
    // not finished, one that finished less than its unique_for ago, or one before it in the
    // same commit.
    static constexpr std::int64_t kDuplicate = 0;

    // Durably keeps a request's jobs before its response is written, and returns their ids in
    // order (kDuplicate for those not kept). Throws JournalUnavailable when it cannot (the
    // response becomes a 503). While it waits (for a round trip, another thread's write), it
    // tells the calling thread's BlockingObserver, so that others serve meanwhile and their
    // requests' jobs can join the write it waits for.
    virtual std::vector<std::int64_t> commit(std::span<const NewJob> jobs) = 0;
    // commit() without waiting for another thread's write: a store that groups commits into
    // rounds (SqliteJobStore) adds `pending` to the next round and returns, and the thread that
    // writes it calls done(), so the committer's thread serves others meanwhile instead of
    // sleeping until it is woken. Otherwise commit() on this thread, then done(), before it
    // returns.
    virtual void commit_then(std::unique_ptr<PendingCommit> pending) noexcept {
        std::vector<std::int64_t> ids;
        std::exception_ptr failure;
        try {
            ids = commit(pending->jobs());
        } catch (...) {
            failure = std::current_exception();
        }
        pending->done(std::move(ids), failure);
    }
    // True when committed jobs are run by whichever instance takes them from the store (after
    // release), false when the committing process runs them itself.
    virtual bool shared() const = 0;
    // After the response: a shared store makes the jobs visible to consumers. Never throws;
    // what cannot be released now is released later, by this instance or another.
    virtual void release(std::span<const std::int64_t> ids) = 0;
    // The job succeeded: gone; its unique key stays taken for its unique_for.
    virtual void complete(std::int64_t id) = 0;
    // The job was committed and is not to run (skip_if_undelivered): gone, and its unique key
    // free at once, for the client's retry.
    virtual void discard(std::int64_t id) = 0;
    virtual void reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                            std::string error) = 0;
    // Dead after its last attempt; its unique key stays taken for its unique_for.
    virtual void bury(std::int64_t id, unsigned attempts, std::string error) = 0;
    // Before the first attempt of a resumed job (StoredJob::resumed) in this process: records
    // that attempt `attempt` runs, and returns once it is written, so that a death during it
    // counts. Throws JournalUnavailable (SQLite) or JournalError (Redis) when it cannot.
    virtual void record_attempt(std::int64_t id, unsigned attempt) = 0;
    // Returns once every finish handed over before it is written, or failed to be.
    virtual void flush() = 0;
    // How logs name the store: the journal's file, or the Redis server's address.
    virtual const std::string& path() const = 0;

    // A server runs its jobs from one store, in three steps. start(): once `runner` is built,
    // before READY=1, the store gives it what is its to run: the jobs a previous process left
    // (replayed), or a feed that takes released jobs as the runner has openings (a shared store;
    // `take` false: it only beats, for --role web). stop_taking(): at the first stop signal, no
    // more jobs are taken; those running go on. close(): once the runner has stopped, what
    // start() began ends and what is queued is written; returns how many finishes (or
    // releases) could not be written, logged, whose jobs run again: kept.
    virtual void start(JobRunner& runner, bool take) = 0;
    virtual void stop_taking() {}
    virtual std::uint64_t close() = 0;
    // Counts what the store keeps, by kind and state, with the `latest_dead` last to die
    // (JobCensus). A query of its own (SQLite: a read-only connection, one pass over the
    // table; Redis: one script), for the status page's sampler, never on a request's path.
    // Throws JournalError when the store cannot be read.
    virtual JobCensus census(std::size_t latest_dead) const = 0;
    // What the store keeps in memory about jobs in flight, by name, each bounded by what is in
    // flight, never by what has ever run: all zero once the store is idle. For tests and the
    // soak of a long-lived process.
    virtual std::map<std::string, std::size_t> bookkeeping() const = 0;
};

}  // namespace crosstown
