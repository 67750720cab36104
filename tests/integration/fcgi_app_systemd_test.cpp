// fcgi_app as systemd runs it: socket activation through systemd-socket-activate (which passes
// the socket with LISTEN_FDS/LISTEN_PID exactly as systemd does), and sd_notify messages read
// from our own NOTIFY_SOCKET.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/app_under_test.hpp"
#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/fastcgi_client.hpp"
#include "support/notify_socket.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

bool wait_for_file(const std::string& path, std::chrono::milliseconds timeout) {
    return test::eventually([&] { return fs::exists(path); }, timeout, 5ms);
}

bool logged(test::ChildProcess& app, const std::string& text) {
    return test::eventually([&] { return app.output().find(text) != std::string::npos; },
                            test::kPatience, 5ms);
}

test::CgiReply hello(const std::string& socket) {
    test::FastCgiConnection connection(socket);
    return connection.request(test::get("/hello"));
}

// Runs fcgi_app under systemd-socket-activate, which creates the socket and, at the first
// connection, execs fcgi_app (same pid) with LISTEN_FDS=1 and fd 3.
std::vector<std::string> activated(const std::string& socket, std::vector<std::string> args) {
    std::vector<std::string> argv{SOCKET_ACTIVATE_PATH, "--listen=" + socket,
                                  test::fcgi_app_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

TEST(SocketActivation, ServesTheSocketSystemdPassesAndLeavesItInPlace) {
    test::TempDir dir("crosstown-systemd");
    const auto socket = dir / "activated.sock";
    // --listen points somewhere unusable: it must not even be tried.
    test::ChildProcess app(activated(socket, {"--listen", "/nonexistent/dir/app.sock"}),
                           dir / "app.log");
    ASSERT_TRUE(wait_for_file(socket, 5s));
    test::CgiReply reply;
    std::string refused;
    // The socket file appears at bind(), an instant before listen(): until then a connection
    // is refused. Then fcgi_app runs, and the first connections may go unanswered.
    test::eventually(
        [&] {
            try {
                reply = hello(socket);
            } catch (const std::runtime_error& e) {
                refused = e.what();
                return false;
            }
            return reply.ended;
        },
        test::kPatience, 10ms);
    EXPECT_EQ(reply.status, 200) << refused;
    EXPECT_THAT(reply.body, HasSubstr("hello"));
    EXPECT_THAT(app.output(), HasSubstr("socket activation: serving systemd socket " + socket));

    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0) << app.output();
    // systemd owns the socket file; the service must not remove it.
    EXPECT_TRUE(fs::exists(socket));
}

// A connection attempt makes systemd-socket-activate exec fcgi_app.
// The file appears at bind(), an instant before listen(): until then a connection is refused,
// so knock until one is taken.
void knock(const std::string& socket) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket.c_str(), sizeof address.sun_path - 1);
    const bool taken = test::eventually(
        [&] {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            const bool connected =
                ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
            ::close(fd);
            return connected;
        },
        5s, 10ms);
    ASSERT_TRUE(taken) << "nothing listens on " << socket;
}

TEST(SocketActivation, MoreThanOneSocketIsAClearErrorAndExit2) {
    test::TempDir dir("crosstown-systemd");
    test::ChildProcess app({SOCKET_ACTIVATE_PATH, "--listen=" + (dir / "a.sock"),
                            "--listen=" + (dir / "b.sock"), test::fcgi_app_path()},
                           dir / "app.log");
    knock(dir / "b.sock");
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("systemd passed 2 sockets"));
}

TEST(SocketActivation, ADatagramSocketIsAClearErrorAndExit2) {
    test::TempDir dir("crosstown-systemd");
    test::ChildProcess app(
        {SOCKET_ACTIVATE_PATH, "--datagram", "--listen=" + (dir / "d.sock"), test::fcgi_app_path()},
        dir / "app.log");
    ASSERT_TRUE(wait_for_file(dir / "d.sock", 5s));
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, (dir / "d.sock").c_str(), sizeof address.sun_path - 1);
    ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::close(fd);
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("is not a listening stream socket"));
}

// fcgi_app run as by a Type=notify unit with WatchdogSec=400ms: pings every 200 ms at most.
std::vector<std::string> notified(const test::NotifySocket& notify, const std::string& socket,
                                  std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/env",
                                  "NOTIFY_SOCKET=" + notify.path(),
                                  "WATCHDOG_USEC=400000",
                                  test::fcgi_app_path(),
                                  "--listen",
                                  socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

TEST(ServiceNotifier, ReadyOnceServingThenStatusWatchdogAndStopping) {
    test::TempDir dir("crosstown-systemd");
    test::NotifySocket notify(dir / "notify.sock");
    const auto socket = dir / "app.sock";
    test::ChildProcess app(notified(notify, socket, {"--drain-timeout", "10s"}), dir / "app.log");

    const auto ready = notify.until("READY=1", 10s);
    ASSERT_THAT(ready, HasSubstr("READY=1")) << app.output();
    EXPECT_THAT(ready, HasSubstr("STATUS=serving"));
    // READY=1 means served: the very first request after it is answered.
    EXPECT_EQ(hello(socket).status, 200);

    EXPECT_GE(notify.count("WATCHDOG=1", 1s), 4);
    EXPECT_THAT(notify.until("STATUS=serving: 1 requests", 3s), HasSubstr("0 failed"));

    // Deferred work still running when SIGTERM arrives: STOPPING=1, then more time asked for.
    test::FastCgiConnection client(socket);
    auto post = test::get("/calls", "count=2&latency_ms=1500");
    post[0].second = "POST";
    EXPECT_EQ(client.request(post).status, 202);
    app.signal(SIGTERM);
    EXPECT_THAT(notify.until("STOPPING=1", 5s), HasSubstr("STOPPING=1"));
    const auto extend = notify.until("EXTEND_TIMEOUT_USEC=", 5s);
    ASSERT_THAT(extend, HasSubstr("EXTEND_TIMEOUT_USEC="));
    const auto usec = std::stoll(extend.substr(extend.find("EXTEND_TIMEOUT_USEC=") + 20));
    EXPECT_GT(usec, 10'000'000);  // the 10 s drain deadline plus a margin, minus what passed
    EXPECT_LE(usec, 15'000'000);
    EXPECT_EQ(app.wait(10s), 0) << app.output();
    EXPECT_THAT(app.output(), HasSubstr("completed=2"));
}

TEST(ServiceNotifier, AWedgedPoolStopsTheWatchdogPings) {
    test::TempDir dir("crosstown-systemd");
    test::NotifySocket notify(dir / "notify.sock");
    const auto socket = dir / "app.sock";
    test::ChildProcess app(notified(notify, socket, {"--workers", "1", "--drain-timeout", "100ms"}),
                           dir / "app.log");
    ASSERT_THAT(notify.until("READY=1", 10s), HasSubstr("READY=1")) << app.output();
    EXPECT_GE(notify.count("WATCHDOG=1", 600ms), 2);

    // One worker busy for 20 s and a callback queued behind it: nothing finishes.
    test::FastCgiConnection client(socket);
    auto post = test::get("/calls", "count=2&latency_ms=20000");
    post[0].second = "POST";
    ASSERT_EQ(client.request(post).status, 202);
    // Once the stall limit (200 ms) has passed, the heartbeat says so and pings no more.
    ASSERT_TRUE(logged(app, "withholding the watchdog ping")) << app.output();
    notify.discard();
    // Margin: 1 s is five ping intervals (200 ms) in which a ping would have come.
    EXPECT_EQ(notify.count("WATCHDOG=1", 1s), 0) << app.output();

    app.signal(SIGTERM);  // the callbacks honour their stop token: abandoned, exit 1
    EXPECT_EQ(app.wait(10s), 1) << app.output();
}

TEST(ServiceNotifier, SilentWithoutNotifySocket) {
    test::TempDir dir("crosstown-systemd");
    const auto socket = dir / "app.sock";
    test::ChildProcess app({test::fcgi_app_path(), "--listen", socket}, dir / "app.log");
    ASSERT_TRUE(logged(app, "listening on")) << app.output();
    EXPECT_EQ(hello(socket).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
    EXPECT_THAT(app.output(), ::testing::Not(HasSubstr("sd_notify")));
}

}  // namespace
}  // namespace crosstown
