// crosstown::Request: one HTTP request as nginx passed it, in owned copies.
//
// libfcgi frees its own buffers in FCGX_Finish_r, before any deferred callback starts, so the
// request copies everything it needs first. The responder keeps it alive until the last
// callback of the request has finished: a callback may capture `req` by reference and read it.
// Reading it from several threads at once is fine; it does not change after the handler.
//
//   auto count = req.query("count");               // decoded, first value, or nullopt
//   auto id = req.header("X-Request-Id");          // names are case-insensitive
//   auto batch = req.param("batch");               // from the route "/calls/{batch}"
//   req.follow_response([&req] { audit(req.path()); });
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "crosstown/deferred/callback.hpp"
#include "crosstown/deferred/deferred_options.hpp"
#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/http/fields.hpp"

namespace crosstown {

class Router;

class Request {
  public:
    struct Parts {
        std::string id;            // X-Request-Id, nginx's $request_id, or generated
        std::string trace_parent;  // the W3C traceparent header when well-formed, else empty
        std::string method;        // "GET"
        std::string path;          // decoded, as nginx normalised it: "/calls/b12"
        std::string query_string;  // raw, undecoded
        Fields query;              // decoded, in order
        Fields headers;            // lower-case names: {"x-request-id", "abc"}
        Fields cgi;                // every FastCGI param as sent: {"REMOTE_ADDR", "127.0.0.1"}
        std::string body;
    };
    explicit Request(Parts parts) : parts_(std::move(parts)) {}

    const std::string& id() const { return parts_.id; }
    // The request's W3C trace context ("00-<trace id>-<parent id>-<flags>"), kept with each
    // durable job it registers and given to its callbacks (ResponseOutcome), so a tracer can
    // join the request and the work that followed it. Empty when absent or malformed.
    const std::string& trace_parent() const { return parts_.trace_parent; }
    const std::string& method() const { return parts_.method; }
    const std::string& path() const { return parts_.path; }
    const std::string& query_string() const { return parts_.query_string; }
    const Fields& query_params() const { return parts_.query; }
    const Fields& headers() const { return parts_.headers; }
    const std::string& body() const { return parts_.body; }

    // First value of a query parameter.
    std::optional<std::string_view> query(std::string_view name) const;
    // A header by name, any case ("content-type" or "Content-Type").
    std::optional<std::string_view> header(std::string_view name) const;
    // A {param} of the matched route.
    std::optional<std::string_view> param(std::string_view name) const;
    // A raw FastCGI param such as "REMOTE_ADDR" or "SERVER_PROTOCOL".
    std::optional<std::string_view> cgi(std::string_view name) const;

    // The explicit spelling of crosstown::follow_response, with the same meaning: called on the
    // handler's thread while it runs, the callback joins the current request; elsewhere the
    // outside-request policy applies.
    template <deferred_callable F>
    void follow_response(DeferredOptions options, F&& fn) {
        crosstown::follow_response(std::move(options), std::forward<F>(fn));
    }
    template <deferred_callable F>
    void follow_response(F&& fn) {
        crosstown::follow_response(std::forward<F>(fn));
    }
    // The explicit spelling of crosstown::follow_response_durably.
    void follow_response_durably(std::string_view kind, std::string payload,
                                 DurableOptions options = {}) {
        crosstown::follow_response_durably(kind, std::move(payload), std::move(options));
    }

  private:
    friend class Router;  // sets the matched route's params

    Parts parts_;
    Fields route_params_;
};

}  // namespace crosstown
