// What integration tests read back from fcgi_app: the shutdown summary line, a batch's state
// from GET /calls/{batch}, a series of GET /metrics, the witness file of placed durable calls,
// and what `fcgi_app jobs` prints.
#pragma once

#include <gtest/gtest.h>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/app_under_test.hpp"
#include "support/calls_load.hpp"
#include "support/eventually.hpp"
#include "support/fastcgi_client.hpp"
#include "support/nginx_stack.hpp"

namespace crosstown::test {

// The counts of the last summary line "deferred registered=N dispatched=N ..." in a log (or
// of the last line starting with `start`, e.g. "jobs enqueued="); empty when there is none.
inline std::map<std::string, long> summary_counts(
    const std::string& log, const std::string& start = "deferred registered=") {
    std::map<std::string, long> counts;
    const auto at = log.rfind(start);
    if (at == std::string::npos) return counts;
    const auto line = log.substr(at, log.find('\n', at) - at);
    const std::regex pair(R"((\w+)=(\d+))");
    for (std::sregex_iterator it(line.begin(), line.end(), pair), end; it != end; ++it) {
        counts[(*it)[1]] = std::stol((*it)[2]);
    }
    return counts;
}

// The two identities every summary line keeps once the process has stopped: each registered
// callback is skipped, forgotten or dispatched, and each dispatched one completed, failed, was
// rejected or was abandoned.
inline void expect_identities(const std::map<std::string, long>& c) {
    ASSERT_EQ(c.size(), 9u) << "a summary line with all nine counts";
    EXPECT_EQ(c.at("registered"), c.at("skipped") + c.at("forgotten") + c.at("dispatched"));
    EXPECT_EQ(c.at("dispatched"),
              c.at("completed") + c.at("failed") + c.at("rejected") + c.at("abandoned"));
}

// GET /calls/{batch}: what became of a batch of calls.
inline nlohmann::json batch_status(const NginxStack& stack, const std::string& batch) {
    return nlohmann::json::parse(stack.get("/calls/" + batch).body);
}

// Polls GET /calls/{batch} until `done` holds for it or the time is up; the last state read.
inline nlohmann::json wait_for_batch(const NginxStack& stack, const std::string& batch,
                                     std::chrono::milliseconds limit,
                                     const std::function<bool(const nlohmann::json&)>& done) {
    nlohmann::json status;
    eventually(
        [&] {
            status = batch_status(stack, batch);
            return done(status);
        },
        limit, std::chrono::milliseconds(20));
    return status;
}

// Polls GET /calls/{batch} until nothing is pending or the time is up; the last state read.
inline nlohmann::json wait_for_batch(const NginxStack& stack, const std::string& batch,
                                     std::chrono::milliseconds limit) {
    return wait_for_batch(stack, batch, limit,
                          [](const nlohmann::json& status) { return status["pending"] == 0; });
}

// Sends POST /calls?durable=1&count=5, keyed by `idempotency_key`, straight to an app's socket
// with an answer of 4 MiB that `fastcgi` never reads: the calls are committed and the response
// (and FCGX_Finish_r) is held back, the window between commit and response kept open.
inline void post_calls_and_hold_the_answer(FastCgiConnection& fastcgi,
                                           const std::string& idempotency_key) {
    const Params post{{"REQUEST_METHOD", "POST"},
                      {"DOCUMENT_URI", "/calls"},
                      {"QUERY_STRING", "durable=1&count=5&latency_ms=0&pad_kb=4096"},
                      {"HTTP_IDEMPOTENCY_KEY", idempotency_key},
                      {"CONTENT_LENGTH", "0"}};
    ASSERT_TRUE(fastcgi.send_request(post));
}

// The same POST /calls?durable=1&count=5 sent with one Idempotency-Key three times in a row
// (key "in-a-row"), then with another eight times at once ("at-once"): each reply is a 202
// naming the key's batch, k-KEY.
inline void post_calls_with_one_idempotency_key(int port) {
    const auto post = [port](const std::string& key) {
        return http(port, "POST", "/calls?durable=1&count=5&latency_ms=0", {},
                    {{"Idempotency-Key", key}}, std::chrono::seconds(10));
    };
    for (int i = 0; i < 3; ++i) {
        const auto reply = post("in-a-row");
        EXPECT_EQ(reply.status, 202) << reply.body;
        EXPECT_EQ(batch_of(reply), "k-in-a-row");
    }
    std::vector<HttpReply> replies(8);
    {
        std::vector<std::jthread> clients;
        for (auto& reply : replies) clients.emplace_back([&] { reply = post("at-once"); });
    }
    for (const auto& reply : replies) {
        EXPECT_EQ(reply.status, 202) << reply.body;
        EXPECT_EQ(batch_of(reply), "k-at-once");
    }
}

// The value of one series in Prometheus text, e.g. `crosstown_pool_busy_workers` or
// `crosstown_deferred_total{outcome="completed"}`; nullopt when the text has none.
inline std::optional<double> metric_value(const std::string& text, const std::string& series) {
    const auto key = "\n" + series + " ";
    const auto at = ("\n" + text).find(key);
    if (at == std::string::npos) return std::nullopt;
    return std::stod(text.substr(at + key.size() - 1));
}

// The value of one series of the app's GET /metrics, read now.
inline std::optional<double> metric(const NginxStack& stack, const std::string& series) {
    return metric_value(stack.get("/metrics").body, series);
}

// One line of the witness file, "<batch> <call> <job id> <attempt> <started ns> <pid>", and
// where it starts in the file.
struct Placed {
    std::string batch;
    long call = 0;
    long job = 0;
    unsigned attempt = 0;
    std::int64_t started_ns = 0;  // steady_clock, comparable across this machine's processes
    pid_t pid = 0;                // the process that placed it
    std::size_t offset = 0;
};

// The witness file's complete lines (a line being written is left for the next read).
inline std::vector<Placed> read_witness(const std::string& path) {
    std::vector<Placed> placed;
    const auto text = read_file(path);
    std::size_t at = 0;
    while (at < text.size()) {
        const auto eol = text.find('\n', at);
        if (eol == std::string::npos) break;
        std::istringstream line(text.substr(at, eol - at));
        Placed p;
        p.offset = at;
        if (line >> p.batch >> p.call >> p.job >> p.attempt >> p.started_ns >> p.pid) {
            placed.push_back(p);
        }
        at = eol + 1;
    }
    return placed;
}

struct Command {
    int code = -1;
    std::string out;
    std::string err;
};

// `fcgi_app jobs ARGS...`: its exit code, stdout and stderr.
inline Command jobs_command(const std::vector<std::string>& args) {
    TempDir dir("crosstown-jobs");
    std::vector<std::string> argv{fcgi_app_path(), "jobs"};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv, dir / "out", dir / "err");
    const auto code = child.wait(std::chrono::seconds(20));
    return {code.value_or(-1), child.output(), read_file(dir / "err")};
}

}  // namespace crosstown::test
