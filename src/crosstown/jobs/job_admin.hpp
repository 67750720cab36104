// crosstown::JobAdmin: the operator's view of a store, whichever keeps the jobs. `fcgi_app jobs`
// lists, counts, revives and purges through it, one code path for every store; the store
// contract tests check each store against it.
//
// SqliteJobAdmin reads a journal file beside its running server (WAL lets a reader in), and
// changes it only while no live process owns it. RedisJobAdmin reads and changes the server
// directly, never joining as an instance, so everything is safe beside running instances.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/stored_job.hpp"

namespace crosstown {

// A job as its store keeps it. `state`: held (committed, its response not finished: Redis
// only), ready, retry or dead.
struct AdminJob {
    StoredJob job;
    std::string state;
};

// A change refused for now, not for good: a live process owns the SQLite file.
class AdminRefused : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class JobAdmin {
  public:
    virtual ~JobAdmin() = default;

    // Every job (or the dead ones), oldest first.
    virtual std::vector<AdminJob> list(bool dead_only) = 0;
    // Makes a dead job (or every dead job) ready again, attempts reset; how many.
    virtual std::uint64_t revive(std::optional<std::int64_t> id) = 0;
    // Deletes the dead jobs; how many.
    virtual std::uint64_t purge_dead() = 0;
    // Deletes the job `id`, or every job of `kind`, that is ready, scheduled or waiting for a
    // retry (not dead, not held for a response); its unique key is free again. One running now
    // finishes its attempt and is not retried. How many.
    virtual std::uint64_t cancel(std::optional<std::int64_t> id,
                                 const std::optional<std::string>& kind) = 0;
    // Lines about the store itself that `stats` adds (Redis: each stream's entries).
    virtual std::vector<std::string> details() { return {}; }
    // When revived jobs run, for the operator.
    virtual std::string_view revived_run() const = 0;
};

}  // namespace crosstown
