// crosstown::ServerConfig: everything the server is told at start, from the command line and
// from --config FILE ("option = value" lines, same names; the command line wins).
//
//   auto parsed = crosstown::parse_server_config(argc, argv, {"fcgi_app", "0.1.0"});
//   if (!parsed.config) return parsed.exit_code;   // --help/--version: 0; a bad value: 2
//
// A bad value is reported naming the option and what it accepts:
//   fcgi_app: --workers: 'lots' is not a whole number (1 to 4096)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "crosstown/log.hpp"
#include "crosstown/pool.hpp"
#include "crosstown/responder.hpp"

namespace crosstown {

struct ServerConfig {
    std::string listen = "/run/fcgi_app/fcgi_app.sock";  // unix socket path or host:port
    mode_t socket_mode = 0660;
    std::optional<gid_t> socket_group;
    int backlog = 1024;
    ResponderConfig responder;  // --responders, --io-timeout, --max-body, --access-log, ...
    PoolConfig pool{.workers = 16};
    std::chrono::milliseconds drain_timeout{30'000};
    log::Level log_level = log::Level::info;
    // --allow-remote: a TCP --listen on a non-loopback address is refused (exit 2) without it.
    bool allow_remote = false;
};

struct ProgramInfo {
    std::string_view name;
    std::string_view version;
    std::string_view summary = "a FastCGI application server behind nginx";
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
