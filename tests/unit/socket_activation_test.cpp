// socket_from_systemd: the handover systemd makes (sd_listen_fds(3)), made here by hand: a
// socket on fd 3, LISTEN_PID and LISTEN_FDS. Whatever was on fds 3 and 4 before is put back.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <crosstown/service/socket_activation.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "support/loopback.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using ::testing::HasSubstr;

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START

class SocketActivationTest : public ::testing::Test {
  protected:
    SocketActivationTest() {
        clear_environment();
        for (const int fd : {kFirstFd, kFirstFd + 1}) {
            saved_[fd - kFirstFd] =
                ::fcntl(fd, F_GETFD) >= 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 10) : -1;
        }
    }
    ~SocketActivationTest() override {
        clear_environment();
        for (const int fd : {kFirstFd, kFirstFd + 1}) {
            const int saved = saved_[fd - kFirstFd];
            if (saved >= 0) {
                ::dup2(saved, fd);
                ::close(saved);
            } else {
                ::close(fd);
            }
        }
    }

    static void clear_environment() {
        for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(name);
    }
    // What systemd sets for this process: `count` sockets from fd 3 on.
    static void hand_over(int count, pid_t pid = ::getpid()) {
        ::setenv("LISTEN_PID", std::to_string(pid).c_str(), 1);
        ::setenv("LISTEN_FDS", std::to_string(count).c_str(), 1);
    }
    // Puts `fd` on `target` (3, 4), as systemd passes it: blocking, inheritable.
    static void place(int fd, int target = kFirstFd) {
        ASSERT_GE(fd, 0) << std::strerror(errno);
        if (fd == target) return;  // the lowest free descriptor was that one already
        ASSERT_EQ(::dup2(fd, target), target) << std::strerror(errno);
        ::close(fd);
    }
    // A unix stream socket bound to `path`, listening when `listening`.
    static int unix_socket(const std::string& path, int type = SOCK_STREAM, bool listening = true) {
        const int fd = ::socket(AF_UNIX, type, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            (listening && ::listen(fd, 16) != 0)) {
            ::close(fd);
            return -1;
        }
        return fd;
    }
    static bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

    test::TempDir dir_{"crosstown-activation"};
    std::string path_ = dir_ / "activated.sock";

  private:
    int saved_[2] = {-1, -1};
};

TEST_F(SocketActivationTest, AdoptsTheListeningSocketOnFd3) {
    place(unix_socket(path_));
    hand_over(1);
    {
        auto inherited = socket_from_systemd();
        ASSERT_TRUE(inherited.has_value());
        EXPECT_EQ(inherited->socket.fd(), kFirstFd);
        EXPECT_EQ(inherited->description, "systemd socket " + path_ + " (fd 3)");
        EXPECT_TRUE(::fcntl(kFirstFd, F_GETFL) & O_NONBLOCK) << "the responders poll it";
        EXPECT_TRUE(::fcntl(kFirstFd, F_GETFD) & FD_CLOEXEC) << "nothing we start inherits it";
        EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr) << "the variables are for us alone";
        EXPECT_EQ(std::getenv("LISTEN_PID"), nullptr);

        // It is the socket: a client connects through the path, and fd 3 accepts it.
        const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
        ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
        const int accepted = ::accept4(kFirstFd, nullptr, nullptr, SOCK_CLOEXEC);
        EXPECT_GE(accepted, 0) << std::strerror(errno);
        ::close(accepted);
        ::close(client);
    }
    // Closed with the ListenSocket, but the file is systemd's: it stays.
    EXPECT_FALSE(is_open(kFirstFd));
    EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(SocketActivationTest, ATcpSocketIsDescribedByItsPort) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    auto address = test::loopback_address(0);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(fd, 16), 0);
    socklen_t length = sizeof address;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
    place(fd);
    hand_over(1);
    const auto inherited = socket_from_systemd();
    ASSERT_TRUE(inherited.has_value());
    EXPECT_EQ(inherited->description,
              "systemd socket TCP port " + std::to_string(ntohs(address.sin_port)) + " (fd 3)");
}

TEST_F(SocketActivationTest, MoreThanOneSocketIsAListenErrorNamingTheCount) {
    place(unix_socket(path_));
    place(unix_socket(dir_ / "second.sock"), kFirstFd + 1);
    hand_over(2);
    try {
        socket_from_systemd();
        FAIL() << "two sockets were accepted";
    } catch (const ListenError& e) {
        EXPECT_THAT(e.what(), HasSubstr("systemd passed 2 sockets"));
        EXPECT_THAT(e.what(), HasSubstr("exactly one"));
    }
    EXPECT_TRUE(is_open(kFirstFd)) << "not adopted, not closed";
}

TEST_F(SocketActivationTest, ADatagramSocketIsAListenError) {
    place(unix_socket(path_, SOCK_DGRAM, false));
    hand_over(1);
    try {
        socket_from_systemd();
        FAIL() << "a datagram socket was accepted";
    } catch (const ListenError& e) {
        EXPECT_THAT(e.what(), HasSubstr("fd 3 is not a listening stream socket"));
    }
}

TEST_F(SocketActivationTest, AStreamSocketNotListeningIsAListenError) {
    place(unix_socket(path_, SOCK_STREAM, false));
    hand_over(1);
    try {
        socket_from_systemd();
        FAIL() << "a socket that does not listen was accepted";
    } catch (const ListenError& e) {
        EXPECT_THAT(e.what(), HasSubstr("fd 3 is not a listening stream socket"));
    }
}

TEST_F(SocketActivationTest, NoHandoverIsNullopt) {
    place(unix_socket(path_));  // a socket on fd 3 proves nothing by itself
    EXPECT_FALSE(socket_from_systemd().has_value());
    EXPECT_TRUE(is_open(kFirstFd)) << "left alone";
    EXPECT_FALSE(::fcntl(kFirstFd, F_GETFL) & O_NONBLOCK);
}

TEST_F(SocketActivationTest, AHandoverForAnotherProcessIsNullopt) {
    place(unix_socket(path_));
    hand_over(1, ::getppid());  // what a parent that was activated would leave us
    EXPECT_FALSE(socket_from_systemd().has_value());
    EXPECT_TRUE(is_open(kFirstFd)) << "left alone";
    EXPECT_FALSE(::fcntl(kFirstFd, F_GETFL) & O_NONBLOCK);
}

}  // namespace
}  // namespace crosstown
