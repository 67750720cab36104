#include "crosstown/deferred/status_gate.hpp"

#include <fmt/format.h>

#include <charconv>
#include <stdexcept>
#include <vector>

namespace crosstown {
namespace {

constexpr std::string_view kSeparators = ", \t";

[[noreturn]] void bad_token(std::string_view token, std::string_view why) {
    throw std::invalid_argument(
        fmt::format("crosstown: bad status filter token '{}': {}", token, why));
}

int parse_status(std::string_view text, std::string_view token) {
    int status = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, status);
    if (ec != std::errc{} || ptr != end || text.size() != 3) {
        bad_token(token, "expected a three-digit status, 'Nxx' or 'NNN-NNN'");
    }
    if (status < 100 || status > 599) bad_token(token, "status outside 100-599");
    return status;
}

}  // namespace

StatusGate::StatusGate(std::string_view filter) : StatusGate(Empty{}) {
    bool any_token = false;
    while (!filter.empty()) {
        const auto start = filter.find_first_not_of(kSeparators);
        if (start == std::string_view::npos) break;
        filter.remove_prefix(start);
        const auto length = std::min(filter.find_first_of(kSeparators), filter.size());
        add_token(filter.substr(0, length));
        filter.remove_prefix(length);
        any_token = true;
    }
    if (!any_token) bad_token("", "empty filter");
}

void StatusGate::add_token(std::string_view token) {
    if (token.size() == 3 && token.substr(1) == "xx") {
        if (token[0] < '1' || token[0] > '5') bad_token(token, "class must be 1xx-5xx");
        const int low = (token[0] - '0') * 100;
        add_range(low, low + 99);
        return;
    }
    const auto dash = token.find('-');
    if (dash == std::string_view::npos) {
        const int status = parse_status(token, token);
        add_range(status, status);
        return;
    }
    const int low = parse_status(token.substr(0, dash), token);
    const int high = parse_status(token.substr(dash + 1), token);
    if (low > high) bad_token(token, "range runs backwards");
    add_range(low, high);
}

std::string StatusGate::describe() const {
    if (always_) return "always";
    std::vector<std::string> parts;
    for (int status = kLowest; status <= kHighest; ++status) {
        if (!allows(status)) continue;
        int high = status;
        while (high < kHighest && allows(high + 1)) ++high;
        parts.push_back(high == status ? fmt::format("{}", status)
                                       : fmt::format("{}-{}", status, high));
        status = high;
    }
    return parts.empty() ? "never" : fmt::format("{}", fmt::join(parts, ","));
}

}  // namespace crosstown
