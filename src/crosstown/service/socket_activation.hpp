// crosstown::socket_from_systemd: the listen socket systemd hands over (socket activation).
//
// With fcgi_app.socket, systemd creates, owns and keeps the socket across restarts and passes
// it as fd 3 with LISTEN_FDS/LISTEN_PID (sd_listen_fds(3)). The service then serves that
// socket and never opens one of its own: --listen is ignored. Closing our copy at shutdown
// leaves systemd's open, so nginx's connections wait in the backlog for the next start
// instead of being refused.
#pragma once

#include <optional>

#include "crosstown/fastcgi/listen_socket.hpp"

namespace crosstown {

struct InheritedSocket {
    ListenSocket socket;
    std::string description;  // "systemd socket /run/fcgi_app/fcgi_app.sock (fd 3)"
};

// nullopt when the process was not socket-activated. Throws ListenError when it was but the
// handover is unusable: more than one socket, or not a listening stream socket. The socket is
// made non-blocking and close-on-exec whatever the unit says.
std::optional<InheritedSocket> socket_from_systemd();

}  // namespace crosstown
