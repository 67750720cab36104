// Percent-decoding and query-string parsing (RFC 3986, with the HTML form rule that '+' in a
// query means a space). nginx hands the query to FastCGI undecoded, so this is where a bad
// escape is caught: the request gets a 400 naming the offset, never a half-decoded value.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "crosstown/http/fields.hpp"

namespace crosstown {

// Decodes %XX escapes (and '+' as a space when `plus_is_space`). std::nullopt when a '%' is
// not followed by two hex digits, or when an escape decodes to NUL.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

// "a=1&b=x%20y&flag" -> {{"a","1"},{"b","x y"},{"flag",""}}, in order, repeats kept, empty
// pieces ("a=1&&b=2") skipped. Throws HttpError(400) naming the first bad escape.
Fields parse_query(std::string_view query);

}  // namespace crosstown
