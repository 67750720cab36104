// crosstown::ListenSocket: the socket nginx connects to, opened with clear errors.
//
// A spec with a '/' is a unix socket path; "host:port", "[v6]:port" or ":port" is TCP.
// libfcgi's FCGX_OpenSocket exit()s on failure and leaves a unix socket's mode to the umask;
// this opens it the way a service should:
//   - the socket file gets exactly `mode`, whatever the umask, and
//     `group` when given (the web server's group, e.g. www-data), so only nginx may connect:
//     libfcgi trusts whoever connects;
//   - a stale socket file left by a crash is replaced, but one another process is still
//     serving is not (that is a second instance started by mistake);
//   - close() removes the socket file only if it is still the one we created.
// The fd is non-blocking and close-on-exec: the responders wait for it in epoll.
#pragma once

#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace crosstown {

class ListenError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct ListenOptions {
    mode_t mode = 0660;          // unix sockets only
    std::optional<gid_t> group;  // unix sockets only
    int backlog = 1024;
};

class ListenSocket {
  public:
    // Throws ListenError with a message that names the path or address and the reason.
    static ListenSocket open(std::string_view spec, const ListenOptions& options = {});
    // Takes ownership of a socket someone else created (systemd): close() closes the fd and
    // never removes a file.
    static ListenSocket adopt(int fd);

    ListenSocket() = default;
    ~ListenSocket() { close(); }
    ListenSocket(ListenSocket&& other) noexcept;
    ListenSocket& operator=(ListenSocket&& other) noexcept;

    int fd() const { return fd_; }
    bool is_unix() const { return !path_.empty(); }
    // A TCP socket bound to an address other than loopback (0.0.0.0 and :: included): other
    // machines may connect, and FastCGI has no authentication.
    bool reachable_remotely() const;
    void close();

  private:
    int fd_ = -1;
    std::string path_;  // unix sockets: the file we created
    ino_t inode_ = 0;
};

// Whether a spec names a unix socket path (contains '/') rather than host:port.
bool is_unix_socket_spec(std::string_view spec);

}  // namespace crosstown
