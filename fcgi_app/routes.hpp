// fcgi_app's endpoints: the reference application of crosstown.
//
//   GET  /hello          200 "hello\n" (the trivial endpoint benchmarks use)
//   POST /calls?count=N&latency_ms=M&fail_every=K&fail_kind=std|int&ignore_stop=0|1
//                        202 {"batch":"<id>","count":N}; places N simulated phone calls of M ms
//                        each on the pool after the response, named call-1..call-N. Faults,
//                        for tests and demonstrations: every K-th call throws (a
//                        std::runtime_error, or an int), and ignore_stop=1 calls sleep through
//                        the drain deadline.
//   POST /calls?count=N&latency_ms=M&durable=1&fail_first=F
//                        202 as above, but the calls are durable jobs of kind place-call
//                        (needs --journal): committed before the response, placed after it,
//                        kept across crashes and restarts. Each call's first F attempts fail,
//                        to show retries. A placed call is appended to the --witness file.
//   GET  /calls/{batch}  what became of a batch (404 once forgotten)
//   GET  /fail[?kind=int] always throws (an int with kind=int): a 500 naming the request id,
//                        and the process serves on
//   GET  /healthz        200 while accepting requests
//   GET  /metrics        Prometheus text
//   GET  /status         the status page: HTML, ?json or ?text
#pragma once

#include <crosstown/http/router.hpp>
#include <crosstown/jobs/job_kinds.hpp>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "call_ledger.hpp"
#include "witness.hpp"

namespace fcgi_app {

struct App {
    CallLedger& ledger;
    std::size_t max_calls;                 // per request: the server's deferred cap
    std::function<std::string()> metrics;  // Prometheus text
    std::function<bool()> accepting;
    crosstown::Handler status_page;
    // The journal is shared (Redis): a durable call may run on another instance.
    bool shared_journal = false;
};

void add_routes(crosstown::Router& router, const App& app);

// The durable kind behind POST /calls?durable=1: a simulated phone call that reports to the
// ledger (while the batch is known to this process) and, once placed, to the witness.
// `backoff`: before a failed call's second attempt (then doubling, up to 5 s or `backoff`);
// `rate`: how fast calls may start (JobKindOptions::rate).
void define_place_call(crosstown::JobKinds& kinds, CallLedger& ledger, const Witness& witness,
                       std::chrono::milliseconds backoff, crosstown::JobRate rate = {});

// --call-rate's value: "N" or "N/BURST" (N starts a second, above 0; BURST at least 1, by
// default N rounded up). Throws BadRate saying what is wrong.
class BadRate : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};
crosstown::JobRate parse_rate(std::string_view text);

}  // namespace fcgi_app
