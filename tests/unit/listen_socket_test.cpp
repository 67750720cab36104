#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <crosstown/fastcgi/listen_socket.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ListenSocketTest : public ::testing::Test {
  protected:
    ListenSocketTest() : path_(dir_ / "app.sock") {}

    mode_t mode_of(const std::string& path) {
        struct stat st {};
        EXPECT_EQ(::lstat(path.c_str(), &st), 0);
        return st.st_mode & 07777;
    }

    test::TempDir dir_{"crosstown-listen"};
    std::string path_;
};

bool can_connect(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    return ok;
}

TEST_F(ListenSocketTest, UnixSocketGetsExactlyTheModeWhateverTheUmask) {
    for (const mode_t umask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
        const mode_t previous = ::umask(umask);
        auto socket = ListenSocket::open(path_, {.mode = 0660});
        ::umask(previous);
        EXPECT_EQ(mode_of(path_), 0660u) << "umask " << umask;
        EXPECT_TRUE(socket.is_unix());
        socket.close();
    }
    auto socket = ListenSocket::open(path_, {.mode = 0600});
    EXPECT_EQ(mode_of(path_), 0600u);
}

TEST_F(ListenSocketTest, IsNonBlockingListeningAndConnectable) {
    auto socket = ListenSocket::open(path_);
    EXPECT_TRUE(::fcntl(socket.fd(), F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(socket.fd(), F_GETFD) & FD_CLOEXEC);
    EXPECT_TRUE(can_connect(path_));
}

TEST_F(ListenSocketTest, SetsTheGroup) {
    auto socket = ListenSocket::open(path_, {.group = ::getegid()});
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, ::getegid());
}

TEST_F(ListenSocketTest, ReplacesAStaleSocketFile) {
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strcpy(address.sun_path, path_.c_str());
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
        ::close(fd);  // a crashed process: the file stays, nobody listens
    }
    auto socket = ListenSocket::open(path_);
    EXPECT_TRUE(can_connect(path_));
}

TEST_F(ListenSocketTest, RefusesASocketSomeoneServes) {
    auto first = ListenSocket::open(path_);
    try {
        ListenSocket::open(path_);
        FAIL() << "second instance opened the same socket";
    } catch (const ListenError& e) {
        EXPECT_THAT(e.what(), HasSubstr("another process is already listening"));
    }
    EXPECT_TRUE(can_connect(path_)) << "the first one is untouched";
}

TEST_F(ListenSocketTest, RefusesToReplaceAFile) {
    std::ofstream(path_) << "precious";
    EXPECT_THROW(ListenSocket::open(path_), ListenError);
    EXPECT_TRUE(fs::is_regular_file(path_));
}

TEST_F(ListenSocketTest, ClearErrorsForBadPaths) {
    try {
        ListenSocket::open(dir_ / "missing-dir/app.sock");
        FAIL();
    } catch (const ListenError& e) {
        EXPECT_THAT(e.what(), HasSubstr("missing-dir/app.sock: No such file or directory"));
    }
    EXPECT_THROW(ListenSocket::open(dir_ / std::string(120, 'x')), ListenError);
}

TEST_F(ListenSocketTest, CloseRemovesOnlyItsOwnFile) {
    auto socket = ListenSocket::open(path_);
    socket.close();
    EXPECT_FALSE(fs::exists(path_));

    auto old = ListenSocket::open(path_);
    fs::remove(path_);
    auto replacement = ListenSocket::open(path_);  // as a restarted instance would
    old.close();
    EXPECT_TRUE(fs::exists(path_)) << "the newer instance's socket survives";
    EXPECT_TRUE(can_connect(path_));
}

TEST(ListenSocketTcp, OpensLoopbackPort) {
    auto socket = ListenSocket::open("127.0.0.1:0");
    EXPECT_FALSE(socket.is_unix());
    sockaddr_in address{};
    socklen_t length = sizeof address;
    ASSERT_EQ(::getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&address), &length), 0);
    EXPECT_NE(address.sin_port, 0);
}

TEST(ListenSocketTcp, ClearErrors) {
    EXPECT_THROW(ListenSocket::open("127.0.0.1:"), ListenError);
    EXPECT_THROW(ListenSocket::open("no.such.host.invalid:80"), ListenError);
    EXPECT_THROW(ListenSocket::open("127.0.0.1:99999"), ListenError);
}

}  // namespace
}  // namespace crosstown
