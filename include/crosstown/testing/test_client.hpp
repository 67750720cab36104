// crosstown::testing::TestClient: requests through your router in-process; no nginx, no
// threads, no sockets.
//
//   crosstown::testing::TestClient client(router);
//   auto res = client.post("/calls?count=3");
//   EXPECT_EQ(res.status, 202);
//   ASSERT_EQ(client.deferred().size(), 3);     // captured, not run
//   auto report = client.run_deferred();        // runs them here, in order, gated
//
// Each request goes the way the FastCGI responder sends it, through the same code: the same
// parsing, limits, error responses and router. Deferred callbacks are captured with the status
// of the response they follow; run_deferred() runs the ones whose gate passes, synchronously
// on the calling thread, with the request kept alive as in production. With
// run_deferred_after_each_response, every request runs its callbacks right after its
// response, mirroring production order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/http/fields.hpp"
#include "crosstown/http/request.hpp"
#include "crosstown/http/request_limits.hpp"
#include "crosstown/http/router.hpp"
#include "crosstown/testing/capture_deferred.hpp"
#include "crosstown/testing/captured_job.hpp"

namespace crosstown::testing {

struct TestResponse {
    int status = 0;
    Fields headers;
    std::string body;
    std::string request_id;
    std::shared_ptr<const Request> request;  // as the handler saw it

    std::optional<std::string_view> header(std::string_view name) const;
};

struct TestClientOptions {
    RequestLimits limits;
    // When set, a durable job of a kind not defined there fails in the handler (a 500), as in
    // production; when not, every durable job is captured.
    const JobKinds* job_kinds = nullptr;
    bool run_deferred_after_each_response = false;
    // As the server's --idempotency-header: its value keys the request's durable jobs.
    std::string idempotency_header = "Idempotency-Key";
};

class TestClient {
  public:
    explicit TestClient(const Router& router, TestClientOptions options = {});
    ~TestClient();
    TestClient(TestClient&&) noexcept;
    TestClient(const TestClient&) = delete;
    TestClient& operator=(const TestClient&) = delete;
    TestClient& operator=(TestClient&&) = delete;

    // `target` is the request line's target: "/calls/b1?verbose=1", percent-escapes as sent.
    // `headers` are HTTP headers by name; a "Content-Length" there overrides the body's size.
    TestResponse request(std::string_view method, std::string_view target, std::string body = {},
                         const Fields& headers = {});
    TestResponse get(std::string_view target, const Fields& headers = {});
    TestResponse post(std::string_view target, std::string body = {}, const Fields& headers = {});

    // Callbacks captured and not run yet, oldest first.
    std::vector<CapturedRegistration> deferred() const;
    // Runs them in order, each gated on its own response; empties the capture.
    RunReport run_deferred();
    // Durable jobs captured, with their responses' statuses, not run yet, oldest first.
    const std::vector<CapturedJob>& durable_jobs() const { return jobs_; }
    // Runs those whose gate passed their response through `kinds`; empties the capture.
    RunReport run_durable_jobs(const JobKinds& kinds);
    // What the automatic runs did (run_deferred_after_each_response), added up.
    const RunReport& automatic_runs() const { return automatic_; }

  private:
    struct Pending;  // one response's callbacks, with its outcome

    const Router& router_;
    TestClientOptions options_;
    std::vector<Pending> pending_;  // complete in the .cpp, where the special members are
    std::vector<CapturedJob> jobs_;
    RunReport automatic_;
};

}  // namespace crosstown::testing
