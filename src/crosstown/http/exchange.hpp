// crosstown::run_exchange: one request through the router, from FastCGI params to a response.
//
// The FastCGI responder and testing::TestClient both call this, so what a test sees is what
// nginx gets. It never throws: every failure becomes a response.
//   - a bad percent-escape in the query, an unparsable CONTENT_LENGTH: 400 with the reason;
//   - a body above limits.max_body: 413, decided from CONTENT_LENGTH before reading a byte
//     (or as soon as an unannounced body passes the limit);
//   - HttpError from the handler: its status and reason;
//   - any other exception (including too many deferred callbacks): 500 with the request id in
//     the body, and the error logged with the same id.
// Callbacks the handler registers land in `deferred`, durable jobs in `jobs`; the caller
// commits the jobs before writing the response and dispatches both after it is out.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/http/request.hpp"
#include "crosstown/http/request_limits.hpp"
#include "crosstown/http/response.hpp"
#include "crosstown/http/router.hpp"
#include "crosstown/jobs/job_batch.hpp"

namespace crosstown {

// Reads up to `size` bytes of the request body into `buffer`: how many were read, 0 at the
// end. Throws HttpError(400) when the body cannot be read.
using BodyReader = std::function<std::size_t(char* buffer, std::size_t size)>;

struct Exchange {
    std::shared_ptr<Request> request;  // always set, even when the request was refused
    Response response;
    // The response was decided before the body was read to its end (413): the connection
    // cannot carry another request.
    bool body_unread = false;
    std::chrono::nanoseconds handler_time{0};
};

Exchange run_exchange(const Router& router, Fields cgi, const BodyReader& body,
                      const RequestLimits& limits, DeferredRegistry& deferred, JobBatch& jobs);

// The response of a request whose durable jobs the journal could not commit: 503 with
// Retry-After and the request id (logged with the reason). None of its jobs will run.
Response journal_unavailable(const Request& request, const JournalUnavailable& error);

}  // namespace crosstown
