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

#include "support/child_process.hpp"
#include "support/fastcgi_client.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class TempDir {
  public:
    TempDir() {
        std::string pattern = fs::temp_directory_path() / "crosstown-systemd-XXXXXX";
        path_ = ::mkdtemp(pattern.data());
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

bool wait_for_file(const std::string& path, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!fs::exists(path)) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

test::CgiReply hello(const std::string& socket) {
    test::FastCgiConnection connection(socket);
    return connection.request(test::get("/hello"));
}

// Runs fcgi_app under systemd-socket-activate, which creates the socket and, at the first
// connection, execs fcgi_app (same pid) with LISTEN_FDS=1 and fd 3.
std::vector<std::string> activated(const std::string& socket, std::vector<std::string> args) {
    std::vector<std::string> argv{SOCKET_ACTIVATE_PATH, "--listen=" + socket, FCGI_APP_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

TEST(SocketActivation, ServesTheSocketSystemdPassesAndLeavesItInPlace) {
    TempDir dir;
    const auto socket = dir / "activated.sock";
    // --listen points somewhere unusable: it must not even be tried.
    test::ChildProcess app(activated(socket, {"--listen", "/nonexistent/dir/app.sock"}),
                           dir / "app.log");
    ASSERT_TRUE(wait_for_file(socket, 5s));
    test::CgiReply reply;
    for (int i = 0; i < 200 && !reply.ended; ++i) {  // the socket exists before fcgi_app runs
        reply = hello(socket);
        if (!reply.ended) std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(reply.status, 200);
    EXPECT_THAT(reply.body, HasSubstr("hello"));
    EXPECT_THAT(app.output(), HasSubstr("socket activation: serving systemd socket " + socket));

    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0) << app.output();
    // systemd owns the socket file; the service must not remove it.
    EXPECT_TRUE(fs::exists(socket));
}

// A connection attempt makes systemd-socket-activate exec fcgi_app.
void knock(const std::string& socket) {
    ASSERT_TRUE(wait_for_file(socket, 5s));
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket.c_str(), sizeof address.sun_path - 1);
    ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::close(fd);
}

TEST(SocketActivation, MoreThanOneSocketIsAClearErrorAndExit2) {
    TempDir dir;
    test::ChildProcess app({SOCKET_ACTIVATE_PATH, "--listen=" + (dir / "a.sock"),
                            "--listen=" + (dir / "b.sock"), FCGI_APP_PATH},
                           dir / "app.log");
    knock(dir / "b.sock");
    EXPECT_EQ(app.wait(10s), 2);
    EXPECT_THAT(app.output(), HasSubstr("systemd passed 2 sockets"));
}

TEST(SocketActivation, ADatagramSocketIsAClearErrorAndExit2) {
    TempDir dir;
    test::ChildProcess app(
        {SOCKET_ACTIVATE_PATH, "--datagram", "--listen=" + (dir / "d.sock"), FCGI_APP_PATH},
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

// A NOTIFY_SOCKET of our own: the datagrams fcgi_app sends to "systemd".
class NotifySocket {
  public:
    explicit NotifySocket(const std::string& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            throw std::runtime_error("bind " + path);
        }
    }
    ~NotifySocket() { ::close(fd_); }

    // The next message, or "" after the timeout.
    std::string next(std::chrono::milliseconds timeout) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
        char buffer[4096];
        const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
        return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : "";
    }

    // Waits for a message containing `wanted`, returning it ("" at the timeout).
    std::string until(const std::string& wanted, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            auto message = next(std::chrono::duration_cast<std::chrono::milliseconds>(
                end - std::chrono::steady_clock::now()));
            if (message.find(wanted) != std::string::npos) return message;
        }
        return "";
    }

    // How many messages within `window` contain `wanted`.
    int count(const std::string& wanted, std::chrono::milliseconds window) {
        int n = 0;
        const auto end = std::chrono::steady_clock::now() + window;
        while (std::chrono::steady_clock::now() < end) {
            const auto message = next(std::chrono::duration_cast<std::chrono::milliseconds>(
                end - std::chrono::steady_clock::now()));
            if (message.find(wanted) != std::string::npos) ++n;
        }
        return n;
    }

    // Discards the messages already received.
    void discard() {
        while (!next(0ms).empty()) {
        }
    }

    const std::string& path() const { return path_; }

  private:
    std::string path_;
    int fd_ = -1;
};

// fcgi_app run as by a Type=notify unit with WatchdogSec=400ms: pings every 200 ms at most.
std::vector<std::string> notified(const NotifySocket& notify, const std::string& socket,
                                  std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/env",
                                  "NOTIFY_SOCKET=" + notify.path(),
                                  "WATCHDOG_USEC=400000",
                                  FCGI_APP_PATH,
                                  "--listen",
                                  socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

TEST(ServiceNotifier, ReadyOnceServingThenStatusWatchdogAndStopping) {
    TempDir dir;
    NotifySocket notify(dir / "notify.sock");
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
    TempDir dir;
    NotifySocket notify(dir / "notify.sock");
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
    std::this_thread::sleep_for(500ms);  // the stall limit (200 ms) passes
    notify.discard();
    EXPECT_EQ(notify.count("WATCHDOG=1", 1s), 0);
    EXPECT_THAT(app.output(), HasSubstr("withholding the watchdog ping"));

    app.signal(SIGTERM);  // the callbacks honour their stop token: abandoned, exit 1
    EXPECT_EQ(app.wait(10s), 1) << app.output();
}

TEST(ServiceNotifier, SilentWithoutNotifySocket) {
    TempDir dir;
    const auto socket = dir / "app.sock";
    test::ChildProcess app({FCGI_APP_PATH, "--listen", socket}, dir / "app.log");
    ASSERT_TRUE(wait_for_file(socket, 5s));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(hello(socket).status, 200);
    app.signal(SIGTERM);
    EXPECT_EQ(app.wait(10s), 0);
    EXPECT_THAT(app.output(), ::testing::Not(HasSubstr("sd_notify")));
}

}  // namespace
}  // namespace crosstown
