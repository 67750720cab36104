// fcgi_app::Witness: an append-only file of the durable calls placed, outside the journal, so
// that a test (or a demo) can check from outside the process that every accepted call
// happened, even across kill -9 and restarts, and on which instance. One line per placed call:
//   <batch> <call> <job id> <attempt> <started> <pid>
// with `started` the attempt's start in steady_clock (CLOCK_MONOTONIC) nanoseconds, comparable
// across the processes of one machine. Lines are appended with O_APPEND in one write each, so
// threads and processes may share the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace fcgi_app {

class Witness {
  public:
    // Empty path: records nothing. Throws std::system_error when the file cannot be opened.
    explicit Witness(const std::string& path);
    ~Witness();
    Witness(const Witness&) = delete;
    Witness& operator=(const Witness&) = delete;

    void record(std::string_view batch, std::uint64_t call, std::int64_t job_id, unsigned attempt,
                std::chrono::steady_clock::time_point started) const;

  private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace fcgi_app
