#include "mqtt/primitives.h"

#include <cassert>

#include <fmt/format.h>

namespace floe::mqtt {

VbiResult DecodeVariableByteInteger(std::span<const char> in) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (i >= in.size()) return {VbiStatus::kNeedMore, 0, 0};
    uint8_t b = static_cast<uint8_t>(in[i]);
    value |= static_cast<uint32_t>(b & 0x7F) << (7 * i);
    if ((b & 0x80) == 0) {
      // Minimal: a last byte of zero after the first adds nothing, so a
      // shorter encoding existed.
      if (i > 0 && b == 0) return {VbiStatus::kMalformed, 0, 0};
      return {VbiStatus::kOk, value, i + 1};
    }
  }
  return {VbiStatus::kMalformed, 0, 0};  // the fourth byte says more follows
}

size_t VariableByteIntegerSize(uint32_t v) {
  assert(v <= kMaxVariableByteInteger);
  if (v < 128) return 1;
  if (v < 16'384) return 2;
  if (v < 2'097'152) return 3;
  return 4;
}

void PutVariableByteInteger(std::string* out, uint32_t v) {
  assert(v <= kMaxVariableByteInteger);
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    if (v > 0) b |= 0x80;
    out->push_back(static_cast<char>(b));
  } while (v > 0);
}

namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i.
uint32_t NextCodePoint(std::string_view s, size_t* i) {
  uint8_t b = static_cast<uint8_t>(s[*i]);
  if (b < 0x80) {
    ++*i;
    return b;
  }
  int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  uint32_t cp = b & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[*i + k]) & 0x3F);
  *i += extra + 1;
  return cp;
}

}  // namespace

std::string_view Utf8Error(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      if (b == 0) return "contains U+0000";
      ++i;
      continue;
    }
    // RFC 3629 section 4: the second byte's range depends on the first.
    size_t extra;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      extra = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2;
      if (b == 0xE0) lo = 0xA0;  // overlong below U+0800
      if (b == 0xED) hi = 0x9F;  // U+D800..U+DFFF are surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3;
      if (b == 0xF0) lo = 0x90;  // overlong below U+10000
      if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return "is not well-formed UTF-8";  // a stray continuation, an overlong C0/C1 lead, or F5..FF
    }
    if (i + extra >= n) return "is not well-formed UTF-8 (truncated sequence)";
    uint8_t second = static_cast<uint8_t>(s[i + 1]);
    if (second < lo || second > hi) {
      if (b == 0xED && second >= 0xA0 && second <= 0xBF) return "encodes a surrogate (U+D800..U+DFFF)";
      return "is not well-formed UTF-8";
    }
    for (size_t k = 2; k <= extra; ++k) {
      if (!IsContinuation(static_cast<uint8_t>(s[i + k]))) return "is not well-formed UTF-8";
    }
    i += extra + 1;
  }
  return {};
}

bool HasDisallowedCodePoint(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = NextCodePoint(s, &i);
    if ((cp >= 0x01 && cp <= 0x1F) || (cp >= 0x7F && cp <= 0x9F)) return true;
    if (cp >= 0xFDD0 && cp <= 0xFDEF) return true;
    if ((cp & 0xFFFE) == 0xFFFE) return true;
  }
  return false;
}

void Reader::Fail(std::string_view why) {
  if (error_.empty()) error_ = why.empty() ? std::string("malformed") : std::string(why);
  pos_ = in_.size();
}

const char* Reader::Take(size_t n, std::string_view what) {
  if (!ok()) return nullptr;
  if (remaining() < n) {
    Fail(fmt::format("{} runs past the end of the packet ({} bytes needed, {} left)", what, n, remaining()));
    return nullptr;
  }
  const char* p = in_.data() + pos_;
  pos_ += n;
  return p;
}

uint8_t Reader::U8() {
  const char* p = Take(1, "a byte field");
  return p ? static_cast<uint8_t>(p[0]) : 0;
}

uint16_t Reader::U16() {
  const char* p = Take(2, "a two byte integer");
  if (!p) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

uint32_t Reader::U32() {
  const char* p = Take(4, "a four byte integer");
  if (!p) return 0;
  return (static_cast<uint32_t>(static_cast<uint8_t>(p[0])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(p[1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(p[2])) << 8) | static_cast<uint32_t>(static_cast<uint8_t>(p[3]));
}

uint32_t Reader::Vbi() {
  if (!ok()) return 0;
  VbiResult r = DecodeVariableByteInteger(in_.subspan(pos_));
  switch (r.status) {
    case VbiStatus::kOk:
      pos_ += r.size;
      return r.value;
    case VbiStatus::kNeedMore:
      Fail("a variable byte integer runs past the end of the packet");
      return 0;
    case VbiStatus::kMalformed:
      Fail("a variable byte integer is longer than 4 bytes or not minimally encoded [MQTT-1.5.5-1]");
      return 0;
  }
  return 0;
}

std::string_view Reader::Utf8(std::string_view what) {
  uint16_t n = U16();
  const char* p = Take(n, what);
  if (!p) return {};
  std::string_view s(p, n);
  std::string_view bad = Utf8Error(s);
  if (!bad.empty()) {
    Fail(fmt::format("{} {} [MQTT-1.5.4-1, MQTT-1.5.4-2]", what, bad));
    return {};
  }
  return s;
}

std::string_view Reader::Binary() {
  uint16_t n = U16();
  const char* p = Take(n, "binary data");
  return p ? std::string_view(p, n) : std::string_view();
}

std::string_view Reader::Bytes(size_t n) {
  const char* p = Take(n, "a field");
  return p ? std::string_view(p, n) : std::string_view();
}

}  // namespace floe::mqtt
