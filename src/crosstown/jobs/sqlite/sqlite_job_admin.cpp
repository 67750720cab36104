#include "crosstown/jobs/sqlite/sqlite_job_admin.hpp"

#include <fmt/format.h>

namespace crosstown {
namespace {

// A journal that is not there (a mistyped path) is an error, not a new empty journal; one
// owned by a live process may be read, not changed.
SqliteJobDatabase open_for(const std::string& path, bool change,
                           std::optional<JournalOwner>& ownership) {
    auto reader =
        SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only);
    if (!change) return reader;
    if (const auto owner = JournalOwner::live_owner(path)) {
        throw AdminRefused(fmt::format(
            "journal {} is owned by a live process (pid {}); stop it first, then run this again",
            path, *owner));
    }
    ownership.emplace(JournalOwner::acquire(path));
    return SqliteJobDatabase::open(path, JournalSync::full, SqliteJobDatabase::Access::read_write);
}

}  // namespace

SqliteJobAdmin::SqliteJobAdmin(const std::string& path, bool change)
    : journal_(open_for(path, change, ownership_)) {}

std::vector<AdminJob> SqliteJobAdmin::list(bool dead_only) {
    std::vector<AdminJob> jobs;
    for (auto& job : journal_.list(dead_only ? std::optional(JobState::dead) : std::nullopt)) {
        const auto state = std::string(job_state_name(job.state));
        jobs.push_back({std::move(job), state});
    }
    return jobs;
}

std::uint64_t SqliteJobAdmin::revive(std::optional<std::int64_t> id) { return journal_.revive(id); }

std::uint64_t SqliteJobAdmin::purge_dead() { return journal_.purge_dead(); }

std::uint64_t SqliteJobAdmin::cancel(std::optional<std::int64_t> id,
                                     const std::optional<std::string>& kind) {
    return journal_.cancel(id, kind);
}

}  // namespace crosstown
