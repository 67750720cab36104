#include "crosstown/jobs/redis/redis_job_store.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/jobs/redis/redis_job_entry.hpp"
#include "crosstown/jobs/redis/redis_job_feed.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using detail::unix_now_ms;

using Clock = std::chrono::steady_clock;
constexpr auto kCommandTimeout = std::chrono::milliseconds(2'000);
constexpr auto kReconnectPause = std::chrono::milliseconds(200);
constexpr std::size_t kIdleConnections = 8;
// Scheduled jobs moved to their streams per look, and the longest time between looks (for
// jobs other instances scheduled: a look learns when the next is due).
constexpr std::size_t kPromoteBatch = 1'000;
constexpr auto kPromoteLook = std::chrono::milliseconds(1'000);

// Keys are "<prefix>:<what>"; the scripts build them from the prefix they are given, so they
// need one server (or a primary), not a Cluster.
// Ids come from the instance (random_job_id), not from a counter here: a counter rolls back
// with the server's data (a restart from an older snapshot, FLUSHALL, a lagging replica
// promoted), and new jobs would then get ids that live instances still hold, so that their
// writes about old jobs would land on new ones. An id in use is refused before anything is
// written (all or none), and the instance draws new ones: the reply is 0. Otherwise it is one
// character per job: '1' held, '0' not kept, its unique key taken. A unique key is
// "<prefix>:unique:<kind>:<key>", holding the id of the job that took it: without expiry while
// the job lives, for its unique_for once it finished (kComplete, kBury), deleted when the job
// is discarded. A job's run_at_ms is its DurableOptions::run_at and delay_ms its delay,
// counted from its release (kToStreamOrSchedule). A field without a value (0 or empty: no
// run_at, no delay, no request id, no trace context, no attempts yet) is left out: every
// reader takes a missing field for 0 or empty, and each field costs the server time twice, in
// the hash and in the job's stream entry.
constexpr RedisScript kHold{R"lua(
local p, inst, now = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 9 do
  if redis.call('EXISTS', p .. ':job:' .. ARGV[i]) == 1 then return 0 end
end
local held = {}
for i = 4, #ARGV, 9 do
  local id, kind, unique = ARGV[i], ARGV[i + 1], ARGV[i + 4]
  local key = unique ~= '' and (p .. ':unique:' .. kind .. ':' .. unique) or nil
  if key and not redis.call('SET', key, id, 'NX') then
    held[#held + 1] = '0'
  else
    local f = {'kind', kind, 'payload', ARGV[i + 2], 'enqueued_ms', now, 'state', 'held'}
    local function add(name, value, none)
      if value ~= none then
        f[#f + 1] = name
        f[#f + 1] = value
      end
    end
    add('request_id', ARGV[i + 3], '')
    add('run_at_ms', ARGV[i + 6], '0')
    add('delay_ms', ARGV[i + 7], '0')
    add('trace_parent', ARGV[i + 8], '')
    if key then
      add('unique', key)
      add('unique_for', ARGV[i + 5])
    end
    redis.call('HSET', p .. ':job:' .. id, unpack(f))
    redis.call('SADD', p .. ':held:' .. inst, id)
    held[#held + 1] = '1'
  end
end
redis.call('SADD', p .. ':instances', inst)
return table.concat(held)
)lua"};

// Lua shared by the scripts that release held jobs: a job due now goes to its kind's stream,
// one with a time ahead to the sorted set "<prefix>:scheduled" (scored by its due time, unix
// ms by the server's clock, one clock for every instance), from which kPromote moves it when
// due.
constexpr std::string_view kToStreamOrSchedule{R"lua(
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function to_stream_or_schedule(p, id, now)
  local job = p .. ':job:' .. id
  local f = hash_fields(job)
  if not f['kind'] then return 0 end
  local due = math.max(tonumber(f['run_at_ms']) or 0, now + (tonumber(f['delay_ms']) or 0))
  if f['delay_ms'] then redis.call('HDEL', job, 'delay_ms') end
  if due > now then
    redis.call('HSET', job, 'state', 'scheduled', 'run_at_ms', due)
    redis.call('ZADD', p .. ':scheduled', due, id)
  else
    f['state'] = 'ready'
    to_stream(p, id, f['kind'], f)
  end
  return 1
end
)lua"};

std::string releasing(std::string_view body) {
    return (std::string(kRedisJobEntryLua) += kToStreamOrSchedule) += body;
}

const std::string kReleaseText = releasing(R"lua(
local p, inst = ARGV[1], ARGV[2]
local now = server_now()
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('SREM', p .. ':held:' .. inst, id) == 1 then
    n = n + to_stream_or_schedule(p, id, now)
  end
end
return n
)lua");
const RedisScript kRelease{kReleaseText};

// The held jobs of every instance whose heartbeat expired go to their streams.
const std::string kReleaseOrphansText = releasing(R"lua(
local p = ARGV[1]
local now = server_now()
local n = 0
for _, inst in ipairs(redis.call('SMEMBERS', p .. ':instances')) do
  if redis.call('EXISTS', p .. ':alive:' .. inst) == 0 then
    for _, id in ipairs(redis.call('SMEMBERS', p .. ':held:' .. inst)) do
      n = n + to_stream_or_schedule(p, id, now)
    end
    redis.call('DEL', p .. ':held:' .. inst)
    redis.call('SREM', p .. ':instances', inst)
  end
end
return n
)lua");
const RedisScript kReleaseOrphans{kReleaseOrphansText};

// Consumers with nothing pending that have not read for the claim time leave each kind's
// group: instances that died or were renamed (the default name is new at every start) would
// otherwise stay in the group for good. Nothing is lost: a consumer's pending entries are what
// DELCONSUMER drops, and these have none; a live instance that reads again is a consumer
// again. ARGV: prefix, group, idle ms, kinds...
constexpr RedisScript kForgetIdleConsumers{R"lua(
local n = 0
for i = 4, #ARGV do
  local stream = ARGV[1] .. ':stream:' .. ARGV[i]
  -- A stream or group not there (yet, or lost) has no consumer to forget: the next kind.
  local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, ARGV[2])
  if consumers['err'] then consumers = {} end
  for _, consumer in ipairs(consumers) do
    local f = {}
    for j = 1, #consumer, 2 do f[consumer[j]] = consumer[j + 1] end
    if f['pending'] == 0 and f['idle'] > tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[2], f['name'])
      n = n + 1
    end
  end
end
return n
)lua"};

// A held job that goes without running. Its unique key, if it still names the job, goes with it
// (ARGV[4] "free": discarded, for the client's retry) or stays taken for its unique_for ("keep":
// completed, a job run twice whose other run finished first).
constexpr RedisScript kDiscard{R"lua(
local job = ARGV[1] .. ':job:' .. ARGV[3]
redis.call('SREM', ARGV[1] .. ':held:' .. ARGV[2], ARGV[3])
local key = redis.call('HGET', job, 'unique')
if key and redis.call('GET', key) == ARGV[3] then
  if ARGV[4] == 'free' then
    redis.call('DEL', key)
  else
    redis.call('PEXPIRE', key, redis.call('HGET', job, 'unique_for'))
  end
end
return redis.call('DEL', job)
)lua"};

// Its unique key, if the job still holds it, stays taken for its unique_for. A job run twice
// may have a retry of its other run scheduled, or in the stream already: its entry carries
// the job, so it goes too (the job's hash names its latest entry).
constexpr RedisScript kComplete{R"lua(
local stream = ARGV[1] .. ':stream:' .. ARGV[3]
local job = ARGV[1] .. ':job:' .. ARGV[5]
redis.call('XACK', stream, ARGV[2], ARGV[4])
redis.call('XDEL', stream, ARGV[4])
local other = redis.call('HGET', job, 'entry')
if other and other ~= ARGV[4] then
  redis.call('XACK', stream, ARGV[2], other)
  redis.call('XDEL', stream, other)
end
redis.call('ZREM', ARGV[1] .. ':scheduled', ARGV[5])
local key = redis.call('HGET', job, 'unique')
if key and redis.call('GET', key) == ARGV[5] then
  redis.call('PEXPIRE', key, redis.call('HGET', job, 'unique_for'))
end
return redis.call('DEL', job)
)lua"};

constexpr RedisScript kBury{R"lua(
local p, kind, id = ARGV[1], ARGV[3], ARGV[5]
local stream = p .. ':stream:' .. kind
redis.call('XACK', stream, ARGV[2], ARGV[4])
redis.call('XDEL', stream, ARGV[4])
redis.call('ZREM', p .. ':scheduled', id)
local other = redis.call('HGET', p .. ':job:' .. id, 'entry')
if other and other ~= ARGV[4] then
  redis.call('XACK', stream, ARGV[2], other)
  redis.call('XDEL', stream, other)
end
local state = redis.call('HGET', p .. ':job:' .. id, 'state')
if state and state ~= 'dead' then
  local t = redis.call('TIME')
  redis.call('HSET', p .. ':job:' .. id, 'state', 'dead', 'attempts', ARGV[6],
             'last_error', ARGV[7], 'run_at_ms',
             tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('XADD', p .. ':dead', '*', 'id', id, 'kind', kind, 'error', ARGV[7])
  local key = redis.call('HGET', p .. ':job:' .. id, 'unique')
  if key and redis.call('GET', key) == id then
    redis.call('PEXPIRE', key, redis.call('HGET', p .. ':job:' .. id, 'unique_for'))
  end
end
return 1
)lua"};

// A failed attempt's job leaves its consumer: its entry is acknowledged, and the job waits in
// the scheduled set for its retry, due its backoff from now by the server's clock, which
// whichever instance looks when it is due moves to the stream (kPromote). Only a job that
// still exists and is not dead: a duplicate's completion may have deleted it, or its death been
// written, meanwhile. And only once: a resend of a write whose reply was lost finds its entry
// acknowledged already, and changes nothing (the retry may be running by then). ARGV: prefix,
// group, kind, entry ('' when this instance had not taken it), id, attempts, backoff ms, error.
const std::string kRescheduleText = releasing(R"lua(
local p, id = ARGV[1], ARGV[5]
if ARGV[4] ~= '' then
  local stream = p .. ':stream:' .. ARGV[3]
  if redis.call('XACK', stream, ARGV[2], ARGV[4]) == 0 then return 0 end
  redis.call('XDEL', stream, ARGV[4])
end
local job = p .. ':job:' .. id
local state = redis.call('HGET', job, 'state')
if not state or state == 'dead' then return 0 end
local due = server_now() + tonumber(ARGV[7])
redis.call('HSET', job, 'attempts', ARGV[6], 'run_at_ms', due, 'state', 'retry',
           'last_error', ARGV[8])
redis.call('ZADD', p .. ':scheduled', due, id)
return 1
)lua");
const RedisScript kReschedule{kRescheduleText};

// A kind's rate across every instance: a token bucket in "<prefix>:rate:<kind>" (tokens, and
// the server's time in ms when they were counted), refilled by the server's clock. Grants up
// to ARGV[4] starts; returns {granted, ms until the next token}. ARGV: key, starts per ms,
// burst, wanted. The key expires once a full bucket would be back.
constexpr RedisScript kTakeTokens{R"lua(
local rate, burst, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', ARGV[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', ARGV[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', ARGV[1], math.ceil(burst / rate) + 1000)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) / rate) end
return {granted, wait}
)lua"};

// Moves the scheduled jobs that are due (at most ARGV[2]) to their streams: a first attempt as
// ready, a retry as it was, its entry saying its attempts so far. A job gone
// (finished by a second run) or dead only leaves the set.
// Returns how long until the next is due, in ms (0: more are due now; -1: none is scheduled).
const std::string kPromoteText = releasing(R"lua(
local p = ARGV[1]
local set = p .. ':scheduled'
local now = server_now()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, ARGV[2])) do
  redis.call('ZREM', set, id)
  local f = hash_fields(p .. ':job:' .. id)
  if f['state'] == 'scheduled' or f['state'] == 'retry' then
    if f['state'] == 'scheduled' then f['state'] = 'ready' end
    to_stream(p, id, f['kind'], f)
  end
end
local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
if #first == 0 then return -1 end
return math.max(0, tonumber(first[2]) - now)
)lua");
const RedisScript kPromote{kPromoteText};

// JobStore::census for every instance, in one script. Per kind (ARGV[5..]): ready are the
// stream's entries no consumer has taken, running those taken and not finished, and the oldest
// ready is the first entry after the group's last delivered one whose job is still there (a
// cancel deletes the entry of a job no instance has taken, but an entry of only an id, as
// earlier versions wrote, stays until a consumer reads and drops it, and counts as ready
// until then); an entry id starts with the server's ms when it was added: released, promoted
// or revived. Scheduled and
// retrying jobs are counted from the scheduled set, the soonest due first, and the dead from
// the dead stream (a job revived and dead again is there twice), the latest first, each up to
// ARGV[3]; the first ARGV[4] dead found are returned whole. ARGV: prefix, group, limit,
// latest, kinds... Returns {partial, number of kinds, the server's time in ms, kinds..., dead
// jobs...}: a kind as {kind, ready, running, scheduled, retrying, dead, oldest ready ms}, a
// dead job as {id, kind, attempts, last_error, request_id, run_at_ms, enqueued_ms,
// trace_parent}.
constexpr RedisScript kCensus{R"lua(
local p, group, limit, latest = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local counts, order, partial = {}, {}, 0
local function of(kind)
  if not counts[kind] then
    counts[kind] = {kind, 0, 0, 0, 0, 0, 0}
    order[#order + 1] = kind
  end
  return counts[kind]
end
for i = 5, #ARGV do
  local c = of(ARGV[i])
  local stream = p .. ':stream:' .. ARGV[i]
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if groups['err'] then groups = {} end
  for _, g in ipairs(groups) do
    local f = {}
    for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
    if f['name'] == group then
      c[3] = f['pending']
      c[2] = math.max(0, redis.call('XLEN', stream) - f['pending'])
      if c[2] > 0 then
        local first = redis.call('XRANGE', stream, '(' .. f['last-delivered-id'], '+', 'COUNT', 16)
        for _, entry in ipairs(first) do
          if redis.call('EXISTS', p .. ':job:' .. entry[2][2]) == 1 then
            c[7] = tonumber(string.match(entry[1], '^(%d+)'))
            break
          end
        end
      end
    end
  end
end
local set = p .. ':scheduled'
if redis.call('ZCARD', set) > limit then partial = 1 end
for _, id in ipairs(redis.call('ZRANGE', set, 0, limit - 1)) do
  local f = redis.call('HMGET', p .. ':job:' .. id, 'kind', 'state')
  if f[1] then
    local c = of(f[1])
    if f[2] == 'retry' then c[5] = c[5] + 1 elseif f[2] == 'scheduled' then c[4] = c[4] + 1 end
  end
end
local dead, seen = {}, {}
local entries = redis.call('XREVRANGE', p .. ':dead', '+', '-', 'COUNT', limit)
if #entries == limit and redis.call('XLEN', p .. ':dead') > limit then partial = 1 end
for _, entry in ipairs(entries) do
  local id = entry[2][2]
  if not seen[id] then
    seen[id] = true
    local f = redis.call('HMGET', p .. ':job:' .. id, 'kind', 'state', 'attempts', 'last_error',
                         'request_id', 'run_at_ms', 'enqueued_ms', 'trace_parent')
    if f[2] == 'dead' then
      local c = of(f[1])
      c[6] = c[6] + 1
      if #dead < latest then
        dead[#dead + 1] = {id, f[1], f[3] or '0', f[4] or '', f[5] or '', f[6] or '0',
                           f[7] or '0', f[8] or ''}
      end
    end
  end
end
local t = redis.call('TIME')
local out = {partial, #order, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for _, kind in ipairs(order) do out[#out + 1] = counts[kind] end
for _, job in ipairs(dead) do out[#out + 1] = job end
return out
)lua"};

// Attempt ARGV[3] of a job that exists and is not dead starts: what stays if its process dies.
constexpr RedisScript kRecordAttempt{R"lua(
local job = ARGV[1] .. ':job:' .. ARGV[2]
local state = redis.call('HGET', job, 'state')
if not state or state == 'dead' then return 0 end
redis.call('HSET', job, 'attempts', ARGV[3], 'last_error', ARGV[4])
return 1
)lua"};

// Resets the idle time of the entries this consumer still has, and only those: an entry
// another instance claimed meanwhile stays theirs.
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
// unsent and tried again, like one that met no server.
bool transient(const RedisReplyError& e) {
    static constexpr std::string_view kCodes[] = {"OOM",  "READONLY", "LOADING",  "MISCONF",
                                                  "BUSY", "NOGROUP",  "TRYAGAIN", "MASTERDOWN"};
    const std::string_view what = e.what();
    const auto at = what.find(": ");
    const auto reply = at == std::string_view::npos ? what : what.substr(at + 2);
    return std::ranges::any_of(kCodes,
                               [&](std::string_view code) { return reply.starts_with(code); });
}

// 63 random bits, never 0: ids of live jobs collide with a chance of about n^2 / 2^64.
std::int64_t random_job_id() {
    thread_local std::mt19937_64 random{[] {
        std::random_device device;
        return (static_cast<std::uint64_t>(device()) << 32) | device();
    }()};
    std::int64_t id = 0;
    while (id == 0) id = static_cast<std::int64_t>(random() >> 1);
    return id;
}

}  // namespace

RedisJobFields redis_job_fields(const redisReply* pairs) {
    RedisJobFields fields;
    for (std::size_t f = 0; f + 1 < reply_size(pairs); f += 2) {
        fields[reply_string(reply_element(pairs, f))] = reply_string(reply_element(pairs, f + 1));
    }
    return fields;
}

std::int64_t redis_integer(std::string_view text) {
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

StoredJob redis_stored_job(std::int64_t id, const RedisJobFields& fields) {
    const auto field = [&](const char* name) {
        const auto it = fields.find(name);
        return it == fields.end() ? std::string() : it->second;
    };
    StoredJob job;
    job.id = id;
    job.kind = field("kind");
    job.payload = field("payload");
    job.request_id = field("request_id");
    job.trace_parent = field("trace_parent");
    job.attempts = static_cast<unsigned>(redis_integer(field("attempts")));
    job.state = job_state_named(field("state"));
    job.enqueued_ms = redis_integer(field("enqueued_ms"));
    job.run_at_ms = redis_integer(field("run_at_ms"));
    job.last_error = field("last_error");
    return job;
}

class RedisJobStore::Lease {
  public:
    Lease(const RedisJobStore& owner, RedisConnection connection)
        : owner_(owner), connection_(std::move(connection)) {}
    Lease(const Lease&) = delete;
    // A broken connection is dropped, and the idle ones with it: after a server restart or a
    // failover they are as stale, and each would fail one more caller.
    ~Lease() {
        if (connection_.broken()) {
            owner_.drop_idle();
        } else {
            owner_.give_back(std::move(connection_));
        }
    }
    RedisConnection* operator->() { return &connection_; }
    RedisConnection& operator*() { return connection_; }

  private:
    const RedisJobStore& owner_;
    RedisConnection connection_;
};

RedisJobStore::RedisJobStore(const std::string& address, RedisJournalOptions options,
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
            feed_connection_.emplace(connect());
            break;
        } catch (const JournalError& e) {
            if (Clock::now() >= give_up_at) throw;
            log::warn("{}; trying again (--journal-wait)", e.what());
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }
    claim_name();
    ensure_groups(*feed_connection_);
    beat();
}

// The instance's name is its heartbeat key, set only when absent (SET NX): a name in use would
// share a held set with a live process. A process restarted right after a crash finds its
// predecessor's heartbeat still there, so it waits for it to expire (up to claim_after) before
// giving up. Then it releases what that predecessor held.
void RedisJobStore::claim_name() {
    const auto alive = key("alive:" + options_.instance);
    const auto ttl = std::to_string(options_.claim_after.count());
    const auto give_up_at = Clock::now() + options_.claim_after + std::chrono::seconds(1);
    bool told = false;
    while (feed_connection_->command({"SET", alive, std::to_string(::getpid()), "NX", "PX", ttl})
               .is_nil()) {
        if (Clock::now() >= give_up_at) {
            throw JournalError(fmt::format(
                "redis {}: instance name '{}' is in use by a live instance; give each instance "
                "its own --journal-instance",
                address_.text, options_.instance));
        }
        if (!std::exchange(told, true)) {
            log::warn(
                "redis {}: instance name '{}' is in use; waiting up to {} ms for it to "
                "expire (a restart after a crash)",
                address_.text, options_.instance, options_.claim_after.count());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    const auto held = feed_connection_->command({"SMEMBERS", key("held:" + options_.instance)});
    std::vector<std::string> args{options_.prefix, options_.instance};
    for (std::size_t i = 0; i < held.size(); ++i) args.push_back(reply_string(held.element(i)));
    if (args.size() > 2) feed_connection_->eval(kRelease, args);
}

// The kinds' streams and their consumer group, created when missing (first start, or a server
// that lost its data): without the group every read fails while holds still succeed.
void RedisJobStore::ensure_groups(RedisConnection& connection) {
    for (const auto& kind : kinds_) {
        try {
            connection.command(
                {"XGROUP", "CREATE", key("stream:" + kind), kGroup, "0", "MKSTREAM"});
        } catch (const RedisReplyError& e) {
            if (std::string_view(e.what()).find("BUSYGROUP") == std::string_view::npos) throw;
        }
    }
}

RedisJobStore::~RedisJobStore() = default;

// Nothing is replayed: the feed takes released jobs (this instance's, and those of instances
// that died) as the runner has openings. An instance that does not take (web role, or no kinds)
// beats all the same.
void RedisJobStore::start(JobRunner& runner, bool take) {
    writer_ = std::jthread([this](std::stop_token stop) { writer_loop(std::move(stop)); });
    {
        std::lock_guard lock(mutex_);
        writer_running_ = true;
    }
    feed_ = std::make_unique<RedisJobFeed>(*this, runner, take);
    log::info("journal {} (redis, prefix {}, instance {}, claim after {}ms, {})", address_.text,
              options_.prefix, options_.instance, options_.claim_after.count(),
              take ? "taking jobs" : "beating only");
}

void RedisJobStore::stop_taking() {
    if (feed_) feed_->stop_taking();
}

// The beat goes on until the jobs still running have ended (the runner's stop, after the
// pool's drain): only then may other instances claim what is left. Not written: held (or
// finished) jobs whose release (or completion) never reached Redis; other instances release
// or run them again: kept, as with SQLite.
std::uint64_t RedisJobStore::close() {
    if (feed_) feed_->stop();
    writer_.request_stop();
    if (writer_.joinable()) writer_.join();
    leave();
    const auto unwritten = figures().unwritten;
    if (unwritten > 0) {
        log::error(
            "journal {}: {} releases or finishes could not be written; other instances "
            "release or run those jobs again after {}ms",
            address_.text, unwritten, options_.claim_after.count());
    }
    return unwritten;
}

std::string RedisJobStore::key(std::string_view what) const {
    return fmt::format("{}:{}", options_.prefix, what);
}

RedisConnection RedisJobStore::connect() const {
    auto connection = RedisConnection::open(address_, password_, kCommandTimeout);
    connection.count_round_trips(&round_trips_);
    return connection;
}

// An idle connection, or a new one; while the server was unreachable a moment ago, fails at
// once instead of making every request wait for its own connect timeout.
RedisJobStore::Lease RedisJobStore::lease() const {
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

void RedisJobStore::drop_idle() const {
    std::lock_guard lock(mutex_);
    idle_.clear();
}

void RedisJobStore::give_back(RedisConnection connection) const {
    std::lock_guard lock(mutex_);
    if (idle_.size() < kIdleConnections) idle_.push_back(std::move(connection));
}

struct RedisJobStore::Hold {
    std::span<const NewJob> jobs;
    std::vector<std::int64_t> ids;
    std::vector<std::string> args;
    bool answered = false;  // held, or refused: whatever happens next, its outcome is known
    bool failed = false;
    std::string error;  // why it failed, when there was memory to say so
    bool done = false;  // guarded by holds_mutex_
    // In flight from before the hold until its ids are in holding_ (or it failed), marked with
    // the beat it started after: see release_stranded.
    std::multiset<std::uint64_t>::iterator in_flight;
    std::unique_ptr<PendingCommit> pending;  // a commit_then's; then the hold is on the heap
};

void RedisJobStore::draw(Hold& hold) const {
    hold.ids.clear();
    hold.args = {options_.prefix, options_.instance, std::to_string(unix_now_ms())};
    for (const auto& job : hold.jobs) {
        hold.ids.push_back(random_job_id());
        hold.args.push_back(std::to_string(hold.ids.back()));
        hold.args.emplace_back(job.kind);
        hold.args.emplace_back(job.payload);
        hold.args.emplace_back(job.request_id);
        hold.args.emplace_back(job.unique_key);
        hold.args.push_back(std::to_string(job.unique_for_ms));
        hold.args.push_back(std::to_string(job.run_at_ms));
        hold.args.push_back(std::to_string(job.delay_ms));
        hold.args.emplace_back(job.trace_parent);
    }
}

void RedisJobStore::begin(Hold& hold) {
    draw(hold);
    std::lock_guard lock(mutex_);
    hold.in_flight = commits_in_flight_.insert(beats_);
}

std::vector<std::int64_t> RedisJobStore::end(Hold& hold) {
    if (hold.failed) {
        std::lock_guard lock(mutex_);
        commits_in_flight_.erase(hold.in_flight);
        throw JournalUnavailable(hold.error.empty() ? "redis " + address_.text + ": out of memory"
                                                    : hold.error);
    }
    auto& ids = hold.ids;
    const auto now = unix_now_ms();
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] == kDuplicate) continue;
        holding_.insert(ids[i]);
        // The feed looks when it is due, from its release on (the response may outlast a delay).
        if (hold.jobs[i].run_at_ms > now || hold.jobs[i].delay_ms > 0) {
            timed_.emplace(ids[i], std::pair(hold.jobs[i].run_at_ms, hold.jobs[i].delay_ms));
        }
    }
    commits_in_flight_.erase(hold.in_flight);
    return std::move(ids);
}

void RedisJobStore::tell(Hold& hold) noexcept {
    std::vector<std::int64_t> ids;
    std::exception_ptr failure;
    try {
        ids = end(hold);
    } catch (...) {
        failure = std::current_exception();
    }
    hold.pending->done(std::move(ids), failure);
}

std::vector<std::int64_t> RedisJobStore::commit(std::span<const NewJob> jobs) {
    if (jobs.empty()) return {};
    Hold hold{.jobs = jobs};
    begin(hold);
    {
        const detail::BlockingNotice waiting_for_redis;
        std::unique_lock lock(holds_mutex_);
        holds_.push_back(&hold);
        ++waiting_holds_;
        while (!hold.done) {
            if (holds_on_way_) {
                holds_sent_cv_.wait(lock);
            } else {
                hold_group(lock, false);
            }
        }
        // Holds queued meanwhile that nobody waits for: not this caller's to send, as its
        // request waits for it; the writer thread's, once there is one.
        if (holds_unled() && !hand_to_writer({})) lead_holds(lock);
    }
    return end(hold);
}

void RedisJobStore::commit_then(std::unique_ptr<PendingCommit> pending) noexcept {
    if (pending->jobs().empty()) {
        pending->done({}, nullptr);
        return;
    }
    std::unique_ptr<Hold> hold;
    try {
        hold = std::make_unique<Hold>();
        hold->jobs = pending->jobs();
        begin(*hold);
    } catch (...) {  // out of memory, before anything was counted in flight
        pending->done({}, std::current_exception());
        return;
    }
    hold->pending = std::move(pending);
    std::unique_lock lock(holds_mutex_);
    try {
        holds_.push_back(hold.get());
    } catch (...) {
        lock.unlock();
        hold->failed = true;
        tell(*hold);
        return;
    }
    hold.release();  // the thread that sends its group tells and deletes it
    lead_holds(lock);
}

bool RedisJobStore::holds_unled() const {
    return !holds_.empty() && !holds_on_way_ && waiting_holds_ == 0;
}

void RedisJobStore::lead_holds(std::unique_lock<std::mutex>& lock) {
    while (holds_unled()) hold_group(lock, true);
}

bool RedisJobStore::hand_to_writer(std::span<Hold* const> untold) noexcept {
    {
        std::lock_guard lock(mutex_);
        if (!writer_running_) return false;
        try {
            untold_holds_.insert(untold_holds_.end(), untold.begin(), untold.end());
        } catch (const std::bad_alloc&) {
            return false;
        }
        holds_to_lead_ = true;
    }
    writer_cv_.notify_one();
    return true;
}

// However the group ends (out of memory, even), its committers stop waiting and the next group
// may go. The group's commit_then holds are told with the lock released (a commit() caller's
// hold may be gone once it is done): on this thread, or, when not `tell_here`, on the writer
// thread.
void RedisJobStore::hold_group(std::unique_lock<std::mutex>& lock, bool tell_here) {
    auto group = std::exchange(holds_, {});
    waiting_holds_ = 0;
    holds_on_way_ = true;
    // Before the lock goes, so that a write queued once the group shows as on its way waits
    // for the next group.
    auto along = start_hold_trip();
    lock.unlock();
    try {
        send_holds(group, along ? &along->writes : nullptr);
    } catch (...) {
        // Out of memory: the holds not answered yet fail; those answered are held, and stay so.
        for (auto* hold : group) hold->failed = hold->failed || !hold->answered;
        try {
            if (along) save_all_unsent(along->writes);
        } catch (const std::bad_alloc&) {
            log::error("journal {}: a group of writes was lost: out of memory", address_.text);
        }
    }
    // Does not throw: a stable_partition without memory for its buffer works in place.
    const auto left = std::stable_partition(group.begin(), group.end(),
                                            [](const Hold* hold) { return !hold->pending; });
    lock.lock();
    holds_on_way_ = false;
    {
        // Holds queued meanwhile go next, at once (a committer waits for them, or they are
        // led): the writes queued meanwhile are left to go along with them.
        std::lock_guard writes(mutex_);
        hold_trip_on_way_ = !holds_.empty();
        if (along) end_writes(*along);
        if (!hold_trip_on_way_ && writer_idle_ && !queued_.empty() && waited_queued_ == 0) {
            writer_cv_.notify_one();
        }
    }
    for (auto it = group.begin(); it != left; ++it) (*it)->done = true;
    holds_sent_cv_.notify_all();
    lock.unlock();
    const std::span<Hold* const> untold(left, group.end());
    if (tell_here || !hand_to_writer(untold)) tell_each(untold);
    lock.lock();
}

void RedisJobStore::tell_each(std::span<Hold* const> holds) noexcept {
    for (auto* left : holds) {
        const std::unique_ptr<Hold> hold(left);
        tell(*hold);
    }
}

// A hold that drew an id in use draws again and goes in the next pipeline. A hold the server
// refuses fails alone; refused for now (READONLY from a demoted primary, ...), the connection
// is dropped, and the holds to send again fail with it. When the connection fails, the holds
// whose replies were read before keep them: they are held, and their requests go on. A
// connection that fails, or a refusal for now, counts as one failed round trip, as a group
// of writes does. A NOSCRIPT reply left by a connection lost before the script's second try
// fails its hold for that loss. The writes `along` go in the first pipeline, after the holds,
// and are settled as send_group settles its own (and taken out of `along`).
void RedisJobStore::send_holds(std::vector<Hold*> group, std::vector<Write>* along) {
    bool counted = false;
    const auto count = [&] {
        if (!std::exchange(counted, true)) failed_commands_.fetch_add(1, std::memory_order_relaxed);
    };
    const auto failed = [&](Hold& hold, const std::string& why, bool counts) {
        hold.failed = true;
        hold.answered = true;
        hold.error = why;
        if (counts) count();
    };
    std::optional<std::string> lost;  // why the connection cannot go on
    try {
        auto connection = lease();
        while (!group.empty() && !lost) {
            std::vector<RedisScriptCall> calls;
            calls.reserve(group.size());
            for (const auto* hold : group) calls.push_back({kHold, hold->args});
            const auto holds = calls.size();
            if (along != nullptr) std::ranges::copy(calls_of(*along), std::back_inserter(calls));
            std::vector<RedisReply> replies;
            bool cut = false;  // the connection failed: the writes' replies are not all known
            try {
                connection->eval_each(calls, replies);
            } catch (const JournalError& e) {
                lost = e.what();
                cut = true;
                count();
            }
            std::vector<Hold*> again;
            for (std::size_t i = 0; i < group.size(); ++i) {
                auto& hold = *group[i];
                if (i >= replies.size()) {
                    failed(hold, *lost, true);
                } else if (lost && reply_string(replies[i].get()).starts_with("NOSCRIPT")) {
                    failed(hold, *lost, true);
                } else if (replies[i].is_error()) {
                    const auto error = refused(replies[i]);
                    const bool for_now = transient(error);
                    if (for_now && !lost) {
                        connection->abandon();
                        lost = error.what();
                    }
                    failed(hold, error.what(), for_now);
                } else if (replies[i].is_integer()) {
                    draw(hold);  // an id in use
                    again.push_back(&hold);
                } else {
                    hold.answered = true;
                    const auto held = replies[i].string();
                    for (std::size_t j = 0; j < hold.ids.size(); ++j) {
                        if (j >= held.size() || held[j] != '1') hold.ids[j] = kDuplicate;
                    }
                }
            }
            if (along != nullptr) {
                if (cut) {  // some may have run: the scripts are safe to run twice
                    save_all_unsent(*along);
                } else {
                    writes_along_.fetch_add(along->size(), std::memory_order_relaxed);
                    if (settle_writes(*along, std::span(replies).subspan(holds))) {
                        count();
                        if (!lost) {
                            connection->abandon();
                            lost = fmt::format("redis {}: a write was refused for now",
                                               address_.text);
                        }
                    }
                }
                along->clear();
                along = nullptr;
            }
            group = std::move(again);
        }
    } catch (const JournalError& e) {
        lost = e.what();  // no connection
    }
    if (along != nullptr) save_all_unsent(*along);  // no connection
    for (auto* hold : group) failed(*hold, *lost, true);
}

// A write waits behind unsent writes about the same jobs, so that an older change cannot land
// after a newer one (a retry's attempts after its completion); others go at once, so that one
// refused write does not hold back the rest.
void RedisJobStore::write_or_save(Write write) {
    std::unique_lock lock(mutex_);
    if (unsent_for(write.ids)) {
        unsent_.push_back(std::move(write));
        return;
    }
    queued_.push_back(std::move(write));
    ++queued_count_;
    ++waited_queued_;
    wait_written(lock);
}

void RedisJobStore::write_soon(Write write) {
    std::unique_lock lock(mutex_);
    if (!writer_running_) {
        lock.unlock();
        write_or_save(std::move(write));
        return;
    }
    if (unsent_for(write.ids)) {
        unsent_.push_back(std::move(write));
        return;
    }
    queued_.push_back(std::move(write));
    ++queued_count_;
    // A caller queued that waits takes this write along; the end of a group of writes or holds
    // on its way wakes the writer.
    const bool wake = writer_idle_ && !writing_ && waited_queued_ == 0 && !hold_trip_on_way_;
    lock.unlock();
    if (wake) writer_cv_.notify_one();
}

void RedisJobStore::flush() {
    std::unique_lock lock(mutex_);
    wait_written(lock);
}

void RedisJobStore::wait_written(std::unique_lock<std::mutex>& lock) {
    const auto mine = queued_count_;
    while (written_count_ < mine) {
        if (writing_) {
            written_cv_.wait(lock);
        } else {
            write_group(lock);
        }
    }
}

// At its stop, it writes what is queued still: a release handed over before the stop is not
// left to the other instances' beats.
void RedisJobStore::writer_loop(std::stop_token stop) {
    detail::name_this_thread("ct-redis-write");
    std::unique_lock lock(mutex_);
    // While a group of holds is on its way, or another is queued to follow it, writes wait:
    // the next group takes them along, or the writer sends them once the last is back (its
    // end wakes the writer). That is at most a round trip later, and a round trip fewer.
    const auto writes = [&] {
        return !writing_ && !queued_.empty() && waited_queued_ == 0 && !hold_trip_on_way_;
    };
    // One group of holds at a time; the writes queued meanwhile go along with the next.
    const auto lead_left_holds = [&] {
        if (!std::exchange(holds_to_lead_, false)) return;
        const auto untold = std::exchange(untold_holds_, {});
        lock.unlock();
        tell_each(untold);
        bool more = false;
        {
            std::unique_lock holds(holds_mutex_);
            if (holds_unled()) hold_group(holds, true);
            more = holds_unled();
        }
        lock.lock();
        holds_to_lead_ = holds_to_lead_ || more;
    };
    while (!stop.stop_requested()) {
        writer_idle_ = true;
        writer_cv_.wait(lock, stop, [&] { return holds_to_lead_ || writes(); });
        writer_idle_ = false;
        lead_left_holds();
        if (!writes()) continue;
        try {
            write_group(lock);
        } catch (const std::exception& e) {  // out of memory: the beat releases what it held
            log::error("journal {}: a group of writes was lost: {}", address_.text, e.what());
        }
    }
    writer_running_ = false;
    while (holds_to_lead_) lead_left_holds();
    try {
        wait_written(lock);
    } catch (const std::exception& e) {
        log::error("journal {}: writes were lost at the stop: {}", address_.text, e.what());
    }
}

void RedisJobStore::write_group(std::unique_lock<std::mutex>& lock) {
    auto group = take_writes();
    lock.unlock();
    try {
        send_group(group.writes);
    } catch (...) {
        lock.lock();
        end_writes(group);
        throw;
    }
    lock.lock();
    end_writes(group);
}

// The group is what was queued: a write about jobs that a failed group left unsent meanwhile
// goes behind them instead.
RedisJobStore::WriteGroup RedisJobStore::take_writes() {
    WriteGroup group;
    group.writes.reserve(queued_.size());  // out of memory, it throws before anything changed
    writing_ = true;
    for (auto& write : queued_) {
        bool saved = false;
        if (unsent_for(write.ids)) {
            try {
                unsent_.push_back(std::move(write));
                saved = true;
            } catch (const std::bad_alloc&) {  // sent now, then: kept, if out of order
            }
        }
        if (!saved) group.writes.push_back(std::move(write));
    }
    queued_.clear();
    waited_queued_ = 0;
    group.last = queued_count_;
    return group;
}

// However the group ended (out of memory, even), its callers stop waiting and the next group
// may go; otherwise every later write would wait forever.
void RedisJobStore::end_writes(const WriteGroup& group) {
    written_count_ = group.last;
    writing_ = false;
    written_cv_.notify_all();
    if (writer_idle_ && !queued_.empty() && waited_queued_ == 0) writer_cv_.notify_one();
}

std::optional<RedisJobStore::WriteGroup> RedisJobStore::start_hold_trip() noexcept {
    std::lock_guard lock(mutex_);
    hold_trip_on_way_ = true;
    if (writing_ || queued_.empty()) return std::nullopt;
    try {
        return take_writes();
    } catch (const std::bad_alloc&) {
        writing_ = false;
        return std::nullopt;
    }
}

std::vector<RedisScriptCall> RedisJobStore::calls_of(const std::vector<Write>& writes) {
    std::vector<RedisScriptCall> calls;
    calls.reserve(writes.size());
    for (const auto& write : writes) calls.push_back({*write.script, write.args});
    return calls;
}

// One pipeline (two when the server lost the scripts: see eval_each). Order within a group
// does not matter: no two of its writes are about one job, as a job's next write follows from
// the effect of its last (its end from its take, its take from its release), and a write waits
// behind unsent ones about the same jobs. When the server cannot be reached, or refuses the
// connection's own setup (LOADING, a RedisReplyError, is a JournalError too), the whole group
// is unsent (the scripts are safe to run twice, should some have run). That, or a write
// refused for now, counts as one failed round trip.
void RedisJobStore::send_group(std::vector<Write>& group) {
    if (group.empty()) return;
    std::vector<RedisReply> replies;
    try {
        auto connection = lease();
        connection->eval_each(calls_of(group), replies);
        if (std::ranges::any_of(replies, [&](const auto& r) { return refused_for_now(r); })) {
            connection->abandon();
        }
    } catch (const JournalError&) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        save_all_unsent(group);
        return;
    }
    if (settle_writes(group, replies)) failed_commands_.fetch_add(1, std::memory_order_relaxed);
}

// A write refused for now (READONLY, ...) is unsent, and its connection is to be dropped: it
// may reach a demoted primary. One refused for good is logged, as writing it again cannot
// help.
bool RedisJobStore::settle_writes(std::vector<Write>& group, std::span<const RedisReply> replies) {
    bool for_now = false;
    for (std::size_t i = 0; i < group.size(); ++i) {
        if (!replies[i].is_error()) continue;
        const auto error = refused(replies[i]);
        if (!transient(error)) {
            log::error("{}", error.what());
            continue;
        }
        for_now = true;
        save_unsent(std::move(group[i]));
    }
    return for_now;
}

bool RedisJobStore::refused_for_now(const RedisReply& reply) const {
    return reply.is_error() && transient(refused(reply));
}

RedisReplyError RedisJobStore::refused(const RedisReply& reply) const {
    return RedisReplyError(fmt::format("redis {}: {}", address_.text, reply_string(reply.get())));
}

bool RedisJobStore::unsent_for(const std::vector<std::int64_t>& ids) const {
    return std::ranges::any_of(unsent_, [&](const Write& unsent) {
        return std::ranges::find_first_of(unsent.ids, ids) != unsent.ids.end();
    });
}

void RedisJobStore::save_unsent(Write write) {
    std::lock_guard lock(mutex_);
    unsent_.push_back(std::move(write));
}

// Those settled already were moved out: their ids are gone.
void RedisJobStore::save_all_unsent(std::vector<Write>& writes) {
    for (auto& write : writes) {
        if (!write.ids.empty()) save_unsent(std::move(write));
    }
    writes.clear();
}

void RedisJobStore::release(std::span<const std::int64_t> ids) {
    if (ids.empty()) return;
    {
        const auto now = unix_now_ms();
        std::lock_guard lock(mutex_);
        for (const auto id : ids) {
            holding_.erase(id);
            if (auto timed = timed_.extract(id)) {
                promote_by(std::max(timed.mapped().first, now + timed.mapped().second));
            }
        }
    }
    std::vector<std::string> args{options_.prefix, options_.instance};
    for (const auto id : ids) args.push_back(std::to_string(id));
    write_soon({{ids.begin(), ids.end()}, &kRelease, std::move(args)});
}

void RedisJobStore::discard(std::int64_t id) { drop_held(id, "free"); }

void RedisJobStore::drop_held(std::int64_t id, const char* key_action) {
    {
        std::lock_guard lock(mutex_);
        holding_.erase(id);
        timed_.erase(id);
    }
    std::vector<std::string> args{options_.prefix, options_.instance, std::to_string(id),
                                  key_action};
    write_or_save({{id}, &kDiscard, std::move(args)});
}

void RedisJobStore::complete(std::int64_t id) {
    std::optional<Taken> taken;
    {
        std::lock_guard lock(mutex_);
        if (auto node = taken_.extract(id)) taken = std::move(node.mapped());
        holding_.erase(id);
    }
    if (!taken) {  // not taken here: held, never released, or a second run's end
        drop_held(id, "keep");
        return;
    }
    std::vector<std::string> args{options_.prefix, std::string(kGroup), taken->kind, taken->entry,
                                  std::to_string(id)};
    write_soon({{id}, &kComplete, std::move(args)});
}

// The due time goes as a backoff from now: the server scores it by its own clock, one clock
// for every instance.
void RedisJobStore::reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                               std::string error) {
    const auto now = unix_now_ms();
    std::optional<Taken> taken;
    {
        std::lock_guard lock(mutex_);
        if (auto node = taken_.extract(id)) taken = std::move(node.mapped());
    }
    std::vector<std::string> args{options_.prefix,
                                  std::string(kGroup),
                                  taken ? taken->kind : std::string(),
                                  taken ? taken->entry : std::string(),
                                  std::to_string(id),
                                  std::to_string(attempts),
                                  std::to_string(std::max<std::int64_t>(0, run_at_ms - now)),
                                  std::move(error)};
    write_or_save({{id}, &kReschedule, std::move(args)});
    promote_by(run_at_ms);
}

std::chrono::milliseconds RedisJobStore::promote_due() {
    const auto now = unix_now_ms();
    if (const auto at = next_promote_ms_.load(); now < at) {
        return std::chrono::milliseconds(at - now);
    }
    // Set before the look: a schedule of ours that comes meanwhile moves it earlier again.
    next_promote_ms_.store(now + kPromoteLook.count());
    const auto next =
        lease()->eval(kPromote, std::vector{options_.prefix, std::to_string(kPromoteBatch)});
    const auto after = unix_now_ms();
    if (next.integer() >= 0) promote_by(after + next.integer());
    return std::chrono::milliseconds(std::max<std::int64_t>(0, next_promote_ms_.load() - after));
}

RedisJobStore::Starts RedisJobStore::take_starts(const std::string& kind, const JobRate& rate,
                                                 std::size_t wanted) {
    const std::vector<std::string> args{key("rate:" + kind),
                                        fmt::format("{}", rate.per_second / 1000),
                                        std::to_string(rate.burst), std::to_string(wanted)};
    const auto reply = lease()->eval(kTakeTokens, args);
    return {static_cast<std::size_t>(reply_integer(reply.element(0))),
            std::chrono::milliseconds(reply_integer(reply.element(1)))};
}

void RedisJobStore::drop_cancelled(std::vector<StoredJob>& jobs) {
    if (jobs.empty()) return;
    auto connection = lease();
    std::vector<std::vector<std::string>> checks;
    for (const auto& job : jobs) checks.push_back({"EXISTS", key(fmt::format("job:{}", job.id))});
    const auto replies = connection->pipeline(checks);
    std::vector<std::vector<std::string>> drops;
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            // A failed check keeps the job: better run once too many than lose it.
            if (!replies[i].is_integer() || replies[i].integer() != 0) continue;
            if (auto node = taken_.extract(jobs[i].id)) {
                const auto stream = key("stream:" + node.mapped().kind);
                drops.push_back({"XACK", stream, std::string(kGroup), node.mapped().entry});
                drops.push_back({"XDEL", stream, node.mapped().entry});
            }
            jobs[i].id = 0;  // gone: 0 is never an id (random_job_id)
        }
    }
    std::erase_if(jobs, [](const StoredJob& job) { return job.id == 0; });
    try {
        if (!drops.empty()) connection->pipeline(drops);
    } catch (const JournalError&) {
        // Their entries stay pending, touched by no beat: claimed in time, and dropped then.
    }
}

void RedisJobStore::promote_by(std::int64_t due_ms) {
    auto at = next_promote_ms_.load();
    while (due_ms < at && !next_promote_ms_.compare_exchange_weak(at, due_ms)) {
    }
}

void RedisJobStore::bury(std::int64_t id, unsigned attempts, std::string error) {
    std::optional<Taken> taken;
    {
        std::lock_guard lock(mutex_);
        if (auto node = taken_.extract(id)) taken = std::move(node.mapped());
    }
    if (!taken) return;  // only taken jobs run, so only they die
    std::vector<std::string> args{options_.prefix, std::string(kGroup), taken->kind,
                                  taken->entry,    std::to_string(id),  std::to_string(attempts),
                                  std::move(error)};
    write_or_save({{id}, &kBury, std::move(args)});
}

void RedisJobStore::record_attempt(std::int64_t id, unsigned attempt) {
    const std::vector<std::string> args{options_.prefix, std::to_string(id),
                                        std::to_string(attempt), died_during(attempt)};
    lease()->eval(kRecordAttempt, args);
}

std::vector<StoredJob> RedisJobStore::take(const std::map<std::string, std::size_t>& openings,
                                           std::chrono::milliseconds block) {
    if (openings.empty()) return {};
    if (!feed_connection_ || feed_connection_->broken()) feed_connection_.emplace(connect());
    std::size_t count = openings.begin()->second;
    for (const auto& [kind, n] : openings) count = std::min(count, n);
    std::vector<std::string> args{"XREADGROUP",      "GROUP", std::string(kGroup),
                                  options_.instance, "COUNT", std::to_string(count)};
    if (block.count() > 0) args.insert(args.end(), {"BLOCK", std::to_string(block.count())});
    args.emplace_back("STREAMS");
    for (const auto& [kind, n] : openings) args.push_back(key("stream:" + kind));
    for (std::size_t i = 0; i < openings.size(); ++i) args.emplace_back(">");
    feed_connection_->set_timeout(block + kCommandTimeout);
    std::vector<StoredJob> jobs;
    std::vector<Taken> carried;                          // one per job, as `jobs`
    std::vector<std::pair<std::string, Taken>> to_load;  // entries of only an id, by job id
    try {
        const auto reply = feed_connection_->command(args);
        feed_connection_->set_timeout(kCommandTimeout);
        const auto prefix_length = key("stream:").size();
        for (std::size_t s = 0; s < reply.size(); ++s) {
            const auto* stream = reply.element(s);
            const auto kind = reply_string(reply_element(stream, 0)).substr(prefix_length);
            const auto* list = reply_element(stream, 1);
            for (std::size_t e = 0; e < reply_size(list); ++e) {
                const auto* entry = reply_element(list, e);
                const auto fields = redis_job_fields(reply_element(entry, 1));
                const auto id = fields.contains("id") ? fields.at("id") : std::string();
                Taken taken{kind, reply_string(reply_element(entry, 0))};
                if (!fields.contains("payload")) {
                    to_load.emplace_back(id, std::move(taken));
                    continue;
                }
                jobs.push_back(redis_stored_job(redis_integer(id), fields));
                jobs.back().kind = kind;
                carried.push_back(std::move(taken));
            }
        }
    } catch (const RedisReplyError& e) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        if (std::string_view(e.what()).find("NOGROUP") != std::string_view::npos) {
            log::warn("{}; creating the consumer groups again", e.what());
            ensure_groups(*feed_connection_);
        }
        throw;
    } catch (const JournalError&) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
        feed_connection_.reset();
        throw;
    }
    // Loaded first: when that throws, the carried jobs are not recorded either, and like the
    // others their entries stay pending, untouched, for a claim after claim_after.
    auto loaded = load(*feed_connection_, to_load);
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            taken_.insert_or_assign(jobs[i].id, std::move(carried[i]));
        }
    }
    for (auto& job : loaded) jobs.push_back(std::move(job));
    return jobs;
}

std::vector<StoredJob> RedisJobStore::claim(const std::map<std::string, std::size_t>& openings) {
    auto connection = lease();
    std::vector<std::pair<std::string, Taken>> entries;
    // By kind and stream entry id: entry ids are per stream, and one commit's jobs of several
    // kinds often share one.
    std::map<std::pair<std::string, std::string>, long long> deliveries;
    for (const auto& [kind, count] : openings) {
        // Each call scans at most ten times COUNT pending entries: the cursor carries on
        // where the last one stopped, so a dead consumer's entries behind many live ones are
        // reached too.
        auto& cursor = claim_cursors_[kind];
        if (cursor.empty()) cursor = "0-0";
        std::optional<RedisReply> reply;
        try {
            reply =
                connection->command({"XAUTOCLAIM", key("stream:" + kind), kGroup, options_.instance,
                                     std::to_string(options_.claim_after.count()), cursor, "COUNT",
                                     std::to_string(count)});
        } catch (const RedisReplyError& e) {
            // The server lost the group with its data: nothing is pending any more.
            if (std::string_view(e.what()).find("NOGROUP") == std::string_view::npos) throw;
            failed_commands_.fetch_add(1, std::memory_order_relaxed);
            log::warn("{}; creating the consumer groups again", e.what());
            ensure_groups(*connection);
            cursor = "0-0";
            continue;
        }
        cursor = reply_string(reply->element(0));
        const auto* list = reply->element(1);
        const auto first = entries.size();
        for (std::size_t e = 0; e < reply_size(list); ++e) {
            const auto* entry = reply_element(list, e);
            const auto* fields = reply_element(entry, 1);
            const auto before = reply_size(fields) >= 4
                                    ? redis_integer(reply_string(reply_element(fields, 3)))
                                    : 0;
            entries.push_back({reply_string(reply_element(fields, 1)),
                               {kind, reply_string(reply_element(entry, 0)),
                                static_cast<unsigned>(before)}});
        }
        if (entries.size() > first) {
            // Optional: the entries are taken now, so a failure here must not lose them; their
            // recorded attempts stand.
            try {
                count_deliveries(*connection, kind, entries, first, deliveries);
            } catch (const JournalError& e) {
                failed_commands_.fetch_add(1, std::memory_order_relaxed);
                log::warn("{}; the claimed jobs keep their recorded attempts", e.what());
            }
        }
    }
    auto jobs = load(*connection, entries);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        auto& job = jobs[i];
        job.resumed = true;  // its consumer died: perhaps running it
        // Each delivery but this claim may have been an attempt (after those the entry's job
        // had made before it), the first of a fresh job or of a retry included, which records
        // nothing: the death in it counts too.
        const auto entry = std::ranges::find(entries, std::to_string(job.id),
                                             [](const auto& e) { return e.first; });
        if (entry == entries.end()) continue;
        const auto delivered = deliveries[{entry->second.kind, entry->second.entry}];
        const auto died = entry->second.attempts_before + static_cast<unsigned>(delivered - 1);
        if (delivered > 1 && died > job.attempts) {
            job.attempts = died;
            job.last_error = died_during(job.attempts);
        }
    }
    claimed_.fetch_add(jobs.size(), std::memory_order_relaxed);
    return jobs;
}

// The times each entry from `entries[first]` on (of `kind`, just claimed) was delivered,
// XAUTOCLAIM's included, by stream entry id. One round trip per kind and claim; an entry the
// reply leaves out (more of this instance's own pending in the range) counts as delivered once.
void RedisJobStore::count_deliveries(
    RedisConnection& connection, const std::string& kind,
    const std::vector<std::pair<std::string, Taken>>& entries, std::size_t first,
    std::map<std::pair<std::string, std::string>, long long>& out) {
    const auto n = entries.size() - first;
    const auto pending = connection.command(
        {"XPENDING", key("stream:" + kind), kGroup, entries[first].second.entry,
         entries.back().second.entry, std::to_string(4 * n + 100), options_.instance});
    for (std::size_t i = 0; i < pending.size(); ++i) {
        const auto* row = pending.element(i);
        out[{kind, reply_string(reply_element(row, 0))}] = reply_integer(reply_element(row, 3));
    }
}

bool RedisJobStore::claim_scan_done(const std::map<std::string, std::size_t>& openings) const {
    return std::ranges::all_of(openings, [&](const auto& kind) {
        const auto cursor = claim_cursors_.find(kind.first);
        return cursor == claim_cursors_.end() || cursor->second == "0-0";
    });
}

// Reads the jobs of taken entries from their hashes (claimed entries: the job may have changed
// since its entry was added; and entries of only an id, as earlier versions wrote), and
// records them as taken. An entry whose job is gone (a duplicate that another instance
// finished, or a job cancelled) is acknowledged and dropped. An error reply is no
// answer: the entry stays pending, unrecorded and untouched, so that after claim_after it is
// claimed again by whichever instance looks, this one included.
std::vector<StoredJob> RedisJobStore::load(
    RedisConnection& connection, const std::vector<std::pair<std::string, Taken>>& entries) {
    if (entries.empty()) return {};
    std::vector<std::vector<std::string>> reads;
    for (const auto& [id, taken] : entries) reads.push_back({"HGETALL", key("job:" + id)});
    const auto replies = connection.pipeline(reads);
    std::vector<StoredJob> jobs;
    std::vector<std::vector<std::string>> drops;
    std::unique_lock lock(mutex_);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& [id, taken] = entries[i];
        if (!replies[i].is_array()) {
            failed_commands_.fetch_add(1, std::memory_order_relaxed);
            if (const auto n = beat_log_.count(); n > 0) {
                log::warn(
                    "redis {}: reading job {} failed ({}; {} times); it is claimed again "
                    "after {} ms",
                    address_.text, id, replies[i].string(), n, options_.claim_after.count());
            }
            continue;
        }
        const auto fields = redis_job_fields(replies[i].get());
        const auto state = fields.find("state");
        if (state == fields.end() || state->second == "dead") {
            const auto stream = key("stream:" + taken.kind);
            drops.push_back({"XACK", stream, std::string(kGroup), taken.entry});
            drops.push_back({"XDEL", stream, taken.entry});
            continue;
        }
        auto job = redis_stored_job(redis_integer(id), fields);
        job.kind = taken.kind;
        taken_.insert_or_assign(job.id, taken);
        jobs.push_back(std::move(job));
    }
    lock.unlock();
    // Optional: the jobs are recorded as taken now, and must be returned to run. Entries left
    // undropped stay pending, touched by no beat: claimed in time, and dropped then.
    try {
        if (!drops.empty()) connection.pipeline(drops);
    } catch (const JournalError&) {
        failed_commands_.fetch_add(1, std::memory_order_relaxed);
    }
    return jobs;
}

void RedisJobStore::beat() {
    auto connection = lease();
    // Unsent writes first: a stranded look below must not release a job whose unsent write is a
    // discard, and completions free the memory a full server needs.
    beat_step(*connection, "writing what was unsent", [&] { send_unsent(*connection); });
    // PEXPIRE, which a server out of memory still accepts; SET only when the key is gone.
    const auto alive = key("alive:" + options_.instance);
    const auto ttl = std::to_string(options_.claim_after.count());
    if (connection->command({"PEXPIRE", alive, ttl}).integer() == 0) {
        connection->command({"SET", alive, std::to_string(::getpid()), "PX", ttl});
    }
    beat_step(*connection, "registering", [&] {
        connection->command({"SADD", key("instances"), options_.instance});
    });
    std::vector<std::string> touch{options_.prefix, std::string(kGroup), options_.instance};
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, taken] : taken_) {
            touch.push_back(taken.kind);
            touch.push_back(taken.entry);
        }
    }
    if (touch.size() > 3) {
        beat_step(*connection, "touching running jobs", [&] { connection->eval(kTouch, touch); });
    }
    beat_step(*connection, "releasing stranded jobs", [&] { release_stranded(*connection); });
    beat_step(*connection, "releasing dead instances' jobs", [&] {
        const auto released =
            connection->eval(kReleaseOrphans, std::vector{options_.prefix}).integer();
        if (released > 0) {
            orphans_released_.fetch_add(static_cast<std::uint64_t>(released),
                                        std::memory_order_relaxed);
            log::warn("redis {}: released {} jobs held by instances that stopped beating",
                      address_.text, released);
        }
    });
    beat_step(*connection, "forgetting idle consumers", [&] {
        std::vector<std::string> args{options_.prefix, std::string(kGroup),
                                      std::to_string(options_.claim_after.count())};
        args.insert(args.end(), kinds_.begin(), kinds_.end());
        const auto forgotten = connection->eval(kForgetIdleConsumers, args).integer();
        if (forgotten > 0) {
            log::info("redis {}: {} consumers with nothing pending left the group", address_.text,
                      forgotten);
        }
    });
}

// One step of a beat: an error reply (a full server, a lost group, a key of another type) is
// logged and the beat goes on with the next step; a lost connection ends the beat.
template <class Step>
void RedisJobStore::beat_step(RedisConnection& connection, const char* what, Step step) {
    try {
        step();
    } catch (const RedisReplyError& e) {
        if (std::string_view(e.what()).find("NOGROUP") != std::string_view::npos) {
            ensure_groups(connection);
        }
        if (const auto n = beat_log_.count(); n > 0) {
            log::warn("{} ({}; {} times)", e.what(), what, n);
        }
    }
}

// Jobs in this instance's held set whose response is not in progress here, at two looks in a
// row: a release refused for good, or lost. Released then, so that no job that got its 2xx
// waits for this instance to stop. A job is in holding_ from its hold's reply until its release
// is handed over (a release still queued at two looks goes out twice, which changes nothing the
// second time: kRelease takes only what it removes from the held set). So the only other jobs
// not in holding_ are those of commits whose reply has not arrived yet (the hold ran on the
// server) and those with an unsent write: a job seen at the previous look was held before that
// look, so while any commit that started before it is still in flight, nothing is released.
void RedisJobStore::release_stranded(RedisConnection& connection) {
    const auto held = connection.command({"SMEMBERS", key("held:" + options_.instance)});
    std::set<std::int64_t> stranded;
    std::vector<std::string> args{options_.prefix, options_.instance};
    {
        std::lock_guard lock(mutex_);
        const auto previous_look = beats_;
        ++beats_;
        for (std::size_t i = 0; i < held.size(); ++i) {
            const auto id = redis_integer(reply_string(held.element(i)));
            if (!holding_.contains(id) && !unsent_for({id})) stranded.insert(id);
        }
        const bool old_commit_in_flight =
            !commits_in_flight_.empty() && *commits_in_flight_.begin() < previous_look;
        if (!old_commit_in_flight) {
            for (const auto id : stranded) {
                if (stranded_.contains(id)) args.push_back(std::to_string(id));
            }
        }
        stranded_ = std::move(stranded);
    }
    if (args.size() > 2) connection.eval(kRelease, args);
}

// Sends the unsent writes in order, each removed only once written, so that writes about the
// same jobs keep waiting behind it meanwhile. Stops (throws) at the first that fails for now;
// drops one refused for good.
void RedisJobStore::send_unsent(RedisConnection& connection) {
    for (;;) {
        const RedisScript* script = nullptr;
        std::vector<std::string> args;
        {
            std::lock_guard lock(mutex_);
            if (unsent_.empty()) return;
            script = unsent_.front().script;
            args = unsent_.front().args;
        }
        try {
            connection.eval(*script, args);
        } catch (const RedisReplyError& e) {
            if (transient(e)) throw;
            log::error("{}", e.what());
        }
        std::lock_guard lock(mutex_);
        unsent_.pop_front();
    }
}

void RedisJobStore::leave() noexcept {
    try {
        auto connection = lease();
        send_unsent(*connection);
        connection->command({"DEL", key("alive:" + options_.instance)});
    } catch (const JournalError& e) {
        log::warn("{}; other instances release what this one held after {} ms", e.what(),
                  options_.claim_after.count());
    }
}

RedisJournalFigures RedisJobStore::figures() const {
    std::lock_guard lock(mutex_);
    std::set<std::int64_t> unwritten;
    for (const auto& write : unsent_) {
        unwritten.insert(write.ids.begin(), write.ids.end());
    }
    return {claimed_.load(std::memory_order_relaxed),
            orphans_released_.load(std::memory_order_relaxed),
            failed_commands_.load(std::memory_order_relaxed),
            round_trips_.load(std::memory_order_relaxed),
            writes_along_.load(std::memory_order_relaxed), unwritten.size()};
}

JobCensus RedisJobStore::census(std::size_t latest_dead) const {
    std::vector<std::string> args{options_.prefix, std::string(kGroup),
                                  std::to_string(kCensusLimit), std::to_string(latest_dead)};
    args.insert(args.end(), kinds_.begin(), kinds_.end());
    const auto reply = lease()->eval(kCensus, args);
    const auto* r = reply.get();
    const auto text = [&](const redisReply* row, std::size_t i) {
        return reply_string(reply_element(row, i));
    };
    const auto number = [&](const redisReply* row, std::size_t i) {
        return reply_integer(reply_element(row, i));
    };
    JobCensus census{.partial = number(r, 0) != 0};
    const auto kinds = static_cast<std::size_t>(number(r, 1));
    // Ages by the server's clock, the one that stamped the entries, as times on this host's.
    const auto to_host = detail::unix_now_ms() - number(r, 2);
    for (std::size_t i = 3; i < reply_size(r); ++i) {
        const auto* row = reply_element(r, i);
        if (i < 3 + kinds) {
            const auto oldest = number(row, 6);
            const auto count = [&](std::size_t j) {
                return static_cast<std::uint64_t>(number(row, j));
            };
            census.kinds.push_back({.kind = text(row, 0),
                                    .ready = count(1),
                                    .running = count(2),
                                    .scheduled = count(3),
                                    .retrying = count(4),
                                    .dead = count(5),
                                    .oldest_ready_ms = oldest > 0 ? oldest + to_host : 0});
            continue;
        }
        census.latest_dead.push_back({.id = redis_integer(text(row, 0)),
                                      .kind = text(row, 1),
                                      .request_id = text(row, 4),
                                      .trace_parent = text(row, 7),
                                      .attempts =
                                          static_cast<unsigned>(redis_integer(text(row, 2))),
                                      .state = JobState::dead,
                                      .enqueued_ms = redis_integer(text(row, 6)),
                                      .run_at_ms = redis_integer(text(row, 5)),
                                      .last_error = text(row, 3)});
    }
    std::ranges::sort(census.kinds, {}, &KindCensus::kind);
    return census;
}

std::vector<RedisStreamFigures> RedisJobStore::streams() const {
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

// The claim cursors are not here: one per kind, whatever has run.
std::map<std::string, std::size_t> RedisJobStore::bookkeeping() const {
    std::size_t holds = 0;
    std::size_t on_way = 0;
    {
        std::lock_guard lock(holds_mutex_);
        holds = holds_.size();
        on_way = holds_on_way_ ? 1 : 0;
    }
    std::lock_guard lock(mutex_);
    return {{"holds_queued", holds},
            {"hold_groups_on_way", on_way},
            {"taken", taken_.size()},
            {"holding", holding_.size()},
            {"timed", timed_.size()},
            {"stranded", stranded_.size()},
            {"commits_in_flight", commits_in_flight_.size()},
            {"untold_holds", untold_holds_.size() + (holds_to_lead_ ? 1 : 0)},
            {"unsent", unsent_.size()},
            {"queued", queued_.size()}};
}

}  // namespace crosstown
