#include "crosstown/http/exchange.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <random>

#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/detail/ascii.hpp"
#include "crosstown/http/http_error.hpp"
#include "crosstown/http/query_string.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

std::string_view find(const Fields& cgi, std::string_view name) {
    for (const auto& [key, value] : cgi) {
        if (key == name) return value;
    }
    return {};
}

// A client's X-Request-Id is used only when it is short and plain, since it goes into logs.
bool usable_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    for (const char c : id) {
        if (c <= ' ' || c > '~') return false;
    }
    return true;
}

std::string generated_request_id() {
    thread_local std::mt19937_64 random{std::random_device{}()};
    return fmt::format("{:016x}", random());
}

std::string request_id(const Fields& cgi) {
    for (const auto name : {"HTTP_X_REQUEST_ID", "REQUEST_ID"}) {
        if (const auto id = find(cgi, name); usable_request_id(id)) return std::string(id);
    }
    return generated_request_id();
}

// A traceparent as the W3C Trace Context defines it: version-traceid-parentid-flags in lower-case
// hex (2-32-16-2), version ff and all-zero ids invalid. A later version may append fields
// after a '-': the first four are read. Anything else is dropped, not passed on.
bool lower_hex(std::string_view s) {
    return std::ranges::all_of(
        s, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string trace_parent(const Fields& cgi) {
    const auto value = find(cgi, "HTTP_TRACEPARENT");
    if (value.size() < 55 || (value.size() > 55 && value[55] != '-')) return {};
    const auto version = value.substr(0, 2);
    const auto trace_id = value.substr(3, 32);
    const auto parent_id = value.substr(36, 16);
    const auto flags = value.substr(53, 2);
    if (value[2] != '-' || value[35] != '-' || value[52] != '-') return {};
    if (!lower_hex(version) || !lower_hex(trace_id) || !lower_hex(parent_id) || !lower_hex(flags)) {
        return {};
    }
    if (version == "ff" || (version == "00" && value.size() != 55)) return {};
    if (trace_id == std::string(32, '0') || parent_id == std::string(16, '0')) return {};
    return std::string(value.substr(0, 55));
}

// "HTTP_X_REQUEST_ID" -> "x-request-id"
std::string header_name(std::string_view cgi_name) {
    std::string name(cgi_name);
    for (auto& c : name) c = c == '_' ? '-' : detail::ascii_lower(c);
    return name;
}

// nginx's DOCUMENT_URI is the decoded, normalised path; without it (a client other than
// nginx's fastcgi_params), the path part of REQUEST_URI, decoded here.
std::string request_path(const Fields& cgi) {
    if (const auto uri = find(cgi, "DOCUMENT_URI"); !uri.empty()) return std::string(uri);
    const auto raw = find(cgi, "REQUEST_URI");
    const auto path = raw.substr(0, raw.find('?'));
    if (path.empty()) return "/";
    auto decoded = percent_decode(path);
    if (!decoded) throw HttpError(400, "bad percent-escape in the path");
    return std::move(*decoded);
}

Request::Parts parts_from(Fields cgi) {
    Request::Parts parts;
    parts.id = request_id(cgi);
    parts.trace_parent = trace_parent(cgi);
    parts.method = std::string(find(cgi, "REQUEST_METHOD"));
    parts.query_string = std::string(find(cgi, "QUERY_STRING"));
    for (const auto& [key, value] : cgi) {
        if (key.starts_with("HTTP_")) {
            parts.headers.emplace_back(header_name(std::string_view(key).substr(5)), value);
        } else if (key == "CONTENT_TYPE" || key == "CONTENT_LENGTH") {
            if (!value.empty()) parts.headers.emplace_back(header_name(key), value);
        }
    }
    parts.cgi = std::move(cgi);
    return parts;
}

std::optional<std::size_t> announced_length(const Request::Parts& parts) {
    const auto text = find(parts.cgi, "CONTENT_LENGTH");
    if (text.empty()) return std::nullopt;
    std::size_t length = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (error != std::errc{} || end != text.data() + text.size()) {
        throw HttpError(400, fmt::format("unparsable CONTENT_LENGTH '{}'", text));
    }
    return length;
}

// Reads the whole body (to the end of the stream, so a kept connection is left clean), never
// more than max_body bytes into memory.
std::string read_body(const Request::Parts& parts, const BodyReader& reader, std::size_t max_body) {
    const auto announced = announced_length(parts);
    if (announced && *announced > max_body) {
        throw HttpError(413, fmt::format("request body of {} bytes is over the limit of {}",
                                         *announced, max_body));
    }
    std::string body;
    char buffer[8192];
    while (const auto n = reader(buffer, sizeof buffer)) {
        if (body.size() + n > max_body) {
            throw HttpError(413,
                            fmt::format("request body is over the limit of {} bytes", max_body));
        }
        body.append(buffer, n);
    }
    if (announced && body.size() != *announced) {
        throw HttpError(400, fmt::format("CONTENT_LENGTH says {} bytes but the body has {}",
                                         *announced, body.size()));
    }
    return body;
}

Response error_response(const HttpError& error) {
    Response response;
    response.status(error.status()).text(std::string(error.what()) + "\n");
    for (const auto& [name, value] : error.headers()) response.header(name, value);
    return response;
}

Response internal_error(const Request& request, std::string_view what) {
    log::error("request {} {} {} failed: {}", request.id(), request.method(), request.path(), what);
    Response response;
    response.status(500).text(fmt::format("internal error; request id {}\n", request.id()));
    return response;
}

// Overflow::shed refused a callback: the client should come back, and knows when.
Response overloaded(const Request& request, const Overloaded& error) {
    Response response;
    response.status(503)
        .header("Retry-After", std::to_string(Overloaded::kRetryAfterSeconds))
        .text(fmt::format("overloaded: {}; retry in {} s; request id {}\n", error.what(),
                          Overloaded::kRetryAfterSeconds, request.id()));
    return response;
}

Response run_handler(const Router& router, Request& request) {
    Response response;
    try {
        router.handle(request, response);
        return response;
    } catch (const HttpError& e) {
        return error_response(e);
    } catch (const Overloaded& e) {
        return overloaded(request, e);
    } catch (const JobPayloadTooLarge& e) {
        // The request asked for work too large to keep: the client's to change, like a body
        // over --max-body. Its durable jobs are gated by the 413 like by any other status.
        return error_response(HttpError(413, e.what()));
    } catch (const std::exception& e) {
        return internal_error(request, e.what());
    } catch (...) {
        return internal_error(request, "non-standard exception");
    }
}

// The handler runs with `deferred` and `jobs` as this thread's current request, so that
// crosstown::follow_response() and req.follow_response() land there, and durable jobs too.
void run_handler_for(const Router& router, Exchange& exchange, DeferredRegistry& deferred,
                     JobBatch& jobs) {
    const auto started = std::chrono::steady_clock::now();
    RequestScope scope(deferred);
    JobBatchScope job_scope(&jobs);
    exchange.response = run_handler(router, *exchange.request);
    exchange.handler_time = std::chrono::steady_clock::now() - started;
}

}  // namespace

Response journal_unavailable(const Request& request, const JournalUnavailable& error) {
    log::error("request {} {} {}: its durable jobs were not committed, answering 503: {}",
               request.id(), request.method(), request.path(), error.what());
    Response response;
    response.status(503)
        .header("Retry-After", std::to_string(JournalUnavailable::kRetryAfterSeconds))
        .header("X-Request-Id", request.id())
        .text(fmt::format("unavailable: the work this request asks for could not be saved; "
                          "nothing was done; retry in {} s; request id {}\n",
                          JournalUnavailable::kRetryAfterSeconds, request.id()));
    return response;
}

Exchange run_exchange(const Router& router, Fields cgi, const BodyReader& body,
                      const RequestLimits& limits, DeferredRegistry& deferred, JobBatch& jobs) {
    Exchange exchange;
    auto parts = parts_from(std::move(cgi));
    std::optional<Response> refusal;
    exchange.body_unread = true;  // until read to its end
    try {
        parts.path = request_path(parts.cgi);
        if (parts.method.empty()) throw HttpError(400, "no REQUEST_METHOD");
        parts.query = parse_query(parts.query_string);
        parts.body = read_body(parts, body, limits.max_body);
        exchange.body_unread = false;
    } catch (const HttpError& e) {
        refusal = error_response(e);
    }
    exchange.request = std::make_shared<Request>(std::move(parts));
    if (const auto name = jobs.idempotency_header(); !name.empty()) {
        // The draft sends it as a quoted string ("8e03978e..."); the key is what is inside.
        auto value = exchange.request->header(name).value_or("");
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
            value = value.substr(1, value.size() - 2);
        }
        if (!value.empty()) jobs.set_idempotency_key(std::string(value));
    }
    jobs.set_trace_parent(exchange.request->trace_parent());
    if (refusal) {
        exchange.response = std::move(*refusal);
    } else {
        run_handler_for(router, exchange, deferred, jobs);
    }
    if (!exchange.response.header("X-Request-Id")) {
        exchange.response.header("X-Request-Id", exchange.request->id());
    }
    return exchange;
}

}  // namespace crosstown
