-- wrk: POST (empty body) to the URL given, each request with an Idempotency-Key of its own, so
-- that every request makes its jobs (none is deduplicated) and a run measures what keying them
-- costs. Keys are "<start time>-<thread>-<n>": unique across threads, and across runs against a
-- journal that keeps keys for a day, as runs last longer than a second.
local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("prefix", string.format("%d-%d-", os.time(), threads))
end

local n = 0

function request()
    n = n + 1
    return wrk.format("POST", nil, { ["Idempotency-Key"] = prefix .. n }, "")
end
