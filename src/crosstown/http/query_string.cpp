#include "crosstown/http/query_string.hpp"

#include <fmt/format.h>

#include "crosstown/http/http_error.hpp"

namespace crosstown {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Offset of the first bad escape in `text`, or npos.
std::size_t bad_escape_at(std::string_view text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') continue;
        if (i + 2 >= text.size()) return i;  // truncated: "%" or "%4" at the end
        const int high = hex_value(text[i + 1]);
        const int low = hex_value(text[i + 2]);
        if (high < 0 || low < 0 || (high == 0 && low == 0)) return i;
        i += 2;
    }
    return std::string_view::npos;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
    if (bad_escape_at(text) != std::string_view::npos) return std::nullopt;
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '%') {
            out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
            i += 2;
        } else {
            out.push_back(plus_is_space && c == '+' ? ' ' : c);
        }
    }
    return out;
}

Fields parse_query(std::string_view query) {
    if (const auto at = bad_escape_at(query); at != std::string_view::npos) {
        throw HttpError(400,
                        fmt::format("bad percent-escape in the query string at offset {}", at));
    }
    Fields params;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto piece = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (piece.empty()) continue;
        const auto eq = piece.find('=');
        auto name = percent_decode(piece.substr(0, eq), true);
        auto value = eq == std::string_view::npos ? std::optional<std::string>("")
                                                  : percent_decode(piece.substr(eq + 1), true);
        params.emplace_back(std::move(*name), std::move(*value));
    }
    return params;
}

}  // namespace crosstown
