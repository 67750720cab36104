#include "crosstown/jobs/journal/open_job_admin.hpp"

#include "crosstown/jobs/redis/redis_job_admin.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_admin.hpp"

namespace crosstown {

std::unique_ptr<JobAdmin> open_job_admin(const std::string& journal,
                                         const RedisJournalOptions& redis, bool change) {
    if (JournalConfig{journal}.is_redis()) return std::make_unique<RedisJobAdmin>(journal, redis);
    return std::make_unique<SqliteJobAdmin>(journal, change);
}

}  // namespace crosstown
