// The crosstown library: everything a handler author needs.
#pragma once

#include "crosstown/deferred_counters.hpp"
#include "crosstown/deferred_options.hpp"
#include "crosstown/deferred_registry.hpp"
#include "crosstown/follow_response.hpp"
#include "crosstown/http_error.hpp"
#include "crosstown/metrics.hpp"
#include "crosstown/pool.hpp"
#include "crosstown/request.hpp"
#include "crosstown/response.hpp"
#include "crosstown/response_outcome.hpp"
#include "crosstown/router.hpp"
#include "crosstown/server.hpp"
#include "crosstown/status_gate.hpp"
#include "crosstown/task.hpp"
