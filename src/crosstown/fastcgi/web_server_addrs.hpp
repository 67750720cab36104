// crosstown::WebServerAddrs: FCGI_WEB_SERVER_ADDRS, the web servers allowed to connect over TCP.
//
// libfcgi applies this list in its own accept (OS_Accept, IPv4 only). crosstown's responder
// accepts connections itself, so it applies the list here instead, to IPv4 and IPv6 peers
// (an IPv4-mapped IPv6 peer matches its IPv4 entry). A peer not on the list is disconnected
// before a byte is read. Unix-socket peers are not filtered: the socket's mode and group decide.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crosstown {

class WebServerAddrs {
  public:
    // Parses "127.0.0.1,10.0.0.5,::1" (commas, optional spaces). Throws std::invalid_argument
    // naming the entry that is not a numeric IPv4 or IPv6 address.
    static WebServerAddrs parse(std::string_view list);
    // The variable's value parsed, or nullopt when it is unset or empty.
    static std::optional<WebServerAddrs> from_environment();

    bool allows(const sockaddr& peer) const;
    // "127.0.0.1, ::1"
    std::string describe() const;

  private:
    std::vector<in_addr> v4_;
    std::vector<in6_addr> v6_;
};

// The numeric address of a peer ("10.0.0.5", "::1"), for log lines.
std::string peer_address(const sockaddr& peer);

}  // namespace crosstown
