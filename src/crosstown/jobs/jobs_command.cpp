#include "crosstown/jobs/jobs_command.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <charconv>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "crosstown/jobs/journal.hpp"
#include "crosstown/jobs/journal_owner.hpp"

namespace crosstown {
namespace {

constexpr std::string_view kUsage = R"(Usage: {0} COMMAND --journal PATH
  list [--dead]     the journal's jobs (or the dead ones): id, kind, state, attempts, next
                    attempt, request id, last error; safe while the server runs
  stats             jobs by kind and state; safe while the server runs
  retry ID|--dead   make a dead job (or every dead job) ready again, with its attempts reset
  purge --dead      delete the dead jobs
retry and purge are refused while a live process owns the journal: stop it first.
)";

struct Usage : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

struct Arguments {
    std::string command;
    std::string journal;
    bool dead = false;
    std::optional<std::int64_t> id;
};

Arguments parse(int argc, const char* const argv[]) {
    Arguments args;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--journal" && i + 1 < argc) {
            args.journal = argv[++i];
        } else if (arg.starts_with("--journal=")) {
            args.journal = std::string(arg.substr(10));
        } else if (arg == "--dead") {
            args.dead = true;
        } else if (args.command.empty() && !arg.starts_with("-")) {
            args.command = arg;
        } else if (args.command == "retry" && !args.id && !arg.starts_with("-")) {
            std::int64_t id = 0;
            const auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), id);
            if (error != std::errc{} || end != arg.data() + arg.size() || id <= 0) {
                throw Usage(fmt::format("retry: '{}' is not a job id", arg));
            }
            args.id = id;
        } else {
            throw Usage(fmt::format("unexpected '{}'", arg));
        }
    }
    if (args.command.empty()) throw Usage("no command");
    if (args.journal.empty()) throw Usage("--journal PATH is required");
    if (args.command == "retry" && args.id.has_value() == args.dead) {
        throw Usage("retry takes a job id or --dead");
    }
    if (args.command == "purge" && !args.dead) throw Usage("purge takes --dead");
    return args;
}

std::string when(std::int64_t unix_ms) {
    if (unix_ms <= 0) return "-";
    const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms));
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

void list(Journal& journal, bool dead, std::ostream& out) {
    const auto jobs = journal.list(dead ? std::optional(JobState::dead) : std::nullopt);
    fmt::print(out, "{:>8}  {:<16} {:<6} {:>8}  {:<20}  {:<16}  {}\n", "id", "kind", "state",
               "attempts", "next attempt (UTC)", "request", "last error");
    for (const auto& job : jobs) {
        fmt::print(out, "{:>8}  {:<16} {:<6} {:>8}  {:<20}  {:<16}  {}\n", job.id, job.kind,
                   job_state_name(job.state), job.attempts,
                   job.state == JobState::retry ? when(job.run_at_ms) : "-",
                   job.request_id.empty() ? "-" : job.request_id,
                   job.last_error.empty() ? "-" : job.last_error);
    }
    fmt::print(out, "{} jobs\n", jobs.size());
}

void stats(Journal& journal, std::ostream& out) {
    const auto stats = journal.stats();
    fmt::print(out, "{:<24} {:<6} {:>8}\n", "kind", "state", "jobs");
    for (const auto& row : stats.rows) {
        fmt::print(out, "{:<24} {:<6} {:>8}\n", row.kind, job_state_name(row.state), row.jobs);
    }
    fmt::print(out, "ready {}, retry {}, dead {}\n", stats.count(JobState::ready),
               stats.count(JobState::retry), stats.count(JobState::dead));
}

// retry and purge: refused while a live process owns the journal; otherwise done holding the
// ownership, so that no server starts on the journal meanwhile.
int change(const Arguments& args, std::string_view program, std::ostream& out, std::ostream& err) {
    if (const auto owner = JournalOwner::live_owner(args.journal)) {
        fmt::print(err,
                   "{}: {}: refused: journal {} is owned by a live process (pid {}); stop it "
                   "first, then run this again\n",
                   program, args.command, args.journal, *owner);
        return 1;
    }
    // A journal that is not there (a mistyped path) is an error, not a new empty journal.
    Journal::open(args.journal, JournalSync::normal, Journal::Access::read_only);
    const auto ownership = JournalOwner::claim(args.journal);
    auto journal = Journal::open(args.journal, JournalSync::full, Journal::Access::read_write);
    if (args.command == "retry") {
        const auto n = journal.revive(args.id);
        if (args.id && n == 0) {
            fmt::print(err, "{}: retry: job {} is not a dead job in {}\n", program, *args.id,
                       args.journal);
            return 2;
        }
        fmt::print(out, "{} dead jobs made ready; they run at the next start\n", n);
    } else {
        fmt::print(out, "{} dead jobs deleted\n", journal.purge_dead());
    }
    return 0;
}

}  // namespace

int jobs_command(int argc, const char* const argv[], std::string_view program, std::ostream& out,
                 std::ostream& err) {
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
            fmt::print(out, fmt::runtime(kUsage), program);
            return 0;
        }
    }
    try {
        const auto args = parse(argc, argv);
        if (args.command == "retry" || args.command == "purge") {
            return change(args, program, out, err);
        }
        if (args.command != "list" && args.command != "stats") {
            throw Usage(fmt::format("no command '{}'", args.command));
        }
        auto journal = Journal::open(args.journal, JournalSync::normal, Journal::Access::read_only);
        if (args.command == "list") {
            list(journal, args.dead, out);
        } else {
            stats(journal, out);
        }
        return 0;
    } catch (const Usage& e) {
        fmt::print(err, "{}: {}\n", program, e.what());
        fmt::print(err, fmt::runtime(kUsage), program);
        return 2;
    } catch (const JournalError& e) {
        fmt::print(err, "{}: {}\n", program, e.what());
        return 2;
    }
}

int jobs_command(int argc, const char* const argv[], std::string_view program) {
    return jobs_command(argc, argv, program, std::cout, std::cerr);
}

}  // namespace crosstown
