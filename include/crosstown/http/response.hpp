// crosstown::Response: what a handler answers. Status 200 and an empty body until set.
//
//   res.status(202).json(R"({"batch":"b1"})");
//   res.header("Cache-Control", "no-store").text("hello\n");
//
// Content-Length is always computed by the server. A header name or value with CR, LF or NUL
// throws std::invalid_argument (it would split the response): the handler gets a 500, not an
// injected header.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "crosstown/http/fields.hpp"

namespace crosstown {

class Response {
  public:
    Response& status(int code);                             // 100..599, else std::invalid_argument
    Response& header(std::string name, std::string value);  // replaces one of the same name
    Response& body(std::string content, std::string content_type);
    Response& text(std::string content);  // text/plain; charset=utf-8
    Response& json(std::string content);  // application/json

    int status() const { return status_; }
    const Fields& headers() const { return headers_; }  // Content-Type included once set
    std::optional<std::string_view> header(std::string_view name) const;
    const std::string& body() const { return body_; }

  private:
    int status_ = 200;
    Fields headers_;
    std::string body_;
};

// "Not Found" for 404; "" for codes without a standard phrase.
std::string_view reason_phrase(int status);

}  // namespace crosstown
