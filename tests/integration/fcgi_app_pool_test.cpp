// fcgi_app's elastic pool, with its defaults, behind a real nginx: the seed's example (100
// phone calls of 300 ms) runs all at once, and once idle the workers retire and the process
// is small again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <string>

#include "support/app_checks.hpp"
#include "support/app_under_test.hpp"
#include "support/nginx_stack.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// 300 ms calls, all at once. Sanitizers make starting a thread many times slower (1525 ms seen
// under TSan with another test beside it); the bound then only checks that the calls overlap:
// below the 2100 ms of the seven rounds that a fixed pool of 16 (fcgi_app's default before the
// pool was elastic) needs.
double fan_out_bound_ms() { return fcgi_app_sanitized() ? 1900 : 400; }

// VmRSS of a process, in kB.
long resident_kb(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    while (status >> key) {
        long kb = 0;
        if (key == "VmRSS:" && status >> kb) return kb;
        status.ignore(4096, '\n');
    }
    return -1;
}

json place_100_calls(const NginxStack& stack) {
    const auto reply = http(stack.port(), "POST", "/calls?count=100&latency_ms=300");
    EXPECT_EQ(reply.status, 202) << reply.body;
    return wait_for_batch(stack, json::parse(reply.body)["batch"], kPatience);
}

TEST(ElasticPool, AHundredCallsOf300msEndWithin400msOfTheResponse) {
    NginxStack stack;  // fcgi_app's defaults
    const auto batch = place_100_calls(stack);
    ASSERT_EQ(batch["placed"], 100) << batch.dump();
    EXPECT_LE(batch["all_done_after_ms"].get<double>(), fan_out_bound_ms()) << batch.dump();
    if (!fcgi_app_sanitized()) {  // starting a thread is slow there: fewer may have been needed
        EXPECT_GE(*metric(stack, "crosstown_pool_workers"), 100) << "the pool grew for them";
    }
}

TEST(ElasticPool, IdleWorkersRetireAndTheProcessIsSmallAgain) {
    if (fcgi_app_sanitized()) {
        GTEST_SKIP() << "a sanitizer's shadow memory makes resident size meaningless";
    }
    NginxStack stack({"--worker-idle", "500ms"});
    ASSERT_EQ(place_100_calls(stack)["placed"], 100);
    EXPECT_TRUE(eventually([&] { return metric(stack, "crosstown_pool_workers") == 4; },
                           kPatience, 50ms))
        << "down to the minimum of 4";
    const auto kb = resident_kb(stack.app().pid());
    EXPECT_GT(kb, 0);
    EXPECT_LT(kb, 12 * 1024) << "resident kB once idle";
    std::cout << "fcgi_app resident once idle after 100 calls: " << kb << " kB\n";
}

}  // namespace
}  // namespace crosstown::test
