#include "crosstown/fastcgi/listen_socket.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

namespace crosstown {
namespace {

[[noreturn]] void fail(std::string_view what, int error) {
    throw ListenError(fmt::format("{}: {}", what, std::strerror(error)));
}

int new_socket(int family) {
    const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket()", errno);
    return fd;
}

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) {
        throw ListenError(
            fmt::format("{}: path longer than {} bytes", path, sizeof address.sun_path - 1));
    }
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    return address;
}

// Removes a socket file left behind by a process that is gone; refuses to touch anything else.
void remove_stale(const std::string& path, const sockaddr_un& address) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        fail(path, errno);
    }
    if (!S_ISSOCK(st.st_mode))
        throw ListenError(fmt::format("{}: exists and is not a socket", path));
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && ::connect(probe, reinterpret_cast<const sockaddr*>(&address),
                                              sizeof address) == 0;
    if (probe >= 0) ::close(probe);
    if (live)
        throw ListenError(fmt::format("{}: another process is already listening on it", path));
    if (::unlink(path.c_str()) != 0) fail(path, errno);
}

// Binds with every permission bit masked, then sets exactly the mode asked for: the socket is
// never reachable with wider permissions, and the umask can neither widen nor narrow it.
void bind_unix(int fd, const std::string& path, const sockaddr_un& address,
               const ListenOptions& options) {
    const mode_t previous = ::umask(0777);
    const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
    const int error = errno;
    ::umask(previous);
    if (rc != 0) fail(path, error);
    const bool owned =
        !options.group || ::chown(path.c_str(), static_cast<uid_t>(-1), *options.group) == 0;
    if (!owned || ::chmod(path.c_str(), options.mode) != 0) {
        const int failed = errno;
        ::unlink(path.c_str());
        fail(owned ? path : fmt::format("{}: setting group {}", path, *options.group), failed);
    }
}

std::pair<std::string, std::string> split_host_port(std::string_view spec) {
    const auto colon = spec.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == spec.size()) {
        throw ListenError(fmt::format("{}: expected a unix socket path or host:port", spec));
    }
    const auto port = spec.substr(colon + 1);
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535) {
        throw ListenError(fmt::format("{}: '{}' is not a port number", spec, port));
    }
    auto host = spec.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    return {std::string(host), std::string(port)};
}

}  // namespace

bool is_unix_socket_spec(std::string_view spec) { return spec.find('/') != std::string_view::npos; }

ListenSocket ListenSocket::open(std::string_view spec, const ListenOptions& options) {
    ListenSocket socket;
    if (is_unix_socket_spec(spec)) {
        const std::string path(spec);
        const auto address = unix_address(path);
        remove_stale(path, address);
        socket.fd_ = new_socket(AF_UNIX);
        bind_unix(socket.fd_, path, address, options);
        socket.path_ = path;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) socket.inode_ = st.st_ino;
    } else {
        const auto [host, port] = split_host_port(spec);
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        addrinfo* found = nullptr;
        if (const int rc =
                ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
            rc != 0) {
            throw ListenError(fmt::format("{}: {}", spec, ::gai_strerror(rc)));
        }
        std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, ::freeaddrinfo);
        socket.fd_ = new_socket(found->ai_family);
        const int on = 1;
        ::setsockopt(socket.fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (::bind(socket.fd_, found->ai_addr, found->ai_addrlen) != 0) fail(spec, errno);
    }
    if (::listen(socket.fd_, options.backlog) != 0) fail(spec, errno);
    return socket;
}

bool ListenSocket::reachable_remotely() const {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        return false;
    }
    if (address.ss_family == AF_INET) {
        const auto ip = ntohl(reinterpret_cast<const sockaddr_in&>(address).sin_addr.s_addr);
        return (ip >> 24) != 127;  // 127.0.0.0/8
    }
    if (address.ss_family == AF_INET6) {
        const auto& ip = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&ip)) return ip.s6_addr[12] != 127;
        return !IN6_IS_ADDR_LOOPBACK(&ip);
    }
    return false;
}

ListenSocket ListenSocket::adopt(int fd) {
    ListenSocket socket;
    socket.fd_ = fd;
    return socket;
}

ListenSocket::ListenSocket(ListenSocket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::exchange(other.path_, {})),
      inode_(other.inode_) {}

ListenSocket& ListenSocket::operator=(ListenSocket&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        path_ = std::exchange(other.path_, {});
        inode_ = other.inode_;
    }
    return *this;
}

void ListenSocket::close() {
    if (fd_ < 0) return;
    ::close(std::exchange(fd_, -1));
    if (path_.empty()) return;
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
    path_.clear();
}

}  // namespace crosstown
