#include "support/calls_load.hpp"

#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

namespace crosstown::test {

std::string batch_of(const HttpReply& reply) {
    const auto json = nlohmann::json::parse(reply.body, nullptr, false);
    return json.is_object() && json.contains("batch") ? json["batch"].get<std::string>() : "";
}

CallsLoad::CallsLoad(int port, CallsLoadOptions options) : options_(std::move(options)) {
    if (options_.min_calls < 1 || options_.max_calls < options_.min_calls) {
        throw std::invalid_argument("CallsLoad: 1 <= min_calls <= max_calls");
    }
    for (int client = 0; client < options_.clients; ++client) {
        threads_.emplace_back([this, port, client] { run(port, client); });
    }
}

void CallsLoad::run(int port, int client) {
    using namespace std::chrono_literals;
    std::mt19937 random(static_cast<unsigned>(client) * 7919U + 1);
    const auto spread = static_cast<unsigned>(options_.max_calls - options_.min_calls + 1);
    while (!stop_.load()) {
        const int calls = options_.min_calls + static_cast<int>(random() % spread);
        if (sent_.fetch_add(calls) + calls > options_.budget) return;
        const auto target = std::string("/calls?count=") + std::to_string(calls) +
                            "&latency_ms=" + std::to_string(options_.latency_ms) +
                            (options_.durable ? "&durable=1" : "") + options_.query;
        const auto reply = http(port, "POST", target, {}, {}, 10s);
        const auto batch = reply.status == 202 ? batch_of(reply) : std::string();
        {
            std::lock_guard lock(mutex_);
            if (!batch.empty()) {
                accepted_.emplace_back(batch, calls);
            } else {
                ++refused_[reply.status];
            }
        }
        if (batch.empty() && options_.stop_at_refusal) return;
        std::this_thread::sleep_for(batch.empty() ? 20ms : options_.pause);
    }
}

void CallsLoad::finish() {
    stop_.store(true);
    for (auto& thread : threads_) {
        if (thread.joinable()) thread.join();
    }
}

std::vector<CallsLoad::Accepted> CallsLoad::accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
}

std::size_t CallsLoad::accepted_requests() const {
    std::lock_guard lock(mutex_);
    return accepted_.size();
}

long CallsLoad::accepted_calls() const {
    std::lock_guard lock(mutex_);
    long calls = 0;
    for (const auto& [batch, count] : accepted_) calls += count;
    return calls;
}

std::map<int, long> CallsLoad::refused() const {
    std::lock_guard lock(mutex_);
    return refused_;
}

long CallsLoad::count(int status) const {
    std::lock_guard lock(mutex_);
    if (status == 202) return static_cast<long>(accepted_.size());
    const auto it = refused_.find(status);
    return it == refused_.end() ? 0 : it->second;
}

std::set<int> CallsLoad::statuses() const {
    std::lock_guard lock(mutex_);
    std::set<int> seen;
    if (!accepted_.empty()) seen.insert(202);
    for (const auto& [status, n] : refused_) seen.insert(status);
    return seen;
}

}  // namespace crosstown::test
