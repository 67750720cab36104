#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/server_config.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

#include "support/temp_dir.hpp"

namespace crosstown {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct Outcome {
    ParsedConfig parsed;
    std::string out;
    std::string err;
};

Outcome parse(std::vector<const char*> args) {
    args.insert(args.begin(), "fcgi_app");
    std::ostringstream out;
    std::ostringstream err;
    auto parsed = parse_server_config(static_cast<int>(args.size()), args.data(),
                                      {"fcgi_app", "9.9.9"}, out, err);
    return {std::move(parsed), out.str(), err.str()};
}

// Each setting in --help with its default as --help shows it ("": none). --help, --version and
// --config are actions, not settings. Option lines start with two spaces; the wrapped lines of
// a description are indented further, so an option named inside a description is not taken.
std::map<std::string, std::string> help_defaults(const std::string& help) {
    const std::regex option_line(
        R"(^  (?:-\w \[ )?--([a-z][a-z-]*)(?: \])?(?: arg)?(?: \(=([^)]*)\))?)");
    std::map<std::string, std::string> defaults;
    std::istringstream lines(help);
    for (std::string line; std::getline(lines, line);) {
        std::smatch m;
        if (!std::regex_search(line, m, option_line)) continue;
        const auto name = m[1].str();
        if (name == "help" || name == "version" || name == "config") continue;
        defaults[name] = m[2].str();
    }
    return defaults;
}

void expect_defaults(const ServerConfig& c) {
    EXPECT_EQ(c.listen, "/run/fcgi_app/fcgi_app.sock");
    EXPECT_EQ(c.socket_mode, 0660u);
    EXPECT_FALSE(c.socket_group);
    EXPECT_EQ(c.responders, 8u);
    EXPECT_EQ(c.pool.workers, 128u);
    EXPECT_EQ(c.pool.min_workers, 4u);
    EXPECT_EQ(c.pool.idle_timeout, 10s);
    EXPECT_EQ(c.pool.queue_capacity, 10000u);
    EXPECT_EQ(c.pool.overflow, Overflow::block);
    EXPECT_EQ(c.limits.max_deferred_per_request, 1000u);
    EXPECT_EQ(c.drain_timeout, 30s);
    EXPECT_EQ(c.limits.max_body, 1u << 20);
    EXPECT_EQ(c.limits.max_job_payload, 1u << 20);
    EXPECT_EQ(c.io_timeout, 30s);
    EXPECT_EQ(c.log_level, log::Level::info);
    EXPECT_TRUE(c.access_log);
}

TEST(ServerConfig, DefaultsAreTheDocumentedOnes) {
    const auto r = parse({});
    ASSERT_TRUE(r.parsed.config);
    expect_defaults(*r.parsed.config);
    EXPECT_TRUE(r.err.empty());
}

TEST(ServerConfig, WorkersTakeARange) {
    const auto r = parse({"--workers", "2..64", "--worker-idle", "250ms"});
    ASSERT_TRUE(r.parsed.config) << r.err;
    EXPECT_EQ(r.parsed.config->pool.min_workers, 2u);
    EXPECT_EQ(r.parsed.config->pool.workers, 64u);
    EXPECT_EQ(r.parsed.config->pool.idle_timeout, 250ms);
}

TEST(ServerConfig, ReadsEveryOption) {
    const auto r = parse({"--listen",
                          "127.0.0.1:9000",
                          "--socket-mode",
                          "0600",
                          "--socket-group",
                          "root",
                          "--backlog",
                          "64",
                          "--responders",
                          "3",
                          "--workers",
                          "5",
                          "--queue-capacity",
                          "7",
                          "--overflow",
                          "caller_runs",
                          "--slow-callback",
                          "250ms",
                          "--max-deferred-per-request",
                          "11",
                          "--drain-timeout",
                          "1500ms",
                          "--max-body",
                          "2k",
                          "--io-timeout",
                          "2m",
                          "--log-level",
                          "warn",
                          "--access-log",
                          "off",
                          "--idempotency-header",
                          "X-Retry-Key"});
    ASSERT_TRUE(r.parsed.config) << r.err;
    const auto& c = *r.parsed.config;
    EXPECT_EQ(c.listen, "127.0.0.1:9000");
    EXPECT_EQ(c.socket_mode, 0600u);
    EXPECT_EQ(c.socket_group, 0u);
    EXPECT_EQ(c.backlog, 64);
    EXPECT_EQ(c.responders, 3u);
    EXPECT_EQ(c.pool.workers, 5u);
    EXPECT_EQ(c.pool.min_workers, 5u) << "a single number is a fixed pool";
    EXPECT_EQ(c.pool.queue_capacity, 7u);
    EXPECT_EQ(c.pool.overflow, Overflow::caller_runs);
    EXPECT_EQ(c.pool.slow_callback, 250ms);
    EXPECT_EQ(c.limits.max_deferred_per_request, 11u);
    EXPECT_EQ(c.drain_timeout, 1500ms);
    EXPECT_EQ(c.limits.max_body, 2048u);
    EXPECT_EQ(c.io_timeout, 2min);
    EXPECT_EQ(c.log_level, log::Level::warn);
    EXPECT_FALSE(c.access_log);
    EXPECT_EQ(c.idempotency_header, "X-Retry-Key");
    const auto off = parse({"--idempotency-header", "off"});
    ASSERT_TRUE(off.parsed.config) << off.err;
    EXPECT_EQ(off.parsed.config->idempotency_header, "");
}

TEST(ServerConfig, BadValuesNameTheOptionAndExit2) {
    const std::vector<std::pair<std::vector<const char*>, std::string>> cases = {
        {{"--workers", "lots"}, "--workers: 'lots' is not a whole number (1 to 4096)"},
        {{"--workers", "0"}, "--workers: '0' is not a whole number"},
        {{"--responders", "-2"}, "--responders:"},
        {{"--queue-capacity", "1e3"}, "--queue-capacity:"},
        {{"--overflow", "drop"},
         "--overflow: 'drop' is not one of block, caller_runs, reject, shed"},
        {{"--drain-timeout", "soon"}, "--drain-timeout: 'soon' is not a duration"},
        {{"--drain-timeout", "5 s"}, "--drain-timeout:"},
        {{"--slow-callback", "a while"}, "--slow-callback: 'a while' is not a duration"},
        {{"--workers", "8..4"}, "--workers: '8..4': the minimum is above the maximum"},
        {{"--workers", "0..4"}, "--workers: '0' is not a whole number"},
        {{"--workers", "2.."}, "--workers: '' is not a whole number"},
        {{"--worker-idle", "never"}, "--worker-idle: 'never' is not a duration"},
        {{"--max-body", "1t"}, "--max-body: '1t' is not a size"},
        {{"--max-job-payload", "0"}, "--max-job-payload: must be between 1 and 512m"},
        {{"--max-job-payload", "1g"}, "--max-job-payload: must be between 1 and 512m"},
        {{"--socket-mode", "0999"}, "--socket-mode:"},
        {{"--socket-mode", "01777"}, "--socket-mode:"},
        {{"--socket-group", "no-such-group-here"}, "--socket-group: no such group"},
        {{"--log-level", "loud"}, "--log-level: 'loud' is not one of"},
        {{"--access-log", "maybe"}, "--access-log: 'maybe' is not on or off"},
        {{"--idempotency-header", "Idempotency Key"}, "--idempotency-header: must be a header"},
        {{"--io-timeout", "10ms"}, "--io-timeout: must be at least 100ms"},
        {{"--listen", "nowhere"}, "--listen: 'nowhere' is neither"},
        {{"--max-deferred-per-request", ""}, "--max-deferred-per-request:"},
        {{"--no-such-option"}, "unrecognised option '--no-such-option'"},
        {{"--workers"}, "--workers"},
    };
    for (const auto& [args, message] : cases) {
        const auto r = parse(args);
        EXPECT_FALSE(r.parsed.config) << message;
        EXPECT_EQ(r.parsed.exit_code, 2) << message;
        EXPECT_THAT(r.err, HasSubstr("fcgi_app: ")) << message;
        EXPECT_THAT(r.err, HasSubstr(message));
    }
}

TEST(ServerConfig, HelpAndVersionExit0) {
    auto r = parse({"--help"});
    EXPECT_FALSE(r.parsed.config);
    EXPECT_EQ(r.parsed.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("--drain-timeout"));
    EXPECT_THAT(r.out, HasSubstr("Usage: fcgi_app"));
    r = parse({"--version"});
    EXPECT_EQ(r.parsed.exit_code, 0);
    EXPECT_EQ(r.out, "fcgi_app 9.9.9\n");
}

class ConfigFile : public ::testing::Test {
  protected:
    void write(const std::string& text) { std::ofstream(path_) << text; }
    test::TempDir dir_{"crosstown-config"};
    std::string path_ = dir_ / "fcgi_app.conf";
};

TEST_F(ConfigFile, FileSetsOptionsAndTheCommandLineWins) {
    write("# comment\nworkers = 7\nresponders = 2\ndrain-timeout = 5s\n");
    const auto r = parse({"--config", path_.c_str(), "--workers", "9"});
    ASSERT_TRUE(r.parsed.config) << r.err;
    EXPECT_EQ(r.parsed.config->pool.workers, 9u);
    EXPECT_EQ(r.parsed.config->responders, 2u);
    EXPECT_EQ(r.parsed.config->drain_timeout, 5s);
}

TEST_F(ConfigFile, BadValueInTheFileNamesTheOption) {
    write("overflow = sometimes\n");
    const auto r = parse({"--config", path_.c_str()});
    EXPECT_EQ(r.parsed.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("--overflow: 'sometimes'"));
}

TEST_F(ConfigFile, UnknownKeyInTheFileIsAnError) {
    write("wrokers = 3\n");
    const auto r = parse({"--config", path_.c_str()});
    EXPECT_EQ(r.parsed.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("wrokers"));
}

TEST_F(ConfigFile, MissingFileIsAnError) {
    const auto r = parse({"--config", "/nonexistent/fcgi_app.conf"});
    EXPECT_EQ(r.parsed.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("--config: cannot read '/nonexistent/fcgi_app.conf'"));
}

// deploy/fcgi_app.conf, installed as /etc/fcgi_app/fcgi_app.conf, shows every option commented
// out at its default: uncommenting all of it changes nothing, and no option is missing.
TEST_F(ConfigFile, ShippedFileHasEveryOptionAtItsDefault) {
    std::ifstream shipped(CROSSTOWN_SOURCE_DIR "/deploy/fcgi_app.conf");
    ASSERT_TRUE(shipped);
    const std::regex setting(R"(^# ([a-z-]+) = (.*)$)");
    std::map<std::string, std::string> shown;
    std::string uncommented;
    for (std::string line; std::getline(shipped, line);) {
        std::smatch m;
        if (!std::regex_match(line, m, setting)) continue;
        shown.emplace(m[1], m[2]);
        // Examples of options without a default, which would set them.
        const bool example =
            m[1] == "socket-group" || m[1] == "journal-password-file" || m[1] == "journal-instance";
        if (!example) uncommented += m[1].str() + " = " + m[2].str() + "\n";
    }
    write(uncommented);
    const auto r = parse({"--config", path_.c_str()});
    ASSERT_TRUE(r.parsed.config) << r.err;
    expect_defaults(*r.parsed.config);

    for (const auto& [name, help_default] : help_defaults(parse({"--help"}).out)) {
        const auto at = shown.find(name);
        if (at == shown.end()) {
            ADD_FAILURE() << "deploy/fcgi_app.conf does not show --" << name;
        } else if (!help_default.empty()) {
            EXPECT_EQ(at->second, help_default)
                << name << ": deploy/fcgi_app.conf's default is written unlike --help's";
        }
    }
}

// The rows of doc/configuration.md's options table, under "## Configuration": option and
// default. A default in backticks is a value ("/run/NAME/NAME.sock" with NAME the program's
// name); any other text (`the process's`) says there is none.
std::map<std::string, std::string> guide_defaults(const std::string& program) {
    std::ifstream guide(CROSSTOWN_SOURCE_DIR "/doc/configuration.md");
    EXPECT_TRUE(guide) << CROSSTOWN_SOURCE_DIR "/doc/configuration.md";
    const std::regex row(R"(^\| `--([a-z][a-z-]*)` \| ([^|]*) \|.*\|$)");
    const std::regex value(R"(^`([^`]*)`$)");
    std::map<std::string, std::string> defaults;
    bool in_section = false;
    for (std::string line; std::getline(guide, line);) {
        if (line.starts_with("## ")) in_section = line == "## Configuration";
        std::smatch m;
        if (!in_section || !std::regex_match(line, m, row)) continue;
        const auto cell = m[2].str();
        std::smatch v;
        std::string shown = std::regex_match(cell, v, value) ? v[1].str() : "";
        for (auto at = shown.find("NAME"); at != std::string::npos; at = shown.find("NAME")) {
            shown.replace(at, 4, program);
        }
        EXPECT_FALSE(defaults.contains(m[1])) << "the table lists --" << m[1] << " twice";
        defaults[m[1]] = shown;
    }
    return defaults;
}

// doc/configuration.md's options table and --help agree: the same options, the same defaults.
TEST(ServerConfig, ConfigurationGuideTableHasEveryOptionAtItsDefault) {
    const auto help = help_defaults(parse({"--help"}).out);
    ASSERT_GT(help.size(), 10u) << "--help was not understood";
    ASSERT_TRUE(help.contains("listen") && help.contains("socket-group"));
    const auto table = guide_defaults("fcgi_app");
    for (const auto& [name, shown] : help) {
        const auto row = table.find(name);
        if (row == table.end()) {
            ADD_FAILURE() << "doc/configuration.md's table lacks --" << name;
        } else {
            EXPECT_EQ(row->second, shown)
                << "--" << name << ": doc/configuration.md's default differs from --help's";
        }
    }
    for (const auto& [name, shown] : table) {
        EXPECT_TRUE(help.contains(name))
            << "doc/configuration.md's table lists --" << name << ", which --help does not";
    }
}

TEST(ParseDuration, Units) {
    EXPECT_EQ(parse_duration("250ms"), 250ms);
    EXPECT_EQ(parse_duration("30"), 30s);
    EXPECT_EQ(parse_duration("30s"), 30s);
    EXPECT_EQ(parse_duration("2m"), 2min);
    EXPECT_EQ(parse_duration("1h"), 1h);
    EXPECT_EQ(parse_duration("0"), 0ms);
    for (const char* bad : {"", "s", "1.5s", "-1s", "1d", "5 s", "99999999999999999999"}) {
        EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
    }
}

TEST(ParseSize, Units) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("1048576"), 1048576u);
    EXPECT_EQ(parse_size("512k"), 512u * 1024);
    EXPECT_EQ(parse_size("8M"), 8u << 20);
    EXPECT_EQ(parse_size("1g"), 1u << 30);
    for (const char* bad : {"", "k", "1.5m", "-1", "1kb", "2048g"}) {
        EXPECT_THROW(parse_size(bad), std::invalid_argument) << bad;
    }
}

}  // namespace
}  // namespace crosstown
