// What the guides' code blocks take as given: the public headers, and the application's own
// names their prose assumes (a phone API, a mailer, a user), declared here so the blocks
// compile as they are shown. Used by docs_snippets_test.sh only.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <crosstown/crosstown.hpp>
#include <crosstown/testing/capture_deferred.hpp>
#include <crosstown/testing/test_client.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;

struct PhoneApi {
    void place_call(const std::string& number, const std::string& idempotency_key = {});
};
inline PhoneApi phone_api;

struct Mailer {
    void send(const std::string& to);
    void send_welcome(const std::string& to);
};
inline Mailer mailer;

inline std::vector<std::string> numbers_from(const crosstown::Request&) { return {}; }

struct User {
    std::string email;
};
inline User user;
inline void send_welcome(const User&) {}

inline crosstown::Router router;
inline crosstown::JobKinds kinds;
inline std::string to;
inline std::string number;
inline std::string json;
inline void fn() {}
