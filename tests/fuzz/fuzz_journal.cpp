// libFuzzer: a journal file of arbitrary bytes. Opening it either fails with JournalError (a
// message naming the file, as the server reports before exiting 2) or yields a journal whose
// jobs can be read, counted and written; nothing may crash, leak or hang. The seeds are small
// valid journals, so mutations reach SQLite's pages and crosstown's checks of them.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

namespace {

// In memory where the machine has /dev/shm: each run creates, writes and removes files.
const std::string& scratch_path() {
    static const std::string dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    static const std::string path = dir + "/fuzz_journal." + std::to_string(::getpid()) + ".db";
    return path;
}

void remove_files(const std::string& path) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
        std::remove((path + suffix).c_str());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto& path = scratch_path();
    remove_files(path);
    {
        std::ofstream file(path, std::ios::binary);
        file.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        auto journal = crosstown::SqliteJobDatabase::open(
            path, crosstown::JournalSync::normal, crosstown::SqliteJobDatabase::Access::read_write);
        const auto jobs = journal.live_jobs();
        journal.stats();
        journal.list(crosstown::JobState::dead);
        journal.begin();
        const auto id = journal.insert({"kind", "payload", "request"}, 1);
        journal.reschedule(id, 1, 2, "error");
        journal.remove(id, 3);
        const auto keyed = journal.insert({"kind", "payload", "request", "key", 60'000}, 4);
        journal.discard(keyed);
        for (const auto& job : jobs) journal.bury(job.id, job.attempts + 1, "fuzz", 5);
        journal.forget_expired_keys(6);
        journal.commit();
    } catch (const crosstown::JournalError&) {
    }
    remove_files(path);
    return 0;
}
