#include "crosstown/jobs/jobs_command.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "crosstown/jobs/sqlite/journal_owner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"
#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
    int code;
    std::string out;
    std::string err;
};

// Runs `app jobs ARGS...` as main() would hand it over: argv[0] is "jobs".
Result jobs(const std::vector<std::string>& args) {
    std::vector<std::string> strings{"jobs"};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<const char*> argv;
    for (const auto& s : strings) argv.push_back(s.c_str());
    argv.push_back(nullptr);
    std::ostringstream out;
    std::ostringstream err;
    const int code =
        jobs_command(static_cast<int>(strings.size()), argv.data(), "app jobs", out, err);
    return {code, out.str(), err.str()};
}

SqliteJobDatabase open_rw(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal,
                                   SqliteJobDatabase::Access::read_write);
}

std::vector<StoredJob> stored(const std::string& path) {
    return SqliteJobDatabase::open(path, JournalSync::normal, SqliteJobDatabase::Access::read_only)
        .list();
}

// A journal with two ready jobs, one retrying and two dead ones.
class JobsCommand : public ::testing::Test {
  protected:
    JobsCommand() : path_(dir_ / "jobs.db") {
        auto journal = open_rw(path_);
        ready_ = journal.insert({"email", "to ada", "req-ready"}, 1'700'000'000'000);
        journal.insert({"email", "to grace", "req-ready-2"}, 1'700'000'000'000);
        retry_ = journal.insert({"place-call", "555", "req-retry"}, 1'700'000'000'000);
        // 2033-05-18T03:33:20Z
        journal.reschedule(retry_, 2, 2'000'000'000'000, "busy signal");
        dead_ = journal.insert({"place-call", "556", "req-dead"}, 1'700'000'000'000);
        journal.bury(dead_, 10, "number disconnected", 0);
        dead2_ = journal.insert({"email", "to nobody", "req-dead-2"}, 1'700'000'000'000);
        journal.bury(dead2_, 3, "mailbox full", 0);
    }

    test::TempDir dir_;
    std::string path_;
    std::int64_t ready_ = 0, retry_ = 0, dead_ = 0, dead2_ = 0;
};

TEST_F(JobsCommand, ListShowsEveryJob) {
    const auto r = jobs({"list", "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_THAT(r.out, HasSubstr("id"));
    EXPECT_THAT(r.out, HasSubstr("last error"));
    EXPECT_THAT(r.out, HasSubstr("req-ready"));
    EXPECT_THAT(r.out, HasSubstr("req-retry"));
    EXPECT_THAT(r.out, HasSubstr("busy signal"));
    EXPECT_THAT(r.out, HasSubstr("2033-05-18T03:33:20Z"));  // a retry's next attempt, in UTC
    EXPECT_THAT(r.out, HasSubstr("number disconnected"));
    EXPECT_THAT(r.out, HasSubstr("5 jobs\n"));
    // One line per job, between the header and the count.
    std::istringstream lines(r.out);
    std::string line;
    int count = 0;
    while (std::getline(lines, line)) ++count;
    EXPECT_EQ(count, 7);
}

TEST_F(JobsCommand, ListDeadShowsOnlyTheDead) {
    const auto r = jobs({"list", "--dead", "--journal=" + path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, AllOf(HasSubstr("number disconnected"), HasSubstr("mailbox full"),
                             HasSubstr("2 jobs\n")));
    EXPECT_THAT(r.out, Not(HasSubstr("req-ready")));
    EXPECT_THAT(r.out, Not(HasSubstr("busy signal")));
}

TEST_F(JobsCommand, StatsCountByKindAndState) {
    const auto r = jobs({"stats", "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("ready 2, retry 1, dead 2\n"));
    EXPECT_THAT(r.out, testing::ContainsRegex("email +ready +2"));
    EXPECT_THAT(r.out, testing::ContainsRegex("email +dead +1"));
    EXPECT_THAT(r.out, testing::ContainsRegex("place-call +retry +1"));
    EXPECT_THAT(r.out, testing::ContainsRegex("place-call +dead +1"));
}

// A ready job whose time is ahead (a delay, run_at) is scheduled, with its time.
TEST_F(JobsCommand, AJobWhoseTimeIsAheadIsListedAndCountedAsScheduled) {
    {
        auto journal = open_rw(path_);
        NewJob later{"report", "monthly", "req-later"};
        later.run_at_ms = 2'100'000'000'000;  // 2036-07-18T13:20:00Z
        journal.insert(later, 1'700'000'000'000);
    }
    const auto list = jobs({"list", "--journal", path_});
    EXPECT_EQ(list.code, 0) << list.err;
    EXPECT_THAT(list.out, testing::ContainsRegex("report +scheduled +0 +2036-07-18T13:20:00Z"));
    const auto stats = jobs({"stats", "--journal", path_});
    EXPECT_THAT(stats.out, HasSubstr("ready 2, retry 1, dead 2, scheduled 1\n"));
}

TEST_F(JobsCommand, ListAndStatsWorkWhileAServerOwnsTheJournal) {
    auto owner = JournalOwner::acquire(path_);
    auto writer = open_rw(path_);  // as the server holds it
    EXPECT_EQ(jobs({"list", "--journal", path_}).code, 0);
    EXPECT_EQ(jobs({"stats", "--journal", path_}).code, 0);
}

TEST_F(JobsCommand, RetryOneDeadJobMakesItReady) {
    const auto r = jobs({"retry", std::to_string(dead_), "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("1 dead jobs made ready"));
    const auto jobs_now = stored(path_);
    for (const auto& job : jobs_now) {
        if (job.id == dead_) {
            EXPECT_EQ(job.state, JobState::ready);
            EXPECT_EQ(job.attempts, 0U);
        }
        if (job.id == dead2_) {
            EXPECT_EQ(job.state, JobState::dead);
        }
    }
    // And the journal is free again afterwards.
    EXPECT_EQ(JournalOwner::live_owner(path_), std::nullopt);
}

TEST_F(JobsCommand, RetryOfAJobThatIsNotDeadFailsNamingIt) {
    const auto r = jobs({"retry", std::to_string(ready_), "--journal", path_});
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr("job " + std::to_string(ready_) + " is not a dead job"));
    EXPECT_EQ(stored(path_).size(), 5U);
}

TEST_F(JobsCommand, RetryDeadRevivesEveryDeadJob) {
    const auto r = jobs({"retry", "--dead", "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("2 dead jobs made ready"));
    const auto list =
        SqliteJobDatabase::open(path_, JournalSync::normal, SqliteJobDatabase::Access::read_only)
            .list(JobState::dead);
    EXPECT_TRUE(list.empty());
    EXPECT_EQ(stored(path_).size(), 5U);
}

TEST_F(JobsCommand, PurgeDeadDeletesTheDead) {
    const auto r = jobs({"purge", "--dead", "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("2 dead jobs deleted"));
    const auto left = stored(path_);
    ASSERT_EQ(left.size(), 3U);
    for (const auto& job : left) EXPECT_NE(job.state, JobState::dead);
}

// The ready and retrying jobs of a kind go; dead ones stay. A job that is not there is an
// error naming it.
TEST_F(JobsCommand, CancelDeletesLiveJobsByIdOrKind) {
    auto r = jobs({"cancel", std::to_string(ready_), "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("1 jobs cancelled"));
    r = jobs({"cancel", "--kind", "place-call", "--journal", path_});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("1 jobs cancelled")) << "the retrying call; not the dead one";
    r = jobs({"cancel", std::to_string(dead_), "--journal", path_});
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr("job " + std::to_string(dead_)));
    std::set<std::int64_t> left;
    for (const auto& job : stored(path_)) left.insert(job.id);
    EXPECT_EQ(left.size(), 3U);
    EXPECT_FALSE(left.contains(ready_));
    EXPECT_FALSE(left.contains(retry_));
}

TEST_F(JobsCommand, RetryAndPurgeAreRefusedWhileALiveProcessOwnsTheJournal) {
    auto owner = JournalOwner::acquire(path_);
    const auto pid = "pid " + std::to_string(getpid());
    for (const auto& r : {jobs({"retry", "--dead", "--journal", path_}),
                          jobs({"retry", std::to_string(dead_), "--journal", path_}),
                          jobs({"purge", "--dead", "--journal", path_}),
                          jobs({"cancel", "--kind", "email", "--journal", path_})}) {
        EXPECT_EQ(r.code, 1);
        EXPECT_THAT(r.err, AllOf(HasSubstr("refused"), HasSubstr(pid), HasSubstr(path_)));
        EXPECT_EQ(r.out, "");
    }
    // Nothing changed.
    const auto jobs_now = stored(path_);
    ASSERT_EQ(jobs_now.size(), 5U);
    EXPECT_EQ(jobs_now[3].state, JobState::dead);
    EXPECT_EQ(jobs_now[4].state, JobState::dead);
}

TEST_F(JobsCommand, UsageErrorsExitTwoWithAMessageAndTheUsage) {
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const auto x = dir_ / "x.db";
    const std::vector<Case> cases{
        {{}, "no command"},
        {{"--journal", x}, "no command"},
        {{"list"}, "--journal PATH is required"},
        {{"retry", "--journal", x}, "retry takes a job id or --dead"},
        {{"retry", "7", "--dead", "--journal", x}, "retry takes a job id or --dead"},
        {{"retry", "seven", "--journal", x}, "retry: 'seven' is not a job id"},
        {{"retry", "0", "--journal", x}, "retry: '0' is not a job id"},
        {{"purge", "--journal", x}, "purge takes --dead"},
        {{"cancel", "--journal", x}, "cancel takes a job id or --kind KIND"},
        {{"cancel", "7", "--kind", "k", "--journal", x}, "cancel takes a job id or --kind KIND"},
        {{"cancel", "seven", "--journal", x}, "cancel: 'seven' is not a job id"},
        {{"list", "--kind", "k", "--journal", x}, "--kind is for cancel"},
        {{"frobnicate", "--journal", x}, "no command 'frobnicate'"},
        {{"list", "--verbose", "--journal", x}, "unexpected '--verbose'"},
    };
    for (const auto& c : cases) {
        const auto r = jobs(c.args);
        SCOPED_TRACE(c.message);
        EXPECT_EQ(r.code, 2);
        EXPECT_THAT(r.err, HasSubstr("app jobs: " + c.message));
        EXPECT_THAT(r.err, HasSubstr("Usage: app jobs COMMAND --journal PATH"));
        EXPECT_EQ(r.out, "");
    }
    EXPECT_FALSE(std::filesystem::exists(x));
}

TEST_F(JobsCommand, HelpPrintsTheUsage) {
    const auto r = jobs({"--help"});
    EXPECT_EQ(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("Usage: app jobs COMMAND --journal PATH"));
    EXPECT_THAT(r.out, HasSubstr("purge --dead"));
}

TEST_F(JobsCommand, AMissingJournalExitsTwoNamingTheFile) {
    const auto missing = dir_ / "typo.db";
    for (const auto* command : {"list", "stats"}) {
        const auto r = jobs({command, "--journal", missing});
        SCOPED_TRACE(command);
        EXPECT_EQ(r.code, 2);
        EXPECT_THAT(r.err, HasSubstr(missing));
        EXPECT_EQ(r.out, "");
    }
    EXPECT_FALSE(std::filesystem::exists(missing));
}

// A mistyped --journal must not get a new empty journal and lock file from retry or purge.
TEST_F(JobsCommand, RetryAndPurgeOfAMissingJournalExitTwoAndCreateNothing) {
    const auto missing = dir_ / "typo.db";
    for (const auto& r : {jobs({"retry", "--dead", "--journal", missing}),
                          jobs({"purge", "--dead", "--journal", missing})}) {
        EXPECT_EQ(r.code, 2);
        EXPECT_THAT(r.err, HasSubstr(missing));
    }
    EXPECT_FALSE(std::filesystem::exists(missing));
}

TEST_F(JobsCommand, AFileThatIsNotAJournalExitsTwoNamingIt) {
    const auto other = dir_ / "notes.txt";
    {
        std::ofstream out(other);
        out << "these are not the jobs you are looking for\n";
    }
    const auto r = jobs({"list", "--journal", other});
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr(other));
}

}  // namespace
}  // namespace crosstown
