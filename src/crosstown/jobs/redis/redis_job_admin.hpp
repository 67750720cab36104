// crosstown::RedisJobAdmin: JobAdmin over a Redis journal. It reads and changes the jobs'
// hashes and streams directly and never joins as an instance (no heartbeat, no consumer), so it
// is safe while servers run: a revived job goes back to its kind's stream, where any running
// instance takes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/jobs/redis/redis_connection.hpp"
#include "crosstown/jobs/stored_job.hpp"

namespace crosstown {

class RedisJobAdmin final : public JobAdmin {
  public:
    // Connects; throws JournalError naming the address.
    RedisJobAdmin(const std::string& address, const RedisJournalOptions& options);

    std::vector<AdminJob> list(bool dead_only) override;
    // A revived job is released to its kind's stream at once.
    std::uint64_t revive(std::optional<std::int64_t> id) override;
    // The dead stream goes too.
    std::uint64_t purge_dead() override;
    // Safe beside running instances: the job's hash goes (and its place in the scheduled set),
    // so an instance that takes its stream entry drops it, and one running it writes no retry.
    std::uint64_t cancel(std::optional<std::int64_t> id,
                         const std::optional<std::string>& kind) override;
    // "stream KIND: N entries, M taken and not finished", a line per kind.
    std::vector<std::string> details() override;
    std::string_view revived_run() const override { return "running instances take them now"; }
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
