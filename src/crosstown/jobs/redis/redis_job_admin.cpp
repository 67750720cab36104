#include "crosstown/jobs/redis/redis_job_admin.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <string>

#include "crosstown/jobs/redis/redis_job_entry.hpp"
#include "crosstown/jobs/redis/redis_job_store.hpp"

namespace crosstown {
namespace {

const std::string kReviveText = std::string(kRedisJobEntryLua) + R"lua(
local p, id = ARGV[1], ARGV[2]
local job = p .. ':job:' .. id
local f = hash_fields(job)
if f['state'] ~= 'dead' then return 0 end
redis.call('HSET', job, 'attempts', 0, 'run_at_ms', 0, 'last_error', '')
f['state'], f['attempts'], f['run_at_ms'], f['last_error'] = 'ready', '0', '0', ''
to_stream(p, id, f['kind'], f)
return 1
)lua";
const RedisScript kRevive{kReviveText};

constexpr RedisScript kPurge{R"lua(
local job = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', job, 'state') ~= 'dead' then return 0 end
return redis.call('DEL', job)
)lua"};

// Not a dead job, nor one held for a response (its instance releases it in a moment). Its
// stream entry, when no instance has taken it, goes with it: the entry carries the job, and
// would still run it; one taken is its instance's to delete when the attempt ends (until then
// the census counts it as running). Its unique key, if it still names the job, is free again.
// ARGV: prefix, id, group.
constexpr RedisScript kCancel{R"lua(
local p, id = ARGV[1], ARGV[2]
local job = p .. ':job:' .. id
local state = redis.call('HGET', job, 'state')
if not state or state == 'dead' or state == 'held' then return 0 end
redis.call('ZREM', p .. ':scheduled', id)
local entry = redis.call('HGET', job, 'entry')
if entry then
  local stream = p .. ':stream:' .. redis.call('HGET', job, 'kind')
  local taken = redis.pcall('XPENDING', stream, ARGV[3], entry, entry, 1)
  if taken['err'] or #taken == 0 then redis.call('XDEL', stream, entry) end
end
local key = redis.call('HGET', job, 'unique')
if key and redis.call('GET', key) == id then redis.call('DEL', key) end
return redis.call('DEL', job)
)lua"};

RedisConnection connect(const std::string& address, const RedisJournalOptions& options) {
    try {
        return RedisConnection::open(RedisAddress::parse(address),
                                     read_redis_password(options.password_file),
                                     std::chrono::seconds(5));
    } catch (const std::invalid_argument& e) {
        throw JournalError(e.what());
    }
}

}  // namespace

RedisJobAdmin::RedisJobAdmin(const std::string& address, const RedisJournalOptions& options)
    : options_(options), connection_(connect(address, options)) {}

std::string RedisJobAdmin::key(std::string_view what) const {
    return fmt::format("{}:{}", options_.prefix, what);
}

// What follows `prefix` in the name of every key that starts with it (and is of `type`), by
// SCAN, which does not block the server as KEYS would.
std::vector<std::string> RedisJobAdmin::key_tails(const std::string& prefix,
                                                  std::string_view type) {
    std::vector<std::string> tails;
    std::string cursor = "0";
    do {
        const auto reply = connection_.command(
            {"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000", "TYPE", type});
        cursor = reply_string(reply.element(0));
        const auto* keys = reply.element(1);
        for (std::size_t i = 0; i < reply_size(keys); ++i) {
            tails.push_back(reply_string(reply_element(keys, i)).substr(prefix.size()));
        }
    } while (cursor != "0");
    return tails;
}

// The ids of every job hash.
std::vector<std::string> RedisJobAdmin::job_ids() {
    std::set<std::int64_t> ids;
    for (const auto& tail : key_tails(key("job:"), "hash")) ids.insert(redis_integer(tail));
    std::vector<std::string> out;
    for (const auto id : ids) out.push_back(std::to_string(id));
    return out;
}

std::vector<AdminJob> RedisJobAdmin::list(bool dead_only) {
    const auto ids = job_ids();
    std::vector<std::vector<std::string>> reads;
    for (const auto& id : ids) reads.push_back({"HGETALL", key("job:" + id)});
    const auto replies = connection_.pipeline(reads);
    std::vector<AdminJob> rows;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto fields = redis_job_fields(replies[i].get());
        const auto state = fields.contains("state") ? fields.at("state") : std::string();
        if (fields.empty() || (dead_only && state != "dead")) continue;
        rows.push_back({redis_stored_job(redis_integer(ids[i]), fields), state});
    }
    // Oldest first: ids are random, so their order says nothing.
    std::ranges::stable_sort(rows, {}, [](const AdminJob& r) { return r.job.enqueued_ms; });
    return rows;
}

std::uint64_t RedisJobAdmin::revive(std::optional<std::int64_t> id) {
    std::vector<std::string> ids;
    if (id) {
        ids.push_back(std::to_string(*id));
    } else {
        for (const auto& row : list(true)) ids.push_back(std::to_string(row.job.id));
    }
    std::uint64_t revived = 0;
    for (const auto& one : ids) {
        revived += static_cast<std::uint64_t>(
            connection_.eval(kRevive, std::vector{options_.prefix, one}).integer());
    }
    return revived;
}

std::uint64_t RedisJobAdmin::cancel(std::optional<std::int64_t> id,
                                    const std::optional<std::string>& kind) {
    std::vector<std::string> ids;
    if (id && !kind) {
        ids.push_back(std::to_string(*id));
    } else {
        for (const auto& row : list(false)) {
            if ((id && row.job.id != *id) || (kind && row.job.kind != *kind)) continue;
            ids.push_back(std::to_string(row.job.id));
        }
    }
    std::uint64_t cancelled = 0;
    for (const auto& one : ids) {
        cancelled += static_cast<std::uint64_t>(
            connection_
                .eval(kCancel,
                      std::vector{options_.prefix, one, std::string(RedisJobStore::kGroup)})
                .integer());
    }
    return cancelled;
}

std::uint64_t RedisJobAdmin::purge_dead() {
    std::uint64_t purged = 0;
    for (const auto& row : list(true)) {
        purged += static_cast<std::uint64_t>(
            connection_.eval(kPurge, std::vector{options_.prefix, std::to_string(row.job.id)})
                .integer());
    }
    connection_.command({"DEL", key("dead")});
    return purged;
}

std::vector<std::string> RedisJobAdmin::details() {
    std::vector<std::string> lines;
    for (const auto& s : streams()) {
        lines.push_back(fmt::format("stream {}: {} entries, {} taken and not finished", s.kind,
                                    s.length, s.pending));
    }
    return lines;
}

std::vector<RedisJobAdmin::Stream> RedisJobAdmin::streams() {
    const auto prefix = key("stream:");
    const auto tails = key_tails(prefix, "stream");
    const std::set<std::string> kinds(tails.begin(), tails.end());
    std::vector<Stream> streams;
    for (const auto& kind : kinds) {
        Stream s{kind};
        s.length =
            static_cast<std::uint64_t>(connection_.command({"XLEN", prefix + kind}).integer());
        try {
            const auto pending =
                connection_.command({"XPENDING", prefix + kind, RedisJobStore::kGroup});
            s.pending = static_cast<std::uint64_t>(reply_integer(pending.element(0)));
        } catch (const RedisReplyError&) {
            // no consumer group yet: nothing can be pending
        }
        streams.push_back(std::move(s));
    }
    return streams;
}

}  // namespace crosstown
