// libFuzzer: route patterns and the requests matched against them. The input is split at
// newlines: the first lines are patterns to register (a bad one throws
// std::invalid_argument), the last is "METHOD PATH". Routing either finds a handler or ends
// in HttpError 404/405; with HEAD served by GET.
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/http/exchange.hpp>
#include <crosstown/http/router.hpp>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> lines;
    for (auto end = text.find('\n'); end != std::string_view::npos; end = text.find('\n')) {
        lines.push_back(text.substr(0, end));
        text.remove_prefix(end + 1);
    }
    lines.push_back(text);

    crosstown::Router router;
    for (std::size_t i = 0; i + 1 < lines.size() && i < 16; ++i) {
        try {
            router.get(lines[i], [](auto&, auto& res) { res.text("ok"); });
        } catch (const std::invalid_argument&) {
        }
    }
    const auto request = lines.back();
    const auto space = request.find(' ');
    crosstown::Fields cgi{
        {"REQUEST_METHOD", std::string(request.substr(0, space))},
        {"DOCUMENT_URI",
         space == std::string_view::npos ? "/" : std::string(request.substr(space + 1))}};
    crosstown::DeferredRegistry deferred(crosstown::RequestLimits{}.max_deferred_per_request);
    crosstown::JobBatch jobs(nullptr, 1);
    const auto exchange = crosstown::run_exchange(
        router, std::move(cgi), [](char*, std::size_t) { return std::size_t{0}; }, {}, deferred,
        jobs);
    const int status = exchange.response.status();
    if (status != 200 && status != 400 && status != 404 && status != 405) std::abort();
    return 0;
}
