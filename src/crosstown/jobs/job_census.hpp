// crosstown::JobCensus: how many durable jobs a store keeps, by kind and state, and the latest
// that died: what the status page's jobs section shows.
//
// A store counts what it keeps (JobStore::census). One that runs its own jobs (SQLite, in
// memory) cannot tell a job running from one waiting for its turn: both are `ready` there, and
// the runner, which can, moves those it runs to `running` (JobRunner::census). A shared store
// (Redis) tells them apart itself, for every instance: `running` is what any instance has taken.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crosstown/jobs/stored_job.hpp"

namespace crosstown {

struct KindCensus {
    std::string kind;
    std::uint64_t ready = 0;      // due, waiting for a worker
    std::uint64_t running = 0;    // taken by an instance (see above)
    std::uint64_t scheduled = 0;  // its first attempt not due yet (DurableOptions delay, run_at)
    std::uint64_t retrying = 0;   // failed, its next attempt not due yet
    std::uint64_t dead = 0;
    // Unix ms since when the oldest ready job has been due; 0 when none is ready. Its age is the
    // kind's lag: how far the workers are behind.
    std::int64_t oldest_ready_ms = 0;
};

struct JobCensus {
    std::vector<KindCensus> kinds;  // by kind
    // The latest dead jobs, the last to die first; a dead job's run_at_ms is when it died.
    std::vector<StoredJob> latest_dead;
    // A store with more scheduled or dead jobs than it counts in one census (Redis counts up to
    // kCensusLimit of each, the soonest due and the latest dead): the figures are lower bounds.
    bool partial = false;
};

}  // namespace crosstown
