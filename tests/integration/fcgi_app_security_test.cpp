// fcgi_app's security defaults, through the real binary: a TCP --listen reachable from other
// machines needs --allow-remote, and FCGI_WEB_SERVER_ADDRS decides which TCP peers are served.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/app_under_test.hpp"
#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/fastcgi_client.hpp"
#include "support/loopback.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Each test's app writes its log in a directory of its own.
class Security : public ::testing::Test {
  protected:
    std::string log_path() const { return dir_ / "fcgi_app.log"; }
    test::TempDir dir_{"crosstown-security"};
};

// Tries until the app listens; the reply (ended == false when the peer closed unanswered).
test::CgiReply hello_over_tcp(int port) {
    test::CgiReply reply;
    test::eventually(
        [&] {
            try {
                test::FastCgiConnection connection(port);
                reply = connection.request(test::get("/hello"), {}, true);
                return true;
            } catch (const std::runtime_error&) {
                return false;  // not listening yet
            }
        },
        test::kPatience, 10ms);
    return reply;
}

bool logged(test::ChildProcess& app, const std::string& text) {
    return test::eventually([&] { return app.output().find(text) != std::string::npos; },
                            test::kPatience, 5ms);
}

TEST_F(Security, ANonLoopbackTcpListenIsRefusedWithoutAllowRemote) {
    const int port = test::free_port();
    test::ChildProcess app({test::fcgi_app_path(), "--listen", "0.0.0.0:" + std::to_string(port)},
                           log_path());
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("--allow-remote"));
    EXPECT_THAT(app.output(), HasSubstr("FastCGI has no authentication"));
}

TEST_F(Security, AllowRemoteServesAndWarns) {
    const int port = test::free_port();
    test::ChildProcess app({test::fcgi_app_path(), "--listen", "0.0.0.0:" + std::to_string(port),
                            "--allow-remote", "on"},
                           log_path());
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    EXPECT_THAT(app.output(), HasSubstr("accepts connections from anyone who can reach it"));
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST_F(Security, LoopbackTcpNeedsNoAllowRemote) {
    const int port = test::free_port();
    test::ChildProcess app({test::fcgi_app_path(), "--listen", "127.0.0.1:" + std::to_string(port)},
                           log_path());
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST_F(Security, PeersNotInFcgiWebServerAddrsAreDisconnectedUnanswered) {
    const int port = test::free_port();
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.2,::1",
                            test::fcgi_app_path(), "--listen", "127.0.0.1:" + std::to_string(port)},
                           log_path());
    // Serving, so that a closed connection is a refusal, not an app still starting.
    ASSERT_TRUE(logged(app, "listening on")) << app.output();
    const auto reply = hello_over_tcp(port);
    EXPECT_FALSE(reply.ended);
    EXPECT_EQ(reply.status, 0);
    logged(app, "not in FCGI_WEB_SERVER_ADDRS");
    EXPECT_THAT(app.output(), HasSubstr("the last from 127.0.0.1: not in FCGI_WEB_SERVER_ADDRS"));
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST_F(Security, PeersInFcgiWebServerAddrsAreServed) {
    const int port = test::free_port();
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.1",
                            test::fcgi_app_path(), "--listen", "127.0.0.1:" + std::to_string(port)},
                           log_path());
    EXPECT_EQ(hello_over_tcp(port).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
}

TEST_F(Security, ABadFcgiWebServerAddrsIsNamedAndExits2) {
    test::ChildProcess app({"/usr/bin/env", "FCGI_WEB_SERVER_ADDRS=127.0.0.1,webserver",
                            test::fcgi_app_path(), "--listen", "127.0.0.1:1"},
                           log_path());
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("FCGI_WEB_SERVER_ADDRS: 'webserver' is not a numeric"));
}

}  // namespace
}  // namespace crosstown
