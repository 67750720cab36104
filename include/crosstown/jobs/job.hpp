// crosstown::Job: one durable job as its handler sees it.
//
// A durable job is a registered kind plus a payload (closures cannot be stored on disk). Its id
// is stable across attempts and restarts, and a job that was running when the process died
// runs again (at least once, never "at most once"): make handlers idempotent. The id comes from
// the store's counter, which rolls back if the store loses data, so an idempotency key for a
// remote API is request_id and id together (the request id is 128 random bits).
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
};

}  // namespace crosstown
