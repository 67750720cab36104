#include "routes.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/deferred/response_outcome.hpp>
#include <crosstown/http/http_error.hpp>
#include <crosstown/jobs/follow_response_durably.hpp>
#include <crosstown/server.hpp>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>

namespace fcgi_app {
namespace {

using crosstown::HttpError;
using crosstown::Request;
using crosstown::Response;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMaxLatencyMs = 60'000;
constexpr std::uint64_t kMaxDelayMs = 24ULL * 3'600'000;  // a day

// A whole-number query parameter in [low, high], or `fallback` when absent; 400 otherwise.
std::uint64_t number(const Request& req, std::string_view name, std::uint64_t fallback,
                     std::uint64_t low, std::uint64_t high) {
    const auto text = req.query(name);
    if (!text) return fallback;
    std::uint64_t value = 0;
    const auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (text->empty() || error != std::errc{} || end != text->data() + text->size()) {
        throw HttpError(400, fmt::format("{}: '{}' is not a whole number", name, *text));
    }
    if (value < low || value > high) {
        throw HttpError(400, fmt::format("{}: {} is outside {}..{}", name, value, low, high));
    }
    return value;
}

// Sleeps `latency` unless the drain deadline asks the call to stop first; true if it slept.
// A call of no latency does not wait at all: a timed wait that is already due still puts the
// thread to sleep until its timer fires, a context switch per call.
bool wait_for(std::chrono::milliseconds latency, std::stop_token stop) {
    if (latency <= std::chrono::milliseconds::zero()) return !stop.stop_requested();
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    return !cv.wait_for(lock, stop, latency, [] { return false; }) && !stop.stop_requested();
}

// How a simulated call misbehaves, from POST /calls's query.
struct CallFaults {
    std::uint64_t fail_every = 0;  // every K-th call throws
    bool throw_non_std = false;    // fail_kind=int: it throws an int, not a std::exception
    bool ignore_stop = false;      // ignore_stop=1: it sleeps through the drain deadline
};

// One simulated phone call: started only after the response has gone out.
void place_call(CallBatch& batch, std::uint64_t number, std::chrono::milliseconds latency,
                bool fails, const CallFaults& faults, std::stop_token stop) {
    const auto* outcome = crosstown::current_response_outcome();
    batch.call_started(outcome != nullptr ? std::optional(outcome->finished_at) : std::nullopt,
                       Clock::now());
    bool slept = true;
    if (faults.ignore_stop) {
        std::this_thread::sleep_for(latency);
    } else {
        slept = wait_for(latency, stop);
    }
    batch.call_ended(slept && !fails, Clock::now());
    if (!slept) throw std::runtime_error(fmt::format("call {} cut short by shutdown", number));
    if (fails && faults.throw_non_std) throw static_cast<int>(number);
    if (fails) throw std::runtime_error(fmt::format("call {} failed (simulated)", number));
}

CallFaults call_faults(const Request& req, std::size_t max_calls) {
    CallFaults faults{.fail_every = number(req, "fail_every", 0, 0, max_calls),
                      .ignore_stop = number(req, "ignore_stop", 0, 0, 1) == 1};
    const auto kind = req.query("fail_kind").value_or("std");
    if (kind != "std" && kind != "int") {
        throw HttpError(400, "fail_kind: expected std or int");
    }
    faults.throw_non_std = kind == "int";
    return faults;
}

// Durable calls: a payload each, committed before the response. `crash`: each attempt aborts
// the process, as a segfault or the OOM killer would (a "poison" job).
// `delay`: each call starts that long after the response.
void register_durable_calls(const CallBatch& batch, std::uint64_t count, std::uint64_t latency_ms,
                            std::uint64_t fail_first, bool crash, std::chrono::milliseconds delay) {
    const auto id = batch.view().id;
    for (std::uint64_t i = 1; i <= count; ++i) {
        nlohmann::json payload{
            {"batch", id}, {"call", i}, {"latency_ms", latency_ms}, {"fail_first", fail_first}};
        if (crash) payload["crash"] = true;
        crosstown::follow_response_durably("place-call", payload.dump(), {.delay = delay});
    }
}

// The deliberate end of a poison job's attempt: SIGABRT, without a core file to fill the disk.
[[noreturn]] void crash_the_process() {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
}

// The 202's body. `pad_kb` KiB of padding make a response bigger than the socket's buffers,
// so that a client that does not read holds FCGX_Finish_r (and the calls) back: a way to see
// that nothing starts before its response is finished.
std::string accepted(const CallBatch& batch, std::uint64_t count, std::uint64_t pad_kb) {
    nlohmann::json body{{"batch", batch.view().id}, {"count", count}};
    if (pad_kb > 0) body["pad"] = std::string(pad_kb * 1024, ' ');
    return body.dump();
}

// A durable request with an Idempotency-Key names its batch after the key ("k-KEY"), so that a
// client retrying it hears of the same batch; the server keys its durable calls by the header,
// so none is placed twice. The id goes into URLs and logs: letters, digits, '-', '_', '.' only.
std::string batch_id_of(const Request& req) {
    auto key = req.header("Idempotency-Key");
    if (key && key->size() >= 2 && key->front() == '"' && key->back() == '"') {
        key = key->substr(1, key->size() - 2);  // the draft's quoted string
    }
    if (!key || key->empty()) return {};
    const auto plain = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    };
    if (key->size() > 64 || !std::ranges::all_of(*key, plain)) {
        throw HttpError(400, "Idempotency-Key: at most 64 letters, digits, '-', '_' or '.'");
    }
    return "k-" + std::string(*key);
}

void post_calls(const App& app, Request& req, Response& res) {
    const auto count = number(req, "count", 1, 1, app.max_calls);
    const auto pad_kb = number(req, "pad_kb", 0, 0, 16 * 1024);
    const auto latency_ms = number(req, "latency_ms", 100, 0, kMaxLatencyMs);
    const auto latency = std::chrono::milliseconds(latency_ms);
    const auto faults = call_faults(req, app.max_calls);
    // Only durable calls are deduplicated: an in-memory retry is a batch of its own.
    const bool durable = number(req, "durable", 0, 0, 1) == 1;
    const auto keyed_id = durable ? batch_id_of(req) : std::string();
    auto batch = app.ledger.open(count, keyed_id);
    if (durable) {
        register_durable_calls(
            *batch, count, latency_ms, number(req, "fail_first", 0, 0, 100),
            number(req, "crash", 0, 0, 1) == 1,
            std::chrono::milliseconds(number(req, "delay_ms", 0, 0, kMaxDelayMs)));
        // When the response was finished, for GET /calls/{batch}: the calls may run in another
        // instance (a shared journal), which cannot know it, or be another request's, when a
        // retry with the same Idempotency-Key makes none (or a replay after a restart, which
        // knows no response). Otherwise each call records it when it starts (from its
        // ResponseOutcome), and a callback for it would be one more task on the pool for every
        // request.
        if (app.shared_journal || !keyed_id.empty()) {
            crosstown::follow_response({.name = "response-finished"}, [batch](std::stop_token) {
                if (const auto* outcome = crosstown::current_response_outcome()) {
                    batch->response_finished(outcome->finished_at);
                }
            });
        }
        res.status(202).json(accepted(*batch, count, pad_kb));
        return;
    }
    for (std::uint64_t i = 1; i <= count; ++i) {
        const bool fails = faults.fail_every > 0 && i % faults.fail_every == 0;
        // Named, so that a call lost at shutdown is named in the log.
        crosstown::follow_response({.name = fmt::format("call-{}", i)},
                                   [batch, i, latency, fails, faults](std::stop_token stop) {
                                       place_call(*batch, i, latency, fails, faults,
                                                  std::move(stop));
                                   });
    }
    res.status(202).json(accepted(*batch, count, pad_kb));
}

void get_batch(const App& app, Request& req, Response& res) {
    const auto id = req.param("batch").value_or("");
    const auto batch = app.ledger.find(id);
    if (!batch) throw HttpError(404, fmt::format("no batch '{}' (unknown, or forgotten)", id));
    const auto v = batch->view();
    nlohmann::json body{{"batch", v.id},
                        {"count", v.count},
                        {"started", v.started},
                        {"placed", v.placed},
                        {"failed", v.failed},
                        {"pending", v.pending},
                        {"started_before_finish", v.started_before_finish},
                        {"response_finished_ns", v.response_finished_ns},
                        {"first_call_started_ns", v.first_start_ns},
                        {"last_call_ended_ns", v.last_end_ns}};
    body["min_start_delay_ms"] = v.min_start_delay_ns < 0
                                     ? nlohmann::json(nullptr)
                                     : nlohmann::json(v.min_start_delay_ns / 1e6);
    // Unknown until the response's finish is: null.
    body["all_done_after_ms"] = v.pending == 0 && v.response_finished_ns != 0
                                    ? nlohmann::json((v.last_end_ns - v.response_finished_ns) / 1e6)
                                    : nlohmann::json(nullptr);
    res.json(body.dump());
}

// A durable call: the first `fail_first` attempts fail; a placed one goes to the witness.
void place_durable_call(CallLedger& ledger, const Witness& witness, const crosstown::Job& job,
                        std::stop_token stop) {
    const auto payload = nlohmann::json::parse(job.payload);
    const auto batch_id = payload.at("batch").get<std::string>();
    const auto call = payload.at("call").get<std::uint64_t>();
    const auto latency = std::chrono::milliseconds(payload.at("latency_ms").get<std::uint64_t>());
    const auto batch = ledger.find_to_report(batch_id);  // gone after a restart: only the witness
    const auto started = Clock::now();
    if (batch && job.attempt == 1) {
        // A job taken from a shared (Redis) journal has no response here: the batch compares
        // with its finish as recorded after FCGX_Finish_r, when that came first.
        const auto* outcome = crosstown::current_response_outcome();
        batch->call_started(outcome != nullptr ? std::optional(outcome->finished_at) : std::nullopt,
                            started);
    }
    if (payload.value("crash", false)) crash_the_process();
    const bool fails = job.attempt <= payload.value("fail_first", 0U);
    if (!wait_for(latency, stop)) {
        throw std::runtime_error(fmt::format("call {} of {} cut short", call, batch_id));
    }
    if (fails) {
        throw std::runtime_error(fmt::format("call {} of {} failed (simulated), attempt {}", call,
                                             batch_id, job.attempt));
    }
    witness.record(batch_id, call, job.id, job.attempt, started);
    if (batch) batch->call_ended(true, Clock::now());
}

}  // namespace

crosstown::JobRate parse_rate(std::string_view text) {
    const auto slash = text.find('/');
    const auto number = [&](std::string_view part, double& out) {
        const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), out);
        return error == std::errc{} && end == part.data() + part.size();
    };
    double per_second = 0;
    double burst = 0;
    if (!number(text.substr(0, slash), per_second) || per_second <= 0 || per_second > 1e6) {
        throw BadRate(
            fmt::format("'{}': expected N or N/BURST, N above 0 (starts a second)", text));
    }
    if (slash == std::string_view::npos) {
        burst = std::ceil(per_second);
    } else if (!number(text.substr(slash + 1), burst) || burst < 1 || burst > 1e6 ||
               burst != std::floor(burst)) {
        throw BadRate(fmt::format("'{}': BURST must be a whole number, at least 1", text));
    }
    return {per_second, static_cast<unsigned>(burst)};
}

void define_place_call(crosstown::JobKinds& kinds, CallLedger& ledger, const Witness& witness,
                       std::chrono::milliseconds backoff, crosstown::JobRate rate) {
    kinds.define(
        "place-call",
        {.max_attempts = 5,
         .backoff = backoff,
         .max_backoff = std::max<std::chrono::milliseconds>(backoff, std::chrono::seconds(5)),
         .timeout = std::chrono::seconds(70),
         // No limit of its own: a fan-out of calls may use the whole pool, as the
         // in-memory calls do.
         .concurrency = 0,
         .rate = rate},
        [&ledger, &witness](const crosstown::Job& job, std::stop_token stop) {
            place_durable_call(ledger, witness, job, std::move(stop));
        });
}

void add_routes(crosstown::Router& router, const App& app) {
    router.get("/hello", [](Request&, Response& res) { res.text("hello\n"); });
    router.post("/calls", [&app](Request& req, Response& res) { post_calls(app, req, res); });
    router.get("/calls/{batch}", [&app](Request& req, Response& res) { get_batch(app, req, res); });
    router.get("/fail", [](Request& req, Response&) {
        if (req.query("kind") == "int") throw 42;  // not a std::exception: still a 500
        throw std::runtime_error("this handler always throws, to show the 500 path");
    });
    router.get("/healthz", [&app](Request&, Response& res) {
        if (app.accepting()) {
            res.text("ok\n");
        } else {
            res.status(503).text("not accepting: starting or draining\n");
        }
    });
    router.get("/metrics", [&app](Request&, Response& res) {
        res.body(app.metrics(), std::string(crosstown::kMetricsContentType));
    });
    router.get("/status", app.status_page);
}

}  // namespace fcgi_app
