// What integration tests read back from fcgi_app: the shutdown summary line and a batch's
// state from GET /calls/{batch}.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "support/nginx_stack.hpp"

namespace crosstown::test {

// The counts of the last summary line "deferred registered=N dispatched=N ..." in a log;
// empty when there is none.
inline std::map<std::string, long> summary_counts(const std::string& log) {
    std::map<std::string, long> counts;
    const auto at = log.rfind("deferred registered=");
    if (at == std::string::npos) return counts;
    const auto line = log.substr(at, log.find('\n', at) - at);
    const std::regex pair(R"((\w+)=(\d+))");
    for (std::sregex_iterator it(line.begin(), line.end(), pair), end; it != end; ++it) {
        counts[(*it)[1]] = std::stol((*it)[2]);
    }
    return counts;
}

// Both identities of semantics.md hold for the counts of a summary line.
inline void expect_identities(const std::map<std::string, long>& c) {
    ASSERT_EQ(c.size(), 8u) << "a summary line with all eight counts";
    EXPECT_EQ(c.at("registered"), c.at("skipped") + c.at("forgotten") + c.at("dispatched"));
    EXPECT_EQ(c.at("dispatched"),
              c.at("completed") + c.at("failed") + c.at("rejected") + c.at("abandoned"));
}

// Polls GET /calls/{batch} until nothing is pending or the time is up.
inline nlohmann::json wait_for_batch(const NginxStack& stack, const std::string& batch,
                                     std::chrono::seconds limit) {
    nlohmann::json status;
    const auto until = std::chrono::steady_clock::now() + limit;
    do {
        status = nlohmann::json::parse(stack.get("/calls/" + batch).body);
        if (status["pending"] == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < until);
    return status;
}

}  // namespace crosstown::test
