#include "crosstown/jobs/redis/redis_connection.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <signal.h>

#include <charconv>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace crosstown {
namespace {

int whole(std::string_view text, std::string_view what, std::string_view address) {
    int value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc{} || end != text.data() + text.size() || value < 0) {
        throw std::invalid_argument(
            fmt::format("'{}': {} '{}' is not a number", address, what, text));
    }
    return value;
}

timeval to_timeval(std::chrono::milliseconds t) {
    return {static_cast<time_t>(t.count() / 1000),
            static_cast<suseconds_t>(t.count() % 1000 * 1000)};
}

// hiredis writes with write(2), not send(MSG_NOSIGNAL): a server that went away would kill the
// process with SIGPIPE instead of failing the command. Left alone when the program chose a
// handler of its own (libfcgi installs one).
void ignore_sigpipe() {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
        ::signal(SIGPIPE, SIG_IGN);
    }
}

// SHA1 of each script's text, as SCRIPT LOAD returned it; shared by every connection.
std::mutex script_mutex;
std::map<const char*, std::string> script_shas;

}  // namespace

std::string read_redis_password(const std::string& password_file) {
    if (!password_file.empty()) {
        std::ifstream in(password_file);
        std::string password;
        if (!in || !std::getline(in, password)) {
            throw JournalError(
                fmt::format("--journal-password-file {}: cannot read it", password_file));
        }
        return password;
    }
    const char* env = std::getenv("CROSSTOWN_REDIS_PASSWORD");
    return env != nullptr ? env : "";
}

RedisAddress RedisAddress::parse(std::string_view text) {
    RedisAddress a;
    a.text = std::string(text);
    if (text.starts_with("unix://")) {
        auto rest = text.substr(7);
        if (const auto q = rest.find("?db="); q != std::string_view::npos) {
            a.db = whole(rest.substr(q + 4), "database", text);
            rest = rest.substr(0, q);
        }
        if (rest.empty() || rest.front() != '/') {
            throw std::invalid_argument(fmt::format("'{}': expected unix:///PATH", text));
        }
        a.socket_path = std::string(rest);
        return a;
    }
    if (!text.starts_with("redis://")) {
        throw std::invalid_argument(
            fmt::format("'{}': expected redis://HOST:PORT[/DB] or unix:///PATH", text));
    }
    auto rest = text.substr(8);
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
        a.db = whole(rest.substr(slash + 1), "database", text);
        rest = rest.substr(0, slash);
    }
    if (rest.find('@') != std::string_view::npos) {
        throw std::invalid_argument(
            fmt::format("'{}': no password in the address; use --journal-password-file or "
                        "CROSSTOWN_REDIS_PASSWORD",
                        text));
    }
    if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        a.port = whole(rest.substr(colon + 1), "port", text);
        if (a.port == 0 || a.port > 65535) {
            throw std::invalid_argument(fmt::format("'{}': port out of range", text));
        }
        rest = rest.substr(0, colon);
    }
    if (rest.starts_with('[') && rest.ends_with(']')) rest = rest.substr(1, rest.size() - 2);
    if (rest.empty()) throw std::invalid_argument(fmt::format("'{}': no host", text));
    a.host = std::string(rest);
    return a;
}

RedisReply::RedisReply(redisReply* reply) : reply_(reply) {}
void RedisReply::Free::operator()(redisReply* r) const { freeReplyObject(r); }
bool RedisReply::is_nil() const { return reply_->type == REDIS_REPLY_NIL; }
bool RedisReply::is_integer() const { return reply_->type == REDIS_REPLY_INTEGER; }
bool RedisReply::is_array() const { return reply_->type == REDIS_REPLY_ARRAY; }
bool RedisReply::is_error() const { return reply_->type == REDIS_REPLY_ERROR; }
long long RedisReply::integer() const { return reply_integer(reply_.get()); }
std::string RedisReply::string() const { return reply_string(reply_.get()); }
std::size_t RedisReply::size() const { return reply_size(reply_.get()); }
const redisReply* RedisReply::element(std::size_t i) const {
    return reply_element(reply_.get(), i);
}

std::string reply_string(const redisReply* r) {
    if (r == nullptr) return {};
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        return {r->str, r->len};
    }
    if (r->type == REDIS_REPLY_INTEGER) return std::to_string(r->integer);
    return {};
}
long long reply_integer(const redisReply* r) {
    return r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}
std::size_t reply_size(const redisReply* r) {
    return r != nullptr && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
}
const redisReply* reply_element(const redisReply* r, std::size_t i) {
    return i < reply_size(r) ? r->element[i] : nullptr;
}

RedisConnection RedisConnection::open(const RedisAddress& address, const std::string& password,
                                      std::chrono::milliseconds timeout) {
    ignore_sigpipe();
    const auto tv = to_timeval(timeout);
    redisContext* c = address.socket_path.empty()
                          ? redisConnectWithTimeout(address.host.c_str(), address.port, tv)
                          : redisConnectUnixWithTimeout(address.socket_path.c_str(), tv);
    if (c == nullptr) throw JournalError(fmt::format("redis {}: out of memory", address.text));
    RedisConnection connection(c, address.text);
    if (c->err != 0) {
        throw JournalError(fmt::format("redis {}: cannot connect: {}", address.text, c->errstr));
    }
    connection.set_timeout(timeout);
    if (!password.empty()) connection.command({"AUTH", password});
    if (address.db != 0) connection.command({"SELECT", std::to_string(address.db)});
    connection.command({"PING"});
    return connection;
}

void RedisConnection::count_round_trip() {
    if (round_trips_ != nullptr) round_trips_->fetch_add(1, std::memory_order_relaxed);
}

RedisConnection::RedisConnection(redisContext* context, std::string address)
    : context_(context), address_(std::move(address)) {}
RedisConnection::RedisConnection(RedisConnection&& o) noexcept
    : context_(std::exchange(o.context_, nullptr)),
      address_(std::move(o.address_)),
      round_trips_(o.round_trips_) {}
RedisConnection& RedisConnection::operator=(RedisConnection&& o) noexcept {
    std::swap(context_, o.context_);
    std::swap(address_, o.address_);
    std::swap(round_trips_, o.round_trips_);
    return *this;
}
RedisConnection::~RedisConnection() {
    if (context_ != nullptr) redisFree(context_);
}

bool RedisConnection::broken() const { return context_ == nullptr || context_->err != 0; }

void RedisConnection::abandon() {
    if (context_ != nullptr) redisFree(std::exchange(context_, nullptr));
}

void RedisConnection::set_timeout(std::chrono::milliseconds timeout) {
    redisSetTimeout(context_, to_timeval(timeout));
}

RedisReply RedisConnection::checked(redisReply* reply) {
    if (reply == nullptr) {
        throw JournalError(fmt::format("redis {}: {}", address_,
                                       context_->err != 0 ? context_->errstr : "no reply"));
    }
    RedisReply owned(reply);
    if (reply->type == REDIS_REPLY_ERROR) {
        throw RedisReplyError(
            fmt::format("redis {}: {}", address_, std::string_view(reply->str, reply->len)));
    }
    return owned;
}

RedisReply RedisConnection::command(std::span<const std::string> args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    count_round_trip();
    return checked(static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data())));
}

RedisReply RedisConnection::command(std::initializer_list<std::string_view> args) {
    std::vector<std::string> owned(args.begin(), args.end());
    return command(std::span<const std::string>(owned));
}

std::string RedisConnection::script_sha(const RedisScript& script, bool reload) {
    if (!reload) {
        std::lock_guard lock(script_mutex);
        if (auto known = script_shas.find(script.text.data()); known != script_shas.end()) {
            return known->second;
        }
    }
    auto sha = command({"SCRIPT", "LOAD", script.text}).string();
    std::lock_guard lock(script_mutex);
    script_shas[script.text.data()] = sha;
    return sha;
}

// One call of eval_each: one path for the NOSCRIPT retry, with a script's error thrown.
RedisReply RedisConnection::eval(const RedisScript& script, std::span<const std::string> args) {
    std::vector<RedisReply> replies;
    const RedisScriptCall call{script, args};
    eval_each(std::span(&call, 1), replies);
    if (replies.front().is_error()) {
        throw RedisReplyError(
            fmt::format("redis {}: {}", address_, reply_string(replies.front().get())));
    }
    return std::move(replies.front());
}

void RedisConnection::eval_each(std::span<const RedisScriptCall> calls,
                                std::vector<RedisReply>& replies) {
    // Each script's SHA1 is looked up (or loaded) once per pipeline: `reload` after NOSCRIPT.
    const auto commands = [&](const std::vector<std::size_t>& which, bool reload) {
        std::map<const char*, std::string> shas;
        std::vector<std::vector<std::string>> out;
        out.reserve(which.size());
        for (const auto i : which) {
            const auto& script = calls[i].script;
            auto sha = shas.find(script.text.data());
            if (sha == shas.end()) {
                sha = shas.emplace(script.text.data(), script_sha(script, reload)).first;
            }
            out.push_back({"EVALSHA", sha->second, "0"});
            out.back().insert(out.back().end(), calls[i].args.begin(), calls[i].args.end());
        }
        return out;
    };
    std::vector<std::size_t> all(calls.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    const auto first = replies.size();
    pipeline(commands(all, false), replies);
    std::vector<std::size_t> unknown_script;
    for (std::size_t i = 0; i < calls.size(); ++i) {
        const auto& reply = replies[first + i];
        if (reply.is_error() && reply_string(reply.get()).starts_with("NOSCRIPT")) {
            unknown_script.push_back(i);
        }
    }
    if (unknown_script.empty()) return;
    // A NOSCRIPT reply stays for each call whose second try is not read: that call did not run.
    std::vector<RedisReply> again;
    std::exception_ptr lost;
    try {
        pipeline(commands(unknown_script, true), again);
    } catch (const JournalError&) {
        lost = std::current_exception();
    }
    for (std::size_t j = 0; j < again.size(); ++j) {
        replies[first + unknown_script[j]] = std::move(again[j]);
    }
    if (lost) std::rethrow_exception(lost);
}

std::vector<RedisReply> RedisConnection::pipeline(
    const std::vector<std::vector<std::string>>& commands) {
    std::vector<RedisReply> replies;
    pipeline(commands, replies);
    return replies;
}

void RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands,
                               std::vector<RedisReply>& replies) {
    if (context_ == nullptr) throw JournalError(fmt::format("redis {}: closed", address_));
    for (const auto& args : commands) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lengths;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lengths.push_back(a.size());
        }
        if (redisAppendCommandArgv(context_, static_cast<int>(argv.size()), argv.data(),
                                   lengths.data()) != REDIS_OK) {
            throw JournalError(fmt::format("redis {}: {}", address_, context_->errstr));
        }
    }
    count_round_trip();
    replies.reserve(replies.size() + commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(context_, &reply) != REDIS_OK) {
            throw JournalError(fmt::format("redis {}: {}", address_, context_->errstr));
        }
        replies.emplace_back(static_cast<redisReply*>(reply));  // errors stay for the caller
    }
}

}  // namespace crosstown
