// fcgi_app: crosstown's reference application. See routes.hpp for its endpoints and
// `fcgi_app --help` for its options.
#include <crosstown/server.hpp>

#include "call_ledger.hpp"
#include "routes.hpp"

int main(int argc, char** argv) {
    const auto parsed = crosstown::parse_server_config(
        argc, argv, {"fcgi_app", CROSSTOWN_VERSION, "the crosstown reference application"});
    if (!parsed.config) return parsed.exit_code;

    crosstown::Server server(*parsed.config);
    fcgi_app::CallLedger ledger;
    const fcgi_app::App app{ledger, server.config().limits.max_deferred_per_request,
                            [&server] { return server.metrics(); },
                            [&server] { return server.accepting(); }, server.status_page()};
    fcgi_app::add_routes(server.router(), app);
    return server.run();
}
