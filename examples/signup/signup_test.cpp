// The signup handler through crosstown's TestClient: no nginx, no threads, no sockets.
#include "signup.hpp"

#include <gtest/gtest.h>

#include <crosstown/testing/test_client.hpp>
#include <string>
#include <vector>

namespace {

struct SignupTest : ::testing::Test {
    SignupTest() {
        signup::add_routes(router, accounts, [this](const signup::Account& account) {
            sent.push_back(account.email);
        });
    }
    crosstown::Router router;
    signup::Accounts accounts;
    std::vector<std::string> sent;
    crosstown::testing::TestClient client{router};
};

TEST_F(SignupTest, AnswersCreatedAndWelcomesOnlyAfterTheResponse) {
    const auto res = client.post("/signup", "email=ada%40example.org&name=Ada");
    EXPECT_EQ(res.status, 201);
    EXPECT_EQ(res.body, R"({"id":1})");
    ASSERT_EQ(client.deferred().size(), 1u);
    EXPECT_EQ(client.deferred()[0].name, "welcome-email");
    EXPECT_TRUE(sent.empty()) << "nothing is sent before the response has gone out";

    const auto report = client.run_deferred();
    EXPECT_EQ(report.ran, 1u);
    EXPECT_EQ(sent, std::vector<std::string>{"ada@example.org"});
}

TEST_F(SignupTest, ABadAddressIs400AndSendsNothing) {
    const auto res = client.post("/signup", "email=not-an-address&name=Bob");
    EXPECT_EQ(res.status, 400);
    EXPECT_NE(res.body.find("email"), std::string::npos) << res.body;
    EXPECT_TRUE(client.deferred().empty());
    EXPECT_EQ(accounts.size(), 0u);
}

TEST_F(SignupTest, ASecondSignupWithTheSameEmailIs409) {
    EXPECT_EQ(client.post("/signup", "email=ada%40example.org&name=Ada").status, 201);
    const auto again = client.post("/signup", "email=ada%40example.org&name=Ada");
    EXPECT_EQ(again.status, 409);
    client.run_deferred();
    EXPECT_EQ(sent.size(), 1u) << "one welcome, for the one account";
}

}  // namespace
