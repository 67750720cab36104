// Durable jobs end to end: fcgi_app behind a real nginx, with a journal and a witness file
// (one line per placed call, written outside the journal), killed with SIGKILL, stopped with
// SIGTERM (once and twice), short of disk, and given journals it must refuse. Every call a
// client saw accepted (202) must be placed, at least once, whatever happens to the process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "support/app_checks.hpp"
#include "support/app_under_test.hpp"
#include "support/calls_load.hpp"
#include "support/fastcgi_client.hpp"
#include "support/nginx_stack.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;

// ---- reading back what the app did -----------------------------------------------------------

std::uintmax_t size_of(const std::string& path) {
    std::error_code ignored;
    const auto size = std::filesystem::file_size(path, ignored);
    return ignored ? 0 : size;
}

// The counts of the last "jobs enqueued=N replayed=N ..." line in a log; empty when none.
std::map<std::string, long> job_counts(const std::string& log) {
    return test::summary_counts(log, "jobs enqueued=");
}

long count_of(const std::string& text, const std::string& needle) {
    long n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

// "journal PATH (sync normal): N jobs replayed" at start; -1 when the log has none.
long jobs_replayed(const std::string& log) {
    std::smatch m;
    const std::regex replayed(R"(\): (\d+) jobs replayed)");
    return std::regex_search(log, m, replayed) ? std::stol(m[1]) : -1;
}

// `fcgi_app jobs ARGS...`: its exit code, stdout and stderr.
// The ids of the journal's jobs, read with `fcgi_app jobs list` (which is safe beside a server,
// and after one died).
std::set<long> journal_ids(const std::string& journal, bool dead_only = false) {
    std::vector<std::string> args{"list", "--journal", journal};
    if (dead_only) args.push_back("--dead");
    const auto listed = jobs_command(args);
    EXPECT_EQ(listed.code, 0) << listed.err;
    std::set<long> ids;
    std::istringstream lines(listed.out);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        long id = 0;
        std::string kind;
        if (fields >> id >> kind && kind == "place-call") ids.insert(id);
    }
    return ids;
}

// The app's arguments for a journal and a witness in `dir`, with `more` after them.
std::vector<std::string> durable_args(const TempDir& dir, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--journal",     dir / "jobs.db", "--witness",
                                  dir / "witness", "--access-log",  "off"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

HttpReply post_durable(const NginxStack& stack, int count, int latency_ms, int fail_first = 0,
                       const std::string& more_query = {}) {
    return http(stack.port(), "POST",
                "/calls?durable=1&count=" + std::to_string(count) +
                    "&latency_ms=" + std::to_string(latency_ms) +
                    "&fail_first=" + std::to_string(fail_first) + more_query,
                {}, {}, 10s);
}

// The witness's lines for one batch.
std::vector<Placed> placed_of(const std::string& witness, const std::string& batch) {
    auto placed = read_witness(witness);
    std::erase_if(placed, [&](const Placed& p) { return p.batch != batch; });
    return placed;
}

// ---- 1. kill -9 under load --------------------------------------------------------------------

// Four clients post durable batches of 1..5 calls, pausing between requests; they go on
// through a dead app (502s). Unpaced, they commit a few thousand calls a second, more than 64
// calls of 300 ms at a time can place: the pause keeps the backlog (and the test's time)
// bounded.
struct KillPoint {
    const char* name;
    int latency_ms;
    int fail_first;
    std::chrono::milliseconds pause;  // each client's, between requests
    // When to kill: the load has gone on long enough to be at this point.
    bool (*reached)(NginxStack& stack, const CallsLoad& load, const std::string& witness);
};

void PrintTo(const KillPoint& point, std::ostream* out) { *out << point.name; }

const KillPoint kKillPoints[] = {
    // Right after the load starts: requests are committing all the time.
    {"DuringCommits", 20, 0, 0ms,
     [](NginxStack&, const CallsLoad& load, const std::string&) {
         return load.accepted_requests() >= 25;
     }},
    // Calls of 300 ms: most accepted calls are running, some are placed.
    {"MidRun", 300, 0, 50ms,
     [](NginxStack&, const CallsLoad& load, const std::string& witness) {
         return load.accepted_requests() >= 40 && read_witness(witness).size() >= 10;
     }},
    // Each call's first two attempts fail: retries are due, some placed at the third.
    {"DuringRetries", 20, 2, 20ms,
     [](NginxStack& stack, const CallsLoad& load, const std::string& witness) {
         return load.accepted_requests() >= 30 && read_witness(witness).size() >= 5 &&
                count_of(stack.app().output(), "retrying in") >= 20;
     }},
};

class KillNine : public ::testing::TestWithParam<KillPoint> {};

TEST_P(KillNine, EveryAcceptedCallIsPlacedAfterARestartAndOnlyInFlightOnesTwice) {
    const auto& point = GetParam();
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir));
    CallsLoad load(stack.port(), {.latency_ms = point.latency_ms,
                                  .durable = true,
                                  .max_calls = 5,
                                  .query = "&fail_first=" + std::to_string(point.fail_first),
                                  .pause = point.pause});

    ASSERT_TRUE(eventually([&] { return point.reached(stack, load, witness); }, 20s, 5ms))
        << "the load did not reach the kill point: " << load.accepted_requests() << " accepted\n"
        << stack.app().output();
    ASSERT_EQ(stack.stop_app(SIGKILL), 128 + SIGKILL);
    // Reaped: nothing more comes from that process. Lines from here on are the restart's.
    const auto kill_offset = size_of(witness);
    const auto accepted_before_kill = load.accepted_requests();
    // What the journal kept: every job committed and not yet finished, placed or not.
    const auto live_at_kill = journal_ids(journal);
    EXPECT_FALSE(live_at_kill.empty()) << "the kill left nothing to recover: it proves nothing";

    stack.restart_app();
    EXPECT_EQ(jobs_replayed(stack.app().output()), static_cast<long>(live_at_kill.size()))
        << stack.app().output();
    // The load goes on against the restarted app for a while: replay and new work together.
    ASSERT_TRUE(
        eventually([&] { return load.accepted_requests() >= accepted_before_kill + 20; }, 20s, 5ms))
        << "no requests accepted after the restart\n"
        << stack.app().output();
    load.finish();
    const auto accepted = load.accepted();
    // The requests that failed met a dead app or lost their reply with it: nginx's 502, at
    // once, never a hang (0). They are not accepted, and not checked.
    for (const auto& [status, n] : load.refused()) EXPECT_EQ(status, 502) << n << " times";

    // Every call of every accepted batch is in the witness, eventually.
    std::map<std::string, int> calls_of;  // batch -> count
    long accepted_calls = 0;
    for (const auto& [batch, count] : accepted) {
        ASSERT_TRUE(calls_of.emplace(batch, count).second) << "batch ids repeat: " << batch;
        accepted_calls += count;
    }
    std::set<std::pair<std::string, long>> missing;
    const bool all_placed = eventually(
        [&] {
            missing.clear();
            for (const auto& [batch, count] : calls_of) {
                for (long call = 1; call <= count; ++call) missing.emplace(batch, call);
            }
            for (const auto& p : read_witness(witness)) missing.erase({p.batch, p.call});
            return missing.empty();
        },
        30s, 50ms);
    EXPECT_TRUE(all_placed) << missing.size() << " accepted calls never placed, e.g. "
                            << missing.begin()->first << " call " << missing.begin()->second << "\n"
                            << stack.app().output();
    // Jobs committed for requests whose 202 was lost with the process run too: the journal
    // empties.
    EXPECT_TRUE(eventually(
        [&] {
            return jobs_command({"stats", "--journal", journal})
                       .out.find("ready 0, retry 0, dead 0") != std::string::npos;
        },
        30s, 200ms))
        << jobs_command({"list", "--journal", journal}).out;

    // Duplicates: only jobs placed before the kill whose completion the journal had not yet
    // recorded; placed once before the kill and once after, as the same job.
    std::map<std::pair<std::string, long>, std::vector<Placed>> lines_of;
    const auto placed = read_witness(witness);
    for (const auto& p : placed) lines_of[{p.batch, p.call}].push_back(p);
    long duplicates = 0;
    long unacknowledged = 0;  // placed calls of batches whose 202 never reached a client
    for (const auto& [key, lines] : lines_of) {
        if (!calls_of.contains(key.first)) ++unacknowledged;
        if (lines.size() == 1) continue;
        ++duplicates;
        ASSERT_EQ(lines.size(), 2u) << key.first << " call " << key.second;
        EXPECT_LT(lines[0].offset, kill_offset) << key.first << " call " << key.second;
        EXPECT_GE(lines[1].offset, kill_offset) << key.first << " call " << key.second;
        EXPECT_EQ(lines[0].job, lines[1].job) << "the same job, run again";
        EXPECT_TRUE(live_at_kill.contains(lines[0].job))
            << "job " << lines[0].job << " was placed twice though the journal had finished it";
    }
    long placed_but_live = 0;  // before the kill, and still in the journal at the kill
    for (const auto& p : placed) {
        placed_but_live += p.offset < kill_offset && live_at_kill.contains(p.job);
    }
    EXPECT_EQ(duplicates, placed_but_live)
        << "each call placed but not yet recorded as finished is placed again, and no other";
    for (const auto& p : placed) {
        EXPECT_EQ(p.attempt, static_cast<unsigned>(point.fail_first + 1))
            << p.batch << " call " << p.call << ": placed at the first attempt that can succeed";
    }

    ASSERT_EQ(stack.stop_app(SIGTERM, 30s), 0) << stack.app().output();
    const auto counts = job_counts(stack.app().output());
    ASSERT_FALSE(counts.empty()) << stack.app().output();
    EXPECT_EQ(counts.at("replayed"), static_cast<long>(live_at_kill.size()));
    EXPECT_EQ(counts.at("kept"), 0);
    EXPECT_EQ(counts.at("dead"), 0);

    std::ostringstream figures;
    figures << "kill -9 " << point.name << ": " << accepted.size() << " requests accepted ("
            << accepted_calls << " calls), " << placed.size() << " placed lines, " << duplicates
            << " duplicates, " << live_at_kill.size() << " jobs in the journal at the kill, "
            << unacknowledged << " calls placed for requests whose 202 was lost, refused: ";
    for (const auto& [status, n] : load.refused()) figures << status << "x" << n << " ";
    std::cout << "[ figures ] " << figures.str() << "\n";
    RecordProperty("accepted_calls", static_cast<int>(accepted_calls));
    RecordProperty("placed_lines", static_cast<int>(placed.size()));
    RecordProperty("duplicates", static_cast<int>(duplicates));
    RecordProperty("in_journal_at_kill", static_cast<int>(live_at_kill.size()));
}

INSTANTIATE_TEST_SUITE_P(DurableJobs, KillNine, ::testing::ValuesIn(kKillPoints),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- 2. after the response --------------------------------------------------------------------

TEST(DurableJobs, CallsStartOnlyAfterTheResponseIsFinished) {
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    const auto reply = post_durable(stack, 5, 10);
    ASSERT_EQ(reply.status, 202) << reply.body;
    EXPECT_EQ(json::parse(reply.body)["count"], 5);
    const auto batch = wait_for_batch(stack, batch_of(reply), kPatience);
    EXPECT_EQ(batch["started"], 5) << batch.dump();
    EXPECT_EQ(batch["placed"], 5) << batch.dump();
    EXPECT_EQ(batch["started_before_finish"], 0) << batch.dump();
    ASSERT_TRUE(batch["min_start_delay_ms"].is_number()) << batch.dump();
    EXPECT_GE(batch["min_start_delay_ms"].get<double>(), 0) << batch.dump();
    EXPECT_EQ(placed_of(dir / "witness", batch_of(reply)).size(), 5u);
}

// A call with a delay starts no earlier than its delay after its response, and soon after.
TEST(DurableJobs, ADelayedCallStartsItsDelayAfterTheResponse) {
    constexpr auto kDelay = 2s;
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    const auto reply = post_durable(stack, 3, 0, 0, "&delay_ms=2000");
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto batch = wait_for_batch(stack, batch_of(reply), kDelay + kPatience);
    EXPECT_EQ(batch["placed"], 3) << batch.dump();
    ASSERT_TRUE(batch["min_start_delay_ms"].is_number()) << batch.dump();
    const auto after_response = batch["min_start_delay_ms"].get<double>();
    EXPECT_GE(after_response, 2000) << batch.dump();
    EXPECT_LT(after_response, 3000) << batch.dump();
}

// A call scheduled 5 s ahead is in the journal with its time: the process is killed, started
// again, and the call starts at its time, not before, not much after.
TEST(DurableJobs, ACallScheduledAheadSurvivesKillNineAndRunsOnTime) {
    constexpr auto kDelay = 5s;
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    const auto sent = std::chrono::steady_clock::now();
    const auto reply = post_durable(stack, 1, 0, 0, "&delay_ms=5000");
    const auto answered = std::chrono::steady_clock::now();
    ASSERT_EQ(reply.status, 202) << reply.body;
    // Counted once the response is finished, just after the client has it.
    EXPECT_TRUE(eventually([&] {
        return metric(stack, "crosstown_jobs{kind=\"place-call\",state=\"scheduled\"}") == 1;
    }));
    ASSERT_EQ(stack.stop_app(SIGKILL), 128 + SIGKILL);
    ASSERT_LT(std::chrono::steady_clock::now() - answered, kDelay / 2)
        << "too slow to kill before the call's time: the test shows nothing";
    stack.restart_app();
    const auto witness = dir / "witness";
    ASSERT_TRUE(eventually([&] { return placed_of(witness, batch_of(reply)).size() == 1; },
                           kDelay + kPatience, 20ms))
        << stack.app().output();
    const auto started = std::chrono::steady_clock::time_point(
        std::chrono::nanoseconds(placed_of(witness, batch_of(reply))[0].started_ns));
    // The journal keeps whole milliseconds of the wall clock: up to 2 ms early by this one.
    EXPECT_GE(started - sent, kDelay - 2ms) << "ran before its time";
    EXPECT_LT(started - answered, kDelay + 1s) << "late";
    EXPECT_EQ(jobs_replayed(stack.app().output()), 1) << stack.app().output();
}

// A request's W3C traceparent, through nginx, stays with its durable calls: the log line of a
// failed attempt names it, so a tracer's trace id finds the work that followed the request.
TEST(DurableJobs, TheLogLinesOfACallsAttemptsCarryItsRequestsTraceContext) {
    const std::string trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    const auto reply =
        http(stack.port(), "POST", "/calls?durable=1&count=1&latency_ms=0&fail_first=1", {},
             {{"traceparent", trace}}, 10s);
    ASSERT_EQ(reply.status, 202) << reply.body;
    ASSERT_TRUE(eventually([&] { return placed_of(dir / "witness", batch_of(reply)).size() == 1; }))
        << stack.app().output();
    EXPECT_THAT(stack.app().output(), HasSubstr("trace " + trace + ") attempt 1 of 5 failed"));
}

// A client retrying POST /calls with one Idempotency-Key hears of the same batch, and each call
// is placed once: three times in a row, then eight at once.
TEST(DurableJobs, RetriesWithOneIdempotencyKeyPlaceEachCallOnce) {
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    post_calls_with_one_idempotency_key(stack.port());
    const auto deduplicated = [&] {
        return metric(stack, "crosstown_jobs_total{kind=\"place-call\",outcome=\"deduplicated\"}");
    };
    const auto succeeded = [&] {
        return metric(stack, "crosstown_jobs_total{kind=\"place-call\",outcome=\"succeeded\"}");
    };
    ASSERT_TRUE(eventually([&] { return succeeded() == 10; }, kPatience))
        << succeeded().value_or(-1) << " calls succeeded";
    EXPECT_EQ(deduplicated(), 2 * 5 + 7 * 5);
    for (const std::string batch : {"k-in-a-row", "k-at-once"}) {
        const auto placed = placed_of(dir / "witness", batch);
        std::set<long> calls;
        for (const auto& p : placed) calls.insert(p.call);
        EXPECT_EQ(placed.size(), 5U) << batch;
        EXPECT_EQ(calls, (std::set<long>{1, 2, 3, 4, 5})) << batch;
    }
    EXPECT_EQ(
        http(stack.port(), "POST", "/calls?durable=1", {}, {{"Idempotency-Key", "a b"}}).status,
        400);
}

// The process dies between its commit and its response: a client that reads nothing holds a
// 4 MiB response (and FCGX_Finish_r) back, straight on the app's socket, so the calls are in
// the journal and no response went out when kill -9 comes. Through nginx the client would see
// a 502, and retries with the same Idempotency-Key: the restarted process runs the calls it
// replays, the retry is deduplicated, and each call is placed once.
TEST(DurableJobs, ARetryAfterKillNineBetweenCommitAndResponsePlacesEachCallOnce) {
    TempDir dir("crosstown-dj");
    NginxStack stack(durable_args(dir));
    FastCgiConnection fastcgi(stack.socket());
    post_calls_and_hold_the_answer(fastcgi, "after-a-crash");
    ASSERT_TRUE(eventually([&] { return journal_ids(dir / "jobs.db").size() == 5; }))
        << "the calls were never committed\n"
        << stack.app().output();
    ASSERT_EQ(stack.stop_app(SIGKILL), 128 + SIGKILL);
    EXPECT_TRUE(read_witness(dir / "witness").empty()) << "calls ran before their response";
    stack.restart_app();
    const auto retry = http(stack.port(), "POST", "/calls?durable=1&count=5&latency_ms=0", {},
                            {{"Idempotency-Key", "after-a-crash"}}, 10s);
    ASSERT_EQ(retry.status, 202) << retry.body;
    EXPECT_EQ(batch_of(retry), "k-after-a-crash");
    ASSERT_TRUE(eventually([&] {
        return metric(stack, "crosstown_jobs_total{kind=\"place-call\",outcome=\"succeeded\"}") ==
               5;
    })) << stack.app().output();
    EXPECT_EQ(metric(stack, "crosstown_jobs_total{kind=\"place-call\",outcome=\"deduplicated\"}"),
              5);
    EXPECT_EQ(jobs_replayed(stack.app().output()), 5) << stack.app().output();
    const auto placed = placed_of(dir / "witness", "k-after-a-crash");
    std::set<long> calls;
    for (const auto& p : placed) calls.insert(p.call);
    EXPECT_EQ(placed.size(), 5U);
    EXPECT_EQ(calls, (std::set<long>{1, 2, 3, 4, 5}));
}

// ---- 3. journals that cannot be used ----------------------------------------------------------

// fcgi_app started directly on `journal` (no nginx): its exit code, or -1 when it kept running.
struct Refusal {
    int code = -1;
    std::string output;
};

Refusal start_on(const TempDir& dir, const std::string& journal) {
    ChildProcess app({fcgi_app_path(), "--listen", dir / "refused.sock", "--journal", journal},
                     dir / "refused.log");
    const auto code = app.wait(15s);
    return {code.value_or(-1), app.output()};
}

TEST(JournalFaults, ABadCallRateIsRefusedWithExit2NamingTheOption) {
    TempDir dir("crosstown-dj");
    for (const std::string bad : {"0", "fast", "50/0", "50/2.5"}) {
        ChildProcess app({fcgi_app_path(), "--listen", dir / "refused.sock", "--journal",
                          dir / "jobs.db", "--call-rate", bad},
                         dir / "refused.log");
        EXPECT_EQ(app.wait(15s), 2) << bad;
        EXPECT_THAT(app.output(), HasSubstr("--call-rate")) << bad;
    }
}

TEST(JournalFaults, ACorruptFileIsRefusedWithExit2NamingIt) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    {
        std::mt19937 random(42);
        std::ofstream file(journal, std::ios::binary);
        for (int i = 0; i < 16384; ++i) file.put(static_cast<char>(random() & 0xff));
    }
    const auto refused = start_on(dir, journal);
    EXPECT_EQ(refused.code, 2) << refused.output;
    EXPECT_THAT(refused.output, HasSubstr("journal " + journal + ": is unreadable or corrupt"));
    EXPECT_EQ(size_of(journal), 16384u) << "the file is left as it was";
}

// A journal as fcgi_app leaves it after a clean stop (WAL checkpointed into the file), with
// the big-endian 32-bit field of the SQLite header at `offset` set to `value`: 68 is the
// application_id, 60 the user_version (the journal's schema version).
void make_journal_with_header_field(const TempDir& dir, const std::string& journal, int offset,
                                    std::uint32_t value) {
    {
        ChildProcess app({fcgi_app_path(), "--listen", dir / "maker.sock", "--journal", journal},
                         dir / "maker.log");
        ASSERT_TRUE(eventually([&] {
            return app.output().find(" listening on ") != std::string::npos;
        })) << app.output();
        app.signal(SIGTERM);
        ASSERT_EQ(app.wait(20s), 0) << app.output();
    }
    ASSERT_EQ(size_of(journal + "-wal"), 0u) << "the WAL was not checkpointed at the stop";
    std::fstream file(journal, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(offset);
    for (int shift = 24; shift >= 0; shift -= 8)
        file.put(static_cast<char>((value >> shift) & 0xff));
    ASSERT_TRUE(file.good());
}

TEST(JournalFaults, ADatabaseOfAnotherApplicationIsRefusedWithExit2NamingIt) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "other.db";
    make_journal_with_header_field(dir, journal, 68, 0x12345678);
    const auto refused = start_on(dir, journal);
    EXPECT_EQ(refused.code, 2) << refused.output;
    EXPECT_THAT(refused.output,
                HasSubstr("journal " + journal + ": is a SQLite database of another application"));
}

TEST(JournalFaults, AJournalOfAFutureSchemaIsRefusedWithExit2NamingIt) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "future.db";
    make_journal_with_header_field(dir, journal, 60, 99);
    const auto refused = start_on(dir, journal);
    EXPECT_EQ(refused.code, 2) << refused.output;
    EXPECT_THAT(refused.output, HasSubstr("journal " + journal + ": has schema version 99"));
}

TEST(JournalFaults, AJournalOwnedByALiveProcessIsRefusedNamingItsPid) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    NginxStack first(durable_args(dir));
    const auto refused = start_on(dir, journal);
    EXPECT_EQ(refused.code, 2) << refused.output;
    EXPECT_THAT(refused.output, HasSubstr("journal " + journal + ": owned by a live process (pid " +
                                          std::to_string(first.app().pid()) + ")"));
    // The owner serves on, durable work included.
    const auto reply = post_durable(first, 3, 1);
    ASSERT_EQ(reply.status, 202) << reply.body;
    EXPECT_TRUE(eventually([&] { return placed_of(dir / "witness", batch_of(reply)).size() == 3; }))
        << first.app().output();
    EXPECT_TRUE(first.app().running());
}

TEST(JournalFaults, AJournalThatCannotBeCreatedIsRefusedWithExit2NamingIt) {
    TempDir dir("crosstown-dj");
    std::ofstream(dir / "plain-file") << "not a directory\n";
    for (const auto& journal : {dir / "missing-dir/jobs.db", dir / "plain-file/jobs.db"}) {
        const auto refused = start_on(dir, journal);
        EXPECT_EQ(refused.code, 2) << journal << "\n" << refused.output;
        EXPECT_THAT(refused.output, HasSubstr("journal " + journal + ": ")) << journal;
    }
}

// ---- 4. disk full -----------------------------------------------------------------------------

TEST(DurableJobs, ADiskFullAnswers503UntilThereIsRoomAndLosesNothingAccepted) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir));
    const pid_t pid = stack.app().pid();
    std::vector<std::string> accepted;
    for (int i = 0; i < 5; ++i) {
        const auto reply = post_durable(stack, 1, 10);
        ASSERT_EQ(reply.status, 202) << reply.body;
        accepted.push_back(batch_of(reply));
    }
    // A file-size limit a little above every file the app writes: the journal's WAL (a few
    // KB per commit) reaches it within a few requests. EFBIG, as on a full disk.
    std::uintmax_t largest = stack.app().output().size();
    for (const auto& path :
         {journal, journal + "-wal", journal + "-shm", journal + ".lock", witness}) {
        largest = std::max(largest, size_of(path));
    }
    rlimit before{};
    ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, nullptr, &before), 0) << std::strerror(errno);
    const rlimit low{static_cast<rlim_t>(largest + 64 * 1024), before.rlim_max};
    ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &low, nullptr), 0) << std::strerror(errno);

    std::vector<HttpReply> refused;
    for (int i = 0; i < 400 && refused.size() < 3; ++i) {
        const auto reply = post_durable(stack, 1, 10);
        if (reply.status == 202) {
            accepted.push_back(batch_of(reply));
        } else {
            ASSERT_EQ(reply.status, 503) << reply.body;
            refused.push_back(reply);
        }
    }
    ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &before, nullptr), 0) << std::strerror(errno);
    ASSERT_EQ(refused.size(), 3u) << "the journal never filled up\n" << stack.app().output();
    for (const auto& reply : refused) {
        EXPECT_EQ(reply.header("retry-after"), "1");
        ASSERT_FALSE(reply.header("x-request-id").empty());
        EXPECT_THAT(reply.body, HasSubstr("request id " + reply.header("x-request-id")));
        EXPECT_THAT(stack.app().output(),
                    HasSubstr("request " + reply.header("x-request-id") + " POST /calls"));
    }
    EXPECT_THAT(stack.app().output(), HasSubstr("answering 503"));

    // Room again: accepted again, at once.
    HttpReply again;
    ASSERT_TRUE(eventually(
        [&] {
            again = post_durable(stack, 1, 10);
            return again.status == 202;
        },
        kPatience, 50ms))
        << again.status << " " << again.body << "\n"
        << stack.app().output();
    accepted.push_back(batch_of(again));
    for (int i = 0; i < 5; ++i) {
        const auto reply = post_durable(stack, 1, 10);
        ASSERT_EQ(reply.status, 202) << reply.body;
        accepted.push_back(batch_of(reply));
    }

    // Each accepted call placed once; the refused requests placed nothing (their batches have
    // no id in the reply, so: the witness holds exactly the accepted batches).
    const std::set<std::string> accepted_set(accepted.begin(), accepted.end());
    ASSERT_EQ(accepted_set.size(), accepted.size());
    EXPECT_TRUE(
        eventually([&] { return read_witness(witness).size() >= accepted.size(); }, 20s, 20ms))
        << read_witness(witness).size() << " of " << accepted.size() << " placed\n"
        << stack.app().output();
    std::multiset<std::string> witnessed;
    for (const auto& p : read_witness(witness)) witnessed.insert(p.batch);
    EXPECT_EQ(witnessed, std::multiset<std::string>(accepted.begin(), accepted.end()));
    std::cout << "[ figures ] disk full: " << accepted.size() << " accepted, " << refused.size()
              << " refused with 503, " << witnessed.size() << " placed\n";

    // The completions written late once there was room: nothing left in the journal.
    EXPECT_TRUE(eventually(
        [&] {
            return jobs_command({"stats", "--journal", journal})
                       .out.find("ready 0, retry 0, dead 0") != std::string::npos;
        },
        20s, 200ms))
        << jobs_command({"list", "--journal", journal}).out;
    ASSERT_EQ(stack.stop_app(SIGTERM, 30s), 0) << stack.app().output();
    const auto counts = job_counts(stack.app().output());
    ASSERT_FALSE(counts.empty());
    EXPECT_EQ(counts.at("enqueued"), static_cast<long>(accepted.size()));
    EXPECT_EQ(counts.at("succeeded"), static_cast<long>(accepted.size()));
    EXPECT_EQ(counts.at("kept"), 0);
}

// Jobs that finish while their completion cannot be written stay in the journal, and run again
// at the next start (at least once). The shutdown summary must count them as kept, since
// they are what the journal keeps.
TEST(DurableJobs, CompletionsThatCannotBeWrittenAtShutdownAreCountedAsKept) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir));
    const pid_t pid = stack.app().pid();
    const auto reply = post_durable(stack, 5, 2000);
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto batch = batch_of(reply);
    // Committed: the WAL ends with the 5 jobs. A file-size limit at its size lets nothing more
    // be appended to it (the log and the witness are far smaller).
    const auto wal = size_of(journal + "-wal");
    ASSERT_GT(wal, stack.app().output().size() + 4096);
    rlimit before{};
    ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, nullptr, &before), 0) << std::strerror(errno);
    const rlimit full{static_cast<rlim_t>(wal), before.rlim_max};
    ASSERT_EQ(::prlimit(pid, RLIMIT_FSIZE, &full, nullptr), 0) << std::strerror(errno);
    ASSERT_TRUE(eventually([&] { return placed_of(witness, batch).size() == 5; }))
        << stack.app().output();
    ASSERT_TRUE(eventually([&] {
        return stack.app().output().find("disk I/O error") != std::string::npos;
    })) << "the completions were written after all\n"
        << stack.app().output();

    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    const auto in_journal = static_cast<long>(journal_ids(journal).size());
    EXPECT_EQ(in_journal, 5) << "placed, but not recorded as finished";
    const auto counts = job_counts(stack.app().output());
    ASSERT_FALSE(counts.empty()) << stack.app().output();
    EXPECT_EQ(counts.at("kept"), in_journal)
        << "the summary's kept is what stays in the journal (and runs again at the next start)\n"
        << stack.app().output();

    stack.restart_app();
    EXPECT_EQ(jobs_replayed(stack.app().output()), in_journal);
    EXPECT_TRUE(eventually([&] { return placed_of(witness, batch).size() == 10; }, 20s, 20ms))
        << "each placed again: at least once";
    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    EXPECT_TRUE(journal_ids(journal).empty());
}

// ---- 5. and 6. SIGTERM ------------------------------------------------------------------------

TEST(DurableJobs, SigtermKeepsUnfinishedJobsAndTheNextStartPlacesThem) {
    TempDir dir("crosstown-dj");
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir, {"--drain-timeout", "1s"}));
    const auto reply = post_durable(stack, 5, 6000);
    ASSERT_EQ(reply.status, 202) << reply.body;
    const auto batch = batch_of(reply);
    ASSERT_EQ(wait_for_batch(stack, batch, kPatience,
                             [](const json& status) { return status["started"] == 5; })["started"],
              5);

    const auto stopped = std::chrono::steady_clock::now();
    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    EXPECT_LT(std::chrono::steady_clock::now() - stopped, 4s) << "the 1 s drain, not 6 s";
    const auto counts = job_counts(stack.app().output());
    ASSERT_FALSE(counts.empty()) << stack.app().output();
    const long placed_before = static_cast<long>(placed_of(witness, batch).size());
    EXPECT_EQ(placed_before, 0);
    EXPECT_GT(counts.at("kept"), 0);
    EXPECT_EQ(counts.at("kept"), 5 - placed_before) << "kept: the calls not placed";
    EXPECT_EQ(counts.at("retried"), 0) << "a call cut short by the drain is not a failure";
    EXPECT_THAT(stack.app().output(), HasSubstr("cut short by shutdown; it stays in the journal"));

    stack.restart_app();
    EXPECT_EQ(jobs_replayed(stack.app().output()), 5) << stack.app().output();
    EXPECT_TRUE(eventually([&] { return placed_of(witness, batch).size() == 5; }, 20s, 20ms))
        << stack.app().output();
    for (const auto& p : placed_of(witness, batch)) EXPECT_EQ(p.attempt, 1u) << p.call;
    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    const auto after = job_counts(stack.app().output());
    ASSERT_FALSE(after.empty());
    EXPECT_EQ(after.at("replayed"), 5);
    EXPECT_EQ(after.at("succeeded"), 5);
    EXPECT_EQ(after.at("kept"), 0);
}

TEST(DurableJobs, ASecondSigtermCutsTheDrainShortAndKeepsDurableJobs) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    NginxStack stack(durable_args(dir, {"--drain-timeout", "30s"}));
    const auto durable = post_durable(stack, 3, 20000);
    ASSERT_EQ(durable.status, 202) << durable.body;
    const auto in_memory = http(stack.port(), "POST", "/calls?count=2&latency_ms=20000");
    ASSERT_EQ(in_memory.status, 202) << in_memory.body;
    struct Running {
        const HttpReply* reply;
        int calls;
    };
    for (const auto running : {Running{&durable, 3}, Running{&in_memory, 2}}) {
        const auto status =
            wait_for_batch(stack, batch_of(*running.reply), kPatience,
                           [&](const json& s) { return s["started"] == running.calls; });
        ASSERT_EQ(status["started"], running.calls) << status.dump();
    }

    stack.app().signal(SIGTERM);
    ASSERT_TRUE(eventually([&] {
        return stack.app().output().find("SIGTERM: no new requests") != std::string::npos;
    }));
    std::this_thread::sleep_for(300ms);  // well into the drain (30 s), not an assertion
    ASSERT_TRUE(stack.app().running()) << "the drain lasts until the calls end or 30 s";
    const auto second = std::chrono::steady_clock::now();
    const auto code = stack.stop_app(SIGTERM, 10s);
    const auto took = std::chrono::steady_clock::now() - second;
    ASSERT_TRUE(code.has_value()) << "still running 10 s after the second SIGTERM";
    EXPECT_LT(took, 1s) << "exit after the second SIGTERM";
    EXPECT_EQ(*code, 0) << "running callbacks failed (cut short), none abandoned\n"
                        << stack.app().output();
    const auto& log = stack.app().output();
    EXPECT_THAT(log, HasSubstr("second SIGTERM: cutting the drain short"));
    const auto counts = job_counts(log);
    ASSERT_FALSE(counts.empty()) << log;
    EXPECT_GT(counts.at("kept"), 0);
    EXPECT_EQ(counts.at("kept"), 3);
    const auto deferred = summary_counts(log);
    expect_identities(deferred);
    std::cout << "[ figures ] second SIGTERM: exit "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
              << " ms after it, " << counts.at("kept") << " durable jobs kept\n";
    // Kept in the file, for the next start.
    const auto stats = jobs_command({"stats", "--journal", journal});
    EXPECT_EQ(stats.code, 0) << stats.err;
    EXPECT_THAT(stats.out, HasSubstr("ready 3, retry 0, dead 0"));
}

// ---- 7. retries and dead jobs -----------------------------------------------------------------

TEST(DurableJobs, FailedAttemptsAreRetriedAndJobsDieAfterMaxAttempts) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir));
    const auto retried = post_durable(stack, 3, 10, 2);
    ASSERT_EQ(retried.status, 202);
    // Five attempts (backoff 200, 400, 800, 1600 ms, +-20%) take about 3 s.
    const auto dying = post_durable(stack, 2, 10, 10);
    ASSERT_EQ(dying.status, 202);

    EXPECT_TRUE(eventually([&] { return placed_of(witness, batch_of(retried)).size() == 3; }))
        << stack.app().output();
    for (const auto& p : placed_of(witness, batch_of(retried))) {
        EXPECT_EQ(p.attempt, 3u) << "call " << p.call << ": placed at its third attempt";
    }
    ASSERT_TRUE(eventually(
        [&] { return count_of(stack.app().output(), "is dead after 5 attempts") == 2; }, 20s, 20ms))
        << stack.app().output();
    EXPECT_TRUE(placed_of(witness, batch_of(dying)).empty());
    // The death is logged when it is handed to the journal's writer, which writes it a moment
    // later (a death costs a request no wait).
    ASSERT_TRUE(eventually([&] { return journal_ids(journal, true).size() == 2; }, 10s, 20ms));

    // Listed as dead, with the last error, while the server runs.
    const auto dead = jobs_command({"list", "--dead", "--journal", journal});
    EXPECT_EQ(dead.code, 0) << dead.err;
    EXPECT_THAT(dead.out, HasSubstr("2 jobs"));
    EXPECT_EQ(count_of(dead.out, "failed (simulated), attempt 5"), 2) << dead.out;
    EXPECT_EQ(journal_ids(journal, true).size(), 2u);

    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    const auto counts = job_counts(stack.app().output());
    ASSERT_FALSE(counts.empty());
    EXPECT_EQ(counts.at("enqueued"), 5);
    EXPECT_EQ(counts.at("succeeded"), 3);
    EXPECT_EQ(counts.at("dead"), 2);
    EXPECT_EQ(counts.at("retried"), 3 * 2 + 2 * 4);
    EXPECT_EQ(counts.at("kept"), 0) << "dead jobs are not kept for a retry";

    // Stopped: the operator may purge them.
    const auto purged = jobs_command({"purge", "--dead", "--journal", journal});
    EXPECT_EQ(purged.code, 0) << purged.err;
    EXPECT_THAT(purged.out, HasSubstr("2 dead jobs deleted"));
    EXPECT_TRUE(journal_ids(journal).empty());
}

// ---- 8. a job that kills its process ---------------------------------------------------------

// A poison job (each attempt aborts the process) among ordinary calls: restarted after each
// death, the app records the job's attempts and buries it after max_attempts, its first,
// unrecorded death included; the calls that ran beside it, and those accepted between the
// restarts, are all placed.
TEST(DurableJobs, AJobThatCrashesItsProcessGoesDeadAndEveryOtherCallIsPlaced) {
    constexpr int kMaxAttempts = 5;  // place-call's
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    const auto witness = dir / "witness";
    NginxStack stack(durable_args(dir));
    std::map<std::string, int> accepted;  // batch -> calls
    const auto post_ordinary = [&] {
        const auto reply = post_durable(stack, 3, 100);
        if (reply.status == 202) accepted.emplace(batch_of(reply), 3);
    };
    post_ordinary();
    ASSERT_EQ(accepted.size(), 1U);
    const auto poison =
        http(stack.port(), "POST", "/calls?durable=1&count=1&latency_ms=0&crash=1", {}, {}, 10s);
    ASSERT_EQ(poison.status, 202) << poison.body;
    post_ordinary();
    const auto buried = [&] { return !journal_ids(journal, true).empty(); };
    int deaths = 0;
    while (deaths <= kMaxAttempts + 1) {
        // It dies of the poison job, or lives on once the job is dead.
        ASSERT_TRUE(eventually([&] { return !stack.app().running() || buried(); }, 20s, 20ms))
            << stack.app().output();
        if (stack.app().running()) break;
        ++deaths;
        ASSERT_EQ(stack.app().wait(0ms), 128 + SIGABRT) << stack.app().output();
        try {
            stack.restart_app();
        } catch (const std::runtime_error&) {
            continue;  // it died again before it listened: a death all the same
        }
        post_ordinary();
    }
    EXPECT_EQ(deaths, kMaxAttempts + 1) << "deaths before the poison job was dead";
    const auto dead = jobs_command({"list", "--dead", "--journal", journal});
    EXPECT_THAT(dead.out, HasSubstr("the process died during attempt 5")) << dead.out;
    EXPECT_THAT(dead.out, HasSubstr("1 jobs")) << "only the poison job is dead: " << dead.out;
    EXPECT_TRUE(eventually(
        [&] {
            for (const auto& [batch, calls] : accepted) {
                if (static_cast<int>(placed_of(witness, batch).size()) < calls) return false;
            }
            return true;
        },
        20s, 20ms))
        << "an ordinary call was lost beside the poison job\n"
        << stack.app().output();
    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    std::cout << "[ figures ] poison job: dead after " << deaths << " deaths of the process; "
              << accepted.size() << " ordinary batches all placed\n";
}

// ---- 9. the operator's commands beside a running server ---------------------------------------

TEST(JobsCommand, StatsWorksWhileTheServerRunsAndPurgeIsRefusedNamingItsPid) {
    TempDir dir("crosstown-dj");
    const auto journal = dir / "jobs.db";
    NginxStack stack(durable_args(dir, {"--drain-timeout", "200ms"}));
    const auto reply = post_durable(stack, 2, 5000);
    ASSERT_EQ(reply.status, 202);

    const auto stats = jobs_command({"stats", "--journal", journal});
    EXPECT_EQ(stats.code, 0) << stats.err;
    EXPECT_THAT(stats.out, ::testing::ContainsRegex("place-call +ready +2"));
    EXPECT_THAT(stats.out, HasSubstr("ready 2, retry 0, dead 0"));

    const auto pid = std::to_string(stack.app().pid());
    for (const auto& command : {"purge", "retry"}) {
        const auto refused = jobs_command({command, "--dead", "--journal", journal});
        EXPECT_EQ(refused.code, 1) << command << ": " << refused.out << refused.err;
        const auto owned = "journal " + journal + " is owned by a live process (pid " + pid + ")";
        EXPECT_THAT(refused.err, HasSubstr(owned)) << command;
    }
    EXPECT_TRUE(stack.app().running());
    ASSERT_EQ(stack.stop_app(SIGTERM, 20s), 0) << stack.app().output();
    EXPECT_EQ(job_counts(stack.app().output()).at("kept"), 2);

    const auto purged = jobs_command({"purge", "--dead", "--journal", journal});
    EXPECT_EQ(purged.code, 0) << purged.err;
    EXPECT_THAT(purged.out, HasSubstr("0 dead jobs deleted"));
    EXPECT_EQ(journal_ids(journal).size(), 2u) << "live jobs are not purged";
}

}  // namespace
}  // namespace crosstown::test
