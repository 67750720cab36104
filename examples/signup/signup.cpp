#include "signup.hpp"

#include <fmt/format.h>

namespace signup {
namespace {

std::string required(const crosstown::Fields& form, std::string_view field) {
    for (const auto& [name, value] : form) {
        if (name == field && !value.empty()) return value;
    }
    throw crosstown::HttpError(400, fmt::format("{}: required", field));
}

std::string email_of(const crosstown::Fields& form) {
    auto email = required(form, "email");
    const auto at = email.find('@');
    if (at == 0 || at == std::string::npos || email.find('.', at) == std::string::npos) {
        throw crosstown::HttpError(400, "email: expected an address such as ada@example.org");
    }
    return email;
}

}  // namespace

std::optional<Account> Accounts::add(std::string email, std::string name) {
    std::lock_guard lock(mutex_);
    for (const auto& account : accounts_) {
        if (account.email == email) return std::nullopt;
    }
    accounts_.push_back(
        {static_cast<int>(accounts_.size()) + 1, std::move(email), std::move(name)});
    return accounts_.back();
}

std::size_t Accounts::size() const {
    std::lock_guard lock(mutex_);
    return accounts_.size();
}

void add_routes(crosstown::Router& router, Accounts& accounts, SendWelcome send_welcome) {
    router.post("/signup", [&accounts, send_welcome](crosstown::Request& req,
                                                     crosstown::Response& res) {
        const auto form = crosstown::parse_query(req.body());
        auto account = accounts.add(email_of(form), required(form, "name"));
        if (!account) throw crosstown::HttpError(409, "email: already signed up");
        // Runs on the pool once nginx has the 201; skipped if the response became an error.
        crosstown::follow_response({.name = "welcome-email"},
                                   [send_welcome, account = *account] { send_welcome(account); });
        res.status(201).json(fmt::format(R"({{"id":{}}})", account->id));
    });
}

}  // namespace signup
