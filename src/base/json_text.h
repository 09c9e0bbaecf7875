// JSON string text (RFC 8259), shared by the CLI's --json output, the
// node's JSON log lines and its HTTP API.
#pragma once

#include <string>
#include <string_view>

namespace floe {

// The inside of a JSON string (no quotes); bytes that are not UTF-8 become
// \ufffd, so the result is always valid JSON text.
std::string JsonEscape(std::string_view s);
bool IsValidUtf8(std::string_view s);

}  // namespace floe
