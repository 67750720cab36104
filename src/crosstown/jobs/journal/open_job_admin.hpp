// crosstown::open_job_admin: the operator's view (JobAdmin) of the journal that --journal names,
// a SQLite file or a Redis server: what `fcgi_app jobs` works through, for either store.
#pragma once

#include <memory>
#include <string>

#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/journal_config.hpp"

namespace crosstown {

// The admin of `journal` (a SQLite file, or a Redis address with `redis`'s prefix and
// password). `change`: for revive and purge, which on a SQLite file need it to be owned by no
// live process (AdminRefused) and hold its ownership meanwhile. Throws JournalError naming the
// journal when it cannot be opened (a file that does not exist included).
std::unique_ptr<JobAdmin> open_job_admin(const std::string& journal,
                                         const RedisJournalOptions& redis, bool change);

}  // namespace crosstown
