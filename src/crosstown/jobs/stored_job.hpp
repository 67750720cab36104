// crosstown::StoredJob: a durable job as every store keeps it, and NewJob, one on its way in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crosstown {

enum class JobState { ready, retry, dead };
std::string_view job_state_name(JobState state);
// The state a name says: "retry", "dead", anything else ready (Redis's "held" included).
JobState job_state_named(std::string_view name);

// The error a job keeps while attempt N runs, once recorded: what it says if the process dies.
std::string died_during(unsigned attempt);

struct StoredJob {
    std::int64_t id = 0;
    std::string kind;
    std::string payload;
    std::string request_id;
    std::string trace_parent;  // W3C, of the request that registered it; empty: none
    unsigned attempts = 0;     // attempts made and failed so far
    JobState state = JobState::ready;
    std::int64_t enqueued_ms = 0;  // unix time
    std::int64_t run_at_ms = 0;    // unix time of the next attempt
    std::string last_error;
    // Taken over from a process that may have died running it (replayed at start, claimed from
    // a dead Redis consumer): its next attempt is recorded before it runs, so that a job that
    // kills its process goes dead instead of being run again for ever.
    bool resumed = false;
};

struct NewJob {
    std::string_view kind;
    std::string_view payload;
    std::string_view request_id;
    std::string_view unique_key{};   // empty: none
    std::int64_t unique_for_ms = 0;  // how long the key stays taken once the job finished
    // Not before this unix time, nor before delay_ms after its release (a shared store counts
    // the delay from then; one that runs its own jobs, from the commit). 0: at once.
    std::int64_t run_at_ms = 0;
    std::int64_t delay_ms = 0;
    std::string_view trace_parent{};
};

// When a job committed at `now_ms` is first due, as a store that runs its own jobs keeps it.
std::int64_t first_due_ms(const NewJob& job, std::int64_t now_ms);

}  // namespace crosstown
