#include "crosstown/service/socket_activation.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>

#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

std::string local_address(int fd) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "?";
    if (address.ss_family == AF_UNIX) {
        const auto& un = reinterpret_cast<const sockaddr_un&>(address);
        return un.sun_path[0] != '\0' ? std::string(un.sun_path) : "(abstract unix socket)";
    }
    if (address.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(address);
        return fmt::format("TCP port {}", ntohs(in.sin_port));
    }
    if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        return fmt::format("TCP port {}", ntohs(in6.sin6_port));
    }
    return "?";
}

void make_non_blocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        throw ListenError(fmt::format("socket from systemd (fd {}): {}", fd, std::strerror(errno)));
    }
}

}  // namespace

std::optional<InheritedSocket> socket_from_systemd() {
    // unset_environment=1: the variables are for us, not for anything we might start.
    const int count = sd_listen_fds(1);
    if (count == 0) {
        log::debug("socket activation: none (LISTEN_FDS/LISTEN_PID not set for this process)");
        return std::nullopt;
    }
    if (count < 0) {
        throw ListenError(
            fmt::format("socket activation: LISTEN_FDS unusable: {}", std::strerror(-count)));
    }
    if (count > 1) {
        throw ListenError(
            fmt::format("socket activation: systemd passed {} sockets; a crosstown server serves exactly one "
                        "(one ListenStream= in the .socket unit)",
                        count));
    }
    const int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
        throw ListenError(fmt::format(
            "socket activation: fd {} is not a listening stream socket (ListenStream= with "
            "Accept=no is needed)",
            fd));
    }
    make_non_blocking(fd);
    log::debug("socket activation: fd {} is a listening stream socket; made non-blocking", fd);
    return InheritedSocket{ListenSocket::adopt(fd),
                           fmt::format("systemd socket {} (fd {})", local_address(fd), fd)};
}

}  // namespace crosstown
