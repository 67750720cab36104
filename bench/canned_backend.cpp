// The ceiling of the plain path: the cheapest FastCGI backend we know how to write. No libfcgi,
// no parameters decoded, no handler: epoll loops that read records until a request's stdin
// ends and then write one canned answer (as many bytes as fcgi_app sends for GET /hello, its
// X-Request-Id a fixed stand-in). Connections
// that nginx asks to keep (FCGI_KEEP_CONN) stay open, so with keep-conn the only costs left
// are the socket reads and writes that any backend behind the same nginx must pay.
//
// Each thread has its own epoll set holding the shared listening socket (EPOLLEXCLUSIVE, so a
// new connection wakes one thread) and the connections it accepted.
//
//   canned_backend SOCKET_PATH THREADS [GROUP]
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "socket_group.hpp"

namespace {

// FastCGI record types and flags (the FastCGI 1.0 specification, section 8).
constexpr std::uint8_t kBeginRequest = 1;
constexpr std::uint8_t kStdin = 5;
constexpr std::uint8_t kStdout = 6;
constexpr std::uint8_t kEndRequest = 3;
constexpr std::uint8_t kKeepConn = 1;
constexpr std::size_t kHeaderSize = 8;

constexpr std::string_view kBody =
    "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "X-Request-Id: 00000000000000000000000000000000\r\nContent-Length: 6\r\n\r\nhello\n";

void put_header(std::string& out, std::uint8_t type, std::uint16_t id, std::size_t length) {
    const std::array<char, kHeaderSize> header{1,
                                               static_cast<char>(type),
                                               static_cast<char>(id >> 8),
                                               static_cast<char>(id & 0xff),
                                               static_cast<char>(length >> 8),
                                               static_cast<char>(length & 0xff),
                                               0,
                                               0};
    out.append(header.data(), header.size());
}

// The whole answer to request `id`: stdout with the canned bytes, the empty stdout record
// that ends the stream, and END_REQUEST with status 0.
std::string answer_for(std::uint16_t id) {
    std::string out;
    put_header(out, kStdout, id, kBody.size());
    out.append(kBody);
    put_header(out, kStdout, id, 0);
    put_header(out, kEndRequest, id, 8);
    out.append(8, '\0');
    return out;
}

struct Connection {
    std::string input;
    std::string output;
    bool keep = false;  // the latest BEGIN_REQUEST asked to keep the connection
    bool close_after_write = false;
};

class Loop {
  public:
    explicit Loop(int listen_fd)
        : listen_fd_(listen_fd), epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
        epoll_event event{.events = EPOLLIN | EPOLLEXCLUSIVE, .data = {.fd = listen_fd}};
        if (epoll_fd_ < 0 || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd, &event) != 0) {
            std::perror("epoll");
            std::exit(1);
        }
    }

    [[noreturn]] void run() {
        std::array<epoll_event, 64> events{};
        for (;;) {
            const int ready = ::epoll_wait(epoll_fd_, events.data(), events.size(), -1);
            for (int i = 0; i < ready; ++i) {
                const int fd = events[i].data.fd;
                if (fd == listen_fd_)
                    accept_all();
                else
                    serve(fd);
            }
        }
    }

  private:
    void accept_all() {
        for (;;) {
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;  // EAGAIN: another thread took it, or none is left
            epoll_event event{.events = EPOLLIN, .data = {.fd = fd}};
            ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
            connections_[fd];
        }
    }

    void serve(int fd) {
        Connection& connection = connections_[fd];
        const bool open = read_available(fd, connection);
        answer_complete_requests(connection);
        if (!flush(fd, connection) || !open) {
            close_connection(fd);
        }
    }

    // Level-triggered: after a short read the rest, if any, wakes the loop again, so there is
    // no read just to see EAGAIN. False when the peer closed the connection or it failed.
    static bool read_available(int fd, Connection& connection) {
        std::array<char, 16384> buffer;  // not zeroed: read() fills what is used
        for (;;) {
            const ssize_t got = ::read(fd, buffer.data(), buffer.size());
            if (got > 0) {
                connection.input.append(buffer.data(), static_cast<std::size_t>(got));
                if (static_cast<std::size_t>(got) < buffer.size()) return true;
                continue;
            }
            return got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);  // 0: peer closed
        }
    }

    // Consumes whole records and queues an answer for each request whose stdin ended.
    static void answer_complete_requests(Connection& connection) {
        std::size_t offset = 0;
        const auto* bytes = reinterpret_cast<const std::uint8_t*>(connection.input.data());
        while (connection.input.size() - offset >= kHeaderSize) {
            const std::uint8_t* header = bytes + offset;
            const std::size_t length = (header[4] << 8) | header[5];
            const std::size_t record = kHeaderSize + length + header[6];
            if (connection.input.size() - offset < record) break;
            const auto id = static_cast<std::uint16_t>((header[2] << 8) | header[3]);
            if (header[1] == kBeginRequest && length >= 3) {
                connection.keep = (header[kHeaderSize + 2] & kKeepConn) != 0;
            } else if (header[1] == kStdin && length == 0) {
                connection.output += answer_for(id);
                connection.close_after_write = !connection.keep;
            }
            offset += record;
        }
        connection.input.erase(0, offset);
    }

    // Writes what is queued. A short write on a unix socket to nginx does not happen at these
    // sizes; if it ever does, the loop retries until the rest is written rather than track it.
    // Returns false when the connection should close now.
    static bool flush(int fd, Connection& connection) {
        std::size_t written = 0;
        while (written < connection.output.size()) {
            const ssize_t put =
                ::write(fd, connection.output.data() + written, connection.output.size() - written);
            if (put > 0)
                written += static_cast<std::size_t>(put);
            else if (put < 0 && errno == EAGAIN)
                std::this_thread::yield();
            else
                return false;
        }
        connection.output.clear();
        return !connection.close_after_write;
    }

    void close_connection(int fd) {
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        connections_.erase(fd);
    }

    int listen_fd_;
    int epoll_fd_;
    std::unordered_map<int, Connection> connections_;
};

int listen_on(const char* path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (std::strlen(path) >= sizeof address.sun_path) {
        std::fprintf(stderr, "socket path too long: %s\n", path);
        std::exit(2);
    }
    std::strcpy(address.sun_path, path);
    ::unlink(path);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd, 1024) != 0) {
        std::perror(path);
        std::exit(1);
    }
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3 || std::atoi(argv[2]) < 1) {
        std::fprintf(stderr, "usage: %s SOCKET_PATH THREADS [GROUP]\n", argv[0]);
        return 2;
    }
    // A peer closing while its answer is written (nginx after a client left) is an EPIPE for
    // that connection, not the end of the process.
    std::signal(SIGPIPE, SIG_IGN);
    const int listen_fd = listen_on(argv[1]);
    share_socket_with_group(argv[1], argc > 3 ? argv[3] : nullptr);
    std::vector<std::jthread> threads;
    for (int i = 0; i < std::atoi(argv[2]); ++i) {
        threads.emplace_back([listen_fd] { Loop(listen_fd).run(); });
    }
}
