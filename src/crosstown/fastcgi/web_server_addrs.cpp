#include "crosstown/fastcgi/web_server_addrs.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace crosstown {
namespace {

std::string_view trim(std::string_view text) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    return text;
}

}  // namespace

WebServerAddrs WebServerAddrs::parse(std::string_view list) {
    WebServerAddrs addrs;
    while (!list.empty()) {
        const auto comma = list.find(',');
        const std::string entry(trim(list.substr(0, comma)));
        list = comma == std::string_view::npos ? "" : list.substr(comma + 1);
        if (entry.empty()) continue;
        in_addr v4{};
        in6_addr v6{};
        if (::inet_pton(AF_INET, entry.c_str(), &v4) == 1) {
            addrs.v4_.push_back(v4);
        } else if (::inet_pton(AF_INET6, entry.c_str(), &v6) == 1) {
            addrs.v6_.push_back(v6);
        } else {
            throw std::invalid_argument(
                fmt::format("'{}' is not a numeric IPv4 or IPv6 address", entry));
        }
    }
    if (addrs.v4_.empty() && addrs.v6_.empty()) throw std::invalid_argument("no address given");
    return addrs;
}

std::optional<WebServerAddrs> WebServerAddrs::from_environment() {
    const char* value = std::getenv("FCGI_WEB_SERVER_ADDRS");
    if (value == nullptr || trim(value).empty()) return std::nullopt;
    return parse(value);
}

bool WebServerAddrs::allows(const sockaddr& peer) const {
    const auto matches_v4 = [this](const in_addr& address) {
        for (const auto& allowed : v4_) {
            if (allowed.s_addr == address.s_addr) return true;
        }
        return false;
    };
    if (peer.sa_family == AF_INET) {
        return matches_v4(reinterpret_cast<const sockaddr_in&>(peer).sin_addr);
    }
    if (peer.sa_family != AF_INET6) return true;  // unix sockets: the file's mode decides
    const auto& address = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&address)) {
        in_addr v4{};
        std::memcpy(&v4, address.s6_addr + 12, sizeof v4);
        return matches_v4(v4);
    }
    for (const auto& allowed : v6_) {
        if (IN6_ARE_ADDR_EQUAL(&allowed, &address)) return true;
    }
    return false;
}

std::string WebServerAddrs::describe() const {
    std::string text;
    char buffer[INET6_ADDRSTRLEN];
    for (const auto& address : v4_) {
        text += fmt::format("{}{}", text.empty() ? "" : ", ",
                            ::inet_ntop(AF_INET, &address, buffer, sizeof buffer));
    }
    for (const auto& address : v6_) {
        text += fmt::format("{}{}", text.empty() ? "" : ", ",
                            ::inet_ntop(AF_INET6, &address, buffer, sizeof buffer));
    }
    return text;
}

std::string peer_address(const sockaddr& peer) {
    char buffer[INET6_ADDRSTRLEN] = "?";
    if (peer.sa_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, buffer,
                    sizeof buffer);
    } else if (peer.sa_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, buffer,
                    sizeof buffer);
    }
    return buffer;
}

}  // namespace crosstown
