#include "crosstown/server_config.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <grp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "crosstown/fastcgi/listen_socket.hpp"
#include "crosstown/fastcgi/web_server_addrs.hpp"
#include "crosstown/jobs/redis/redis_connection.hpp"

namespace crosstown {
namespace po = boost::program_options;
namespace {

// Thrown while converting one option; caught and reported with the option's name.
struct BadValue : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

std::uint64_t whole_number(std::string_view text, std::uint64_t low, std::uint64_t high,
                           int base = 10) {
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (text.empty() || error != std::errc{} || end != text.data() + text.size() || value < low ||
        value > high) {
        throw BadValue(fmt::format("'{}' is not a whole number ({} to {})", text, low, high));
    }
    return value;
}

// Splits "250ms" into 250 and "ms".
std::pair<std::uint64_t, std::string_view> number_and_unit(std::string_view text) {
    const auto digits = text.find_first_not_of("0123456789");
    const auto number = text.substr(0, digits);
    const auto unit = digits == std::string_view::npos ? std::string_view{} : text.substr(digits);
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (number.empty() || error != std::errc{} || end != number.data() + number.size()) {
        throw std::invalid_argument("no number");
    }
    return {value, unit};
}

bool on_off(std::string_view text) {
    if (text == "on" || text == "true" || text == "yes" || text == "1") return true;
    if (text == "off" || text == "false" || text == "no" || text == "0") return false;
    throw BadValue(fmt::format("'{}' is not on or off", text));
}

log::Level log_level(std::string_view text) {
    if (text == "debug") return log::Level::debug;
    if (text == "info") return log::Level::info;
    if (text == "warn") return log::Level::warn;
    if (text == "error") return log::Level::error;
    throw BadValue(fmt::format("'{}' is not one of debug, info, warn, error", text));
}

Overflow overflow(std::string_view text) {
    if (text == "block") return Overflow::block;
    if (text == "caller_runs") return Overflow::caller_runs;
    if (text == "reject") return Overflow::reject;
    if (text == "shed") return Overflow::shed;
    if (text == "spill") return Overflow::spill;
    throw BadValue(fmt::format("'{}' is not one of block, caller_runs, reject, shed, spill", text));
}

constexpr std::string_view journal_sync_name(JournalSync sync) {
    return sync == JournalSync::full ? "full" : "normal";
}

JournalSync journal_sync(std::string_view text) {
    if (text == "normal") return JournalSync::normal;
    if (text == "full") return JournalSync::full;
    throw BadValue(fmt::format("'{}' is not normal or full", text));
}

std::string journal(std::string_view text) {
    if (text.empty()) throw BadValue("empty; expected a file path, a Redis address, or off");
    if (text.starts_with("redis://") || text.starts_with("unix://")) {
        RedisAddress::parse(text);  // throws std::invalid_argument, reported under --journal
        return std::string(text);
    }
    if (text.back() == '/') throw BadValue(fmt::format("'{}' is a directory; name a file", text));
    return std::string(text);
}

Role role(std::string_view text) {
    if (text == "both") return Role::both;
    if (text == "web") return Role::web;
    if (text == "worker") return Role::worker;
    throw BadValue(fmt::format("'{}' is not one of both, web, worker", text));
}

constexpr std::string_view role_name(Role role) {
    return role == Role::web ? "web" : role == Role::worker ? "worker" : "both";
}

// A key prefix: letters, digits and - _ . only, so that it cannot change a key's meaning.
std::string key_prefix(std::string_view text) {
    const bool plain = !text.empty() && std::ranges::all_of(text, [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
    if (!plain) throw BadValue(fmt::format("'{}': use letters, digits, '-', '_' and '.'", text));
    return std::string(text);
}

// "4..128" (elastic) or "16" (fixed).
void worker_range(std::string_view text, PoolConfig& pool) {
    const auto dots = text.find("..");
    if (dots == std::string_view::npos) {
        pool.workers = pool.min_workers = whole_number(text, 1, 4096);
        return;
    }
    pool.min_workers = whole_number(text.substr(0, dots), 1, 4096);
    pool.workers = whole_number(text.substr(dots + 2), 1, 4096);
    if (pool.min_workers > pool.workers) {
        throw BadValue(fmt::format("'{}': the minimum is above the maximum", text));
    }
}

gid_t group_id(const std::string& name) {
    if (const group* found = ::getgrnam(name.c_str())) return found->gr_gid;
    throw BadValue(fmt::format("no such group '{}'", name));
}

std::string listen_spec(const std::string& text) {
    if (text.empty()) throw BadValue("empty; expected a unix socket path or host:port");
    if (!is_unix_socket_spec(text) && text.find(':') == std::string::npos) {
        throw BadValue(
            fmt::format("'{}' is neither a unix socket path (with a '/') nor host:port", text));
    }
    return text;
}

// How a default reads in --help and in the config file: the way a user would write it.
std::string format_duration(std::chrono::milliseconds d) {
    if (d.count() % 1000 != 0) return fmt::format("{}ms", d.count());
    return fmt::format("{}s", d.count() / 1000);
}

std::string format_size(std::size_t bytes) {
    static constexpr std::pair<std::size_t, const char*> units[] = {
        {std::size_t{1} << 30, "g"}, {std::size_t{1} << 20, "m"}, {std::size_t{1} << 10, "k"}};
    for (const auto& [scale, unit] : units) {
        if (bytes >= scale && bytes % scale == 0) return fmt::format("{}{}", bytes / scale, unit);
    }
    return std::to_string(bytes);
}

std::string format_on_off(bool on) { return on ? "on" : "off"; }

std::string format_log_level(log::Level level) {
    static constexpr const char* names[] = {"debug", "info", "warn", "error"};
    return names[static_cast<int>(level)];
}

std::string default_listen(const ProgramInfo& program) {
    return fmt::format("/run/{0}/{0}.sock", program.name);
}

po::options_description describe_options(const ProgramInfo& program) {
    const ServerConfig d;
    po::options_description options("Options");
    const auto text = [] { return po::value<std::string>(); };
    const auto with_default = [](const std::string& value) {
        return po::value<std::string>()->default_value(value);
    };
    // One option a line: name, default (from ServerConfig), help.
    const auto add = [&](const char* name, const std::string& value, const char* help) {
        options.add_options()(name, with_default(value), help);
    };
    options.add_options()("help,h", "print this help and exit");
    options.add_options()("version", "print the version and exit");
    options.add_options()("config", text(),
                          "read options from FILE (\"name = value\" lines); the command line wins");
    add("listen", default_listen(program), "unix socket path, or host:port, to serve FastCGI on");
    add("socket-mode", fmt::format("{:04o}", d.socket_mode),
        "permissions of a unix socket (octal)");
    options.add_options()("socket-group", text(),
                          "group of a unix socket (the web server's, e.g. www-data)");
    add("backlog", std::to_string(d.backlog), "listen backlog");
    add("responders", std::to_string(d.responders), "threads serving requests");
    add("workers", fmt::format("{}..{}", d.pool.min_workers, d.pool.workers),
        "pool threads running deferred callbacks: MIN..MAX (more start while callbacks wait, "
        "idle ones above MIN retire) or N (a fixed pool)");
    add("worker-idle", format_duration(d.pool.idle_timeout),
        "how long a worker above MIN waits for work before it retires");
    add("queue-capacity", std::to_string(d.pool.queue_capacity),
        "most callbacks waiting for a worker");
    add("overflow", std::string(overflow_name(d.pool.overflow)),
        "when the queue is full: block, caller_runs, reject or shed (a 503 at registration)");
    add("slow-callback", format_duration(d.pool.slow_callback),
        "log (once, by name and request id) and count each callback that runs longer; 0: off");
    add("max-deferred-per-request", std::to_string(d.limits.max_deferred_per_request),
        "most callbacks one request may register");
    add("drain-timeout", format_duration(d.drain_timeout),
        "on SIGTERM, how long queued callbacks may still run");
    add("max-body", format_size(d.limits.max_body), "largest request body accepted (413 above)");
    add("max-job-payload", format_size(d.limits.max_job_payload),
        "largest payload of one durable job (413 above, unless the handler catches it)");
    add("io-timeout", format_duration(d.io_timeout), "read/write timeout on nginx connections");
    add("log-level", format_log_level(d.log_level), "debug, info, warn or error");
    add("access-log", format_on_off(d.access_log), "one log line per request: on or off");
    add("idempotency-header", d.idempotency_header.empty() ? "off" : d.idempotency_header,
        "request header whose value keys the request's durable jobs (VALUE/KIND/N), so that a "
        "retry makes no second job; off: none");
    add("allow-remote", format_on_off(d.allow_remote),
        "on: allow --listen on a TCP address other than loopback (FastCGI has no "
        "authentication; restrict peers with FCGI_WEB_SERVER_ADDRS)");
    add("role", std::string(role_name(d.role)),
        "both: serve FastCGI and run durable jobs; web: only serve; worker: only run the jobs "
        "of a Redis journal (no socket)");
    add("journal", "off",
        "durable jobs: the journal file (a SQLite database this process owns), a Redis server "
        "shared by instances (redis://HOST:PORT[/DB] or unix:///PATH[?db=N]), or off");
    add("journal-sync", std::string(journal_sync_name(d.journal.sync)),
        "normal: a commit survives the process's death (SIGKILL, OOM, crash); full: also a "
        "power cut, at an fsync per group commit");
    add("journal-prefix", d.journal.redis.prefix,
        "Redis journal: the prefix of every key, so that applications can share a server");
    options.add_options()("journal-password-file", text(),
                          "Redis journal: read the password from FILE (else from "
                          "CROSSTOWN_REDIS_PASSWORD)");
    add("journal-claim-after", format_duration(d.journal.redis.claim_after),
        "Redis journal: an instance silent this long is dead; others release and claim its "
        "jobs (at least 5s)");
    add("journal-wait", format_duration(d.journal.redis.wait),
        "Redis journal: at start, how long to wait for the server before exiting (2)");
    options.add_options()("journal-instance", text(),
                          "Redis journal: this instance's name, unique among live instances "
                          "(default HOSTNAME:PID:RANDOM)");
    for (const auto& option : program.app_options) {
        options.add_options()(option.name.c_str(), text(), option.help.c_str());
    }
    return options;
}

// Converts one option with `convert`, reporting a bad value under the option's name.
template <class Convert>
void take(const po::variables_map& values, const char* name, Convert convert) {
    if (!values.count(name)) return;
    try {
        convert(values[name].as<std::string>());
    } catch (const std::invalid_argument& e) {
        throw BadValue(fmt::format("--{}: {}", name, e.what()));
    }
}

ServerConfig to_config(const po::variables_map& v, const ProgramInfo& program) {
    ServerConfig c;
    take(v, "journal",
         [&](const std::string& s) { c.journal.path = s == "off" ? "" : journal(s); });
    take(v, "journal-sync", [&](const std::string& s) { c.journal.sync = journal_sync(s); });
    take(v, "role", [&](const std::string& s) { c.role = role(s); });
    take(v, "journal-prefix",
         [&](const std::string& s) { c.journal.redis.prefix = key_prefix(s); });
    take(v, "journal-password-file",
         [&](const std::string& s) { c.journal.redis.password_file = s; });
    take(v, "journal-claim-after", [&](const std::string& s) {
        c.journal.redis.claim_after = parse_duration(s);
        // Shorter, and one slow beat (a command waits up to 2 s) would let other instances
        // release the jobs held for responses still being written.
        if (c.journal.redis.claim_after < std::chrono::seconds(5)) {
            throw BadValue("must be at least 5s");
        }
    });
    take(v, "journal-wait",
         [&](const std::string& s) { c.journal.redis.wait = parse_duration(s); });
    take(v, "journal-instance", [&](const std::string& s) {
        if (s.empty() || s.find_first_of(" \t\n") != std::string::npos) {
            throw BadValue(fmt::format("'{}': a name without spaces", s));
        }
        c.journal.redis.instance = s;
    });
    for (const auto& option : program.app_options) {
        take(v, option.name.c_str(), [&](const std::string& s) { c.app_options[option.name] = s; });
    }
    take(v, "listen", [&](const std::string& s) { c.listen = listen_spec(s); });
    take(v, "socket-mode",
         [&](const std::string& s) { c.socket_mode = whole_number(s, 0, 0777, 8); });
    take(v, "socket-group", [&](const std::string& s) { c.socket_group = group_id(s); });
    take(v, "backlog", [&](const std::string& s) { c.backlog = whole_number(s, 1, 65535); });
    take(v, "responders", [&](const std::string& s) { c.responders = whole_number(s, 1, 1024); });
    take(v, "workers", [&](const std::string& s) { worker_range(s, c.pool); });
    take(v, "worker-idle", [&](const std::string& s) { c.pool.idle_timeout = parse_duration(s); });
    take(v, "queue-capacity",
         [&](const std::string& s) { c.pool.queue_capacity = whole_number(s, 1, 10'000'000); });
    take(v, "overflow", [&](const std::string& s) { c.pool.overflow = overflow(s); });
    take(v, "slow-callback",
         [&](const std::string& s) { c.pool.slow_callback = parse_duration(s); });
    take(v, "max-deferred-per-request", [&](const std::string& s) {
        c.limits.max_deferred_per_request = whole_number(s, 1, 1'000'000);
    });
    take(v, "drain-timeout", [&](const std::string& s) { c.drain_timeout = parse_duration(s); });
    take(v, "max-body", [&](const std::string& s) { c.limits.max_body = parse_size(s); });
    take(v, "max-job-payload", [&](const std::string& s) {
        c.limits.max_job_payload = parse_size(s);
        // SQLite's own limit on a value is 1 GB: a larger one could not be kept.
        if (c.limits.max_job_payload < 1 || c.limits.max_job_payload > (std::size_t{1} << 29)) {
            throw BadValue("must be between 1 and 512m");
        }
    });
    take(v, "io-timeout", [&](const std::string& s) {
        c.io_timeout = parse_duration(s);
        if (c.io_timeout < std::chrono::milliseconds(100)) throw BadValue("must be at least 100ms");
    });
    take(v, "log-level", [&](const std::string& s) { c.log_level = log_level(s); });
    take(v, "access-log", [&](const std::string& s) { c.access_log = on_off(s); });
    take(v, "idempotency-header", [&](const std::string& s) {
        c.idempotency_header = s == "off" ? "" : s;
        // What nginx passes on as HTTP_* by default: no '_' (nginx drops such headers).
        const auto plain = [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-';
        };
        if (s.empty() || !std::ranges::all_of(s, plain)) {
            throw BadValue("must be a header name (letters, digits, -) or off");
        }
    });
    take(v, "allow-remote", [&](const std::string& s) { c.allow_remote = on_off(s); });
    if (c.role != Role::both && !c.journal.is_redis()) {
        throw BadValue(
            fmt::format("--role: {} needs a Redis journal (--journal redis://...), "
                        "which other instances share",
                        role_name(c.role)));
    }
    try {
        if (const auto addrs = WebServerAddrs::from_environment()) {
            c.web_server_addrs = addrs->describe();
        }
    } catch (const std::invalid_argument& e) {
        throw BadValue(fmt::format("FCGI_WEB_SERVER_ADDRS: {}", e.what()));
    }
    return c;
}

void read_config_file(const std::string& path, const po::options_description& options,
                      po::variables_map& values) {
    std::ifstream file(path);
    if (!file) throw BadValue(fmt::format("--config: cannot read '{}'", path));
    try {
        po::store(po::parse_config_file(file, options), values);
    } catch (const po::error& e) {
        throw BadValue(fmt::format("--config {}: {}", path, e.what()));
    }
}

}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text) {
    try {
        const auto [value, unit] = number_and_unit(text);
        if (value > 24 * 3600 * 1000ULL) throw std::invalid_argument("too long");
        const auto n = static_cast<std::int64_t>(value);
        if (unit == "ms") return std::chrono::milliseconds(n);
        if (unit.empty() || unit == "s") return std::chrono::seconds(n);
        if (unit == "m") return std::chrono::minutes(n);
        if (unit == "h") return std::chrono::hours(n);
    } catch (const std::invalid_argument&) {
    }
    throw BadValue(fmt::format("'{}' is not a duration such as 30s, 250ms or 2m", text));
}

std::size_t parse_size(std::string_view text) {
    try {
        const auto [value, unit] = number_and_unit(text);
        const auto limit = std::uint64_t{1} << 40;
        std::uint64_t scale = 1;
        if (unit == "k" || unit == "K")
            scale = 1ULL << 10;
        else if (unit == "m" || unit == "M")
            scale = 1ULL << 20;
        else if (unit == "g" || unit == "G")
            scale = 1ULL << 30;
        else if (!unit.empty())
            throw std::invalid_argument("unit");
        if (value <= limit / scale) return value * scale;
    } catch (const std::invalid_argument&) {
    }
    throw BadValue(fmt::format("'{}' is not a size such as 1048576, 512k or 8m", text));
}

ParsedConfig parse_server_config(int argc, const char* const argv[], const ProgramInfo& program,
                                 std::ostream& out, std::ostream& err) {
    const auto options = describe_options(program);
    try {
        po::variables_map values;
        try {
            po::store(po::parse_command_line(argc, argv, options), values);
        } catch (const po::error& e) {
            throw BadValue(e.what());
        }
        if (values.count("help")) {
            fmt::print(out, "Usage: {} [options]\n{} {}: {}.\n\n", program.name, program.name,
                       program.version, program.summary);
            out << options << '\n';
            return {std::nullopt, 0};
        }
        if (values.count("version")) {
            fmt::print(out, "{} {}\n", program.name, program.version);
            return {std::nullopt, 0};
        }
        if (values.count("config")) {
            read_config_file(values["config"].as<std::string>(), options, values);
        }
        po::notify(values);
        return {to_config(values, program), 0};
    } catch (const BadValue& e) {
        fmt::print(err, "{}: {}\n", program.name, e.what());
        fmt::print(err, "Try '{} --help' for the options.\n", program.name);
        return {std::nullopt, 2};
    }
}

ParsedConfig parse_server_config(int argc, const char* const argv[], const ProgramInfo& program) {
    return parse_server_config(argc, argv, program, std::cout, std::cerr);
}

}  // namespace crosstown
