// crosstown's status page: one StatusReport as a self-contained HTML page for a person with a
// browser (no external assets; it works without JavaScript, which only auto-refreshes it), as
// JSON for scripts (?json) and as plain text for curl (?text).
//
// The three are views of one document (status_document.hpp): the HTML marks every figure it
// shows with data-key="section.name", the path of the same figure in the JSON, so a test (or
// a scraper) can check one against the other.
#pragma once

#include <string>

#include "crosstown/http/request.hpp"
#include "crosstown/http/response.hpp"
#include "crosstown/service/status_report.hpp"

namespace crosstown {

enum class StatusFormat { html, json, text };

// ?json or ?text in the query; HTML otherwise.
StatusFormat status_format(const Request& req);

std::string render_status(const StatusReport& report, StatusFormat format);

// Answers with the report in the format the request asks for, never cached.
void serve_status(const StatusReport& report, const Request& req, Response& res);

}  // namespace crosstown
