// crosstown::DeferredOptions: how one follow_response callback is treated.
//
//   crosstown::follow_response({.name = "audit", .same_thread = true}, fn);
#pragma once

#include <string>

#include "crosstown/deferred/status_gate.hpp"

namespace crosstown {

struct DeferredOptions {
    // Within one request a later callback with the same name replaces the earlier one, and
    // crosstown::forget(name) cancels it before dispatch. Also names it in logs.
    std::string name;
    // Run on the responder thread right after FCGX_Finish_r, in order, before it accepts its
    // next request, instead of on the pool.
    bool same_thread = false;
    // Statuses after which it runs: 1xx-3xx by default; crosstown::always, or text: "2xx,304".
    StatusGate run_on{};
    // Skip it when the response did not reach nginx (the client went away). By default it
    // runs anyway: the server decided to do the work.
    bool skip_if_undelivered = false;

    bool should_run(int status, bool delivered) const {
        return run_on.allows(status) && (delivered || !skip_if_undelivered);
    }
};

}  // namespace crosstown
