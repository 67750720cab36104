// Hostile HTTP through nginx to fcgi_app: a corpus of malformed, oversized and lying requests.
// Each one gets a 4xx/5xx with a reason (from nginx, or from the app), the app keeps serving,
// and every line it logs while under this fire is whole and names a request id.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/nginx_stack.hpp"

namespace crosstown::test {
namespace {

using namespace std::chrono_literals;

struct Case {
    const char* name;
    std::string request;  // sent as is
    int low;              // expected status range
    int high;
};

std::string get(const std::string& target, const std::string& headers = {}) {
    return "GET " + target + " HTTP/1.0\r\nHost: localhost\r\n" + headers + "\r\n";
}

std::string post(const std::string& target, const std::string& headers, const std::string& body) {
    return "POST " + target + " HTTP/1.0\r\nHost: localhost\r\n" + headers + "\r\n" + body;
}

std::vector<Case> corpus() {
    const std::string big(10'000, 'a');
    std::string many_headers;
    for (int i = 0; i < 150; ++i)
        many_headers += "X-Filler-" + std::to_string(i) + ": 1234567890\r\n";
    return {
        {"bad percent-escape in the query", get("/hello?x=%zz"), 400, 400},
        {"truncated percent-escape in the query", get("/calls/abc?x=%E"), 400, 400},
        {"percent-encoded NUL in the query", get("/calls?count=1%00"), 400, 405},
        {"bad percent-escape in the path", get("/hel%zzlo"), 400, 404},
        {"percent-encoded NUL in the path", get("/hello%00"), 400, 404},
        {"percent-encoded newline in the path", get("/calls/x%0d%0aforged:%20line"), 400, 404},
        {"escape character in the path", get("/calls/%1b%5b31mred"), 400, 404},
        {"raw NUL in the request line", std::string("GET /he\0llo HTTP/1.0\r\n\r\n", 24), 400, 400},
        {"invalid UTF-8 in the path", get("/calls/%ff%fe%fd"), 404, 404},
        {"invalid UTF-8 in a parameter", get("/calls?count=%ff"), 400, 405},
        {"invalid UTF-8 as a number", post("/calls?count=%c3%28", "Content-Length: 0\r\n", ""), 400,
         400},
        {"number out of range",
         post("/calls?count=99999999999999999999999", "Content-Length: 0\r\n", ""), 400, 400},
        {"overlong query string", get("/hello?q=" + big), 414, 414},
        {"overlong header", get("/hello", "X-Big: " + big + "\r\n"), 400, 431},
        {"hostile X-Request-Id", get("/nope", "X-Request-Id: \x1b[31m;rm -rf\r\n"), 404, 404},
        {"overlong X-Request-Id", get("/nope", "X-Request-Id: " + std::string(2000, 'i') + "\r\n"),
         404, 404},
        {"invalid Content-Length", post("/calls", "Content-Length: abc\r\n", ""), 400, 400},
        {"negative Content-Length", post("/calls", "Content-Length: -5\r\n", ""), 400, 400},
        {"huge Content-Length", post("/calls", "Content-Length: 99999999999999999999\r\n", ""), 400,
         413},
        {"two Content-Lengths", post("/calls", "Content-Length: 1\r\nContent-Length: 2\r\n", "ab"),
         400, 400},
        {"Content-Length with chunked",
         post("/calls", "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400,
         400},
        {"body over nginx's limit",
         post("/calls", "Content-Length: 2000000\r\n", std::string(2'000'000, 'b')), 413, 413},
        {"body over the app's --max-body",
         post("/calls", "Content-Length: 700000\r\n", std::string(700'000, 'b')), 413, 413},
        {"unknown method", "BREW /hello HTTP/1.0\r\nHost: localhost\r\n\r\n", 405, 405},
        {"WebDAV method", "PROPFIND /calls HTTP/1.0\r\nHost: localhost\r\n\r\n", 405, 405},
        {"lower-case method", "get /hello HTTP/1.0\r\nHost: localhost\r\n\r\n", 400, 400},
        {"not HTTP at all", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400,
         400},
        {"unknown HTTP version", "GET /hello HTTP/9.9\r\nHost: localhost\r\n\r\n", 400, 505},
        {"150 headers", get("/nope", many_headers), 404, 404},
        {"path traversal", get("/../../etc/passwd"), 400, 404},
        {"unknown route", get("/calls/does-not-exist/more"), 404, 404},
        {"wrong method on a route", "DELETE /hello HTTP/1.0\r\nHost: localhost\r\n\r\n", 405, 405},
    };
}

TEST(HostileInput, EveryRequestGetsAnErrorWithAReasonAndTheAppServesOn) {
    NginxStack stack({"--max-body", "512k"});
    const auto log_before = stack.app().output().size();
    int tried = 0;
    for (const auto& c : corpus()) {
        const auto reply = raw_http(stack.port(), c.request, 10s);
        EXPECT_GE(reply.status, c.low) << c.name;
        EXPECT_LE(reply.status, c.high) << c.name;
        // A reason: nginx's error page names the status; the app says what was wrong.
        EXPECT_FALSE(reply.body.empty()) << c.name;
        EXPECT_EQ(stack.get("/hello").status, 200) << "after " << c.name;
        ++tried;
    }
    std::cout << "[ figures ] hostile HTTP requests tried: " << tried << "\n";

    // Every line logged meanwhile is whole (starts with a timestamp: nothing forged by a
    // decoded newline) and names the request it is about.
    const auto log = stack.app().output().substr(log_before);
    const std::regex whole(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \w+ .*)");
    std::istringstream lines(log);
    int logged = 0;
    for (std::string line; std::getline(lines, line); ++logged) {
        EXPECT_TRUE(std::regex_match(line, whole)) << "not a whole log line: " << line;
        EXPECT_TRUE(line.find(" id=") != std::string::npos ||
                    line.find("request ") != std::string::npos)
            << "no request id: " << line;
    }
    EXPECT_GT(logged, tried) << "the access log saw them";
}

}  // namespace
}  // namespace crosstown::test
