#include "witness.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace fcgi_app {

Witness::Witness(const std::string& path) : path_(path) {
    if (path.empty()) return;
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "--witness " + path);
}

Witness::~Witness() {
    if (fd_ >= 0) ::close(fd_);
}

void Witness::record(std::string_view batch, std::uint64_t call, std::int64_t job_id,
                     unsigned attempt, std::chrono::steady_clock::time_point started) const {
    if (fd_ < 0) return;
    const auto started_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(started.time_since_epoch()).count();
    const auto line =
        fmt::format("{} {} {} {} {} {}\n", batch, call, job_id, attempt, started_ns, ::getpid());
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        throw std::system_error(errno, std::generic_category(), "--witness " + path_);
    }
}

}  // namespace fcgi_app
