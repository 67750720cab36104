// A blocking HTTP/1.0 client for integration tests, loopback only: one request per
// connection, read to EOF, with the time it took.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "support/loopback.hpp"

namespace crosstown::test {

struct HttpReply {
    int status = 0;                              // 0: no reply (connection failed, timed out)
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    std::chrono::steady_clock::duration took{};
    std::chrono::steady_clock::time_point received_at{};

    std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

// Sends `request` exactly as given (hostile input included) to 127.0.0.1:port and reads the
// reply until the server closes or the timeout passes. `source`: see connect_loopback.
inline HttpReply raw_http(int port, const std::string& request,
                          std::chrono::milliseconds timeout = std::chrono::seconds(40),
                          const char* source = nullptr) {
    HttpReply reply;
    const auto started = std::chrono::steady_clock::now();
    const int fd = connect_loopback(port, source);
    if (fd < 0) return reply;
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);

    std::string raw;
    const auto until = started + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            until - std::chrono::steady_clock::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        char buffer[16384];
        const auto n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        raw.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    reply.received_at = std::chrono::steady_clock::now();
    reply.took = reply.received_at - started;

    const auto end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/", 0) != 0 || end == std::string::npos) return reply;
    reply.status = std::stoi(raw.substr(raw.find(' ') + 1, 3));
    std::size_t at = raw.find("\r\n") + 2;
    while (at < end) {
        const auto eol = raw.find("\r\n", at);
        const auto line = raw.substr(at, eol - at);
        const auto colon = line.find(':');
        if (colon != std::string::npos) {
            auto name = line.substr(0, colon);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            reply.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
        }
        at = eol + 2;
    }
    reply.body = raw.substr(end + 4);
    return reply;
}

inline HttpReply http(int port, const std::string& method, const std::string& target,
                      const std::string& body = {},
                      const std::vector<std::pair<std::string, std::string>>& headers = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(40)) {
    std::string request = method + " " + target + " HTTP/1.0\r\nHost: localhost\r\n";
    for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
    if (!body.empty() || method == "POST") {
        request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    return raw_http(port, request + "\r\n" + body, timeout);
}

inline HttpReply http_get(int port, const std::string& target) { return http(port, "GET", target); }

// GET from another loopback address (`source`, e.g. "127.0.0.2"): a client nginx does not see
// as local.
inline HttpReply http_get_from(const char* source, int port, const std::string& target) {
    return raw_http(port, "GET " + target + " HTTP/1.0\r\nHost: localhost\r\n\r\n",
                    std::chrono::seconds(40), source);
}

}  // namespace crosstown::test
