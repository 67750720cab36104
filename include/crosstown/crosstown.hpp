// The crosstown library: everything a handler author or an embedder includes, in one header.
// Testing support is apart, in crosstown/testing/ (link crosstown::testing).
#pragma once

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_counts.hpp"
#include "crosstown/deferred/deferred_options.hpp"
#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/deferred/pool_config.hpp"
#include "crosstown/deferred/response_outcome.hpp"
#include "crosstown/deferred/status_gate.hpp"
#include "crosstown/http/fields.hpp"
#include "crosstown/http/http_error.hpp"
#include "crosstown/http/query_string.hpp"
#include "crosstown/http/request.hpp"
#include "crosstown/http/request_limits.hpp"
#include "crosstown/http/response.hpp"
#include "crosstown/http/router.hpp"
#include "crosstown/observe/log.hpp"
#include "crosstown/server.hpp"
#include "crosstown/server_config.hpp"
