#include <gtest/gtest.h>

#include <atomic>
#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/http/request_limits.hpp>
#include <crosstown/testing/capture_deferred.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/eventually.hpp"
#include "support/log_capture.hpp"

namespace crosstown {
namespace {

// The per-request cap on callbacks, at the server's default.
constexpr std::size_t kCap = RequestLimits{}.max_deferred_per_request;

using testing::CaptureDeferred;

// What a handler helper under test might look like.
void send_welcome(std::vector<std::string>& outbox, const std::string& user) {
    follow_response({.name = "welcome-email"}, [&outbox, user] { outbox.push_back(user); });
}

TEST(CaptureDeferred, CapturesInsteadOfRunning) {
    std::vector<std::string> outbox;
    CaptureDeferred captured;
    send_welcome(outbox, "ada");
    EXPECT_TRUE(outbox.empty());
    const auto list = captured.list();
    ASSERT_EQ(list.size(), 1U);
    EXPECT_EQ(list[0].name, "welcome-email");
    EXPECT_TRUE(list[0].would_run(200));
    EXPECT_FALSE(list[0].would_run(500));
}

TEST(CaptureDeferred, RunExecutesWhatTheGateAllowsInOrderOnThisThread) {
    CaptureDeferred captured;
    std::vector<std::string> order;
    std::vector<std::thread::id> threads;
    auto record = [&](std::string label) {
        return [&order, &threads, label] {
            order.push_back(label);
            threads.push_back(std::this_thread::get_id());
        };
    };
    follow_response(record("first"));
    follow_response({.run_on = "2xx"}, record("success-only"));
    follow_response({.run_on = always}, record("always"));
    follow_response({.run_on = always, .skip_if_undelivered = true}, record("needs-client"));
    const auto report = captured.run(503, /*delivered=*/false);
    EXPECT_EQ(order, (std::vector<std::string>{"always"}));
    EXPECT_EQ(report.ran, 1U);
    EXPECT_EQ(report.skipped, 3U);
    EXPECT_EQ(threads.at(0), std::this_thread::get_id());
    EXPECT_EQ(captured.size(), 0U);  // run() empties the capture
}

TEST(CaptureDeferred, RunReportsFailuresWithoutStopping) {
    test::LogCapture quiet;
    CaptureDeferred captured;
    bool after = false;
    follow_response([] { throw std::runtime_error("twilio down"); });
    follow_response([&] { after = true; });
    const auto report = captured.run();
    EXPECT_TRUE(after);
    EXPECT_EQ(report.failed, 1U);
    EXPECT_EQ(report.errors, (std::vector<std::string>{"twilio down"}));
}

TEST(CaptureDeferred, NamesReplaceAndForgetAsInARequest) {
    std::vector<std::string> outbox;
    CaptureDeferred captured;
    send_welcome(outbox, "ada");
    send_welcome(outbox, "grace");
    EXPECT_EQ(captured.size(), 1U);
    captured.run();
    EXPECT_EQ(outbox, (std::vector<std::string>{"grace"}));
    send_welcome(outbox, "linus");
    EXPECT_TRUE(forget("welcome-email"));
    EXPECT_EQ(captured.size(), 0U);
}

TEST(CaptureDeferred, CapturesFromOtherThreads) {
    CaptureDeferred captured;
    std::vector<std::jthread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([] {
            for (int j = 0; j < 100; ++j) follow_response([] {});
        });
    }
    threads.clear();
    EXPECT_EQ(captured.size(), 400U);
}

TEST(CaptureDeferred, EndingTheScopeRestoresThePreviousState) {
    bool ran = false;
    {
        CaptureDeferred outer;
        {
            CaptureDeferred inner;
            follow_response([] {});
            EXPECT_EQ(inner.size(), 1U);
        }
        follow_response([] {});
        EXPECT_EQ(outer.size(), 1U);
    }
    follow_response([&] { ran = true; });  // back to the default policy: run_now
    EXPECT_TRUE(ran);
}

TEST(CaptureDeferred, RegistrationsInsideARequestStayWithTheRequest) {
    CaptureDeferred captured;
    DeferredRegistry registry(kCap);
    {
        RequestScope scope(registry);
        follow_response([] {});
    }
    EXPECT_EQ(captured.size(), 0U);
    EXPECT_EQ(registry.callbacks().size(), 1U);
    registry.take();
}

TEST(CaptureDeferred, DropsWhatWasNeverRun) {
    auto shared = std::make_shared<int>(0);
    std::weak_ptr<int> weak = shared;
    {
        CaptureDeferred captured;
        follow_response([s = std::move(shared)] {});
    }
    EXPECT_TRUE(weak.expired());
}

TEST(CaptureDeferred, DroppingWhatWasNeverRunLogsNothing) {
    test::LogCapture logs;
    {
        CaptureDeferred captured;
        follow_response([] {});
    }
    EXPECT_TRUE(logs.lines().empty()) << logs.lines().front();
}

TEST(CaptureDeferred, ScopesMayEndOutOfNestingOrder) {
    auto outer = std::make_unique<CaptureDeferred>();
    auto inner = std::make_unique<CaptureDeferred>();
    outer.reset();  // ends first, although it began first
    follow_response([] {});
    EXPECT_EQ(inner->size(), 1U) << "the live capture still captures";
    inner.reset();
    bool ran = false;
    follow_response([&] { ran = true; });
    EXPECT_TRUE(ran) << "with no capture left, the outside-request policy (run_now) applies";
}

// A capture ending while another thread registers: every registration lands in a live
// capture or runs under the outside-request policy, and none touches a capture being freed
// (AddressSanitizer and ThreadSanitizer would see it).
TEST(CaptureDeferred, EndingWhileAnotherThreadRegistersIsSafe) {
    std::atomic<bool> stop{false};
    std::atomic<int> attempts{0};
    std::atomic<int> ran{0};
    std::thread registrar([&] {
        while (!stop.load()) {
            follow_response([&] { ran.fetch_add(1); });
            attempts.fetch_add(1);
        }
    });
    // Captures begin and end until the other thread has registered a thousand times across
    // them (bounded by kPatience): some registrations land in captures, some run at once.
    std::size_t captured = 0;
    const bool enough = test::eventually([&] {
        CaptureDeferred capture;
        std::this_thread::yield();
        captured += capture.size();
        return attempts.load() >= 1000;
    });
    stop.store(true);
    registrar.join();
    EXPECT_TRUE(enough) << attempts.load() << " registrations only";
    EXPECT_GT(captured + static_cast<std::size_t>(ran.load()), 0U);
}

}  // namespace
}  // namespace crosstown
