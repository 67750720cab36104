// crosstown::Job: one durable job as its handler sees it.
//
// A durable job is a registered kind plus a payload (closures cannot be stored on disk). Its id
// is stable across attempts and restarts, and a job that was running when the process died
// runs again (at least once, never "at most once"): make handlers idempotent. Ids are not
// reused, even after the store loses data (SQLite: ids reserved in the journal, moved far ahead
// at each start; Redis: 63 random bits); for a remote API's idempotency key, request_id and id
// together rule out even a random collision (the request id is 128 random bits).
#pragma once

#include <cstdint>
#include <string>

namespace crosstown {

struct Job {
    std::int64_t id = 0;
    std::string kind;
    std::string payload;     // bytes; JSON text by convention
    unsigned attempt = 1;    // 1 on the first run, 2 on the first retry, ...
    std::string request_id;  // of the request that registered it
    // The W3C traceparent of that request (empty: it had none), kept with the job, so a
    // tracer can join each attempt to the request; the runner's log lines about it carry it.
    std::string trace_parent;
};

}  // namespace crosstown
