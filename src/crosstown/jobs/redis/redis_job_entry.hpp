// A ready job's entry in its kind's stream: it carries a copy of the job's fields, so that a
// consumer's read of the stream is also its load of the job, one round trip where a read and
// then each job's hash took two.
//
// The hash stays the job's record: its state, the census and the admin read it, and so does a
// claim after a death (the job may have changed since its entry was added). The hash names its
// entry ('entry'), so that a cancel deletes the entry of a job no instance has taken, and a
// finish deletes a second entry of its job. The copy costs memory: a ready or running job's
// payload is kept twice until it finishes.
#pragma once

#include <string_view>

namespace crosstown {

// Lua for the scripts that make a job ready. hash_fields(key) is a hash's fields by name.
// to_stream(p, id, kind, f) adds the entry of job `id` with its fields `f` (as read from its
// hash, its new state set): 'id' first, then 'attempts' (a claim reads those two by place),
// then those a run needs that have a value, always in one order (the stream keeps the names
// once for a run of entries with the same fields); and records f.state and the entry's id in
// the hash. An entry that carries its job has 'payload'.
inline constexpr std::string_view kRedisJobEntryLua{R"lua(
local function hash_fields(key)
  local list, f = redis.call('HGETALL', key), {}
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end
local entry_fields = {'payload', 'request_id', 'enqueued_ms', 'run_at_ms', 'state', 'last_error',
                      'trace_parent'}
local function to_stream(p, id, kind, f)
  local entry = {'id', id, 'attempts', f['attempts'] or '0'}
  for _, name in ipairs(entry_fields) do
    if f[name] then
      entry[#entry + 1] = name
      entry[#entry + 1] = f[name]
    end
  end
  local at = redis.call('XADD', p .. ':stream:' .. kind, '*', unpack(entry))
  redis.call('HSET', p .. ':job:' .. id, 'state', f['state'], 'entry', at)
end
)lua"};

}  // namespace crosstown
