// crosstown::HttpError: throw it from a handler (or anything it calls) to answer with a 4xx/5xx
// and a reason the client can read, instead of a 500.
//
//   if (!count) throw crosstown::HttpError(400, "count: expected a whole number");
//
// The response body is the reason and a newline, as text/plain; `headers` are added to it
// (the router's 405 carries Allow this way).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "crosstown/http/fields.hpp"

namespace crosstown {

class HttpError : public std::runtime_error {
  public:
    HttpError(int status, const std::string& reason, Fields headers = {})
        : std::runtime_error(reason), status_(status), headers_(std::move(headers)) {}

    int status() const { return status_; }
    const Fields& headers() const { return headers_; }

  private:
    int status_;
    Fields headers_;
};

}  // namespace crosstown
