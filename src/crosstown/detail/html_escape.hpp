// Text placed in HTML: callback names, request ids and error messages come from applications
// and, through them, from clients, so they are escaped before they reach a page.
#pragma once

#include <string>
#include <string_view>

namespace crosstown::detail {

inline std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

}  // namespace crosstown::detail
