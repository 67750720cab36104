#include "crosstown/http/response.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "crosstown/detail/ascii.hpp"

namespace crosstown {
namespace {

void check_header_text(std::string_view what, std::string_view text) {
    if (text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
        throw std::invalid_argument(
            fmt::format("crosstown: response header {} contains CR, LF or NUL", what));
    }
}

}  // namespace

Response& Response::status(int code) {
    if (code < 100 || code > 599) {
        throw std::invalid_argument(fmt::format("crosstown: {} is not an HTTP status", code));
    }
    status_ = code;
    return *this;
}

Response& Response::header(std::string name, std::string value) {
    check_header_text("name", name);
    check_header_text("value", value);
    if (name.empty() || name.find_first_of(" \t:") != std::string::npos) {
        throw std::invalid_argument(fmt::format("crosstown: bad response header name '{}'", name));
    }
    const auto it = std::find_if(headers_.begin(), headers_.end(), [&](const auto& h) {
        return detail::equals_ignoring_case(h.first, name);
    });
    if (it != headers_.end()) {
        it->second = std::move(value);
    } else {
        headers_.emplace_back(std::move(name), std::move(value));
    }
    return *this;
}

Response& Response::body(std::string content, std::string content_type) {
    header("Content-Type", std::move(content_type));
    body_ = std::move(content);
    return *this;
}

Response& Response::text(std::string content) {
    return body(std::move(content), "text/plain; charset=utf-8");
}

Response& Response::json(std::string content) {
    return body(std::move(content), "application/json");
}

std::optional<std::string_view> Response::header(std::string_view name) const {
    for (const auto& [key, value] : headers_) {
        if (detail::equals_ignoring_case(key, name)) return value;
    }
    return std::nullopt;
}

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 410:
            return "Gone";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        default:
            return "";
    }
}

}  // namespace crosstown
