// A minimal FastCGI client for tests: speaks to a responder the way nginx does, record by
// record, so tests can hold connections open, stall mid-request, or send garbage.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/loopback.hpp"

namespace crosstown::test {

enum : std::uint8_t {
    kBeginRequest = 1,
    kEndRequest = 3,
    kParams = 4,
    kStdin = 5,
    kStdout = 6,
    kStderr = 7,
};

using Params = std::vector<std::pair<std::string, std::string>>;

// The parts of a CGI response ("Status: 200 OK\r\nA: b\r\n\r\nbody").
struct CgiReply {
    bool ended = false;  // END_REQUEST arrived
    int status = 0;
    std::map<std::string, std::string> headers;
    std::string body;
    std::chrono::steady_clock::time_point ended_at;
};

inline std::string record(std::uint8_t type, std::string_view content, std::uint16_t id = 1) {
    std::string r{1,
                  static_cast<char>(type),
                  static_cast<char>(id >> 8),
                  static_cast<char>(id),
                  static_cast<char>(content.size() >> 8),
                  static_cast<char>(content.size()),
                  0,
                  0};
    r.append(content);
    return r;
}

inline std::string begin_request(bool keep_conn) {
    const char body[8] = {0, 1, static_cast<char>(keep_conn ? 1 : 0), 0, 0, 0, 0, 0};
    return record(kBeginRequest, std::string_view(body, 8));
}

inline void append_length(std::string& out, std::size_t n) {
    if (n < 128) {
        out.push_back(static_cast<char>(n));
    } else {
        out.push_back(static_cast<char>((n >> 24) | 0x80));
        out.push_back(static_cast<char>(n >> 16));
        out.push_back(static_cast<char>(n >> 8));
        out.push_back(static_cast<char>(n));
    }
}

inline std::string params_record(const Params& params) {
    std::string content;
    for (const auto& [name, value] : params) {
        append_length(content, name.size());
        append_length(content, value.size());
        content += name + value;
    }
    return record(kParams, content) + record(kParams, "");
}

inline std::string stdin_records(std::string_view body) {
    std::string out;
    while (!body.empty()) {
        const auto n = std::min<std::size_t>(body.size(), 65535);
        out += record(kStdin, body.substr(0, n));
        body.remove_prefix(n);
    }
    return out + record(kStdin, "");
}

inline Params get(std::string path, std::string query = {}) {
    return {{"REQUEST_METHOD", "GET"},
            {"DOCUMENT_URI", std::move(path)},
            {"QUERY_STRING", std::move(query)}};
}

class FastCgiConnection {
  public:
    explicit FastCgiConnection(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            ::close(fd_);
            throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
        }
    }
    // TCP to 127.0.0.1:port.
    explicit FastCgiConnection(int port) : fd_(connect_loopback(port)) {
        if (fd_ < 0) {
            throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " +
                                     std::strerror(errno));
        }
    }
    ~FastCgiConnection() { close(); }
    FastCgiConnection(const FastCgiConnection&) = delete;
    FastCgiConnection& operator=(const FastCgiConnection&) = delete;

    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    // False when the peer is gone.
    bool send_raw(std::string_view bytes) {
        while (!bytes.empty()) {
            const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n <= 0) return false;
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    bool send_request(const Params& params, std::string_view body = {}, bool keep_conn = true) {
        return send_raw(begin_request(keep_conn) + params_record(params) + stdin_records(body));
    }

    // Reads records until END_REQUEST, EOF or the timeout.
    CgiReply read_reply(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::string out;
        CgiReply reply;
        const auto until = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            std::string header;
            if (!read_exactly(header, 8, until)) break;
            const auto type = static_cast<std::uint8_t>(header[1]);
            const auto length =
                (static_cast<std::uint8_t>(header[4]) << 8) | static_cast<std::uint8_t>(header[5]);
            const auto padding = static_cast<std::uint8_t>(header[6]);
            std::string content;
            if (!read_exactly(content, length + padding, until)) break;
            content.resize(length);
            if (type == kStdout) out += content;
            if (type == kEndRequest) {
                reply.ended = true;
                reply.ended_at = std::chrono::steady_clock::now();
                break;
            }
        }
        parse(out, reply);
        return reply;
    }

    CgiReply request(const Params& params, std::string_view body = {}, bool keep_conn = true) {
        if (!send_request(params, body, keep_conn)) return {};
        return read_reply();
    }

    // True when the server closes the connection within `timeout`.
    // Whether the peer closes the connection within the timeout, reading (and dropping)
    // whatever it answers first.
    bool closes_within(std::chrono::milliseconds timeout) {
        const auto until = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd p{fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                return false;
            }
            char buffer[4096];
            if (::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT) <= 0) return true;
        }
    }

    bool closed_by_peer(std::chrono::milliseconds timeout) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
        char c;
        return ::recv(fd_, &c, 1, MSG_DONTWAIT) <= 0;
    }

  private:
    bool read_exactly(std::string& out, std::size_t n,
                      std::chrono::steady_clock::time_point until) {
        while (out.size() < n) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd p{fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                return false;
            char buffer[65536];
            const auto got = ::recv(fd_, buffer, std::min(sizeof buffer, n - out.size()), 0);
            if (got <= 0) return false;
            out.append(buffer, static_cast<std::size_t>(got));
        }
        return true;
    }

    static void parse(const std::string& out, CgiReply& reply) {
        const auto end = out.find("\r\n\r\n");
        if (end == std::string::npos) return;
        std::size_t at = 0;
        while (at < end) {
            const auto eol = out.find("\r\n", at);
            const auto line = out.substr(at, eol - at);
            const auto colon = line.find(": ");
            if (colon != std::string::npos)
                reply.headers[line.substr(0, colon)] = line.substr(colon + 2);
            at = eol + 2;
        }
        reply.status = std::stoi(reply.headers["Status"].substr(0, 3));
        reply.body = out.substr(end + 4);
    }

    int fd_ = -1;
};

}  // namespace crosstown::test
