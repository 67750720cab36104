// crosstown::RedisConnection: one synchronous hiredis connection, with errors as exceptions.
//
// Not thread-safe: RedisJobStore lends its connections to one thread at a time. A failed
// connection or a network error throws JournalError and leaves the connection broken(), to be
// dropped and opened again; an error reply (a script's own error, WRONGTYPE) throws
// RedisReplyError and leaves it usable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/jobs/journal_error.hpp"

struct redisContext;
struct redisReply;

namespace crosstown {

class RedisReplyError : public JournalError {
  public:
    using JournalError::JournalError;
};

// "redis://HOST:PORT[/DB]" or "unix:///PATH[?db=DB]". Throws std::invalid_argument.
struct RedisAddress {
    std::string host;  // empty for a unix socket
    int port = 6379;
    std::string socket_path;
    int db = 0;
    std::string text;  // as given, for messages

    static RedisAddress parse(std::string_view text);
};

// A reply; freed with the object.
class RedisReply {
  public:
    explicit RedisReply(redisReply* reply);
    bool is_nil() const;
    bool is_integer() const;
    bool is_array() const;
    bool is_error() const;       // an error reply (only pipeline() returns them)
    long long integer() const;   // an integer reply (0 otherwise)
    std::string string() const;  // a string or status reply ("" otherwise)
    std::size_t size() const;    // elements of an array reply
    const redisReply* element(std::size_t i) const;
    const redisReply* get() const { return reply_.get(); }

  private:
    struct Free {
        void operator()(redisReply* r) const;
    };
    std::unique_ptr<redisReply, Free> reply_;
};

// Accessors for the elements of nested array replies.
std::string reply_string(const redisReply* r);
long long reply_integer(const redisReply* r);  // 0 when not an integer
std::size_t reply_size(const redisReply* r);
const redisReply* reply_element(const redisReply* r, std::size_t i);

// The password for AUTH: the first line of `password_file`, or else CROSSTOWN_REDIS_PASSWORD,
// or none. Throws JournalError naming a file that cannot be read.
std::string read_redis_password(const std::string& password_file);

// A Lua script, run by its SHA1 (EVALSHA), and by its text once when the server does not know
// it (NOSCRIPT: first use, or the server restarted).
struct RedisScript {
    std::string_view text;
};

// One run of a script, with its arguments (ARGV; no keys).
struct RedisScriptCall {
    const RedisScript& script;
    std::span<const std::string> args;
};

class RedisConnection {
  public:
    // Connects, authenticates (password, when not empty) and selects the database. Throws
    // JournalError naming the address.
    static RedisConnection open(const RedisAddress& address, const std::string& password,
                                std::chrono::milliseconds timeout);
    RedisConnection(RedisConnection&&) noexcept;
    RedisConnection& operator=(RedisConnection&&) noexcept;
    ~RedisConnection();

    RedisReply command(std::span<const std::string> args);
    RedisReply command(std::initializer_list<std::string_view> args);
    RedisReply eval(const RedisScript& script, std::span<const std::string> args);
    // Runs each of `calls` by its script's SHA1 (EVALSHA), in one pipeline: one round trip, and
    // a second for the calls a server without their script refused (NOSCRIPT: a restart, a
    // failover), which go again after it is loaded. So a refused call runs after the others of
    // its pipeline: calls whose order matters belong in different pipelines. Appends the
    // replies to `replies` in the order of `calls` (a script's error reply is a reply). Throws
    // JournalError when the connection fails, keeping the replies read before: those calls
    // ran, whatever happened to the rest.
    void eval_each(std::span<const RedisScriptCall> calls, std::vector<RedisReply>& replies);
    // Sends every command, then reads every reply: one round trip for many commands.
    std::vector<RedisReply> pipeline(const std::vector<std::vector<std::string>>& commands);
    // The same, appending each reply to `replies` as it is read: when reading fails (and
    // JournalError is thrown), the replies read before are still there.
    void pipeline(const std::vector<std::vector<std::string>>& commands,
                  std::vector<RedisReply>& replies);
    // Socket timeout for the next replies (a blocking XREADGROUP needs more than its BLOCK).
    void set_timeout(std::chrono::milliseconds timeout);
    // Adds one to `counter` at each round trip from now on: a command, a script or a whole
    // pipeline. The counter must outlive the connection.
    void count_round_trips(std::atomic<std::uint64_t>* counter) { round_trips_ = counter; }
    bool broken() const;
    // Closes it: it is broken() from now on (a server that answers READONLY may be a demoted
    // primary, and a new connection may reach the new one).
    void abandon();

  private:
    RedisConnection(redisContext* context, std::string address);
    RedisReply checked(redisReply* reply);
    // The SHA1 SCRIPT LOAD gave for `script`, loading it first when none is known or `reload`.
    std::string script_sha(const RedisScript& script, bool reload);
    void count_round_trip();
    redisContext* context_ = nullptr;
    std::string address_;
    std::atomic<std::uint64_t>* round_trips_ = nullptr;
};

}  // namespace crosstown
