#include <gtest/gtest.h>

#include <crosstown/http/response.hpp>
#include <stdexcept>

namespace crosstown {
namespace {

TEST(Response, StartsAs200WithNoBody) {
    Response res;
    EXPECT_EQ(res.status(), 200);
    EXPECT_TRUE(res.body().empty());
    EXPECT_TRUE(res.headers().empty());
}

TEST(Response, TextAndJsonSetTheContentType) {
    Response res;
    res.status(202).json("{}");
    EXPECT_EQ(res.status(), 202);
    EXPECT_EQ(res.header("content-type"), "application/json");
    res.text("hi\n");
    EXPECT_EQ(res.header("Content-Type"), "text/plain; charset=utf-8");
    EXPECT_EQ(res.body(), "hi\n");
    EXPECT_EQ(res.headers().size(), 1u) << "Content-Type is replaced, not repeated";
}

TEST(Response, HeaderOfTheSameNameReplacesAnyCase) {
    Response res;
    res.header("Cache-Control", "no-store").header("cache-control", "max-age=5");
    ASSERT_EQ(res.headers().size(), 1u);
    EXPECT_EQ(res.header("CACHE-CONTROL"), "max-age=5");
}

TEST(Response, RefusesHeaderInjection) {
    Response res;
    EXPECT_THROW(res.header("X-A", "1\r\nSet-Cookie: evil=1"), std::invalid_argument);
    EXPECT_THROW(res.header("X-A", "1\nx"), std::invalid_argument);
    EXPECT_THROW(res.header("X-A", std::string("a\0b", 3)), std::invalid_argument);
    EXPECT_THROW(res.header("X A", "1"), std::invalid_argument);
    EXPECT_THROW(res.header("X-A:", "1"), std::invalid_argument);
    EXPECT_THROW(res.header("", "1"), std::invalid_argument);
    EXPECT_TRUE(res.headers().empty());
}

TEST(Response, RefusesStatusesOutsideHttp) {
    Response res;
    EXPECT_THROW(res.status(99), std::invalid_argument);
    EXPECT_THROW(res.status(600), std::invalid_argument);
    EXPECT_EQ(res.status(), 200);
}

TEST(ReasonPhrase, KnowsTheCommonCodes) {
    EXPECT_EQ(reason_phrase(200), "OK");
    EXPECT_EQ(reason_phrase(202), "Accepted");
    EXPECT_EQ(reason_phrase(404), "Not Found");
    EXPECT_EQ(reason_phrase(405), "Method Not Allowed");
    EXPECT_EQ(reason_phrase(413), "Content Too Large");
    EXPECT_EQ(reason_phrase(500), "Internal Server Error");
    EXPECT_EQ(reason_phrase(299), "");
}

}  // namespace
}  // namespace crosstown
