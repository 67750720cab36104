#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/sqlite/journal_owner.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

SqliteJobDatabase open_rw(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal,
                                   SqliteJobDatabase::Access::read_write);
}

SqliteJobDatabase open_ro(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only);
}

std::vector<std::int64_t> ids_of(const std::vector<StoredJob>& jobs) {
    std::vector<std::int64_t> ids;
    for (const auto& job : jobs) ids.push_back(job.id);
    return ids;
}

// Runs `sql` on the database at `path` with the SQLite C API, as another program would.
void run_sql(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(
        sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
        SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    const std::string why = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << why;
}

// The first column of the first row `sql` reads from the database at `path`; -1 without one.
std::int64_t read_integer(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_stmt* read = nullptr;
    std::int64_t value = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql.c_str(), -1, &read, nullptr) == SQLITE_OK &&
        sqlite3_step(read) == SQLITE_ROW) {
        value = sqlite3_column_int64(read, 0);
    }
    sqlite3_finalize(read);
    sqlite3_close(db);
    return value;
}

// How many rows `table` of the database at `path` has.
long count_rows(const std::string& path, const std::string& table) {
    return static_cast<long>(read_integer(path, "SELECT count(*) FROM " + table));
}

std::int64_t reserved_ids(const std::string& path) {
    return read_integer(path, "SELECT reserved FROM job_ids");
}

// The message of the JournalError that `open` throws, or "" when it throws none.
template <typename Open>
std::string journal_error(Open open) {
    try {
        open();
    } catch (const JournalError& e) {
        return e.what();
    }
    return "";
}

TEST(SqliteJobDatabase, OpenCreatesANewFile) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    ASSERT_FALSE(std::filesystem::exists(path));
    auto journal = open_rw(path);
    EXPECT_EQ(journal.path(), path);
    EXPECT_TRUE(std::filesystem::exists(path));
    EXPECT_TRUE(journal.list().empty());
    EXPECT_TRUE(journal.stats().rows.empty());
}

// Payloads may hold personal data: the journal and its -wal and -shm files are the owner's
// alone, even under a umask that would let everyone read them.
TEST(SqliteJobDatabase, ANewJournalAndItsWalFilesAreTheOwnersAloneWhateverTheUmask) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    const auto old_umask = ::umask(0);
    auto journal = open_rw(path);
    ::umask(old_umask);
    journal.begin();
    journal.insert({"k", "secret", "req"}, 1);
    journal.commit();
    for (const auto& file : {path, path + "-wal", path + "-shm"}) {
        ASSERT_TRUE(std::filesystem::exists(file)) << file;
        const auto mode = std::filesystem::status(file).permissions();
        EXPECT_EQ(mode & std::filesystem::perms::all,
                  std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
            << file;
    }
}

// Readers beside the writer need write-ahead logging; a database that cannot have it (here
// SQLite's in-memory one) is refused at open rather than served without it.
TEST(SqliteJobDatabase, ADatabaseWithoutWriteAheadLoggingIsRefused) {
    EXPECT_THAT(journal_error([] { open_rw(":memory:"); }), HasSubstr("write-ahead logging"));
}

// A value over SQLite's length limit fails its insert with an error, not a silent NULL.
TEST(SqliteJobDatabase, APayloadOverSqlitesLimitFailsItsInsert) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    journal.begin();
    // SQLITE_MAX_LENGTH + 1 bytes, mapped and never touched: SQLite refuses it by its length.
    constexpr std::size_t kSize = 1'000'000'001;
    void* data = ::mmap(nullptr, kSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(data, MAP_FAILED);
    const std::string_view huge(static_cast<const char*>(data), kSize);
    EXPECT_THAT(journal_error([&] {
                    journal.insert({"k", huge, "req"}, 1);
                }),
                HasSubstr("too big"));
    ::munmap(data, kSize);
    journal.rollback();
}

// A power cut under synchronous=NORMAL loses the commits since the last fsync, and with them
// the ids reserved: the ids of lost jobs (which may have run, and handed their ids to a
// remote API) must not be given to new ones. Modelled by copying the files once the writer is
// open (what is durable then), committing, and putting the copy back.
TEST(SqliteJobDatabase, IdsAfterAPowerCutLostTheLastCommitsDifferFromTheLostOnes) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    const std::filesystem::path durable = dir / "durable";
    std::filesystem::create_directory(durable);
    std::set<std::int64_t> lost;
    {
        auto journal = open_rw(path);
        journal.begin();
        journal.insert({"k", "kept", "r"}, 1);
        journal.commit();
    }
    {
        auto journal = open_rw(path);
        for (const auto* suffix : {"", "-wal", "-shm"}) {
            if (std::filesystem::exists(path + suffix)) {
                std::filesystem::copy_file(path + suffix,
                                           durable / ("jobs.db" + std::string(suffix)));
            }
        }
        journal.begin();
        for (int i = 0; i < 5; ++i) lost.insert(journal.insert({"k", "lost", "r"}, 1));
        journal.commit();
    }
    for (const auto* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(path + suffix);
        const auto copy = durable / ("jobs.db" + std::string(suffix));
        if (std::filesystem::exists(copy)) std::filesystem::copy_file(copy, path + suffix);
    }
    auto journal = open_rw(path);
    EXPECT_EQ(journal.list().size(), 1U) << "the copy holds what was durable, not the lost jobs";
    journal.begin();
    for (int i = 0; i < 5; ++i) {
        const auto id = journal.insert({"k", "new", "r"}, 1);
        EXPECT_FALSE(lost.contains(id)) << "id " << id << " of a lost job given again";
    }
    journal.commit();
}

TEST(SqliteJobDatabase, InsertedJobsReadBackWithEveryField) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const std::string payload("{\"n\":1}\0binary", 14);  // a blob, NUL included
    const auto id = journal.insert({"place-call", payload, "req-1"}, 1'700'000'000'000);
    EXPECT_GT(id, 0);
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, id);
    EXPECT_EQ(jobs[0].kind, "place-call");
    EXPECT_EQ(jobs[0].payload, payload);
    EXPECT_EQ(jobs[0].request_id, "req-1");
    EXPECT_EQ(jobs[0].attempts, 0U);
    EXPECT_EQ(jobs[0].state, JobState::ready);
    EXPECT_EQ(jobs[0].enqueued_ms, 1'700'000'000'000);
    EXPECT_EQ(jobs[0].run_at_ms, 1'700'000'000'000);
    EXPECT_EQ(jobs[0].last_error, "");
}

// An empty std::string_view{} may have a null data(), which sqlite3_bind_text/blob would bind
// as NULL (failing "NOT NULL constraint"): follow_response_durably outside a request commits
// exactly such a request id.
TEST(SqliteJobDatabase, EmptyFieldsAreStoredAsEmptyStrings) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    std::int64_t id = 0;
    ASSERT_NO_THROW(id = journal.insert({"k", std::string_view{}, std::string_view{}}, 1));
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, id);
    EXPECT_EQ(jobs[0].payload, "");
    EXPECT_EQ(jobs[0].request_id, "");
}

TEST(SqliteJobDatabase, ReopeningKeepsTheJobs) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t a = 0;
    std::int64_t b = 0;
    {
        auto journal = open_rw(path);
        a = journal.insert({"email", "to ada", "r1"}, 1000);
        b = journal.insert({"email", "to grace", "r2"}, 1001);
        journal.bury(b, 3, "smtp down", 0);
    }
    auto journal = open_rw(path);
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 2U);
    EXPECT_EQ(jobs[0].id, a);
    EXPECT_EQ(jobs[0].payload, "to ada");
    EXPECT_EQ(jobs[1].id, b);
    EXPECT_EQ(jobs[1].state, JobState::dead);
    EXPECT_EQ(jobs[1].last_error, "smtp down");
    // And a read-only connection sees the same.
    EXPECT_EQ(ids_of(open_ro(path).list()), (std::vector<std::int64_t>{a, b}));
}

TEST(SqliteJobDatabase, RemoveDeletesOnlyThatJob) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto a = journal.insert({"k", "a", "r"}, 1);
    const auto b = journal.insert({"k", "b", "r"}, 2);
    const auto c = journal.insert({"k", "c", "r"}, 3);
    journal.remove(b, 0);
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{a, c}));
    journal.remove(b, 0);  // gone already: nothing happens
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{a, c}));
}

TEST(SqliteJobDatabase, RescheduleMakesARetryWithItsDueTimeAndError) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto id = journal.insert({"k", "p", "r"}, 1000);
    journal.reschedule(id, 2, 5000, "timeout talking to twilio");
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].state, JobState::retry);
    EXPECT_EQ(jobs[0].attempts, 2U);
    EXPECT_EQ(jobs[0].run_at_ms, 5000);
    EXPECT_EQ(jobs[0].enqueued_ms, 1000);
    EXPECT_EQ(jobs[0].last_error, "timeout talking to twilio");
    EXPECT_EQ(ids_of(journal.live_jobs()), (std::vector<std::int64_t>{id}));
}

TEST(SqliteJobDatabase, BuryMakesItDeadAndKeepsItOutOfTheLiveJobs) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto ready = journal.insert({"k", "1", "r"}, 1);
    const auto retry = journal.insert({"k", "2", "r"}, 2);
    const auto dead = journal.insert({"k", "3", "r"}, 3);
    journal.reschedule(retry, 1, 10, "once");
    journal.bury(dead, 10, "for good", 0);
    EXPECT_EQ(ids_of(journal.live_jobs()), (std::vector<std::int64_t>{ready, retry}));
    const auto buried = journal.list(JobState::dead);
    ASSERT_EQ(buried.size(), 1U);
    EXPECT_EQ(buried[0].id, dead);
    EXPECT_EQ(buried[0].attempts, 10U);
    EXPECT_EQ(buried[0].last_error, "for good");
    EXPECT_EQ(ids_of(journal.list(JobState::ready)), (std::vector<std::int64_t>{ready}));
    EXPECT_EQ(ids_of(journal.list(JobState::retry)), (std::vector<std::int64_t>{retry}));
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{ready, retry, dead}));
}

TEST(SqliteJobDatabase, StatsCountByKindAndState) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto a1 = journal.insert({"audit", "", "r"}, 1);
    journal.insert({"audit", "", "r"}, 1);
    journal.insert({"audit", "", "r"}, 1);
    const auto c1 = journal.insert({"call", "", "r"}, 1);
    const auto c2 = journal.insert({"call", "", "r"}, 1);
    journal.bury(a1, 1, "x", 0);
    journal.reschedule(c1, 1, 1, "y");
    journal.bury(c2, 1, "z", 0);
    const auto stats = journal.stats();
    ASSERT_EQ(stats.rows.size(), 4U);
    auto row = [&](std::size_t i) {
        return std::tuple(stats.rows[i].kind, stats.rows[i].state, stats.rows[i].jobs);
    };
    // By kind, then state.
    EXPECT_EQ(row(0), std::tuple(std::string("audit"), JobState::dead, std::uint64_t{1}));
    EXPECT_EQ(row(1), std::tuple(std::string("audit"), JobState::ready, std::uint64_t{2}));
    EXPECT_EQ(row(2), std::tuple(std::string("call"), JobState::dead, std::uint64_t{1}));
    EXPECT_EQ(row(3), std::tuple(std::string("call"), JobState::retry, std::uint64_t{1}));
    EXPECT_EQ(stats.count(JobState::ready), 2U);
    EXPECT_EQ(stats.count(JobState::retry), 1U);
    EXPECT_EQ(stats.count(JobState::dead), 2U);
}

TEST(SqliteJobDatabase, ReviveOneDeadJobResetsItsAttempts) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto a = journal.insert({"k", "a", "r"}, 1);
    const auto b = journal.insert({"k", "b", "r"}, 1);
    const auto live = journal.insert({"k", "c", "r"}, 1);
    journal.bury(a, 4, "x", 0);
    journal.bury(b, 4, "y", 0);
    EXPECT_EQ(journal.revive(a), 1U);
    EXPECT_EQ(journal.revive(a), 0U);     // not dead any more
    EXPECT_EQ(journal.revive(live), 0U);  // never was
    EXPECT_EQ(journal.revive(12345), 0U);
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 3U);
    EXPECT_EQ(jobs[0].state, JobState::ready);
    EXPECT_EQ(jobs[0].attempts, 0U);
    EXPECT_EQ(jobs[1].state, JobState::dead);
    EXPECT_EQ(ids_of(journal.live_jobs()), (std::vector<std::int64_t>{a, live}));
}

TEST(SqliteJobDatabase, ReviveAllMakesEveryDeadJobReady) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto a = journal.insert({"k", "a", "r"}, 1);
    const auto b = journal.insert({"k", "b", "r"}, 1);
    const auto c = journal.insert({"k", "c", "r"}, 1);
    journal.bury(a, 2, "x", 0);
    journal.bury(c, 2, "y", 0);
    EXPECT_EQ(journal.revive(std::nullopt), 2U);
    EXPECT_TRUE(journal.list(JobState::dead).empty());
    EXPECT_EQ(ids_of(journal.live_jobs()), (std::vector<std::int64_t>{a, b, c}));
    for (const auto& job : journal.list()) EXPECT_EQ(job.attempts, 0U) << job.id;
}

TEST(SqliteJobDatabase, PurgeDeletesOnlyTheDead) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto a = journal.insert({"k", "a", "r"}, 1);
    const auto b = journal.insert({"k", "b", "r"}, 1);
    const auto c = journal.insert({"k", "c", "r"}, 1);
    journal.bury(a, 1, "x", 0);
    journal.reschedule(b, 1, 1, "y");
    journal.bury(c, 1, "z", 0);
    EXPECT_EQ(journal.purge_dead(), 2U);
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{b}));
    EXPECT_EQ(journal.purge_dead(), 0U);
}

TEST(SqliteJobDatabase, IdsAreNeverReusedAfterADelete) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t last = 0;
    {
        auto journal = open_rw(path);
        journal.insert({"k", "a", "r"}, 1);
        last = journal.insert({"k", "b", "r"}, 1);
        journal.remove(last, 0);  // the highest id: a plain rowid would hand it out again
        const auto next = journal.insert({"k", "c", "r"}, 1);
        EXPECT_GT(next, last);
        last = next;
        journal.remove(next, 0);
    }
    auto journal = open_rw(path);  // and across a reopen
    EXPECT_GT(journal.insert({"k", "d", "r"}, 1), last);
}

// An insert writes its row alone: the ids come from a block reserved once, not from a counter
// written at every insert (AUTOINCREMENT's sqlite_sequence), and every id committed is within
// the reservation in the file.
TEST(SqliteJobDatabase, IdsComeFromABlockReservedInTheFileOnce) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { open_rw(path); }
    run_sql(path,
            "CREATE TABLE id_writes (n INTEGER); INSERT INTO id_writes VALUES (0); "
            "CREATE TRIGGER count_id_writes AFTER UPDATE ON job_ids "
            "BEGIN UPDATE id_writes SET n = n + 1; END");
    auto journal = open_rw(path);
    const auto writes_at_open = read_integer(path, "SELECT n FROM id_writes");
    const auto before = reserved_ids(path);
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 3; ++i) {
        journal.begin();
        ids.push_back(journal.insert({"k", "p", "r"}, 1));
        journal.commit();
        if (i == 0) {
            EXPECT_GT(reserved_ids(path), before) << "the first insert reserves";
        }
    }
    const auto reserved = reserved_ids(path);
    EXPECT_EQ(ids, (std::vector<std::int64_t>{ids[0], ids[0] + 1, ids[0] + 2}));
    EXPECT_GE(reserved, ids.back());
    EXPECT_GT(ids[0], before);
    journal.begin();
    journal.insert({"k", "p", "r"}, 1);
    journal.commit();
    EXPECT_EQ(reserved_ids(path), reserved) << "within the block: no write to job_ids";
    EXPECT_EQ(read_integer(path, "SELECT n FROM id_writes"), writes_at_open + 1)
        << "one write for the four inserts: the reservation";
    EXPECT_EQ(count_rows(path, "sqlite_schema WHERE name = 'sqlite_sequence'"), 0);
}

// The state's check (spelled with ORs, not IN) still refuses any other state.
TEST(SqliteJobDatabase, AJobsStateIsReadyRetryOrDead) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { open_rw(path).insert({"k", "p", "r"}, 1); }
    for (const auto* state : {"retry", "dead", "ready"}) {
        run_sql(path, fmt::format("UPDATE jobs SET state = '{}'", state));
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    const int rc = sqlite3_exec(db, "UPDATE jobs SET state = 'running'", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    EXPECT_EQ(rc, SQLITE_CONSTRAINT);
}

// Ids near the end of their range (a file damaged or written by hand) are refused at the
// open, naming the file, rather than overflowing.
TEST(SqliteJobDatabase, IdsNearTheEndOfTheirRangeAreRefusedAtTheOpen) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { open_rw(path); }
    run_sql(path, "UPDATE job_ids SET reserved = 9223372036854775000");
    EXPECT_THAT(journal_error([&] { open_rw(path); }),
                AllOf(HasSubstr(path), HasSubstr("end of their range")));
}

// A transaction that rolls back takes its reservation back with it: the next one reserves
// again, so an id committed is never above the reservation in the file.
TEST(SqliteJobDatabase, AReservationRolledBackIsMadeAgain) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    auto journal = open_rw(path);
    const auto before = reserved_ids(path);
    journal.begin();
    journal.insert({"k", "dropped", "r"}, 1);
    journal.rollback();
    EXPECT_EQ(reserved_ids(path), before);
    journal.begin();
    const auto id = journal.insert({"k", "kept", "r"}, 1);
    journal.commit();
    EXPECT_GE(reserved_ids(path), id);
}

TEST(SqliteJobDatabase, RollbackDropsTheTransaction) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto kept = journal.insert({"k", "kept", "r"}, 1);
    journal.begin();
    journal.insert({"k", "dropped", "r"}, 1);
    journal.remove(kept, 0);
    journal.rollback();
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{kept}));
    journal.begin();
    const auto committed = journal.insert({"k", "committed", "r"}, 1);
    journal.commit();
    EXPECT_EQ(ids_of(journal.list()), (std::vector<std::int64_t>{kept, committed}));
}

TEST(SqliteJobDatabase, MovedJournalKeepsWorking) {
    test::TempDir dir;
    auto first = open_rw(dir / "jobs.db");
    auto moved = std::move(first);
    const auto id = moved.insert({"k", "p", "r"}, 1);
    EXPECT_GT(id, 0) << "the ids reserved move with it";
    SqliteJobDatabase other = open_rw(dir / "other.db");
    other = std::move(moved);
    EXPECT_EQ(other.path(), dir / "jobs.db");
    EXPECT_EQ(other.insert({"k", "p", "r"}, 1), id + 1);
    EXPECT_EQ(ids_of(other.list()), (std::vector<std::int64_t>{id, id + 1}));
}

TEST(SqliteJobDatabase, ReadOnlyReaderSeesTheWritersCommits) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    auto writer = open_rw(path);
    auto reader = open_ro(path);
    EXPECT_TRUE(reader.list().empty());
    const auto id = writer.insert({"k", "p", "r"}, 1);
    EXPECT_EQ(ids_of(reader.list()), (std::vector<std::int64_t>{id}));
}

TEST(SqliteJobDatabase, RandomBytesAreRefusedNamingTheFile) {
    test::TempDir dir;
    const auto path = dir / "noise.db";
    {
        std::ofstream out(path, std::ios::binary);
        std::mt19937 random(42);
        for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(random() & 0xff));
    }
    const auto error = journal_error([&] { open_rw(path); });
    EXPECT_THAT(error, HasSubstr(path));
    EXPECT_THAT(error, HasSubstr("corrupt"));
    // Refused, not started over: the bytes are still there.
    EXPECT_EQ(std::filesystem::file_size(path), 8192U);
    EXPECT_THAT(journal_error([&] { open_ro(path); }), HasSubstr(path));
}

TEST(SqliteJobDatabase, AnotherApplicationsDatabaseIsRefused) {
    test::TempDir dir;
    const auto path = dir / "app.db";
    run_sql(path,
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
            "INSERT INTO users (name) VALUES ('ada');");
    const auto error = journal_error([&] { open_rw(path); });
    EXPECT_THAT(error, HasSubstr(path));
    EXPECT_THAT(error, HasSubstr("another application"));
    EXPECT_THAT(journal_error([&] { open_ro(path); }), HasSubstr("another application"));
    // And its data was left alone: no jobs table was added.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'jobs'", -1,
                                 &stmt, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(stmt, 0), 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

TEST(SqliteJobDatabase, AnotherSchemaVersionIsRefused) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { open_rw(path).insert({"k", "p", "r"}, 1); }
    run_sql(path, "PRAGMA user_version=7");
    const auto error = journal_error([&] { open_rw(path); });
    EXPECT_THAT(error, HasSubstr(path));
    EXPECT_THAT(error, HasSubstr("schema version 7"));
    EXPECT_THAT(journal_error([&] { open_ro(path); }), HasSubstr("schema version 7"));
}

// Makes the journal at `path`, written by this version, what version 4 wrote: ids from
// AUTOINCREMENT, its counter at `counter` (sqlite_sequence).
void as_version_4(const std::string& path, std::int64_t counter = 0) {
    run_sql(path, fmt::format(
                      "CREATE TABLE jobs_v4 (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                      "kind TEXT NOT NULL, payload BLOB NOT NULL, request_id TEXT NOT NULL, "
                      "attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'ready' "
                      "CHECK (state IN ('ready', 'retry', 'dead')), enqueued_at INTEGER NOT NULL, "
                      "run_at INTEGER NOT NULL, last_error TEXT, "
                      "trace_parent TEXT NOT NULL DEFAULT '', unique_key TEXT, "
                      "unique_for INTEGER NOT NULL DEFAULT 0); "
                      "INSERT INTO jobs_v4 SELECT * FROM jobs; DROP TABLE jobs; "
                      "ALTER TABLE jobs_v4 RENAME TO jobs; DROP TABLE job_ids; "
                      "DELETE FROM sqlite_sequence; INSERT INTO sqlite_sequence VALUES ('jobs', "
                      "max({}, (SELECT coalesce(max(id), 0) FROM jobs))); PRAGMA user_version=4",
                      counter));
}

// Makes the journal at `path`, written by this version, what version 3 wrote: unique keys in a
// table of their own, by (kind, key), with the job holding each and when its hold expires.
void as_version_3(const std::string& path) {
    as_version_4(path);
    run_sql(path,
            "DROP TABLE finished_keys; ALTER TABLE jobs DROP COLUMN unique_key; "
            "ALTER TABLE jobs DROP COLUMN unique_for; "
            "CREATE TABLE unique_keys (kind TEXT NOT NULL, key TEXT NOT NULL, "
            "job_id INTEGER NOT NULL, unique_for INTEGER NOT NULL, expires_at INTEGER, "
            "PRIMARY KEY (kind, key)) WITHOUT ROWID; "
            "CREATE INDEX unique_keys_by_job ON unique_keys (job_id); "
            "CREATE INDEX unique_keys_by_expiry ON unique_keys (expires_at) "
            "WHERE expires_at IS NOT NULL; PRAGMA user_version=3");
}

// Version 3 kept keys in a table of their own; a writer's open moves a live job's key to its
// row and a finished one's to finished_keys, and each stays held as it was.
TEST(SqliteJobDatabase, AVersion3JournalKeepsItsKeysWhenAWriterUpgradesIt) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t live = 0, finished = 0;
    {
        auto journal = open_rw(path);
        live = journal.insert({"k", "live", "r"}, 1);
        finished = journal.insert({"k", "done", "r"}, 1);
    }
    as_version_3(path);
    const auto now = detail::unix_now_ms();
    run_sql(path, fmt::format("DELETE FROM jobs WHERE id = {}; "
                              "INSERT INTO unique_keys VALUES ('k', 'held', {}, 60000, NULL), "
                              "('k', 'finished', {}, 60000, {}), ('k', 'expired', 7, 60000, {})",
                              finished, live, finished, now + 3'600'000, now - 1));
    ASSERT_EQ(open_ro(path).live_jobs().size(), 1U) << "a reader reads version 3 as it is";
    auto journal = open_rw(path);
    EXPECT_EQ(journal.insert({"k", "p", "r", "held", 60'000}, now), 0) << "held by a live job";
    EXPECT_EQ(journal.insert({"k", "p", "r", "finished", 60'000}, now), 0) << "within unique_for";
    EXPECT_GT(journal.insert({"k", "p", "r", "expired", 60'000}, now), 0) << "its hold expired";
    journal.remove(live, now);  // the live job completes: its key stays held for its unique_for
    EXPECT_EQ(journal.insert({"k", "p", "r", "held", 60'000}, now + 59'000), 0);
    EXPECT_GT(journal.insert({"k", "p", "r", "held", 60'000}, now + 61'000), 0);
}

// A key taken in a transaction that rolls back is free again; one freed in it is held again.
TEST(SqliteJobDatabase, KeysTakenOrFreedInATransactionThatRollsBackAreAsBefore) {
    test::TempDir dir;
    auto journal = open_rw(dir / "jobs.db");
    const auto held = journal.insert({"k", "p", "r", "held", 60'000}, 1);
    ASSERT_GT(held, 0);
    journal.begin();
    EXPECT_GT(journal.insert({"k", "p", "r", "new", 60'000}, 2), 0);
    journal.discard(held);
    EXPECT_GT(journal.insert({"k", "p", "r", "held", 60'000}, 2), 0) << "freed by the discard";
    journal.rollback();
    EXPECT_EQ(journal.insert({"k", "p", "r", "held", 60'000}, 3), 0) << "held again";
    EXPECT_GT(journal.insert({"k", "p", "r", "new", 60'000}, 3), 0) << "never taken";
    ASSERT_EQ(journal.live_jobs().size(), 2U);
}

// The keys a journal holds are read before the first write: a first transaction that rolls
// back does not take them with it.
TEST(SqliteJobDatabase, TheKeysInTheFileOutliveAFirstTransactionThatRollsBack) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    { ASSERT_GT(open_rw(path).insert({"k", "p", "r", "held", 60'000}, 1), 0); }
    auto journal = open_rw(path);
    journal.begin();
    EXPECT_GT(journal.insert({"k", "p", "r", "new", 60'000}, 2), 0);
    journal.rollback();
    EXPECT_EQ(journal.insert({"k", "p", "r", "held", 60'000}, 3), 0);
    EXPECT_GT(journal.insert({"k", "p", "r", "new", 60'000}, 3), 0);
}

// Completed jobs' keys are kept in finished_keys until they expire; then they go, whatever
// order they finished in (a kind with a short unique_for beside one with a long one).
TEST(SqliteJobDatabase, FinishedKeysGoOnceExpired) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    auto journal = open_rw(path);
    const auto long_held = journal.insert({"slow", "p", "r", "long", 1'000'000}, 10);
    journal.remove(long_held, 50);  // held until 1000050
    for (int i = 0; i < 3; ++i) {
        const auto key = fmt::format("key-{}", i);
        const auto id = journal.insert({"k", "p", "r", key, 1'000}, 10);
        journal.remove(id, 100 + i);  // held until 1100 + i
    }
    EXPECT_EQ(count_rows(path, "finished_keys"), 4);
    journal.forget_expired_keys(1101);
    EXPECT_EQ(count_rows(path, "finished_keys"), 2) << "the two expired by then";
    EXPECT_EQ(journal.insert({"slow", "p", "r", "long", 1'000}, 1101), 0);
    EXPECT_EQ(journal.insert({"k", "p", "r", "key-2", 1'000}, 1101), 0) << "held until 1102";
    EXPECT_GT(journal.insert({"k", "p", "r", "key-0", 1'000}, 1101), 0);
}

// Version 4 took ids from AUTOINCREMENT: a writer's open keeps every job with its id and moves
// the counter to job_ids, so that no id it gave out, even one of a job gone since, is given
// again.
TEST(SqliteJobDatabase, AVersion4JournalKeepsItsJobsAndIdsWhenAWriterUpgradesIt) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t kept = 0, gone = 0, dead = 0;
    NewJob traced{"k", "kept", "req-1", "key", 60'000};
    traced.trace_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    {
        auto journal = open_rw(path);
        kept = journal.insert(traced, 1);
        gone = journal.insert({"k", "gone", "r"}, 1);
        dead = journal.insert({"k", "dead", "r"}, 1);
        journal.remove(gone, 1);
        journal.bury(dead, 3, "for good", 7);
    }
    const auto counter = gone + (std::int64_t{1} << 33);  // beyond the gap each open skips
    as_version_4(path, counter);
    ASSERT_EQ(open_ro(path).live_jobs().size(), 1U) << "a reader reads version 4 as it is";
    auto journal = open_rw(path);
    EXPECT_EQ(read_integer(path, "PRAGMA user_version"), 5);
    const auto jobs = journal.list();
    ASSERT_EQ(jobs.size(), 2U);
    EXPECT_EQ(jobs[0].id, kept);
    EXPECT_EQ(jobs[0].payload, "kept");
    EXPECT_EQ(jobs[0].request_id, "req-1");
    EXPECT_EQ(jobs[0].trace_parent, traced.trace_parent);
    EXPECT_EQ(jobs[0].state, JobState::ready);
    EXPECT_EQ(jobs[1].id, dead);
    EXPECT_EQ(jobs[1].state, JobState::dead);
    EXPECT_EQ(jobs[1].attempts, 3U);
    EXPECT_EQ(jobs[1].last_error, "for good");
    EXPECT_EQ(jobs[1].run_at_ms, 7);
    EXPECT_EQ(journal.insert(traced, 2), 0) << "its unique key is still held";
    EXPECT_GT(journal.insert({"k", "new", "r"}, 1), counter) << "above every id given out";
    EXPECT_EQ(count_rows(path, "sqlite_sequence"), 0) << "no counter written at an insert";
}

// A journal written before unique keys existed (version 1: the jobs table alone) is read as
// it is, and a writer's open adds the table and keeps every job.
TEST(SqliteJobDatabase, AVersion1JournalIsReadAndAWriterUpgradesItKeepingItsJobs) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t id = 0;
    { id = open_rw(path).insert({"k", "before", "r"}, 1); }
    as_version_3(path);
    run_sql(path,
            "DROP TABLE unique_keys; ALTER TABLE jobs DROP COLUMN trace_parent; "
            "PRAGMA user_version=1");
    ASSERT_EQ(open_ro(path).live_jobs().size(), 1U);
    auto journal = open_rw(path);
    const auto jobs = journal.live_jobs();
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0].id, id);
    EXPECT_EQ(jobs[0].payload, "before");
    const NewJob keyed{"k", "after", "r", "key", 60'000};
    EXPECT_GT(journal.insert(keyed, 2), 0);
    EXPECT_EQ(journal.insert(keyed, 3), 0) << "the upgraded journal keeps unique keys";
}

// A journal written before jobs kept their trace context (version 2) is read as it is, with no
// trace, and a writer's open adds the column and keeps every job.
TEST(SqliteJobDatabase, AVersion2JournalIsReadAndAWriterUpgradesItKeepingItsJobs) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    std::int64_t id = 0;
    { id = open_rw(path).insert({"k", "before", "r"}, 1); }
    as_version_3(path);
    run_sql(path, "ALTER TABLE jobs DROP COLUMN trace_parent; PRAGMA user_version=2");
    const auto read = open_ro(path).live_jobs();
    ASSERT_EQ(read.size(), 1U);
    EXPECT_EQ(read[0].trace_parent, "");
    auto journal = open_rw(path);
    ASSERT_EQ(journal.live_jobs().size(), 1U);
    EXPECT_EQ(journal.live_jobs()[0].id, id);
    NewJob traced{"k", "after", "r"};
    traced.trace_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const auto traced_id = journal.insert(traced, 2);
    for (const auto& job : journal.live_jobs()) {
        EXPECT_EQ(job.trace_parent, job.id == traced_id ? traced.trace_parent : "") << job.id;
    }
}

TEST(SqliteJobDatabase, ReadOnlyOpenOfAMissingFileIsRefused) {
    test::TempDir dir;
    const auto path = dir / "missing.db";
    EXPECT_THAT(journal_error([&] { open_ro(path); }), HasSubstr(path));
    EXPECT_FALSE(std::filesystem::exists(path));  // and not created
}

TEST(SqliteJobDatabase, ReadOnlyOpenOfAnEmptyFileIsRefused) {
    test::TempDir dir;
    const auto path = dir / "empty.db";
    { std::ofstream touch(path); }
    const auto error = journal_error([&] { open_ro(path); });
    EXPECT_THAT(error, HasSubstr(path));
    EXPECT_THAT(error, HasSubstr("empty"));
}

TEST(SqliteJobDatabase, OpenInAMissingDirectoryIsRefusedNamingTheFile) {
    test::TempDir dir;
    const auto path = dir / "no-such-dir/jobs.db";
    EXPECT_THAT(journal_error([&] { open_rw(path); }), HasSubstr(path));
}

TEST(SqliteJobDatabase, StateNames) {
    EXPECT_EQ(job_state_name(JobState::ready), "ready");
    EXPECT_EQ(job_state_name(JobState::retry), "retry");
    EXPECT_EQ(job_state_name(JobState::dead), "dead");
}

TEST(JournalOwner, ClaimWritesThisProcessesPid) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    EXPECT_EQ(JournalOwner::live_owner(path), std::nullopt);  // no lock file yet
    auto owner = JournalOwner::acquire(path);
    std::ifstream lock(path + ".lock");
    pid_t written = 0;
    lock >> written;
    EXPECT_EQ(written, getpid());
}

TEST(JournalOwner, ASecondClaimIsRefusedNamingTheFileAndTheOwner) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    auto owner = JournalOwner::acquire(path);
    // Same process, a separate open file description: flock refuses it as it would another
    // process.
    const auto error = journal_error([&] { JournalOwner::acquire(path); });
    EXPECT_THAT(error, HasSubstr(path));
    EXPECT_THAT(error, HasSubstr("pid " + std::to_string(getpid())));
}

TEST(JournalOwner, LiveOwnerIsThePidWhileHeldAndNoneAfter) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    {
        auto owner = JournalOwner::acquire(path);
        EXPECT_EQ(JournalOwner::live_owner(path), getpid());
        auto moved = std::move(owner);  // ownership moves with it
        EXPECT_EQ(JournalOwner::live_owner(path), getpid());
    }
    EXPECT_EQ(JournalOwner::live_owner(path), std::nullopt);
    EXPECT_TRUE(std::filesystem::exists(path + ".lock"));  // left for the next owner
    auto again = JournalOwner::acquire(path);                // which takes it over
    EXPECT_EQ(JournalOwner::live_owner(path), getpid());
}

TEST(JournalOwner, AClaimThatCannotCreateTheLockFileNamesTheFile) {
    // Tests run as root, whom permissions do not stop: use places no one can create files in.
    test::TempDir dir;
    const auto missing = dir / "no-such-dir/jobs.db";
    EXPECT_THAT(journal_error([&] { JournalOwner::acquire(missing); }), HasSubstr(missing));
    const std::string proc = "/proc/self/jobs.db";
    EXPECT_THAT(journal_error([&] { JournalOwner::acquire(proc); }), HasSubstr(proc));
}

}  // namespace
}  // namespace crosstown
