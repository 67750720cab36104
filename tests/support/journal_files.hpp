// Small readers of a journal file for the jobs' tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

namespace crosstown::test {

inline SqliteJobDatabase open_rw(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal,
                                   SqliteJobDatabase::Access::read_write);
}

// What the journal holds, through a connection of its own, as `jobs list` reads it.
inline std::vector<StoredJob> stored(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
        .list();
}

inline std::vector<std::int64_t> ids_of(const std::vector<StoredJob>& jobs) {
    std::vector<std::int64_t> ids;
    for (const auto& job : jobs) ids.push_back(job.id);
    return ids;
}

}  // namespace crosstown::test
