#include "crosstown/jobs/journal/open_job_store.hpp"

#include "crosstown/jobs/redis/redis_job_store.hpp"
#include "crosstown/jobs/sqlite/journal_owner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

namespace crosstown {

std::unique_ptr<JobStore> open_job_store(const JournalConfig& config,
                                         const std::vector<std::string>& kinds) {
    if (config.is_redis()) return std::make_unique<RedisJobStore>(config.path, config.redis, kinds);
    // Claimed first: nobody else may write the file from its open on.
    auto owner = JournalOwner::acquire(config.path);
    auto database =
        SqliteJobDatabase::open(config.path, config.sync, SqliteJobDatabase::Access::read_write);
    return std::make_unique<SqliteJobStore>(std::move(database), std::move(owner));
}

}  // namespace crosstown
