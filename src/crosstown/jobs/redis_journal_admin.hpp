// crosstown::RedisJournalAdmin: the operator's view of a Redis journal, for `jobs list`,
// `stats`, `retry` and `purge`. It reads and changes the jobs' hashes and streams directly and
// never joins as an instance (no heartbeat, no consumer), so it is safe while servers run:
// a revived job goes back to its kind's stream, where any running instance takes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/journal.hpp"
#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/jobs/redis_connection.hpp"

namespace crosstown {

// A job as Redis keeps it; `state` is held, ready, retry or dead.
struct RedisJobRow {
    StoredJob job;
    std::string state;
};

class RedisJournalAdmin {
  public:
    // Connects; throws JournalError naming the address.
    RedisJournalAdmin(const std::string& address, const RedisJournalOptions& options);

    // Every job (or the dead ones), by id.
    std::vector<RedisJobRow> list(bool dead_only);
    // Makes a dead job (or every dead job) ready again, attempts reset, and releases it to its
    // kind's stream; how many.
    std::uint64_t revive(std::optional<std::int64_t> id);
    // Deletes the dead jobs and the dead stream; how many jobs.
    std::uint64_t purge_dead();
    // Each kind's stream: entries and pending (taken, not finished).
    struct Stream {
        std::string kind;
        std::uint64_t length = 0;
        std::uint64_t pending = 0;
    };
    std::vector<Stream> streams();

  private:
    std::vector<std::string> key_tails(const std::string& prefix, std::string_view type);
    std::vector<std::string> job_ids();
    std::string key(std::string_view what) const;

    RedisJournalOptions options_;
    RedisConnection connection_;
};

}  // namespace crosstown
