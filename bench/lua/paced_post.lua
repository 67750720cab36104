-- wrk: POST to the URL given, each connection waiting DELAY_MS (default 25) after every
-- answer: an offered load the backend may keep up with, rather than a flood.
wrk.method = "POST"
local delay_ms = tonumber(os.getenv("DELAY_MS") or "25")
function delay()
    return delay_ms
end
