// libFuzzer: everything nginx could pass in FastCGI params, headers included, and a body, run
// through run_exchange with fcgi_app-like routes. The input is NUL-separated: name, value,
// name, value, ..., and the rest is the body. run_exchange must never throw, always produce a
// status between 100 and 599 and a request id, and never emit a header with CR, LF or NUL.
#include <algorithm>
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/http/exchange.hpp>
#include <crosstown/http/router.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

const crosstown::Router& routes() {
    static const crosstown::Router router = [] {
        crosstown::Router r;
        r.get("/hello", [](auto&, auto& res) { res.text("hello\n"); });
        r.post("/echo", [](crosstown::Request& req, crosstown::Response& res) {
            res.header("X-Echo", std::string(req.header("x-echo").value_or("")));
            res.body(req.body(), "application/octet-stream");
        });
        r.get("/items/{id}", [](crosstown::Request& req, crosstown::Response& res) {
            res.text(std::string(req.param("id").value_or("")) +
                     std::string(req.query("q").value_or("")));
        });
        return r;
    }();
    return router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    crosstown::Fields cgi;
    for (int i = 0; i < 32; ++i) {
        const auto name_end = text.find('\0');
        if (name_end == std::string_view::npos) break;
        const auto value_end = text.find('\0', name_end + 1);
        if (value_end == std::string_view::npos) break;
        cgi.emplace_back(std::string(text.substr(0, name_end)),
                         std::string(text.substr(name_end + 1, value_end - name_end - 1)));
        text.remove_prefix(value_end + 1);
    }
    std::string_view body = text;
    crosstown::DeferredRegistry deferred(crosstown::RequestLimits{}.max_deferred_per_request);
    crosstown::JobBatch jobs(nullptr, 1);
    const auto exchange = crosstown::run_exchange(
        routes(), std::move(cgi),
        [&body](char* buffer, std::size_t n) {
            n = std::min(n, body.size());
            std::memcpy(buffer, body.data(), n);
            body.remove_prefix(n);
            return n;
        },
        {.max_body = 4096}, deferred, jobs);
    const auto& response = exchange.response;
    if (response.status() < 100 || response.status() > 599) std::abort();
    if (!exchange.request || exchange.request->id().empty()) std::abort();
    for (const auto& [name, value] : response.headers()) {
        for (const char c : name + value) {
            if (c == '\r' || c == '\n' || c == '\0') std::abort();
        }
    }
    return 0;
}
