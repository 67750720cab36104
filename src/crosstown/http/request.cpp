#include "crosstown/http/request.hpp"

#include <algorithm>

#include "crosstown/detail/ascii.hpp"

namespace crosstown {
namespace {

template <class Equal>
std::optional<std::string_view> find(const Fields& fields, std::string_view name, Equal equal) {
    for (const auto& [key, value] : fields) {
        if (equal(key, name)) return value;
    }
    return std::nullopt;
}

const auto exactly = [](std::string_view a, std::string_view b) { return a == b; };

}  // namespace

std::optional<std::string_view> Request::query(std::string_view name) const {
    return find(parts_.query, name, exactly);
}

std::optional<std::string_view> Request::header(std::string_view name) const {
    return find(parts_.headers, name, detail::equals_ignoring_case);
}

std::optional<std::string_view> Request::param(std::string_view name) const {
    return find(route_params_, name, exactly);
}

std::optional<std::string_view> Request::cgi(std::string_view name) const {
    return find(parts_.cgi, name, exactly);
}

}  // namespace crosstown
