#include "crosstown/http/router.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <stdexcept>

#include "crosstown/http/http_error.hpp"

namespace crosstown {
namespace {

// "/calls/b1/" -> {"calls", "b1", ""}; "/" -> {""}.
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> parts;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    for (;;) {
        const auto slash = path.find('/');
        parts.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) return parts;
        path.remove_prefix(slash + 1);
    }
}

bool is_param(std::string_view segment) {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

Router& Router::route(std::string method, std::string_view pattern, Handler handler) {
    if (pattern.empty() || pattern.front() != '/') {
        throw std::invalid_argument(fmt::format("route '{}' must start with '/'", pattern));
    }
    Route route{std::move(method), std::string(pattern), {}, 0, std::move(handler)};
    for (const auto part : split_path(pattern)) {
        const bool param = is_param(part);
        const auto text = param ? part.substr(1, part.size() - 2) : part;
        if (text.find_first_of("{}") != std::string_view::npos) {
            throw std::invalid_argument(
                fmt::format("route '{}': a {{param}} must be a whole segment", pattern));
        }
        route.segments.push_back({std::string(text), param});
        route.literals += param ? 0 : 1;
    }
    for (const auto& existing : routes_) {
        if (existing.method == route.method && existing.pattern == route.pattern) {
            throw std::invalid_argument(
                fmt::format("route {} {} is already defined", route.method, route.pattern));
        }
    }
    routes_.push_back(std::move(route));
    return *this;
}

Router& Router::get(std::string_view pattern, Handler handler) {
    return route("GET", pattern, std::move(handler));
}
Router& Router::post(std::string_view pattern, Handler handler) {
    return route("POST", pattern, std::move(handler));
}
Router& Router::put(std::string_view pattern, Handler handler) {
    return route("PUT", pattern, std::move(handler));
}
Router& Router::del(std::string_view pattern, Handler handler) {
    return route("DELETE", pattern, std::move(handler));
}

bool Router::matches(const Route& route, const std::vector<std::string_view>& parts) {
    if (route.segments.size() != parts.size()) return false;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const auto& segment = route.segments[i];
        if (segment.is_param ? parts[i].empty() : segment.text != parts[i]) return false;
    }
    return true;
}

const Router::Route* Router::best_for(std::string_view method,
                                      const std::vector<std::string_view>& parts) const {
    const Route* best = nullptr;
    for (const auto& route : routes_) {
        if (route.method != method || !matches(route, parts)) continue;
        if (best == nullptr || route.literals > best->literals) best = &route;
    }
    return best;
}

void Router::handle(Request& request, Response& response) const {
    const auto parts = split_path(request.path());
    const Route* route = best_for(request.method(), parts);
    if (route == nullptr && request.method() == "HEAD") route = best_for("GET", parts);
    if (route != nullptr) {
        Fields params;
        for (std::size_t i = 0; i < parts.size(); ++i) {
            if (route->segments[i].is_param) {
                params.emplace_back(route->segments[i].text, std::string(parts[i]));
            }
        }
        request.route_params_ = std::move(params);
        route->handler(request, response);
        return;
    }

    std::vector<std::string> allowed;
    for (const auto& candidate : routes_) {
        if (!matches(candidate, parts)) continue;
        allowed.push_back(candidate.method);
        if (candidate.method == "GET") allowed.emplace_back("HEAD");
    }
    if (allowed.empty()) throw HttpError(404, fmt::format("no route for {}", request.path()));
    std::sort(allowed.begin(), allowed.end());
    allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
    const auto allow = fmt::format("{}", fmt::join(allowed, ", "));
    throw HttpError(405,
                    fmt::format("{} is not allowed on {}; allowed: {}", request.method(),
                                request.path(), allow),
                    {{"Allow", allow}});
}

}  // namespace crosstown
