// signup: `signup --help` for the options; behind nginx like any crosstown application.
#include <crosstown/crosstown.hpp>

#include "signup.hpp"

int main(int argc, char** argv) {
    const auto parsed = crosstown::parse_server_config(argc, argv, {"signup", "1.0"});
    if (!parsed.config) return parsed.exit_code;

    crosstown::Server server(*parsed.config);
    signup::Accounts accounts;
    signup::add_routes(server.router(), accounts, [](const signup::Account& account) {
        // A real application calls its mail service here; the client is long gone by now.
        crosstown::log::info("welcome mail sent to {} (account {})", account.email, account.id);
    });
    return server.run();
}
