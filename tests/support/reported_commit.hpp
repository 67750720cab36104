// A commit_then() as a responder makes it (JobStore::commit_then): what it was told, and on
// which thread, for a test to look at.
#pragma once

#include <exception>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "crosstown/jobs/job_store.hpp"

namespace crosstown::test {

struct CommitReport {
    std::mutex mutex;
    bool told = false;
    std::vector<std::int64_t> ids;
    std::exception_ptr failure;
    std::thread::id thread;
    bool is_told() {
        std::lock_guard lock(mutex);
        return told;
    }
};

// One job of kind "k" with `payload`, which must outlive the commit.
class ReportedCommit final : public PendingCommit {
  public:
    ReportedCommit(std::string_view payload, CommitReport& report)
        : job_{"k", payload, "r"}, report_(report) {}
    std::span<const NewJob> jobs() const override { return std::span(&job_, 1); }
    void done(std::vector<std::int64_t> ids, std::exception_ptr failure) noexcept override {
        std::lock_guard lock(report_.mutex);
        report_.ids = std::move(ids);
        report_.failure = failure;
        report_.thread = std::this_thread::get_id();
        report_.told = true;
    }

  private:
    NewJob job_;
    CommitReport& report_;
};

}  // namespace crosstown::test
