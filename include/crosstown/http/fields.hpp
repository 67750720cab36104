// crosstown::Fields: an ordered list of name/value pairs, the one type for request headers,
// query parameters, FastCGI params, route params and response headers. Order and repeats are
// kept as received; lookups (Request::header, Response::header) take the first match.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace crosstown {

using Fields = std::vector<std::pair<std::string, std::string>>;

}  // namespace crosstown
