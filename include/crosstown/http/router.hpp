// crosstown::Router: picks the handler for a request by method and path.
//
//   router.get("/hello", hello);
//   router.post("/calls", place_calls);
//   router.get("/calls/{batch}", show_batch);   // req.param("batch")
//
// A {name} stands for one whole path segment. When several routes match a path, the one with
// more literal segments wins ("/calls/stats" before "/calls/{batch}"). No route for the path
// is a 404; a route for the path but not the method is a 405 with Allow. HEAD is served by the
// GET handler (nginx drops the body). Routes are added before serving starts; handle() may
// then be called from many threads at once.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/http/request.hpp"
#include "crosstown/http/response.hpp"

namespace crosstown {

using Handler = std::function<void(Request&, Response&)>;

class Router {
  public:
    // Throws std::invalid_argument for a pattern that does not start with '/', a malformed
    // {param}, or a method + pattern already routed.
    Router& route(std::string method, std::string_view pattern, Handler handler);
    Router& get(std::string_view pattern, Handler handler);
    Router& post(std::string_view pattern, Handler handler);
    Router& put(std::string_view pattern, Handler handler);
    Router& del(std::string_view pattern, Handler handler);

    // Runs the matching handler. Throws HttpError 404/405 when there is none, and whatever the
    // handler throws.
    void handle(Request& request, Response& response) const;

  private:
    struct Segment {
        std::string text;
        bool is_param;
    };
    struct Route {
        std::string method;
        std::string pattern;
        std::vector<Segment> segments;
        std::size_t literals;
        Handler handler;
    };

    static bool matches(const Route& route, const std::vector<std::string_view>& parts);
    const Route* best_for(std::string_view method,
                          const std::vector<std::string_view>& parts) const;

    std::vector<Route> routes_;
};

}  // namespace crosstown
