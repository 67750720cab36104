#include <gtest/gtest.h>

#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/http/request.hpp>
#include <crosstown/http/request_limits.hpp>
#include <crosstown/http/router.hpp>

namespace crosstown {
namespace {

Request sample() {
    return Request({.id = "r1",
                    .method = "POST",
                    .path = "/calls",
                    .query_string = "count=2&count=3",
                    .query = {{"count", "2"}, {"count", "3"}, {"flag", ""}},
                    .headers = {{"x-request-id", "r1"}, {"content-type", "text/plain"}},
                    .cgi = {{"REMOTE_ADDR", "127.0.0.1"}},
                    .body = "payload"});
}

TEST(Request, ReadsItsParts) {
    const auto req = sample();
    EXPECT_EQ(req.id(), "r1");
    EXPECT_EQ(req.method(), "POST");
    EXPECT_EQ(req.path(), "/calls");
    EXPECT_EQ(req.body(), "payload");
    EXPECT_EQ(req.query_string(), "count=2&count=3");
}

TEST(Request, QueryGivesTheFirstValue) {
    const auto req = sample();
    EXPECT_EQ(req.query("count"), "2");
    EXPECT_EQ(req.query("flag"), "");
    EXPECT_EQ(req.query("missing"), std::nullopt);
    EXPECT_EQ(req.query_params().size(), 3u);
}

TEST(Request, HeadersIgnoreCase) {
    const auto req = sample();
    EXPECT_EQ(req.header("Content-Type"), "text/plain");
    EXPECT_EQ(req.header("CONTENT-TYPE"), "text/plain");
    EXPECT_EQ(req.header("accept"), std::nullopt);
}

TEST(Request, RouteParamsComeFromTheMatchedRoute) {
    Request req({.method = "GET", .path = "/calls/b7"});
    EXPECT_EQ(req.param("batch"), std::nullopt) << "no route has matched yet";
    Router router;
    std::optional<std::string> seen;
    router.get("/calls/{batch}", [&](Request& r, Response&) { seen = r.param("batch"); });
    Response res;
    router.handle(req, res);
    EXPECT_EQ(seen, "b7");
}

TEST(Request, Cgi) {
    auto req = sample();
    EXPECT_EQ(req.cgi("REMOTE_ADDR"), "127.0.0.1");
    EXPECT_EQ(req.cgi("remote_addr"), std::nullopt) << "CGI names are exact";
}

TEST(Request, FollowResponseJoinsTheCurrentRequest) {
    auto req = sample();
    DeferredRegistry registry(RequestLimits{}.max_deferred_per_request);
    RequestScope scope(registry);
    int ran = 0;
    req.follow_response([&] { ++ran; });
    req.follow_response({.name = "audit"}, [&](std::stop_token) { ++ran; });
    ASSERT_EQ(registry.callbacks().size(), 2u);
    EXPECT_EQ(registry.callbacks()[1].options.name, "audit");
    EXPECT_EQ(ran, 0) << "nothing runs at registration";
    registry.take();
}

TEST(Request, DetachedFollowsTheOutsideRequestPolicy) {
    auto req = sample();
    set_outside_request_policy(OutsideRequest::run_now);
    int ran = 0;
    req.follow_response([&] { ++ran; });
    EXPECT_EQ(ran, 1) << "run_now runs it at once";

    set_outside_request_policy(OutsideRequest::throw_error);
    EXPECT_THROW(req.follow_response([] {}), NoCurrentRequest);
    set_outside_request_policy(OutsideRequest::run_now);
}

}  // namespace
}  // namespace crosstown
