#include "crosstown/testing/test_client.hpp"

#include <algorithm>
#include <cstring>

#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/detail/ascii.hpp"
#include "crosstown/http/exchange.hpp"
#include "crosstown/http/query_string.hpp"
#include "crosstown/testing/run_synchronously.hpp"

namespace crosstown::testing {
namespace {

// "Content-Type" -> "CONTENT_TYPE"; other headers -> "HTTP_X_REQUEST_ID"
std::string cgi_name(std::string_view header) {
    std::string name;
    for (const char c : header) {
        name.push_back(c == '-' ? '_' : detail::ascii_upper(c));
    }
    if (name == "CONTENT_TYPE" || name == "CONTENT_LENGTH") return name;
    return "HTTP_" + name;
}

// The params nginx's fastcgi_params would send for this request.
Fields cgi_for(std::string_view method, std::string_view target, const std::string& body,
               const Fields& headers) {
    const auto question = target.find('?');
    const auto path = target.substr(0, question);
    const auto query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
    Fields cgi{{"REQUEST_METHOD", std::string(method)},
               {"REQUEST_URI", std::string(target)},
               {"QUERY_STRING", std::string(query)},
               {"DOCUMENT_URI", percent_decode(path).value_or("")},
               {"SERVER_PROTOCOL", "HTTP/1.1"},
               {"REMOTE_ADDR", "127.0.0.1"}};
    const bool has_length = std::any_of(headers.begin(), headers.end(), [](const auto& h) {
        return detail::equals_ignoring_case(h.first, "content-length");
    });
    if (!has_length && (!body.empty() || method == "POST" || method == "PUT")) {
        cgi.emplace_back("CONTENT_LENGTH", std::to_string(body.size()));
    }
    for (const auto& [name, value] : headers) cgi.emplace_back(cgi_name(name), value);
    return cgi;
}

BodyReader reader_of(const std::string& body) {
    return [&body, offset = std::size_t{0}](char* buffer, std::size_t size) mutable {
        const auto n = std::min(size, body.size() - offset);
        std::memcpy(buffer, body.data() + offset, n);
        offset += n;
        return n;
    };
}

void add_up(RunReport& total, RunReport more) {
    total.ran += more.ran;
    total.skipped += more.skipped;
    total.failed += more.failed;
    for (auto& error : more.errors) total.errors.push_back(std::move(error));
}

}  // namespace

std::optional<std::string_view> TestResponse::header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
        if (detail::equals_ignoring_case(key, name)) return value;
    }
    return std::nullopt;
}

struct TestClient::Pending {
    std::vector<Registration> registrations;
    std::shared_ptr<const ResponseOutcome> outcome;
};

TestClient::TestClient(const Router& router, TestClientOptions options)
    : router_(router), options_(options) {}

TestClient::~TestClient() = default;
TestClient::TestClient(TestClient&&) noexcept = default;

TestResponse TestClient::request(std::string_view method, std::string_view target, std::string body,
                                 const Fields& headers) {
    DeferredRegistry deferred(options_.limits.max_deferred_per_request);
    const auto cap = options_.limits.max_deferred_per_request;
    const auto payload_cap = options_.limits.max_job_payload;
    auto jobs = options_.job_kinds != nullptr ? JobBatch(options_.job_kinds, cap, payload_cap)
                                              : JobBatch::unchecked(cap, payload_cap);
    jobs.set_idempotency_header(options_.idempotency_header);
    auto exchange = run_exchange(router_, cgi_for(method, target, body, headers), reader_of(body),
                                 options_.limits, deferred, jobs);
    const auto& response = exchange.response;
    for (auto& job : jobs.take()) {
        jobs_.push_back({std::move(job.kind), std::move(job.payload), std::move(job.options),
                         response.status(), exchange.request->id(),
                         exchange.request->trace_parent()});
    }
    auto outcome = std::make_shared<const ResponseOutcome>(
        ResponseOutcome{exchange.request->id(), response.status(), true, exchange.request,
                        std::chrono::steady_clock::now(), exchange.request->trace_parent()});
    if (!deferred.callbacks().empty()) pending_.push_back({deferred.take(), outcome});
    if (options_.run_deferred_after_each_response) add_up(automatic_, run_deferred());
    return {response.status(), response.headers(), response.body(), exchange.request->id(),
            exchange.request};
}

TestResponse TestClient::get(std::string_view target, const Fields& headers) {
    return request("GET", target, {}, headers);
}

TestResponse TestClient::post(std::string_view target, std::string body, const Fields& headers) {
    return request("POST", target, std::move(body), headers);
}

std::vector<CapturedRegistration> TestClient::deferred() const {
    std::vector<CapturedRegistration> out;
    for (const auto& pending : pending_) {
        for (const auto& registration : pending.registrations) {
            out.push_back(
                {registration.options.name, registration.options, pending.outcome->status});
        }
    }
    return out;
}

RunReport TestClient::run_durable_jobs(const JobKinds& kinds) {
    return run_jobs(std::exchange(jobs_, {}), kinds);
}

RunReport TestClient::run_deferred() {
    RunReport report;
    for (auto& pending : std::exchange(pending_, {})) {
        add_up(report, run_synchronously(std::move(pending.registrations), pending.outcome));
    }
    return report;
}

}  // namespace crosstown::testing
