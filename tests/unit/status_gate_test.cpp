#include <gtest/gtest.h>

#include <crosstown/deferred/deferred_options.hpp>
#include <crosstown/deferred/status_gate.hpp>
#include <stdexcept>
#include <string>

namespace crosstown {
namespace {

TEST(StatusGate, DefaultRunsFor1xxTo3xxAndSkips4xx5xx) {
    const StatusGate gate;
    for (int status : {100, 101, 200, 204, 302, 399}) EXPECT_TRUE(gate.allows(status)) << status;
    for (int status : {400, 404, 499, 500, 503, 599}) EXPECT_FALSE(gate.allows(status)) << status;
}

TEST(StatusGate, DefaultOptionsUseTheDefaultGate) {
    EXPECT_EQ(DeferredOptions{}.run_on, StatusGate{});
}

TEST(StatusGate, AlwaysRunsWhateverTheStatus) {
    for (int status : {100, 200, 404, 500, 599}) EXPECT_TRUE(always.allows(status)) << status;
    EXPECT_EQ(always.describe(), "always");
}

TEST(StatusGate, ClassTokenCoversItsHundred) {
    const StatusGate gate("2xx");
    EXPECT_TRUE(gate.allows(200));
    EXPECT_TRUE(gate.allows(299));
    EXPECT_FALSE(gate.allows(199));
    EXPECT_FALSE(gate.allows(300));
}

TEST(StatusGate, RangeIsInclusive) {
    const StatusGate gate("400-405");
    EXPECT_FALSE(gate.allows(399));
    EXPECT_TRUE(gate.allows(400));
    EXPECT_TRUE(gate.allows(403));
    EXPECT_TRUE(gate.allows(405));
    EXPECT_FALSE(gate.allows(406));
}

TEST(StatusGate, SingleStatus) {
    const StatusGate gate("302");
    EXPECT_TRUE(gate.allows(302));
    EXPECT_FALSE(gate.allows(301));
    EXPECT_FALSE(gate.allows(303));
}

TEST(StatusGate, ListsMixForms) {
    const StatusGate gate("2xx, 302 400-401,500");
    for (int status : {200, 250, 302, 400, 401, 500}) EXPECT_TRUE(gate.allows(status)) << status;
    for (int status : {301, 303, 402, 404, 501}) EXPECT_FALSE(gate.allows(status)) << status;
    EXPECT_EQ(gate.describe(), "200-299,302,400-401,500");
}

TEST(StatusGate, OutOfRangeStatusesNeverPassAFilter) {
    EXPECT_FALSE(StatusGate("5xx").allows(600));
    EXPECT_FALSE(StatusGate{}.allows(0));
    EXPECT_FALSE(StatusGate{}.allows(-200));
}

class BadFilter : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(BadFilter, IsRejectedNamingTheToken) {
    const auto [filter, token] = GetParam();
    try {
        StatusGate gate(filter);
        FAIL() << "accepted '" << filter << "' as " << gate.describe();
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(std::string("'") + token + "'"), std::string::npos)
            << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Tokens, BadFilter,
                         ::testing::Values(std::pair{"6xx", "6xx"}, std::pair{"0xx", "0xx"},
                                           std::pair{"2x", "2x"}, std::pair{"2xxx", "2xxx"},
                                           std::pair{"abc", "abc"}, std::pair{"99", "99"},
                                           std::pair{"600", "600"}, std::pair{"2000", "2000"},
                                           std::pair{"405-400", "405-400"},
                                           std::pair{"200-", "200-"}, std::pair{"-200", "-200"},
                                           std::pair{"2xx,20o", "20o"},
                                           std::pair{"200-2xx", "200-2xx"}, std::pair{"+20", "+20"},
                                           std::pair{"", ""}, std::pair{" , ", ""}));

TEST(StatusGate, BadFilterFailsWhereTheOptionsAreWritten) {
    // The handler's registration line is where a typo surfaces, not a pool thread later.
    EXPECT_THROW((void)(DeferredOptions{.name = "x", .run_on = "20x"}), std::invalid_argument);
}

}  // namespace
}  // namespace crosstown
