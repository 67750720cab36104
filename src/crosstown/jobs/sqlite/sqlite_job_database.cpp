#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <limits>
#include <utility>

#include "crosstown/detail/unix_time.hpp"

namespace crosstown {
namespace {

// 'crst': marks the file as a crosstown journal, so a database of something else is refused.
constexpr int kApplicationId = 0x63727374;
constexpr int kSchemaVersion = 5;

// Ids: each writer's open skips kIdGap (see skip_ids_a_power_cut_may_have_lost), and the writer
// reserves kIdBlock at a time.
constexpr std::int64_t kIdGap = std::int64_t{1} << 32;
constexpr std::int64_t kIdBlock = std::int64_t{1} << 20;
constexpr std::int64_t kLastId = std::numeric_limits<std::int64_t>::max();

// Version 2 added unique keys (a unique_keys table), version 3 the jobs' trace_parent, version 4
// moved the keys into the jobs' rows and finished_keys, version 5 took the ids from
// AUTOINCREMENT to job_ids; a journal of an older version gets what it lacks when a writer
// opens it, and a reader reads it as it is.
//
// A live or dead job keeps its unique key in its row; a completed job's key, held for its
// unique_for, goes to finished_keys, in the order of the holds' ends: the writer checks keys in
// memory (UniqueKeyIndex), never here, and a new row lands at the right edge of the table
// (near it, with kinds of different unique_for), so that a keyed commit writes few pages a
// commit without a key does not, and expired rows go from the left edge.
constexpr const char* kFinishedKeys = R"(
CREATE TABLE finished_keys (
    expires_at INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    PRIMARY KEY (expires_at, kind, key)
) WITHOUT ROWID;
)";

// From version 2 or 3: a live job's key to its row, a finished one's to finished_keys.
constexpr const char* kKeysFromVersion3 = R"(
UPDATE jobs SET (unique_key, unique_for) =
    (SELECT key, unique_for FROM unique_keys u WHERE u.job_id = jobs.id AND u.kind = jobs.kind)
WHERE id IN (SELECT job_id FROM unique_keys u WHERE u.expires_at IS NULL AND u.kind = jobs.kind);
INSERT OR IGNORE INTO finished_keys (expires_at, kind, key)
    SELECT expires_at, kind, key FROM unique_keys WHERE expires_at IS NOT NULL;
DROP TABLE unique_keys;
)";

constexpr const char* kKeyColumns = R"(
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
ALTER TABLE jobs ADD COLUMN unique_for INTEGER NOT NULL DEFAULT 0;
)";

// The jobs table, named `name`. Ids are given by the writer (job_ids), not by AUTOINCREMENT,
// which writes its counter (sqlite_sequence) at every insert: a page more in every commit. The
// state's check is spelled with ORs: `state IN (three values)` builds a temporary b-tree of
// the values at every insert and update, its allocations included.
std::string jobs_table(std::string_view name) {
    return fmt::format(R"(
CREATE TABLE {} (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    request_id  TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    state       TEXT    NOT NULL DEFAULT 'ready'
                CHECK (state = 'ready' OR state = 'retry' OR state = 'dead'),
    enqueued_at INTEGER NOT NULL,
    run_at      INTEGER NOT NULL,
    last_error  TEXT,
    trace_parent TEXT NOT NULL DEFAULT '',
    unique_key  TEXT,
    unique_for  INTEGER NOT NULL DEFAULT 0
);
)",
                       name);
}

// One row: the last id the writer may give before it writes the row again. It reserves ids
// kIdBlock at a time, so one insert in a million writes it. (A power cut may take back the
// last reservations with the commits it loses; each writer's open skips far ahead for that.)
constexpr const char* kJobIds =
    "CREATE TABLE job_ids (reserved INTEGER NOT NULL); INSERT INTO job_ids VALUES (0);";

// From version 4 or older: the jobs table without AUTOINCREMENT, its rows and ids as they were,
// and AUTOINCREMENT's counter (sqlite_sequence, which such a table always has) in job_ids.
std::string ids_from_version_4() {
    constexpr const char* kColumns =
        "id, kind, payload, request_id, attempts, state, enqueued_at, run_at, last_error, "
        "trace_parent, unique_key, unique_for";
    return fmt::format(
        "{} UPDATE job_ids SET reserved = max((SELECT coalesce(max(seq), 0) FROM sqlite_sequence "
        "WHERE name = 'jobs'), (SELECT coalesce(max(id), 0) FROM jobs)); {} "
        "INSERT INTO jobs_v5 ({}) SELECT {} FROM jobs; DROP TABLE jobs; "
        "ALTER TABLE jobs_v5 RENAME TO jobs;",
        kJobIds, jobs_table("jobs_v5"), kColumns, kColumns);
}

constexpr const char* kTraceParent =
    "ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT ''";

// A value a statement cannot take (SQLITE_TOOBIG, SQLITE_RANGE): the value's fault.
class ValueRefused : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// An empty string_view may have no data(); SQLite stores a null pointer as NULL, not "".
const char* non_null(std::string_view v) { return v.data() != nullptr ? v.data() : ""; }

// One prepared statement, reset after each use.
class Statement {
  public:
    Statement() = default;
    Statement(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
            SQLITE_OK) {
            throw std::runtime_error(sqlite3_errmsg(db));
        }
    }
    Statement(Statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
    Statement& operator=(Statement&& other) noexcept {
        std::swap(stmt_, other.stmt_);
        return *this;
    }
    ~Statement() { sqlite3_finalize(stmt_); }

    // A bind that fails (a value over SQLite's length limit: SQLITE_TOOBIG) throws; the 64-bit
    // forms take any length, which the 32-bit ones would truncate.
    Statement& bind(int i, std::int64_t v) { return checked(sqlite3_bind_int64(stmt_, i, v)); }
    Statement& bind(int i, std::string_view v) {
        return checked(
            sqlite3_bind_text64(stmt_, i, non_null(v), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    }
    Statement& bind_blob(int i, std::string_view v) {
        return checked(sqlite3_bind_blob64(stmt_, i, non_null(v), v.size(), SQLITE_TRANSIENT));
    }
    Statement& checked(int rc) {
        if (rc != SQLITE_OK) throw ValueRefused(sqlite3_errstr(rc));
        return *this;
    }
    // Steps once: true while a row is there.
    bool step() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw std::runtime_error(sqlite3_errmsg(sqlite3_db_handle(stmt_)));
    }
    void run() {
        step();
        reset();
    }
    void reset() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    std::string text(int column) const {
        const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)))
                 : std::string();
    }

  private:
    sqlite3_stmt* stmt_ = nullptr;
};

// Runs `statement`; reset again when it throws.
void run_once(Statement& statement) {
    try {
        statement.run();
    } catch (...) {
        statement.reset();
        throw;
    }
}

// Binds `value` to ?1 and runs `statement`; reset again when it throws.
void run_with(Statement& statement, std::int64_t value) {
    try {
        statement.bind(1, value).run();
    } catch (...) {
        statement.reset();
        throw;
    }
}

// Payloads may hold personal data: a new journal is the owner's alone (0600), whatever the
// umask, and SQLite gives its -wal and -shm files the database file's mode. An existing file
// keeps the mode its owner gave it. ":memory:" is SQLite's name for no file.
void create_private(const std::string& path) {
    if (path == ":memory:") return;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::fchmod(fd, 0600);  // the umask may have taken bits the owner needs
        ::close(fd);
    }
    // EEXIST: it is there; any other error is SQLite's to report, naming the file.
}

}  // namespace

struct SqliteJobDatabase::Statements {
    Statement insert, remove, reschedule, bury, record_attempt;
    Statement key_finished, keys_expired;
    Statement reserve_ids;
    Statement begin, commit;
};

std::uint64_t SqliteJobDatabaseStats::count(JobState state) const {
    std::uint64_t n = 0;
    for (const auto& row : rows) n += row.state == state ? row.jobs : 0;
    return n;
}

SqliteJobDatabase SqliteJobDatabase::open(const std::string& path, JournalSync sync,
                                          Access access) {
    if (access == Access::read_write) create_private(path);
    const int flags = access == Access::read_only ? SQLITE_OPEN_READONLY
                                                  : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        throw JournalError(fmt::format("journal {}: cannot open: {}", path, why));
    }
    SqliteJobDatabase journal(path, db);
    journal.sync_ = sync;
    sqlite3_busy_timeout(db, 5000);
    journal.check_identity(access);
    // SQLite opens a file it may not write read-only, without an error; every commit would
    // then fail. Refuse it at the start instead.
    if (access == Access::read_write && sqlite3_db_readonly(db, "main") == 1) {
        journal.fail("is not writable by this process");
    }
    if (access == Access::read_write) {
        // SQLite keeps the old mode and says which when WAL cannot be had (an in-memory
        // database, a VFS without shared memory): readers beside the writer need WAL.
        std::string mode;
        try {
            Statement wal(db, "PRAGMA journal_mode=WAL");
            if (wal.step()) mode = wal.text(0);
        } catch (const std::exception& e) {
            journal.fail(e.what());
        }
        if (mode != "wal") {
            journal.fail(fmt::format(
                "cannot use write-ahead logging (PRAGMA journal_mode=WAL left it '{}')", mode));
        }
        try {
            journal.statements_ = std::make_unique<Statements>(
                Statements{{db,
                            "INSERT INTO jobs (kind, payload, request_id, enqueued_at, run_at, "
                            "trace_parent, unique_key, unique_for, id) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
                           {db, "DELETE FROM jobs WHERE id = ?1"},
                           {db,
                            "UPDATE jobs SET state = 'retry', attempts = ?2, run_at = ?3, "
                            "last_error = ?4 WHERE id = ?1"},
                           {db,
                            "UPDATE jobs SET state = 'dead', attempts = ?2, last_error = ?3, "
                            "run_at = ?4 WHERE id = ?1"},
                           {db,
                            "UPDATE jobs SET attempts = ?2, last_error = ?3 "
                            "WHERE id = ?1 AND state != 'dead'"},
                           {db,
                            "INSERT OR IGNORE INTO finished_keys (kind, key, expires_at) "
                            "VALUES (?1, ?2, ?3)"},
                           {db, "DELETE FROM finished_keys WHERE expires_at <= ?1"},
                           {db, "UPDATE job_ids SET reserved = max(CAST(reserved AS INTEGER), ?1)"},
                           {db, "BEGIN IMMEDIATE"},
                           {db, "COMMIT"}});
        } catch (const std::exception& e) {
            journal.fail(e.what());
        }
        journal.skip_ids_a_power_cut_may_have_lost();
        journal.exec(sync == JournalSync::full ? "PRAGMA synchronous=FULL"
                                               : "PRAGMA synchronous=NORMAL");
    }
    return journal;
}

SqliteJobDatabase::SqliteJobDatabase(std::string path, sqlite3* db)
    : path_(std::move(path)), db_(db) {}
SqliteJobDatabase::SqliteJobDatabase(SqliteJobDatabase&& other) noexcept
    : path_(std::move(other.path_)),
      sync_(other.sync_),
      schema_(other.schema_),
      db_(std::exchange(other.db_, nullptr)),
      statements_(std::move(other.statements_)),
      keys_(std::move(other.keys_)),
      keys_loaded_(other.keys_loaded_),
      next_forget_ms_(other.next_forget_ms_),
      next_id_(other.next_id_),
      last_reserved_id_(other.last_reserved_id_),
      reserved_at_begin_(other.reserved_at_begin_) {}
SqliteJobDatabase& SqliteJobDatabase::operator=(SqliteJobDatabase&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(sync_, other.sync_);
    std::swap(schema_, other.schema_);
    std::swap(db_, other.db_);
    std::swap(statements_, other.statements_);
    std::swap(keys_, other.keys_);
    std::swap(keys_loaded_, other.keys_loaded_);
    std::swap(next_forget_ms_, other.next_forget_ms_);
    std::swap(next_id_, other.next_id_);
    std::swap(last_reserved_id_, other.last_reserved_id_);
    std::swap(reserved_at_begin_, other.reserved_at_begin_);
    return *this;
}
SqliteJobDatabase::~SqliteJobDatabase() {
    statements_.reset();  // statements first: sqlite3_close refuses while they exist
    sqlite3_close(db_);
}

// The ids reserved roll back with the commits a power cut loses under synchronous=NORMAL
// (those since the last checkpoint), and would be given again to new jobs, though the lost
// jobs may have run and handed their ids to a remote API. So each writer's open moves the
// reservation kIdGap ahead, durably (this one commit is fsynced): ids from now on are above
// any the last process gave out after its last durable commit, since no process gives out
// kIdGap ids between two checkpoints.
void SqliteJobDatabase::skip_ids_a_power_cut_may_have_lost() {
    exec("PRAGMA synchronous=FULL");
    exec("BEGIN IMMEDIATE");
    try {
        exec("INSERT INTO job_ids SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM job_ids)");
        Statement highest(db_,
                          "SELECT max((SELECT max(CAST(reserved AS INTEGER)) FROM job_ids), "
                          "(SELECT coalesce(max(id), 0) FROM jobs), 0)");
        highest.step();
        const auto given = highest.integer(0);
        highest.reset();
        // Out of SQLite's sight, where an overflow would turn the sum into a REAL.
        if (given > kLastId - kIdGap - kIdBlock) {
            fail(fmt::format("has ids up to {}, too near the end of their range to give more",
                             given));
        }
        last_reserved_id_ = given + kIdGap;
        run_with(statements_->reserve_ids, last_reserved_id_);
        exec("COMMIT");
    } catch (...) {
        rollback();
        throw;
    }
    next_id_ = last_reserved_id_ + 1;
    reserved_at_begin_ = last_reserved_id_;
}

// Within the transaction under way, whose rollback() takes the reservation back; committed at
// once outside one (an insert without begin()). The reservation in the file only grows.
void SqliteJobDatabase::reserve_ids() {
    if (next_id_ > kLastId - kIdBlock + 1) fail("has given every id of its range");
    const auto last = next_id_ + kIdBlock - 1;
    try {
        run_with(statements_->reserve_ids, last);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    last_reserved_id_ = last;
}

void SqliteJobDatabase::fail(std::string_view doing) const {
    throw JournalError(fmt::format("journal {}: {}", path_, doing));
}

void SqliteJobDatabase::exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
        std::string why = error != nullptr ? error : sqlite3_errmsg(db_);
        sqlite3_free(error);
        fail(why);
    }
}

// The file is a crosstown journal of a version we know, or a new empty database (which
// becomes one). Anything else is refused: starting fresh over it would lose its jobs.
void SqliteJobDatabase::check_identity(Access access) {
    try {
        // Each read to its end (a statement left open would keep the upgrade from dropping a
        // table).
        const auto read = [&](const char* sql) {
            Statement statement(db_, sql);
            statement.step();
            return statement.integer(0);
        };
        const auto id = read("PRAGMA application_id");
        const auto schema = read("PRAGMA user_version");
        const bool empty = read("SELECT count(*) FROM sqlite_schema") == 0;
        if (id == 0 && empty) {
            if (access == Access::read_only) fail("is empty: no journal was written there yet");
            exec("BEGIN IMMEDIATE");
            exec(jobs_table("jobs").c_str());
            exec(kJobIds);
            exec(kFinishedKeys);
            exec(fmt::format("PRAGMA application_id={}", kApplicationId).c_str());
            exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str());
            exec("COMMIT");
            schema_ = kSchemaVersion;
            return;
        }
        if (id != kApplicationId) {
            fail("is a SQLite database of another application, not a crosstown journal");
        }
        if (schema < 1 || schema > kSchemaVersion) {
            fail(fmt::format("has schema version {}; this crosstown reads versions 1 to {}", schema,
                             kSchemaVersion));
        }
        schema_ = static_cast<int>(schema);
        // Before an upgrade, which copies the jobs into a new table: a damaged file is refused
        // as it is, not copied into a sound one.
        Statement check(db_, "PRAGMA quick_check");
        if (check.step() && check.text(0) != "ok") {
            fail(fmt::format("fails its integrity check: {}", check.text(0)));
        }
        check = Statement();
        if (schema < kSchemaVersion && access == Access::read_write) {
            exec("BEGIN IMMEDIATE");
            if (schema < 3) exec(kTraceParent);
            if (schema < 4) {
                exec(kKeyColumns);
                exec(kFinishedKeys);
                if (schema >= 2) exec(kKeysFromVersion3);
            }
            exec(ids_from_version_4().c_str());
            exec(fmt::format("PRAGMA user_version={}", kSchemaVersion).c_str());
            exec("COMMIT");
            schema_ = kSchemaVersion;
        }
    } catch (const JournalError&) {
        throw;
    } catch (const std::exception& e) {
        fail(fmt::format("is unreadable or corrupt: {}", e.what()));
    }
}

// BEGIN and COMMIT are prepared once: sqlite3_exec would parse them again at every
// transaction, the parser's allocations included.
void SqliteJobDatabase::begin() {
    if (!statements_) fail("is open read-only");
    load_keys();  // before the transaction: what is read is not undone by its rollback
    try {
        run_once(statements_->begin);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    keys_.begin();
    reserved_at_begin_ = last_reserved_id_;
}
void SqliteJobDatabase::commit() {
    try {
        run_once(statements_->commit);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    keys_.commit();
}
void SqliteJobDatabase::rollback() noexcept {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    keys_.rollback();
    last_reserved_id_ = reserved_at_begin_;
}

std::int64_t SqliteJobDatabase::insert(const NewJob& job, std::int64_t now_ms) {
    load_keys();
    const bool keyed = !job.unique_key.empty();
    if (keyed && keys_.taken(job.kind, job.unique_key, now_ms)) return 0;
    const auto id = insert_row(job, now_ms);
    if (keyed) keys_.take(job.kind, job.unique_key, id, job.unique_for_ms);
    return id;
}

// Once, before the first write: every key the file holds, from the jobs' rows (a live job's,
// a dead one's until unique_for after it died) and finished_keys.
void SqliteJobDatabase::load_keys() {
    if (keys_loaded_) return;
    const auto now_ms = detail::unix_now_ms();
    try {
        Statement jobs(db_,
                       "SELECT id, kind, unique_key, unique_for, state, run_at FROM jobs "
                       "WHERE unique_key IS NOT NULL");
        while (jobs.step()) {
            const bool dead = jobs.text(4) == "dead";
            const auto expires = dead ? jobs.integer(5) + jobs.integer(3) : 0;
            if (dead && expires <= now_ms) continue;
            keys_.load(jobs.text(1), jobs.text(2), jobs.integer(0), jobs.integer(3), expires);
        }
        Statement finished(db_,
                           "SELECT kind, key, expires_at FROM finished_keys WHERE expires_at > ?1");
        finished.bind(1, now_ms);
        while (finished.step()) {
            keys_.load(finished.text(0), finished.text(1), 0, 0, finished.integer(2));
        }
    } catch (const std::exception& e) {
        keys_.clear();
        fail(e.what());
    }
    keys_loaded_ = true;
}

std::int64_t SqliteJobDatabase::insert_row(const NewJob& job, std::int64_t now_ms) {
    if (next_id_ > last_reserved_id_) reserve_ids();
    auto& s = statements_->insert;
    try {
        s.bind(1, job.kind)
            .bind_blob(2, job.payload)
            .bind(3, job.request_id)
            .bind(4, now_ms)
            .bind(5, first_due_ms(job, now_ms))
            .bind(6, job.trace_parent)
            .bind(8, job.unique_for_ms)
            .bind(9, next_id_);
        if (!job.unique_key.empty()) s.bind(7, job.unique_key);  // else NULL: no key
        s.run();
    } catch (const ValueRefused& e) {
        s.reset();
        throw JobRefused(
            fmt::format("journal {}: job of kind '{}' refused: {}", path_, job.kind, e.what()));
    } catch (const std::exception& e) {
        s.reset();
        fail(e.what());
    }
    return next_id_++;
}

void SqliteJobDatabase::remove(std::int64_t id, std::int64_t now_ms) {
    load_keys();
    try {
        run_with(statements_->remove, id);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    if (const auto finished = keys_.finish(id, now_ms)) {
        auto& s = statements_->key_finished;
        try {
            s.bind(1, finished->kind).bind(2, finished->key).bind(3, finished->expires_ms).run();
        } catch (const std::exception& e) {
            s.reset();
            fail(e.what());
        }
    }
}

void SqliteJobDatabase::discard(std::int64_t id) {
    load_keys();
    try {
        run_with(statements_->remove, id);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    keys_.free(id);
}

// Not at every transaction: a few times a second is enough to keep up, and costs little.
void SqliteJobDatabase::forget_expired_keys(std::int64_t now_ms) {
    // (A clock stepped back does not hold it off for longer.)
    if (now_ms < next_forget_ms_ && next_forget_ms_ - now_ms <= kForgetEvery.count()) return;
    next_forget_ms_ = now_ms + kForgetEvery.count();
    try {
        run_with(statements_->keys_expired, now_ms);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    keys_.sweep(now_ms, kKeyBucketsPerSweep);
}

void SqliteJobDatabase::reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                                   std::string_view error) {
    auto& s = statements_->reschedule;
    try {
        s.bind(1, id).bind(2, std::int64_t{attempts}).bind(3, run_at_ms).bind(4, error).run();
    } catch (const std::exception& e) {
        s.reset();
        fail(e.what());
    }
}

void SqliteJobDatabase::bury(std::int64_t id, unsigned attempts, std::string_view error,
                             std::int64_t now_ms) {
    load_keys();
    auto& s = statements_->bury;
    try {
        s.bind(1, id).bind(2, std::int64_t{attempts}).bind(3, error).bind(4, now_ms).run();
    } catch (const std::exception& e) {
        s.reset();
        fail(e.what());
    }
    keys_.finish(id, now_ms);  // its row keeps its key, held until unique_for after now_ms
}

void SqliteJobDatabase::record_attempt(std::int64_t id, unsigned attempt) {
    auto& s = statements_->record_attempt;
    try {
        s.bind(1, id).bind(2, std::int64_t{attempt}).bind(3, died_during(attempt)).run();
    } catch (const std::exception& e) {
        s.reset();
        fail(e.what());
    }
}

std::vector<StoredJob> SqliteJobDatabase::select(const std::string& where) {
    std::vector<StoredJob> jobs;
    try {
        // A journal read as it is may be older than the trace_parent column.
        Statement s(db_, fmt::format("SELECT id, kind, payload, request_id, attempts, state, "
                                     "enqueued_at, run_at, coalesce(last_error, ''), {} FROM jobs "
                                     "{} ORDER BY id",
                                     schema_ >= 3 ? "trace_parent" : "''", where)
                             .c_str());
        while (s.step()) {
            jobs.push_back({.id = s.integer(0),
                            .kind = s.text(1),
                            .payload = s.text(2),
                            .request_id = s.text(3),
                            .trace_parent = s.text(9),
                            .attempts = static_cast<unsigned>(s.integer(4)),
                            .state = job_state_named(s.text(5)),
                            .enqueued_ms = s.integer(6),
                            .run_at_ms = s.integer(7),
                            .last_error = s.text(8)});
        }
    } catch (const std::exception& e) {
        fail(e.what());
    }
    return jobs;
}

std::vector<StoredJob> SqliteJobDatabase::live_jobs() { return select("WHERE state != 'dead'"); }

std::vector<StoredJob> SqliteJobDatabase::list(std::optional<JobState> only) {
    return only ? select(fmt::format("WHERE state = '{}'", job_state_name(*only))) : select("");
}

SqliteJobDatabaseStats SqliteJobDatabase::stats() {
    SqliteJobDatabaseStats stats;
    try {
        Statement s(db_,
                    "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state "
                    "ORDER BY kind, state");
        while (s.step()) {
            stats.rows.push_back(
                {s.text(0), job_state_named(s.text(1)), static_cast<std::uint64_t>(s.integer(2))});
        }
    } catch (const std::exception& e) {
        fail(e.what());
    }
    return stats;
}

// In one read transaction, so that the counts and the list agree: every kind's states in one
// pass over the table, then the latest dead by the time they died (without their payloads).
JobCensus SqliteJobDatabase::census(std::int64_t now_ms, std::size_t latest_dead) {
    JobCensus census;
    exec("BEGIN");
    try {
        Statement s(db_,
                    "SELECT kind, "
                    "sum(state != 'dead' AND run_at <= ?1), "
                    "sum(state = 'ready' AND run_at > ?1), "
                    "sum(state = 'retry' AND run_at > ?1), "
                    "sum(state = 'dead'), "
                    "min(CASE WHEN state != 'dead' AND run_at <= ?1 "
                    "THEN max(run_at, enqueued_at) END) "
                    "FROM jobs GROUP BY kind ORDER BY kind");
        s.bind(1, now_ms);
        while (s.step()) {
            const auto count = [&](int column) {
                return static_cast<std::uint64_t>(s.integer(column));
            };
            census.kinds.push_back({.kind = s.text(0),
                                    .ready = count(1),
                                    .scheduled = count(2),
                                    .retrying = count(3),
                                    .dead = count(4),
                                    .oldest_ready_ms = s.integer(5)});
        }
        Statement dead(db_, fmt::format("SELECT id, kind, request_id, attempts, enqueued_at, "
                                        "run_at, coalesce(last_error, ''), {} FROM jobs "
                                        "WHERE state = 'dead' ORDER BY run_at DESC, id DESC "
                                        "LIMIT ?1",
                                        schema_ >= 3 ? "trace_parent" : "''")
                                .c_str());
        dead.bind(1, static_cast<std::int64_t>(latest_dead));
        while (dead.step()) {
            census.latest_dead.push_back({.id = dead.integer(0),
                                          .kind = dead.text(1),
                                          .request_id = dead.text(2),
                                          .trace_parent = dead.text(7),
                                          .attempts = static_cast<unsigned>(dead.integer(3)),
                                          .state = JobState::dead,
                                          .enqueued_ms = dead.integer(4),
                                          .run_at_ms = dead.integer(5),
                                          .last_error = dead.text(6)});
        }
    } catch (const std::exception& e) {
        rollback();
        fail(e.what());
    }
    exec("COMMIT");
    return census;
}

// A dead job's key stays held until unique_for after it died, as it was while it was dead,
// also once its job is revived or purged: in finished_keys.
std::uint64_t SqliteJobDatabase::revive(std::optional<std::int64_t> id) {
    const auto which = id ? fmt::format(" AND id = {}", *id) : std::string();
    return changing_dead(
        [&] {
            exec(fmt::format("UPDATE jobs SET state = 'ready', attempts = 0, run_at = {}, "
                             "unique_key = NULL WHERE state = 'dead'{}",
                             detail::unix_now_ms(), which)
                     .c_str());
        },
        which);
}

std::uint64_t SqliteJobDatabase::purge_dead() {
    return changing_dead([&] { exec("DELETE FROM jobs WHERE state = 'dead'"); }, "");
}

// In one transaction: the dead jobs' keys (those `which` picks, an SQL condition after "state =
// 'dead'") to finished_keys, then `change`; how many jobs `change` changed.
template <class Change>
std::uint64_t SqliteJobDatabase::changing_dead(Change change, const std::string& which) {
    std::uint64_t changed = 0;
    exec("BEGIN IMMEDIATE");
    try {
        exec(fmt::format("INSERT OR IGNORE INTO finished_keys (kind, key, expires_at) "
                         "SELECT kind, unique_key, run_at + unique_for FROM jobs "
                         "WHERE state = 'dead' AND unique_key IS NOT NULL{}",
                         which)
                 .c_str());
        change();
        changed = static_cast<std::uint64_t>(sqlite3_changes(db_));
        exec("COMMIT");
    } catch (...) {
        rollback();
        throw;
    }
    keys_.clear();  // read again before the next write
    keys_loaded_ = false;
    return changed;
}

// A live job's key goes with its row.
std::uint64_t SqliteJobDatabase::cancel(std::optional<std::int64_t> id,
                                        const std::optional<std::string>& kind) {
    std::uint64_t cancelled = 0;
    exec("BEGIN IMMEDIATE");
    try {
        Statement jobs(db_,
                       "DELETE FROM jobs WHERE state != 'dead' AND (?1 IS NULL OR id = ?1) AND "
                       "(?2 IS NULL OR kind = ?2)");
        if (id) jobs.bind(1, *id);
        if (kind) jobs.bind(2, std::string_view(*kind));
        jobs.step();
        cancelled = static_cast<std::uint64_t>(sqlite3_changes(db_));
        exec("COMMIT");
    } catch (const JournalError&) {
        rollback();
        throw;
    } catch (const std::exception& e) {
        rollback();
        fail(e.what());
    }
    keys_.clear();
    keys_loaded_ = false;
    return cancelled;
}

}  // namespace crosstown
