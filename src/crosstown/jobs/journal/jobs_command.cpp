#include "crosstown/jobs/jobs_command.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ostream.h>

#include <charconv>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/journal/open_job_admin.hpp"
#include "crosstown/jobs/journal_error.hpp"

namespace crosstown {
namespace {

constexpr std::string_view kUsage = R"(Usage: {0} COMMAND --journal PATH|ADDRESS [options]
  list [--dead]     the journal's jobs (or the dead ones): id, kind, state, attempts, next
                    attempt, request id, last error; safe while the server runs
  stats             jobs by kind and state; safe while the server runs
  retry ID|--dead   make a dead job (or every dead job) ready again, with its attempts reset
  purge --dead      delete the dead jobs
  cancel ID|--kind KIND
                    delete a job (or every job of a kind) that is ready, scheduled or waiting
                    for a retry; one running now finishes its attempt and is not retried
With a SQLite journal (a file), retry, purge and cancel are refused while a live process owns
it: stop it first. With a Redis journal (redis://HOST:PORT[/DB] or unix:///PATH[?db=N]) every
command is safe beside running instances, which take revived jobs at once; the server's
--journal-prefix and --journal-password-file (or CROSSTOWN_REDIS_PASSWORD) apply.
)";

struct Usage : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

struct Arguments {
    std::string command;
    std::string journal;
    bool dead = false;
    std::optional<std::int64_t> id;
    std::optional<std::string> kind;  // cancel --kind
    RedisJournalOptions redis;
};

// "--NAME VALUE" or "--NAME=VALUE" at argv[i]: the value (advancing i), or nullopt.
std::optional<std::string> option(std::string_view name, int& i, int argc,
                                  const char* const argv[]) {
    const std::string_view arg = argv[i];
    if (arg == name && i + 1 < argc) return argv[++i];
    if (arg.starts_with(name) && arg.size() > name.size() && arg[name.size()] == '=') {
        return std::string(arg.substr(name.size() + 1));
    }
    return std::nullopt;
}

Arguments parse(int argc, const char* const argv[]) {
    Arguments args;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (auto journal = option("--journal", i, argc, argv)) {
            args.journal = std::move(*journal);
        } else if (auto prefix = option("--journal-prefix", i, argc, argv)) {
            args.redis.prefix = std::move(*prefix);
        } else if (auto file = option("--journal-password-file", i, argc, argv)) {
            args.redis.password_file = std::move(*file);
        } else if (auto kind = option("--kind", i, argc, argv)) {
            args.kind = std::move(*kind);
        } else if (arg == "--dead") {
            args.dead = true;
        } else if (args.command.empty() && !arg.starts_with("-")) {
            args.command = arg;
        } else if ((args.command == "retry" || args.command == "cancel") && !args.id &&
                   !arg.starts_with("-")) {
            std::int64_t id = 0;
            const auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), id);
            if (error != std::errc{} || end != arg.data() + arg.size() || id <= 0) {
                throw Usage(fmt::format("{}: '{}' is not a job id", args.command, arg));
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
    if (args.command == "cancel" && args.id.has_value() == args.kind.has_value()) {
        throw Usage("cancel takes a job id or --kind KIND");
    }
    if (args.kind && args.command != "cancel") throw Usage("--kind is for cancel");
    return args;
}

std::string when(std::int64_t unix_ms) {
    if (unix_ms <= 0) return "-";
    const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(unix_ms));
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

void print_header(std::ostream& out) {
    fmt::print(out, "{:>19}  {:<16} {:<9} {:>8}  {:<20}  {:<16}  {}\n", "id", "kind", "state",
               "attempts", "next attempt (UTC)", "request", "last error");
}

// A ready job whose time is still ahead (DurableOptions::delay, run_at) is scheduled; a Redis
// journal says so itself.
std::string_view shown_state(const AdminJob& row, std::int64_t now_ms) {
    if (row.state == "ready" && row.job.run_at_ms > now_ms) return "scheduled";
    return row.state;
}

void print_job(std::ostream& out, const StoredJob& job, std::string_view state) {
    const bool timed = state == "retry" || state == "scheduled";
    fmt::print(out, "{:>19}  {:<16} {:<9} {:>8}  {:<20}  {:<16}  {}\n", job.id, job.kind, state,
               job.attempts, timed ? when(job.run_at_ms) : "-",
               job.request_id.empty() ? "-" : job.request_id,
               job.last_error.empty() ? "-" : job.last_error);
}

void list(JobAdmin& admin, bool dead, std::ostream& out) {
    const auto jobs = admin.list(dead);
    const auto now = detail::unix_now_ms();
    print_header(out);
    for (const auto& row : jobs) print_job(out, row.job, shown_state(row, now));
    fmt::print(out, "{} jobs\n", jobs.size());
}

void stats(JobAdmin& admin, std::ostream& out) {
    std::map<std::pair<std::string, std::string>, std::uint64_t> by_kind_state;
    std::map<std::string, std::uint64_t> by_state;
    const auto now = detail::unix_now_ms();
    for (const auto& row : admin.list(false)) {
        const std::string state(shown_state(row, now));
        ++by_kind_state[{row.job.kind, state}];
        ++by_state[state];
    }
    fmt::print(out, "{:<24} {:<9} {:>8}\n", "kind", "state", "jobs");
    for (const auto& [key, n] : by_kind_state) {
        fmt::print(out, "{:<24} {:<9} {:>8}\n", key.first, key.second, n);
    }
    for (const auto& line : admin.details()) fmt::print(out, "{}\n", line);
    // Held jobs exist only where others could see them: a shared (Redis) journal.
    const auto also = [&](const char* state) {
        return by_state[state] > 0 ? fmt::format(", {} {}", state, by_state[state]) : "";
    };
    fmt::print(out, "ready {}, retry {}, dead {}{}{}\n", by_state["ready"], by_state["retry"],
               by_state["dead"], also("scheduled"), also("held"));
}

int retry(JobAdmin& admin, const Arguments& args, std::string_view program, std::ostream& out,
          std::ostream& err) {
    const auto n = admin.revive(args.id);
    if (args.id && n == 0) {
        fmt::print(err, "{}: retry: job {} is not a dead job in {}\n", program, *args.id,
                   args.journal);
        return 2;
    }
    fmt::print(out, "{} dead jobs made ready; {}\n", n, admin.revived_run());
    return 0;
}

int cancel(JobAdmin& admin, const Arguments& args, std::string_view program, std::ostream& out,
           std::ostream& err) {
    const auto n = admin.cancel(args.id, args.kind);
    if (args.id && n == 0) {
        fmt::print(err, "{}: cancel: job {} is not in {}, or dead, or held for a response still\n",
                   program, *args.id, args.journal);
        return 2;
    }
    fmt::print(out, "{} jobs cancelled\n", n);
    return 0;
}

// One path for every store: the admin knows what its store allows.
int run(const Arguments& args, std::string_view program, std::ostream& out, std::ostream& err) {
    const bool change =
        args.command == "retry" || args.command == "purge" || args.command == "cancel";
    std::unique_ptr<JobAdmin> admin;
    try {
        admin = open_job_admin(args.journal, args.redis, change);
    } catch (const AdminRefused& e) {
        fmt::print(err, "{}: {}: refused: {}\n", program, args.command, e.what());
        return 1;
    }
    if (args.command == "list") {
        list(*admin, args.dead, out);
    } else if (args.command == "stats") {
        stats(*admin, out);
    } else if (args.command == "retry") {
        return retry(*admin, args, program, out, err);
    } else if (args.command == "cancel") {
        return cancel(*admin, args, program, out, err);
    } else {
        fmt::print(out, "{} dead jobs deleted\n", admin->purge_dead());
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
        const bool known = args.command == "list" || args.command == "stats" ||
                           args.command == "retry" || args.command == "purge" ||
                           args.command == "cancel";
        if (!known) throw Usage(fmt::format("no command '{}'", args.command));
        return run(args, program, out, err);
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
