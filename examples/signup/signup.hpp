// The signup endpoint: POST /signup with a form body "email=...&name=..." answers 201 with
// the new account's id at once, and sends the welcome message only after the response has
// gone out, so the client never waits for the mail server.
#pragma once

#include <crosstown/crosstown.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace signup {

struct Account {
    int id;
    std::string email;
    std::string name;
};

// Where accounts live. Any thread.
class Accounts {
  public:
    // The new account, or nullopt when the email is taken.
    std::optional<Account> add(std::string email, std::string name);
    std::size_t size() const;

  private:
    mutable std::mutex mutex_;
    std::vector<Account> accounts_;  // guarded by mutex_
};

// Sends the welcome message; runs on the pool, after the response.
using SendWelcome = std::function<void(const Account&)>;

void add_routes(crosstown::Router& router, Accounts& accounts, SendWelcome send_welcome);

}  // namespace signup
