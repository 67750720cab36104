#include "crosstown/jobs/redis_journal.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <random>
#include <thread>

#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kCommandTimeout = std::chrono::milliseconds(2'000);
constexpr auto kReconnectPause = std::chrono::milliseconds(200);
constexpr std::size_t kIdleConnections = 8;

// Keys are "<prefix>:<what>"; the scripts build them from the prefix they are given, so they
// need one server (or a primary), not a Cluster.
constexpr RedisScript kHold{R"lua(
local p, inst, now = ARGV[1], ARGV[2], ARGV[3]
local ids = {}
for i = 4, #ARGV, 3 do
  local id = redis.call('INCR', p .. ':ids')
  redis.call('HSET', p .. ':job:' .. id, 'kind', ARGV[i], 'payload', ARGV[i + 1],
             'request_id', ARGV[i + 2], 'enqueued_ms', now, 'attempts', 0, 'run_at_ms', 0,
             'state', 'held')
  redis.call('SADD', p .. ':held:' .. inst, id)
  ids[#ids + 1] = id
end
redis.call('SADD', p .. ':instances', inst)
return ids
)lua"};

constexpr RedisScript kRelease{R"lua(
local p, inst = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('SREM', p .. ':held:' .. inst, id) == 1 then
    local kind = redis.call('HGET', p .. ':job:' .. id, 'kind')
    if kind then
      redis.call('HSET', p .. ':job:' .. id, 'state', 'ready')
      redis.call('XADD', p .. ':stream:' .. kind, '*', 'id', id)
      n = n + 1
    end
  end
end
return n
)lua"};

// The held jobs of every instance whose heartbeat expired go to their streams.
constexpr RedisScript kReleaseOrphans{R"lua(
local p = ARGV[1]
local n = 0
for _, inst in ipairs(redis.call('SMEMBERS', p .. ':instances')) do
  if redis.call('EXISTS', p .. ':alive:' .. inst) == 0 then
    for _, id in ipairs(redis.call('SMEMBERS', p .. ':held:' .. inst)) do
      local kind = redis.call('HGET', p .. ':job:' .. id, 'kind')
      if kind then
        redis.call('HSET', p .. ':job:' .. id, 'state', 'ready')
        redis.call('XADD', p .. ':stream:' .. kind, '*', 'id', id)
        n = n + 1
      end
    end
    redis.call('DEL', p .. ':held:' .. inst)
    redis.call('SREM', p .. ':instances', inst)
  end
end
return n
)lua"};

constexpr RedisScript kDiscard{R"lua(
redis.call('SREM', ARGV[1] .. ':held:' .. ARGV[2], ARGV[3])
return redis.call('DEL', ARGV[1] .. ':job:' .. ARGV[3])
)lua"};

constexpr RedisScript kComplete{R"lua(
local stream = ARGV[1] .. ':stream:' .. ARGV[3]
redis.call('XACK', stream, ARGV[2], ARGV[4])
redis.call('XDEL', stream, ARGV[4])
return redis.call('DEL', ARGV[1] .. ':job:' .. ARGV[5])
)lua"};

constexpr RedisScript kBury{R"lua(
local p, kind, id = ARGV[1], ARGV[3], ARGV[5]
local stream = p .. ':stream:' .. kind
redis.call('XACK', stream, ARGV[2], ARGV[4])
redis.call('XDEL', stream, ARGV[4])
if redis.call('EXISTS', p .. ':job:' .. id) == 1 then
  redis.call('HSET', p .. ':job:' .. id, 'state', 'dead', 'attempts', ARGV[6], 'last_error', ARGV[7])
  redis.call('XADD', p .. ':dead', '*', 'id', id, 'kind', kind, 'error', ARGV[7])
end
return 1
)lua"};

// Resets the idle time of the entries this consumer still has, and only those: an entry
// another instance claimed meanwhile stays theirs.
// Only a job that still exists: a duplicate's completion may have deleted it meanwhile.
constexpr RedisScript kReschedule{R"lua(
local job = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('EXISTS', job) == 0 then return 0 end
redis.call('HSET', job, 'attempts', ARGV[3], 'run_at_ms', ARGV[4], 'state', 'retry',
           'last_error', ARGV[5])
return 1
)lua"};

constexpr RedisScript kTouch{R"lua(
local p, group, me = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 2 do
  local stream = p .. ':stream:' .. ARGV[i]
  local mine = redis.call('XPENDING', stream, group, ARGV[i + 1], ARGV[i + 1], 1, me)
  if #mine > 0 then redis.call('XCLAIM', stream, group, me, 0, ARGV[i + 1], 'JUSTID') end
end
return 1
)lua"};

// Host and pid name the process for an operator; the random part keeps a restarted container,
// which often has the same host name and pid 1 again, from taking a crashed one's name.
std::string default_instance() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    return fmt::format("{}:{}:{:06x}", host, ::getpid(), std::random_device{}() & 0xffffff);
}

// Error replies that say "not now" rather than "never": a write refused with one of them is
// kept and tried again, like one that met no server.
bool transient(const RedisReplyError& e) {
    static constexpr std::string_view kCodes[] = {"OOM",  "READONLY", "LOADING",  "MISCONF",
                                                  "BUSY", "NOGROUP",  "TRYAGAIN", "MASTERDOWN"};
    const std::string_view what = e.what();
    const auto at = what.find(": ");
    const auto reply = at == std::string_view::npos ? what : what.substr(at + 2);
    return std::ranges::any_of(kCodes, [&](std::string_view code) { return reply.starts_with(code); });
}

std::int64_t to_int(const std::string& text) {
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

JobState state_named(std::string_view name) {
    if (name == "dead") return JobState::dead;
    if (name == "retry") return JobState::retry;
    return JobState::ready;
}

}  // namespace

class RedisJournal::Lease {
  public:
    Lease(const RedisJournal& owner, RedisConnection connection)
        : owner_(owner), connection_(std::move(connection)) {}
    Lease(const Lease&) = delete;
    ~Lease() {
        if (!connection_.broken()) owner_.give_back(std::move(connection_));
    }
    RedisConnection* operator->() { return &connection_; }
    RedisConnection& operator*() { return connection_; }

  private:
    const RedisJournal& owner_;
    RedisConnection connection_;
};

RedisJournal::RedisJournal(const std::string& address, RedisJournalOptions options,
                           const std::vector<std::string>& kinds)
    : address_([&] {
          try {
              return RedisAddress::parse(address);
          } catch (const std::invalid_argument& e) {
              throw JournalError(e.what());
          }
      }()),
      options_(std::move(options)),
      kinds_(kinds),
      password_(read_redis_password(options_.password_file)) {
    if (options_.instance.empty()) options_.instance = default_instance();
    const auto give_up_at = Clock::now() + options_.wait;
    for (;;) {
        try {
            feed_.emplace(connect());
            break;
        } catch (const JournalError& e) {
            if (Clock::now() >= give_up_at) throw;
            log::warn("{}; trying again (--journal-wait)", e.what());
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
    // A name in use would share a held set with a live process, or keep a crashed one's held
    // jobs from ever being released.
    if (feed_->command({"EXISTS", key("alive:" + options_.instance)}).integer() == 1) {
        throw JournalError(fmt::format(
            "redis {}: instance name '{}' is in use by a live instance (or one that stopped less "
            "than {} ms ago); give each instance its own --journal-instance",
            address_.text, options_.instance, options_.claim_after.count()));
    }
    ensure_groups(*feed_);
    // Before this instance beats: a previous process of the same name that crashed leaves its
    // held jobs to be released now.
    feed_->eval(kReleaseOrphans, std::vector{options_.prefix});
    beat();
}

// The kinds' streams and their consumer group, created when missing (first start, or a server
// that lost its data): without the group every read fails while holds still succeed.
void RedisJournal::ensure_groups(RedisConnection& connection) {
    for (const auto& kind : kinds_) {
        try {
            connection.command({"XGROUP", "CREATE", key("stream:" + kind), kGroup, "0", "MKSTREAM"});
        } catch (const RedisReplyError& e) {
            if (std::string_view(e.what()).find("BUSYGROUP") == std::string_view::npos) throw;
        }
    }
}

RedisJournal::~RedisJournal() = default;

std::string RedisJournal::key(std::string_view what) const {
    return fmt::format("{}:{}", options_.prefix, what);
}

RedisConnection RedisJournal::connect() const {
    return RedisConnection::open(address_, password_, kCommandTimeout);
}

// An idle connection, or a new one; while the server was unreachable a moment ago, fails at
// once instead of making every request wait for its own connect timeout.
RedisJournal::Lease RedisJournal::lease() const {
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            auto connection = std::move(idle_.back());
            idle_.pop_back();
            return Lease(*this, std::move(connection));
        }
        if (Clock::now() < retry_connect_at_) {
            throw JournalError(fmt::format("redis {}: unreachable a moment ago", address_.text));
        }
    }
    try {
        return Lease(*this, connect());
    } catch (const JournalError&) {
        std::lock_guard lock(mutex_);
        retry_connect_at_ = Clock::now() + kReconnectPause;
        throw;
    }
}

void RedisJournal::give_back(RedisConnection connection) const {
    std::lock_guard lock(mutex_);
    if (idle_.size() < kIdleConnections) idle_.push_back(std::move(connection));
}

std::vector<std::int64_t> RedisJournal::commit(std::span<const NewJob> jobs) {
    std::vector<std::string> args{options_.prefix, options_.instance,
                                  std::to_string(unix_now_ms())};
    for (const auto& job : jobs) {
        args.emplace_back(job.kind);
        args.emplace_back(job.payload);
        args.emplace_back(job.request_id);
    }
    try {
        auto connection = lease();
        const auto reply = connection->eval(kHold, args);
        std::vector<std::int64_t> ids;
        for (std::size_t i = 0; i < reply.size(); ++i) {
            ids.push_back(reply_integer(reply.element(i)));
        }
        std::lock_guard lock(mutex_);
        holding_.insert(ids.begin(), ids.end());
        return ids;
    } catch (const JournalError& e) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        throw JournalUnavailable(e.what());
    }
}

// Writes wait behind those already kept, so that an older change cannot land after a newer
// one (a retry's attempts after its completion).
void RedisJournal::write_or_keep(Write write) {
    {
        std::lock_guard lock(mutex_);
        if (!kept_.empty()) {
            kept_.push_back(std::move(write));
            return;
        }
    }
    try {
        auto connection = lease();
        write(*connection);
    } catch (const RedisReplyError& e) {
        if (!transient(e)) {
            log::error("{}", e.what());  // refused for good: writing it again cannot help
            return;
        }
        keep(std::move(write));
    } catch (const JournalError&) {
        keep(std::move(write));
    }
}

void RedisJournal::keep(Write write) {
    failed_commands_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    kept_.push_back(std::move(write));
}

void RedisJournal::release(std::span<const std::int64_t> ids) {
    if (ids.empty()) return;
    {
        std::lock_guard lock(mutex_);
        for (const auto id : ids) holding_.erase(id);
    }
    std::vector<std::string> args{options_.prefix, options_.instance};
    for (const auto id : ids) args.push_back(std::to_string(id));
    write_or_keep([args = std::move(args)](RedisConnection& c) { c.eval(kRelease, args); });
}

void RedisJournal::complete(std::int64_t id) {
    std::optional<Taken> taken;
    {
        std::lock_guard lock(mutex_);
        if (auto node = taken_.extract(id)) taken = std::move(node.mapped());
        holding_.erase(id);
    }
    if (!taken) {  // held, never released: committed for a response that did not go out
        std::vector<std::string> args{options_.prefix, options_.instance, std::to_string(id)};
        write_or_keep([args = std::move(args)](RedisConnection& c) { c.eval(kDiscard, args); });
        return;
    }
    std::vector<std::string> args{options_.prefix, std::string(kGroup), taken->kind,
                                  taken->entry, std::to_string(id)};
    write_or_keep([args = std::move(args)](RedisConnection& c) { c.eval(kComplete, args); });
}

void RedisJournal::reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                              std::string error) {
    std::vector<std::string> args{options_.prefix, std::to_string(id), std::to_string(attempts),
                                  std::to_string(run_at_ms), std::move(error)};
    write_or_keep([args = std::move(args)](RedisConnection& c) { c.eval(kReschedule, args); });
}

void RedisJournal::bury(std::int64_t id, unsigned attempts, std::string error) {
    std::optional<Taken> taken;
    {
        std::lock_guard lock(mutex_);
        if (auto node = taken_.extract(id)) taken = std::move(node.mapped());
    }
    if (!taken) return;  // only taken jobs run, so only they die
    std::vector<std::string> args{options_.prefix,        std::string(kGroup), taken->kind,
                                  taken->entry,           std::to_string(id),
                                  std::to_string(attempts), std::move(error)};
    write_or_keep([args = std::move(args)](RedisConnection& c) { c.eval(kBury, args); });
}

std::vector<StoredJob> RedisJournal::take(const std::map<std::string, std::size_t>& room,
                                          std::chrono::milliseconds block) {
    if (room.empty()) return {};
    if (!feed_ || feed_->broken()) feed_.emplace(connect());
    std::size_t count = room.begin()->second;
    for (const auto& [kind, n] : room) count = std::min(count, n);
    std::vector<std::string> args{"XREADGROUP", "GROUP", std::string(kGroup), options_.instance,
                                  "COUNT", std::to_string(count), "BLOCK",
                                  std::to_string(block.count()), "STREAMS"};
    for (const auto& [kind, n] : room) args.push_back(key("stream:" + kind));
    for (std::size_t i = 0; i < room.size(); ++i) args.emplace_back(">");
    feed_->set_timeout(block + kCommandTimeout);
    std::vector<std::pair<std::string, Taken>> entries;
    try {
        const auto reply = feed_->command(args);
        feed_->set_timeout(kCommandTimeout);
        const auto prefix_length = key("stream:").size();
        for (std::size_t s = 0; s < reply.size(); ++s) {
            const auto* stream = reply.element(s);
            const auto kind = reply_string(reply_element(stream, 0)).substr(prefix_length);
            const auto* list = reply_element(stream, 1);
            for (std::size_t e = 0; e < reply_size(list); ++e) {
                const auto* entry = reply_element(list, e);
                const auto* fields = reply_element(entry, 1);
                entries.push_back({reply_string(reply_element(fields, 1)),
                                   {kind, reply_string(reply_element(entry, 0))}});
            }
        }
    } catch (const RedisReplyError& e) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        if (std::string_view(e.what()).find("NOGROUP") != std::string_view::npos) {
            log::warn("{}; creating the consumer groups again", e.what());
            ensure_groups(*feed_);
        }
        throw;
    } catch (const JournalError&) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        feed_.reset();
        throw;
    }
    return load(*feed_, entries);
}

std::vector<StoredJob> RedisJournal::claim(const std::map<std::string, std::size_t>& room) {
    auto connection = lease();
    std::vector<std::pair<std::string, Taken>> entries;
    for (const auto& [kind, count] : room) {
        // Each call scans at most ten times COUNT pending entries: the cursor carries on
        // where the last one stopped, so a dead consumer's entries behind many live ones are
        // reached too.
        auto& cursor = claim_cursors_[kind];
        if (cursor.empty()) cursor = "0-0";
        const auto reply = connection->command(
            {"XAUTOCLAIM", key("stream:" + kind), kGroup, options_.instance,
             std::to_string(options_.claim_after.count()), cursor, "COUNT", std::to_string(count)});
        cursor = reply_string(reply.element(0));
        const auto* list = reply.element(1);
        for (std::size_t e = 0; e < reply_size(list); ++e) {
            const auto* entry = reply_element(list, e);
            const auto* fields = reply_element(entry, 1);
            entries.push_back({reply_string(reply_element(fields, 1)),
                               {kind, reply_string(reply_element(entry, 0))}});
        }
    }
    auto jobs = load(*connection, entries);
    claimed_.fetch_add(jobs.size(), std::memory_order_relaxed);
    return jobs;
}

// Reads the taken entries' jobs, and records them as taken. An entry whose job is gone (a
// duplicate that another instance finished) is acknowledged and dropped.
std::vector<StoredJob> RedisJournal::load(
    RedisConnection& connection, const std::vector<std::pair<std::string, Taken>>& entries) {
    if (entries.empty()) return {};
    std::vector<std::vector<std::string>> reads;
    for (const auto& [id, taken] : entries) reads.push_back({"HGETALL", key("job:" + id)});
    const auto replies = connection.pipeline(reads);
    std::vector<StoredJob> jobs;
    std::vector<std::vector<std::string>> drops;
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& [id, taken] = entries[i];
        std::map<std::string, std::string> fields;
        for (std::size_t f = 0; f + 1 < replies[i].size(); f += 2) {
            fields[reply_string(replies[i].element(f))] = reply_string(replies[i].element(f + 1));
        }
        if (fields.empty() || fields["state"] == "dead") {
            const auto stream = key("stream:" + taken.kind);
            drops.push_back({"XACK", stream, std::string(kGroup), taken.entry});
            drops.push_back({"XDEL", stream, taken.entry});
            continue;
        }
        StoredJob job;
        job.id = to_int(id);
        job.kind = taken.kind;
        job.payload = fields["payload"];
        job.request_id = fields["request_id"];
        job.attempts = static_cast<unsigned>(to_int(fields["attempts"]));
        job.state = state_named(fields["state"]);
        job.enqueued_ms = to_int(fields["enqueued_ms"]);
        job.run_at_ms = to_int(fields["run_at_ms"]);
        job.last_error = fields["last_error"];
        taken_.insert_or_assign(job.id, taken);
        jobs.push_back(std::move(job));
    }
    if (!drops.empty()) connection.pipeline(drops);
    return jobs;
}

void RedisJournal::beat() {
    auto connection = lease();
    connection->command({"SET", key("alive:" + options_.instance), std::to_string(::getpid()),
                         "PX", std::to_string(options_.claim_after.count())});
    connection->command({"SADD", key("instances"), options_.instance});
    std::vector<std::string> touch{options_.prefix, std::string(kGroup), options_.instance};
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, taken] : taken_) {
            touch.push_back(taken.kind);
            touch.push_back(taken.entry);
        }
    }
    if (touch.size() > 3) connection->eval(kTouch, touch);
    release_stranded(*connection);
    const auto released = connection->eval(kReleaseOrphans, std::vector{options_.prefix}).integer();
    if (released > 0) {
        orphans_released_.fetch_add(static_cast<std::uint64_t>(released), std::memory_order_relaxed);
        log::warn("redis {}: released {} jobs held by instances that stopped beating",
                  address_.text, released);
    }
    run_kept(*connection);
}

// Jobs in this instance's held set whose response is not in progress here, at two beats in a
// row: a release refused for good, or lost. Released then, so that no job that got its 2xx
// waits for this instance to stop. Two looks, because a commit whose hold is written but whose
// reply has not arrived yet is not in holding_ at the first. A job whose release is kept for
// later may be released twice, which the script ignores.
void RedisJournal::release_stranded(RedisConnection& connection) {
    const auto held = connection.command({"SMEMBERS", key("held:" + options_.instance)});
    std::set<std::int64_t> stranded;
    std::vector<std::string> args{options_.prefix, options_.instance};
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < held.size(); ++i) {
            const auto id = to_int(reply_string(held.element(i)));
            if (holding_.contains(id)) continue;
            stranded.insert(id);
            if (stranded_.contains(id)) args.push_back(std::to_string(id));
        }
        stranded_ = std::move(stranded);
    }
    if (args.size() > 2) connection.eval(kRelease, args);
}

void RedisJournal::run_kept(RedisConnection& connection) {
    std::vector<Write> kept;
    {
        std::lock_guard lock(mutex_);
        kept.swap(kept_);
    }
    for (std::size_t i = 0; i < kept.size(); ++i) {
        try {
            kept[i](connection);
        } catch (const RedisReplyError& e) {
            if (!transient(e)) {
                log::error("{}", e.what());
                continue;
            }
            put_back(kept, i);
            throw;
        } catch (const JournalError&) {
            put_back(kept, i);
            throw;
        }
    }
}

// The kept writes from `from` on go back in front of those kept meanwhile, in order.
void RedisJournal::put_back(std::vector<Write>& kept, std::size_t from) {
    std::lock_guard lock(mutex_);
    kept_.insert(kept_.begin(), std::make_move_iterator(kept.begin() + static_cast<std::ptrdiff_t>(from)),
                 std::make_move_iterator(kept.end()));
}

void RedisJournal::leave() noexcept {
    try {
        auto connection = lease();
        run_kept(*connection);
        connection->command({"DEL", key("alive:" + options_.instance)});
    } catch (const JournalError& e) {
        log::warn("{}; other instances release what this one held after {} ms", e.what(),
                  options_.claim_after.count());
    }
}

RedisJournalFigures RedisJournal::figures() const {
    std::lock_guard lock(mutex_);
    return {claimed_.load(std::memory_order_relaxed),
            orphans_released_.load(std::memory_order_relaxed),
            failed_commands_.load(std::memory_order_relaxed), kept_.size()};
}

std::vector<RedisStreamFigures> RedisJournal::streams() const {
    auto connection = lease();
    std::vector<std::vector<std::string>> commands;
    for (const auto& kind : kinds_) {
        commands.push_back({"XLEN", key("stream:" + kind)});
        commands.push_back({"XPENDING", key("stream:" + kind), std::string(kGroup)});
    }
    const auto replies = connection->pipeline(commands);
    std::vector<RedisStreamFigures> figures;
    for (std::size_t i = 0; i < kinds_.size(); ++i) {
        const auto& pending = replies[2 * i + 1];
        figures.push_back({kinds_[i], static_cast<std::uint64_t>(replies[2 * i].integer()),
                           static_cast<std::uint64_t>(reply_integer(pending.element(0)))});
    }
    return figures;
}

}  // namespace crosstown
