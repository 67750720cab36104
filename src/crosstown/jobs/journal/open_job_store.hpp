// crosstown::open_job_store: the store of the journal that --journal names, opened for a server
// that runs its jobs: a SQLite file (claimed for this process, opened and checked, its live
// jobs read for replay) or a Redis server (connected, its streams and consumer group made for
// `kinds`). The server holds the one store this returns and runs it through JobStore alone.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "crosstown/jobs/job_store.hpp"
#include "crosstown/jobs/journal_config.hpp"

namespace crosstown {

// Throws JournalError naming the journal (a file another live process owns, a corrupt or
// foreign file, a Redis server that cannot be reached within config.redis.wait).
std::unique_ptr<JobStore> open_job_store(const JournalConfig& config,
                                         const std::vector<std::string>& kinds);

}  // namespace crosstown
