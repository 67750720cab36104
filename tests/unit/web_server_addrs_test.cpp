#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <crosstown/fastcgi/web_server_addrs.hpp>
#include <cstdlib>
#include <stdexcept>

namespace crosstown {
namespace {

sockaddr_storage v4(const char* text) {
    sockaddr_storage storage{};
    auto& address = reinterpret_cast<sockaddr_in&>(storage);
    address.sin_family = AF_INET;
    ::inet_pton(AF_INET, text, &address.sin_addr);
    return storage;
}

sockaddr_storage v6(const char* text) {
    sockaddr_storage storage{};
    auto& address = reinterpret_cast<sockaddr_in6&>(storage);
    address.sin6_family = AF_INET6;
    ::inet_pton(AF_INET6, text, &address.sin6_addr);
    return storage;
}

bool allows(const WebServerAddrs& addrs, const sockaddr_storage& peer) {
    return addrs.allows(reinterpret_cast<const sockaddr&>(peer));
}

TEST(WebServerAddrs, AllowsOnlyTheListedAddresses) {
    const auto addrs = WebServerAddrs::parse("127.0.0.1, 10.0.0.5,::1");
    EXPECT_TRUE(allows(addrs, v4("127.0.0.1")));
    EXPECT_TRUE(allows(addrs, v4("10.0.0.5")));
    EXPECT_FALSE(allows(addrs, v4("10.0.0.6")));
    EXPECT_FALSE(allows(addrs, v4("127.0.0.2")));
    EXPECT_TRUE(allows(addrs, v6("::1")));
    EXPECT_FALSE(allows(addrs, v6("fe80::1")));
    EXPECT_EQ(addrs.describe(), "127.0.0.1, 10.0.0.5, ::1");
}

TEST(WebServerAddrs, AnIpv4MappedPeerMatchesItsIpv4Entry) {
    const auto addrs = WebServerAddrs::parse("192.0.2.7");
    EXPECT_TRUE(allows(addrs, v6("::ffff:192.0.2.7")));
    EXPECT_FALSE(allows(addrs, v6("::ffff:192.0.2.8")));
}

TEST(WebServerAddrs, UnixPeersAreLeftToTheSocketsMode) {
    const auto addrs = WebServerAddrs::parse("192.0.2.7");
    sockaddr_storage unix_peer{};
    unix_peer.ss_family = AF_UNIX;
    EXPECT_TRUE(allows(addrs, unix_peer));
}

TEST(WebServerAddrs, ABadEntryIsNamed) {
    try {
        WebServerAddrs::parse("127.0.0.1,localhost");
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "'localhost' is not a numeric IPv4 or IPv6 address");
    }
    EXPECT_THROW(WebServerAddrs::parse(" , "), std::invalid_argument);
    EXPECT_THROW(WebServerAddrs::parse("10.0.0.256"), std::invalid_argument);
}

TEST(WebServerAddrs, FromTheEnvironment) {
    ::unsetenv("FCGI_WEB_SERVER_ADDRS");
    EXPECT_FALSE(WebServerAddrs::from_environment());
    ::setenv("FCGI_WEB_SERVER_ADDRS", "", 1);
    EXPECT_FALSE(WebServerAddrs::from_environment());
    ::setenv("FCGI_WEB_SERVER_ADDRS", "10.1.2.3", 1);
    const auto addrs = WebServerAddrs::from_environment();
    ASSERT_TRUE(addrs);
    EXPECT_TRUE(allows(*addrs, v4("10.1.2.3")));
    ::unsetenv("FCGI_WEB_SERVER_ADDRS");
}

}  // namespace
}  // namespace crosstown
