#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/deferred/deferred_registry.hpp>
#include <crosstown/deferred/follow_response.hpp>
#include <crosstown/http/exchange.hpp>
#include <crosstown/http/http_error.hpp>
#include <cstring>

#include "support/log_capture.hpp"

namespace crosstown {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A body source that counts how often it was read.
struct Body {
    std::string data;
    std::size_t offset = 0;
    int reads = 0;
    BodyReader reader() {
        return [this](char* buffer, std::size_t size) {
            ++reads;
            const auto n = std::min(size, data.size() - offset);
            std::memcpy(buffer, data.data() + offset, n);
            offset += n;
            return n;
        };
    }
};

Fields cgi(std::string method, std::string uri, Fields extra = {}) {
    const auto q = uri.find('?');
    Fields fields{{"REQUEST_METHOD", std::move(method)},
                  {"REQUEST_URI", uri},
                  {"DOCUMENT_URI", uri.substr(0, q)},
                  {"QUERY_STRING", q == std::string::npos ? "" : uri.substr(q + 1)}};
    for (auto& field : extra) fields.push_back(std::move(field));
    return fields;
}

class ExchangeTest : public ::testing::Test {
  protected:
    ExchangeTest() {
        router_.get("/hello", [](Request&, Response& res) { res.text("hello\n"); });
        router_.post("/echo", [](Request& req, Response& res) { res.text(req.body()); });
        router_.get("/query", [](Request& req, Response& res) {
            res.text(std::string(req.query("name").value_or("-")));
        });
        router_.get("/throw", [](Request&, Response& res) {
            res.status(201).text("half-written");
            throw std::runtime_error("database down");
        });
        router_.get("/throw-int", [](Request&, Response&) { throw 42; });
        router_.get("/teapot", [](Request&, Response&) {
            throw HttpError(418, "short and stout", {{"X-Why", "tea"}});
        });
        router_.get("/defer", [](Request& req, Response& res) {
            follow_response([] {});
            req.follow_response({.name = "named"}, [] {});
            res.status(202);
        });
        router_.get("/overloaded", [](Request&, Response&) {
            throw Overloaded("the deferred work queue is full (2 of 2 waiting)");
        });
        router_.get("/runaway", [](Request&, Response&) {
            for (;;) follow_response([] {});
        });
    }

    Exchange run(Fields fields, Body body = {}) {
        body_ = std::move(body);
        return run_exchange(router_, std::move(fields), body_.reader(), limits_, deferred_, jobs_);
    }

    ~ExchangeTest() override { deferred_.take(); }

    JobBatch jobs_{nullptr, 16};
    Router router_;
    RequestLimits limits_{.max_body = 16, .max_deferred_per_request = 5};
    DeferredRegistry deferred_{5};
    Body body_;
};

TEST_F(ExchangeTest, RunsTheHandler) {
    const auto ex = run(cgi("GET", "/hello"));
    EXPECT_EQ(ex.response.status(), 200);
    EXPECT_EQ(ex.response.body(), "hello\n");
    EXPECT_FALSE(ex.body_unread);
    EXPECT_EQ(ex.request->path(), "/hello");
}

TEST_F(ExchangeTest, DecodesTheQuery) {
    EXPECT_EQ(run(cgi("GET", "/query?name=a%20b+c")).response.body(), "a b c");
}

TEST_F(ExchangeTest, BadEscapeInTheQueryIs400) {
    const auto ex = run(cgi("GET", "/query?name=%G1"));
    EXPECT_EQ(ex.response.status(), 400);
    EXPECT_THAT(ex.response.body(), HasSubstr("bad percent-escape"));
}

TEST_F(ExchangeTest, PathFallsBackToTheDecodedRequestUri) {
    auto fields = Fields{{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", "/hel%6co?x=1"}};
    EXPECT_EQ(run(fields).response.body(), "hello\n");
    fields = {{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", "/hel%6"}};
    EXPECT_EQ(run(fields).response.status(), 400);
}

TEST_F(ExchangeTest, MissingMethodIs400) {
    EXPECT_EQ(run({{"DOCUMENT_URI", "/hello"}}).response.status(), 400);
}

TEST_F(ExchangeTest, ReadsTheBody) {
    const auto ex = run(cgi("POST", "/echo", {{"CONTENT_LENGTH", "5"}}), {"12345"});
    EXPECT_EQ(ex.response.body(), "12345");
    EXPECT_EQ(ex.request->header("content-length"), "5");
}

TEST_F(ExchangeTest, ReadsAnUnannouncedBodyToItsEnd) {
    EXPECT_EQ(run(cgi("POST", "/echo"), {"abc"}).response.body(), "abc");
}

TEST_F(ExchangeTest, UnparsableContentLengthIs400) {
    for (const char* bad : {"abc", "-1", "5x", " 5", "99999999999999999999999"}) {
        const auto ex = run(cgi("POST", "/echo", {{"CONTENT_LENGTH", bad}}), {"12345"});
        EXPECT_EQ(ex.response.status(), 400) << bad;
        EXPECT_THAT(ex.response.body(), HasSubstr("CONTENT_LENGTH")) << bad;
    }
}

TEST_F(ExchangeTest, LyingContentLengthIs400) {
    auto ex = run(cgi("POST", "/echo", {{"CONTENT_LENGTH", "9"}}), {"12345"});
    EXPECT_EQ(ex.response.status(), 400);
    EXPECT_THAT(ex.response.body(), HasSubstr("says 9 bytes but the body has 5"));
    ex = run(cgi("POST", "/echo", {{"CONTENT_LENGTH", "2"}}), {"12345"});
    EXPECT_EQ(ex.response.status(), 400);
}

TEST_F(ExchangeTest, AnnouncedBodyOverTheLimitIs413WithoutReadingIt) {
    const auto ex = run(cgi("POST", "/echo", {{"CONTENT_LENGTH", "17"}}), {std::string(17, 'x')});
    EXPECT_EQ(ex.response.status(), 413);
    EXPECT_THAT(ex.response.body(), HasSubstr("17 bytes is over the limit of 16"));
    EXPECT_EQ(body_.reads, 0) << "not a byte of the body was read";
    EXPECT_TRUE(ex.body_unread);
}

TEST_F(ExchangeTest, UnannouncedBodyOverTheLimitIs413) {
    const auto ex = run(cgi("POST", "/echo"), {std::string(100'000, 'x')});
    EXPECT_EQ(ex.response.status(), 413);
    EXPECT_LE(body_.offset, 16u + 8192u) << "stopped reading at the limit";
    EXPECT_TRUE(ex.body_unread);
}

TEST_F(ExchangeTest, RefusalBeforeTheBodyLeavesItUnread) {
    const auto ex = run(cgi("POST", "/echo?x=%", {{"CONTENT_LENGTH", "3"}}), {"abc"});
    EXPECT_EQ(ex.response.status(), 400);
    EXPECT_TRUE(ex.body_unread) << "the connection cannot be reused";
}

TEST_F(ExchangeTest, ThrowingHandlerIs500WithTheRequestIdInBodyAndLog) {
    test::LogCapture log;
    const auto ex = run(cgi("GET", "/throw", {{"HTTP_X_REQUEST_ID", "req-77"}}));
    EXPECT_EQ(ex.response.status(), 500);
    EXPECT_EQ(ex.response.body(), "internal error; request id req-77\n");
    EXPECT_TRUE(log.contains("req-77")) << "the log names the request";
    EXPECT_TRUE(log.contains("database down"));
}

TEST_F(ExchangeTest, NonStandardThrowIs500) {
    test::LogCapture log;
    EXPECT_EQ(run(cgi("GET", "/throw-int")).response.status(), 500);
    EXPECT_TRUE(log.contains("non-standard exception"));
}

TEST_F(ExchangeTest, HttpErrorGivesItsStatusReasonAndHeaders) {
    const auto ex = run(cgi("GET", "/teapot"));
    EXPECT_EQ(ex.response.status(), 418);
    EXPECT_EQ(ex.response.body(), "short and stout\n");
    EXPECT_EQ(ex.response.header("X-Why"), "tea");
}

TEST_F(ExchangeTest, OverloadedIs503WithRetryAfterAndTheRequestId) {
    const auto ex = run(cgi("GET", "/overloaded", {{"HTTP_X_REQUEST_ID", "req-5"}}));
    EXPECT_EQ(ex.response.status(), 503);
    EXPECT_EQ(ex.response.header("Retry-After"), "1");
    EXPECT_EQ(ex.response.body(),
              "overloaded: the deferred work queue is full (2 of 2 waiting); retry in 1 s; "
              "request id req-5\n");
}

TEST_F(ExchangeTest, RoutingErrorsComeBackAsResponses) {
    EXPECT_EQ(run(cgi("GET", "/nope")).response.status(), 404);
    const auto ex = run(cgi("POST", "/hello"));
    EXPECT_EQ(ex.response.status(), 405);
    EXPECT_EQ(ex.response.header("Allow"), "GET, HEAD");
}

TEST_F(ExchangeTest, CallbacksLandInTheRegistryNotRun) {
    const auto ex = run(cgi("GET", "/defer"));
    EXPECT_EQ(ex.response.status(), 202);
    ASSERT_EQ(deferred_.callbacks().size(), 2u);
    EXPECT_EQ(deferred_.callbacks()[1].options.name, "named");
    EXPECT_EQ(current_registry(), nullptr) << "the scope ended with the handler";
}

TEST_F(ExchangeTest, TooManyCallbacksIs500) {
    test::LogCapture log;
    const auto ex = run(cgi("GET", "/runaway"));
    EXPECT_EQ(ex.response.status(), 500);
    EXPECT_TRUE(log.contains("more than 5 deferred callbacks"));
    EXPECT_EQ(deferred_.callbacks().size(), 5u) << "kept, to be gated on the 500";
}

TEST_F(ExchangeTest, RequestIdComesFromTheClientThenNginxThenIsGenerated) {
    auto ex = run(cgi("GET", "/hello", {{"HTTP_X_REQUEST_ID", "abc"}, {"REQUEST_ID", "ngx"}}));
    EXPECT_EQ(ex.request->id(), "abc");
    EXPECT_EQ(ex.response.header("X-Request-Id"), "abc");
    ex = run(cgi("GET", "/hello", {{"REQUEST_ID", "ngx"}}));
    EXPECT_EQ(ex.request->id(), "ngx");
    ex = run(cgi("GET", "/hello", {{"HTTP_X_REQUEST_ID", "has space"}}));
    EXPECT_EQ(ex.request->id().size(), 16u) << "an unusable id is replaced";
    EXPECT_NE(run(cgi("GET", "/hello")).request->id(), run(cgi("GET", "/hello")).request->id());
}

// W3C Trace Context: a well-formed traceparent is kept (for the request's jobs and callbacks);
// anything else is dropped rather than passed on.
TEST_F(ExchangeTest, AWellFormedTraceparentIsKeptAndAnyOtherDropped) {
    const std::string good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const auto trace_of = [&](std::string value) {
        return run(cgi("GET", "/hello", {{"HTTP_TRACEPARENT", std::move(value)}}))
            .request->trace_parent();
    };
    EXPECT_EQ(trace_of(good), good);
    EXPECT_EQ(run(cgi("GET", "/hello")).request->trace_parent(), "");
    EXPECT_EQ(trace_of("01" + good.substr(2) + "-later-fields"), "01" + good.substr(2))
        << "a later version's extra fields";
    EXPECT_EQ(trace_of(good + "-x"), "") << "version 00 has exactly four fields";
    EXPECT_EQ(trace_of("ff" + good.substr(2)), "") << "version ff";
    EXPECT_EQ(trace_of("00-00000000000000000000000000000000-b7ad6b7169203331-01"), "");
    EXPECT_EQ(trace_of("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"), "");
    EXPECT_EQ(trace_of("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"), "")
        << "upper-case hex";
    EXPECT_EQ(trace_of("00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01"), "");
    EXPECT_EQ(trace_of(good.substr(0, 54)), "");
}

TEST_F(ExchangeTest, HeadersBecomeLowerCaseNames) {
    const auto ex =
        run(cgi("GET", "/hello", {{"HTTP_ACCEPT_LANGUAGE", "de"}, {"CONTENT_TYPE", "a/b"}}));
    EXPECT_EQ(ex.request->header("Accept-Language"), "de");
    EXPECT_EQ(ex.request->headers()[0].first, "accept-language");
    EXPECT_EQ(ex.request->header("content-type"), "a/b");
    EXPECT_THAT(ex.request->cgi("REQUEST_URI").value_or(""), StartsWith("/hello"));
}

}  // namespace
}  // namespace crosstown
