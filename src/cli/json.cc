#include "cli/json.h"

#include <cctype>
#include <cstdio>

#include <fmt/format.h>

#include "wire/errors.h"

namespace floe::cli {

std::string Base64(std::string_view bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = at(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = at(i) << 16 | at(i + 1) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string JsonBytesField(std::string_view field, std::string_view bytes) {
  if (IsValidUtf8(bytes)) return fmt::format("\"{}\":\"{}\"", field, JsonEscape(bytes));
  return fmt::format("\"{}\":\"{}\",\"{}_encoding\":\"base64\"", field, Base64(bytes), field);
}

std::string ErrorCodeName(const Status& s) {
  // The node's code, as the client library writes it into the message
  // ("UNKNOWN_STREAM: …"): the earliest wire code name followed by ':' or
  // the end.
  const std::string_view m = s.message();
  size_t best = std::string_view::npos;
  std::string_view best_name;
  for (uint16_t v = 1; v < 64; ++v) {
    const std::string_view name = wire::WireErrorName(static_cast<wire::WireError>(v));
    if (name == "UNKNOWN_ERROR") continue;
    for (size_t at = m.find(name); at != std::string_view::npos; at = m.find(name, at + 1)) {
      const size_t end = at + name.size();
      const bool starts = at == 0 || !(std::isupper(static_cast<unsigned char>(m[at - 1])) || m[at - 1] == '_');
      if (starts && (end == m.size() || m[end] == ':')) {
        if (at < best) best = at, best_name = name;
        break;
      }
    }
  }
  if (best != std::string_view::npos) return std::string(best_name);
  switch (s.code()) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kNotFound: return "NOT_FOUND";
    case ErrorCode::kCorruption: return "CORRUPTION";
    case ErrorCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::kIOError: return "IO_ERROR";
    case ErrorCode::kOutOfRange: return "OUT_OF_RANGE";
    case ErrorCode::kUnavailable: return "UNAVAILABLE";
    case ErrorCode::kAborted: return "ABORTED";
    case ErrorCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case ErrorCode::kAlreadyExists: return "ALREADY_EXISTS";
    case ErrorCode::kNoSpace: return "NO_SPACE";
    case ErrorCode::kTimedOut: return "TIMED_OUT";
    case ErrorCode::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

bool IsRetriable(const Status& s) {
  // As the client library decides (client::internal::IsRetriableStatus):
  // the node's retriable codes arrive as Unavailable.
  return s.code() == ErrorCode::kUnavailable || s.code() == ErrorCode::kTimedOut;
}

std::string ErrorJson(const Status& s, std::string_view extra) {
  return fmt::format("{{\"error\":{{\"code\":\"{}\",\"retriable\":{},\"message\":\"{}\"{}}}}}", ErrorCodeName(s),
                     IsRetriable(s), JsonEscape(s.message()), extra);
}

int Fail(const Status& s, bool json) {
  if (json) {
    std::fflush(stderr);
    fmt::print("{}\n", ErrorJson(s));
    std::fflush(stdout);
  } else {
    fmt::print(stderr, "error: {}\n", s.ToString());
  }
  return 1;
}

}  // namespace floe::cli
