// crosstown::RequestLimits: how much one request may ask of the server. The defaults here are
// the server's defaults (--max-body, --max-deferred-per-request).
#pragma once

#include <cstddef>

namespace crosstown {

struct RequestLimits {
    // Largest request body accepted; above it the answer is 413, decided before reading it.
    std::size_t max_body = std::size_t{1} << 20;
    // Most callbacks one request may register; past it follow_response throws
    // DeferredLimitExceeded in the handler, which becomes a 500.
    std::size_t max_deferred_per_request = 1000;
    // Largest payload of one durable job; past it follow_response_durably throws
    // JobPayloadTooLarge in the handler, which becomes a 413 unless the handler catches it.
    std::size_t max_job_payload = std::size_t{1} << 20;
};

}  // namespace crosstown
