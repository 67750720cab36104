// crosstown::ServerConfig: everything the server is told at start, from the command line and
// from --config FILE ("option = value" lines, same names; the command line wins).
//
//   auto parsed = crosstown::parse_server_config(argc, argv, {"my_app", "1.0"});
//   if (!parsed.config) return parsed.exit_code;   // --help/--version: 0; a bad value: 2
//
// A bad value is reported naming the option and what it accepts, and parsing exits 2:
//   my_app: --workers: 'lots' is not a whole number (1 to 4096)
// The member initialisers below are the defaults: --help and the shipped config file show
// them, and nothing else states them again.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/deferred/pool_config.hpp"
#include "crosstown/http/request_limits.hpp"
#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {

// What a process does (--role): serve FastCGI and run durable jobs (both), only serve (web:
// its jobs are run by other instances sharing a Redis journal), or only run jobs (worker: no
// socket, so job capacity can grow on hosts without nginx).
enum class Role { both, web, worker };

struct ServerConfig {
    Role role = Role::both;
    // A unix socket path (with a '/') or host:port. Empty: parse_server_config fills in
    // /run/NAME/NAME.sock for the program NAME. Ignored under socket activation.
    std::string listen;
    mode_t socket_mode = 0660;
    std::optional<gid_t> socket_group;  // the web server's group, e.g. www-data
    int backlog = 1024;
    unsigned responders = 8;  // threads serving requests
    // Read/write timeout on nginx's connections, so that a stalled peer cannot hold a thread.
    std::chrono::milliseconds io_timeout{30'000};
    RequestLimits limits;
    bool access_log = true;
    // Its value is the default unique key of a request's durable jobs; empty ("off"): none.
    std::string idempotency_header = "Idempotency-Key";
    PoolConfig pool;
    // On SIGTERM, how long requests in hand and queued callbacks may still take.
    std::chrono::milliseconds drain_timeout{30'000};
    log::Level log_level = log::Level::info;
    // A TCP socket other machines can reach is refused (exit 2) unless this is set: FastCGI has
    // no authentication.
    bool allow_remote = false;
    // FCGI_WEB_SERVER_ADDRS: the only TCP peers served, as a list of numeric addresses
    // ("127.0.0.1, ::1"). Empty: whoever reaches the socket. parse_server_config reads it from
    // the environment and refuses a bad one.
    std::string web_server_addrs;
    // Durable jobs: the journal's path (empty: off) and how hard each commit is synced.
    JournalConfig journal;
    // The values of the application's own options (ProgramInfo::app_options), by name; an
    // option not given is absent.
    std::map<std::string, std::string, std::less<>> app_options;
};

// An option of the application's own, parsed beside the server's (--NAME VALUE, or
// "NAME = value" in --config) into ServerConfig::app_options.
struct AppOption {
    std::string name;
    std::string help;
};

struct ProgramInfo {
    std::string_view name;
    std::string_view version;
    std::string_view summary = "a FastCGI application server behind nginx";
    std::vector<AppOption> app_options = {};
};

struct ParsedConfig {
    std::optional<ServerConfig> config;  // empty: exit with exit_code
    int exit_code = 0;
};

// Prints --help/--version to `out` and errors to `err`.
ParsedConfig parse_server_config(int argc, const char* const argv[], const ProgramInfo& program,
                                 std::ostream& out, std::ostream& err);
ParsedConfig parse_server_config(int argc, const char* const argv[], const ProgramInfo& program);

// "30s", "250ms", "2m", "1h"; a bare number is seconds. Throws std::invalid_argument.
std::chrono::milliseconds parse_duration(std::string_view text);
// "1048576", "512k", "8m", "1g" (powers of 1024, like nginx). Throws std::invalid_argument.
std::size_t parse_size(std::string_view text);

}  // namespace crosstown
