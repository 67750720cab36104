// fcgi_app's security defaults, through the real binary: a TCP --listen reachable from other
// machines needs --allow-remote, and FCGI_WEB_SERVER_ADDRS decides which TCP peers are served.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/fastcgi_client.hpp"
#include "support/nginx_stack.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string log_path(const char* name) {
    return ::testing::TempDir() + "crosstown-security-" + name + ".log";
}

// Tries until the app listens; the reply (ended == false when the peer closed unanswered).
test::CgiReply hello_over_tcp(int port) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        try {
            test::FastCgiConnection connection(port);
            return connection.request(test::get("/hello"), {}, true);
        } catch (const std::runtime_error&) {
            std::this_thread::sleep_for(20ms);
        }
    }
    return {};
}

TEST(Security, ANonLoopbackTcpListenIsRefusedWithoutAllowRemote) {
    const int port = test::free_port();
    const auto log = log_path("refused");
    test::ChildProcess app({FCGI_APP_PATH, "--listen", "0.0.0.0:" + std::to_string(port)}, log);
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("--allow-remote"));
    EXPECT_THAT(app.output(), HasSubstr("FastCGI has no authentication"));
}

TEST(Security, AllowRemoteServesAndWarns) {
    const int port = test::free_port();
    const auto log = log_path("allowed");
    test::ChildProcess app(
        {FCGI_APP_PATH, "--listen", "0.0.0.0:" + std::to_string(port), "--allow-remote", "on"},
        log);
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    EXPECT_THAT(app.output(), HasSubstr("accepts connections from anyone who can reach it"));
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST(Security, LoopbackTcpNeedsNoAllowRemote) {
    const int port = test::free_port();
    test::ChildProcess app({FCGI_APP_PATH, "--listen", "127.0.0.1:" + std::to_string(port)},
                           log_path("loopback"));
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST(Security, PeersNotInFcgiWebServerAddrsAreDisconnectedUnanswered) {
    const int port = test::free_port();
    const auto log = log_path("addrs");
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.2,::1", FCGI_APP_PATH,
                            "--listen", "127.0.0.1:" + std::to_string(port)},
                           log);
    std::this_thread::sleep_for(300ms);
    const auto reply = hello_over_tcp(port);
    EXPECT_FALSE(reply.ended);
    EXPECT_EQ(reply.status, 0);
    for (int i = 0;
         i < 50 && app.output().find("not in FCGI_WEB_SERVER_ADDRS") == std::string::npos; ++i) {
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_THAT(app.output(), HasSubstr("the last from 127.0.0.1: not in FCGI_WEB_SERVER_ADDRS"));
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST(Security, PeersInFcgiWebServerAddrsAreServed) {
    const int port = test::free_port();
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.1", FCGI_APP_PATH,
                            "--listen", "127.0.0.1:" + std::to_string(port)},
                           log_path("addrs-ok"));
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST(Security, ABadFcgiWebServerAddrsIsNamedAndExits2) {
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.1,webserver",
                            FCGI_APP_PATH, "--listen", "127.0.0.1:1"},
                           log_path("bad-addrs"));
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("FCGI_WEB_SERVER_ADDRS: 'webserver' is not a numeric"));
}

}  // namespace
}  // namespace crosstown
