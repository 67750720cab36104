#include "crosstown/jobs/job_kinds.hpp"

#include <fmt/format.h>

namespace crosstown {

void JobKinds::define(std::string name, JobKindOptions options, JobHandler handler) {
    if (name.empty()) throw std::invalid_argument("JobKinds::define: a kind needs a name");
    if (!handler) {
        throw std::invalid_argument(
            fmt::format("JobKinds::define: kind '{}' has no handler", name));
    }
    if (options.max_attempts == 0) {
        throw std::invalid_argument(
            fmt::format("JobKinds::define: kind '{}': max_attempts must be at least 1", name));
    }
    // Deadlines and due times are sums on the clocks: a duration past kLongest would overflow
    // them (every attempt would time out at once) and is no real setting anyway.
    const auto check = [&](const char* option, std::chrono::milliseconds value,
                           std::chrono::milliseconds least) {
        if (value < least || value > JobKindOptions::kLongest) {
            throw std::invalid_argument(fmt::format(
                "JobKinds::define: kind '{}': {} must be between {} ms and {} ms, not {} ms", name,
                option, least.count(), JobKindOptions::kLongest.count(), value.count()));
        }
    };
    check("timeout", options.timeout, std::chrono::milliseconds(1));
    check("backoff", options.backoff, std::chrono::milliseconds(1));
    check("max_backoff", options.max_backoff, options.backoff);
    check("unique_for", options.unique_for, std::chrono::milliseconds(0));
    if (!(options.rate.per_second >= 0 && options.rate.per_second <= 1e6) ||
        options.rate.burst == 0) {
        throw std::invalid_argument(fmt::format(
            "JobKinds::define: kind '{}': rate must be 0 to 1000000 per second with a burst of "
            "at least 1, not {}/s with a burst of {}",
            name, options.rate.per_second, options.rate.burst));
    }
    if (kinds_.contains(name)) {
        throw std::invalid_argument(
            fmt::format("JobKinds::define: kind '{}' is defined twice", name));
    }
    auto key = name;
    kinds_.emplace(std::move(key), JobKind{std::move(name), options, std::move(handler)});
}

const JobKind* JobKinds::find(std::string_view name) const {
    const auto it = kinds_.find(name);
    return it == kinds_.end() ? nullptr : &it->second;
}

std::vector<std::string> JobKinds::names() const {
    std::vector<std::string> names;
    for (const auto& [name, kind] : kinds_) names.push_back(name);
    return names;
}

}  // namespace crosstown
