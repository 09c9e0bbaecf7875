// The CLI's --json output: every line it prints under --json is one valid
// JSON value (RFC 8259, UTF-8).
//
// Strings. Names, node ids, addresses and messages are JSON strings; a byte
// sequence in them that is not UTF-8 becomes U+FFFD (they are text, shown).
// Payloads and keys are data, kept exact: valid UTF-8 is a JSON string
// ("payload":"…"); anything else is base64 (RFC 4648, with padding) and
// the object says so ("payload":"…","payload_encoding":"base64").
//
// Errors. Under --json a command's error is one line on stdout (where a
// script reads the rest), exit code non-zero:
//   {"error":{"code":"UNKNOWN_STREAM","retriable":false,"message":"…"}}
// code: the floe protocol's error name when the node sent one
// (docs/protocol.md), else the client's own (INVALID_ARGUMENT, UNAVAILABLE,
// TIMED_OUT, NOT_FOUND, …); retriable: whether running the same command
// again may succeed.
#pragma once

#include <string>
#include <string_view>

#include "base/json_text.h"
#include "base/status.h"

namespace floe::cli {

using floe::IsValidUtf8;
using floe::JsonEscape;
std::string Base64(std::string_view bytes);
// `"field":"…"` for data bytes, with `,"field_encoding":"base64"` when they
// are not UTF-8.
std::string JsonBytesField(std::string_view field, std::string_view bytes);

// The error's code name (see above) and whether it is retriable.
std::string ErrorCodeName(const Status& s);
bool IsRetriable(const Status& s);
// {"error":{"code":…,"retriable":…,"message":…<extra>}}: `extra` is more
// members, each starting with a comma.
std::string ErrorJson(const Status& s, std::string_view extra = {});

// Reports a command's failure and returns its exit code (1): under --json
// the error object on stdout, else "error: MESSAGE" on stderr.
int Fail(const Status& s, bool json);

}  // namespace floe::cli
