#include "cli/json.h"

#include <cctype>
#include <cstdio>

#include <fmt/format.h>

#include "wire/errors.h"

namespace floe::cli {
namespace {

// Length of the UTF-8 sequence at s[i], or 0 if it is not one (overlong
// forms, surrogates and code points past U+10FFFF are not UTF-8).
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // bounds of the second byte
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c == 0xe0) n = 3, lo = 0xa0;
  else if (c == 0xed) n = 3, hi = 0x9f;
  else if (c >= 0xe1 && c <= 0xef) n = 3;
  else if (c == 0xf0) n = 4, lo = 0x90;
  else if (c >= 0xf1 && c <= 0xf3) n = 4;
  else if (c == 0xf4) n = 4, hi = 0x8f;
  else return 0;
  if (i + n > s.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xbf) return 0;
  return n;
}

}  // namespace

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceAt(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = Utf8SequenceAt(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

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
