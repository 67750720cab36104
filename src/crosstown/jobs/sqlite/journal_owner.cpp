#include "crosstown/jobs/sqlite/journal_owner.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

namespace crosstown {
namespace {

std::string lock_path(const std::string& journal_path) { return journal_path + ".lock"; }

std::optional<pid_t> read_pid(int fd) {
    char buffer[32] = {};
    const auto n = pread(fd, buffer, sizeof buffer - 1, 0);
    pid_t pid = 0;
    if (n <= 0) return std::nullopt;
    const auto [end, error] = std::from_chars(buffer, buffer + n, pid);
    if (error != std::errc{} || pid <= 0) return std::nullopt;
    return pid;
}

std::string describe_owner(std::optional<pid_t> pid) {
    return pid ? fmt::format("pid {}", *pid) : std::string("pid unknown");
}

}  // namespace

JournalOwner JournalOwner::acquire(const std::string& journal_path) {
    const auto path = lock_path(journal_path);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        throw JournalError(fmt::format("journal {}: cannot create its lock file {}: {}",
                                       journal_path, path, std::strerror(errno)));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        const auto owner = read_pid(fd);
        ::close(fd);
        if (error == EWOULDBLOCK) {
            throw JournalError(fmt::format(
                "journal {}: owned by a live process ({}); each process needs its own journal",
                journal_path, describe_owner(owner)));
        }
        throw JournalError(fmt::format("journal {}: cannot lock {}: {}", journal_path, path,
                                       std::strerror(error)));
    }
    const auto pid = std::to_string(::getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
        const int error = errno;
        ::close(fd);
        throw JournalError(fmt::format("journal {}: cannot write its lock file {}: {}",
                                       journal_path, path, std::strerror(error)));
    }
    return JournalOwner(fd);
}

std::optional<pid_t> JournalOwner::live_owner(const std::string& journal_path) {
    const int fd = ::open(lock_path(journal_path).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::optional<pid_t> owner;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
    } else {
        owner = read_pid(fd).value_or(0);
    }
    ::close(fd);
    return owner;
}

JournalOwner::JournalOwner(JournalOwner&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

JournalOwner::~JournalOwner() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays for the next owner
}

}  // namespace crosstown
