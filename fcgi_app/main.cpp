// fcgi_app: crosstown's reference application. See routes.hpp for its endpoints,
// `fcgi_app --help` for its options and `fcgi_app jobs --help` for its durable jobs.
#include <crosstown/jobs/jobs_command.hpp>
#include <crosstown/server.hpp>
#include <cstdio>
#include <optional>
#include <string_view>
#include <system_error>

#include "call_ledger.hpp"
#include "routes.hpp"
#include "witness.hpp"

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "jobs") {
        return crosstown::jobs_command(argc - 1, argv + 1, "fcgi_app jobs");
    }
    const crosstown::ProgramInfo program{
        .name = "fcgi_app",
        .version = CROSSTOWN_VERSION,
        .summary = "the crosstown reference application",
        .app_options = {{"witness",
                         "append each placed durable call to this file (for tests "
                         "and demonstrations)"}}};
    const auto parsed = crosstown::parse_server_config(argc, argv, program);
    if (!parsed.config) return parsed.exit_code;

    crosstown::Server server(*parsed.config);
    fcgi_app::CallLedger ledger;
    const auto& options = server.config().app_options;
    std::optional<fcgi_app::Witness> witness;
    try {
        witness.emplace(options.contains("witness") ? options.find("witness")->second : "");
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "fcgi_app: %s\n", e.what());
        return 2;
    }
    if (server.config().journal.enabled()) {
        fcgi_app::define_place_call(server.jobs(), ledger, *witness);
    }
    const fcgi_app::App app{ledger, server.config().limits.max_deferred_per_request,
                            [&server] { return server.metrics(); },
                            [&server] { return server.accepting(); }, server.status_page()};
    fcgi_app::add_routes(server.router(), app);
    return server.run();
}
