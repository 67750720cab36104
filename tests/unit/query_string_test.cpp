#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <crosstown/http/http_error.hpp>
#include <crosstown/http/query_string.hpp>

namespace crosstown {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(PercentDecode, DecodesEscapesOfEitherCase) {
    EXPECT_EQ(percent_decode("a%20b%2fc%2Fd"), "a b/c/d");
    EXPECT_EQ(percent_decode("%e2%82%ac"), "\xe2\x82\xac");
    EXPECT_EQ(percent_decode(""), "");
}

TEST(PercentDecode, PlusIsASpaceOnlyWhenAsked) {
    EXPECT_EQ(percent_decode("a+b"), "a+b");
    EXPECT_EQ(percent_decode("a+b", true), "a b");
    EXPECT_EQ(percent_decode("a%2Bb", true), "a+b");
}

TEST(PercentDecode, RejectsBadEscapes) {
    for (const char* bad : {"%", "%4", "a%", "%zz", "%4g", "%g4", "%%41", "ok%0", "%00", "a%00b"}) {
        EXPECT_EQ(percent_decode(bad), std::nullopt) << bad;
    }
}

TEST(ParseQuery, KeepsOrderRepeatsAndFlags) {
    EXPECT_THAT(parse_query("b=2&a=1&b=3&flag&&=x&e="),
                ElementsAre(Pair("b", "2"), Pair("a", "1"), Pair("b", "3"), Pair("flag", ""),
                            Pair("", "x"), Pair("e", "")));
}

TEST(ParseQuery, DecodesNamesAndValues) {
    EXPECT_THAT(parse_query("first%20name=J%C3%BCrgen+M&x%3Dy=a%26b"),
                ElementsAre(Pair("first name", "J\xc3\xbcrgen M"), Pair("x=y", "a&b")));
}

TEST(ParseQuery, EmptyQueryHasNoParams) { EXPECT_TRUE(parse_query("").empty()); }

TEST(ParseQuery, BadEscapeIsA400NamingTheOffset) {
    try {
        parse_query("count=3&name=%zz");
        FAIL() << "no exception";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 400);
        EXPECT_THAT(e.what(), HasSubstr("offset 13"));
    }
    EXPECT_THROW(parse_query("a=%"), HttpError);
    EXPECT_THROW(parse_query("a=%00"), HttpError);
}

}  // namespace
}  // namespace crosstown
