#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/http/http_error.hpp>
#include <crosstown/http/router.hpp>
#include <stdexcept>

namespace crosstown {
namespace {

using ::testing::HasSubstr;

Request request(std::string method, std::string path) {
    return Request({.id = "t", .method = std::move(method), .path = std::move(path)});
}

// Routes to handlers that write their own name.
Router sample_router() {
    Router router;
    const auto says = [](std::string name) {
        return [name](Request& req, Response& res) {
            res.text(name + (req.param("batch") ? ":" + std::string(*req.param("batch")) : ""));
        };
    };
    router.get("/", says("root"));
    router.get("/hello", says("hello"));
    router.post("/calls", says("post-calls"));
    router.get("/calls/{batch}", says("batch"));
    router.get("/calls/stats", says("stats"));
    router.del("/calls/{batch}", says("delete"));
    return router;
}

std::string body_for(const Router& router, std::string method, std::string path) {
    auto req = request(std::move(method), std::move(path));
    Response res;
    router.handle(req, res);
    return res.body();
}

TEST(Router, MatchesLiteralPaths) {
    const auto router = sample_router();
    EXPECT_EQ(body_for(router, "GET", "/"), "root");
    EXPECT_EQ(body_for(router, "GET", "/hello"), "hello");
    EXPECT_EQ(body_for(router, "POST", "/calls"), "post-calls");
}

TEST(Router, CapturesParams) {
    const auto router = sample_router();
    EXPECT_EQ(body_for(router, "GET", "/calls/b42"), "batch:b42");
    EXPECT_EQ(body_for(router, "DELETE", "/calls/b42"), "delete:b42");
}

TEST(Router, MoreLiteralSegmentsWinWhateverTheOrder) {
    const auto router = sample_router();
    EXPECT_EQ(body_for(router, "GET", "/calls/stats"), "stats");
}

TEST(Router, HeadIsServedByGet) {
    const auto router = sample_router();
    EXPECT_EQ(body_for(router, "HEAD", "/hello"), "hello");
}

TEST(Router, UnknownPathIs404) {
    const auto router = sample_router();
    for (const char* path : {"/nope", "/hello/", "/calls/", "/calls/b1/extra", "/Hello"}) {
        auto req = request("GET", path);
        Response res;
        try {
            router.handle(req, res);
            ADD_FAILURE() << path << " matched";
        } catch (const HttpError& e) {
            EXPECT_EQ(e.status(), 404) << path;
            EXPECT_THAT(e.what(), HasSubstr(path));
        }
    }
}

TEST(Router, WrongMethodIs405WithAllow) {
    const auto router = sample_router();
    auto req = request("PUT", "/calls/b1");
    Response res;
    try {
        router.handle(req, res);
        FAIL() << "PUT matched";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 405);
        ASSERT_EQ(e.headers().size(), 1u);
        EXPECT_EQ(e.headers()[0].first, "Allow");
        EXPECT_EQ(e.headers()[0].second, "DELETE, GET, HEAD");
        EXPECT_THAT(e.what(), HasSubstr("PUT is not allowed"));
    }
}

TEST(Router, RefusesBadPatternsAndDuplicates) {
    Router router;
    const Handler nothing = [](Request&, Response&) {};
    EXPECT_THROW(router.get("hello", nothing), std::invalid_argument);
    EXPECT_THROW(router.get("", nothing), std::invalid_argument);
    EXPECT_THROW(router.get("/a{b}", nothing), std::invalid_argument);
    EXPECT_THROW(router.get("/{b", nothing), std::invalid_argument);
    router.get("/a/{id}", nothing);
    EXPECT_THROW(router.get("/a/{id}", nothing), std::invalid_argument);
    EXPECT_NO_THROW(router.post("/a/{id}", nothing));
}

TEST(Router, HandlerExceptionsPassThrough) {
    Router router;
    router.get("/boom", [](Request&, Response&) { throw std::runtime_error("boom"); });
    auto req = request("GET", "/boom");
    Response res;
    EXPECT_THROW(router.handle(req, res), std::runtime_error);
}

}  // namespace
}  // namespace crosstown
