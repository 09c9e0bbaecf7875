// MQTT's data representations (MQTT 5.0 section 1.5, 3.1.1 section 1.5):
// big-endian two- and four-byte integers, Variable Byte Integers, UTF-8
// Encoded Strings, Binary Data and UTF-8 String Pairs.
//
// Reader never reads out of bounds: the first failure sticks, and every later
// read returns zero or empty. Every failure of a Reader is a Malformed Packet
// (the bytes cannot be parsed), so it keeps only the message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "mqtt/types.h"

namespace floe::mqtt {

// ---- Variable Byte Integer [MQTT-1.5.5-1]: 1 to 4 bytes, 7 bits each, least
// significant group first, the top bit saying "more follows"; the value must
// use the fewest bytes that hold it.
enum class VbiStatus : uint8_t {
  kOk,
  kNeedMore,   // the bytes end while the top bit says more follows
  kMalformed,  // a fifth byte would be needed, or the encoding is not minimal
};
struct VbiResult {
  VbiStatus status = VbiStatus::kNeedMore;
  uint32_t value = 0;
  size_t size = 0;  // bytes the integer took (kOk only)
};
VbiResult DecodeVariableByteInteger(std::span<const char> in);
// 1..4; `v` must be at most kMaxVariableByteInteger.
size_t VariableByteIntegerSize(uint32_t v);
// Appends `v` (at most kMaxVariableByteInteger) in its minimal encoding.
void PutVariableByteInteger(std::string* out, uint32_t v);

// ---- UTF-8 Encoded Strings [MQTT-1.5.4-1, -2] ([MQTT-1.5.3-1, -2] in 3.1.1):
// well-formed UTF-8 as RFC 3629 restates it (no overlong forms, nothing above
// U+10FFFF, no surrogates U+D800..U+DFFF) and no U+0000.
// Returns an empty view when `s` is acceptable, else what is wrong with it.
// U+FEFF (a byte order mark) is an ordinary character, kept where it stands
// [MQTT-1.5.4-3].
std::string_view Utf8Error(std::string_view s);
inline bool IsValidUtf8String(std::string_view s) { return Utf8Error(s).empty(); }
// The Disallowed Unicode code points (MQTT 5.0 section 1.5.4): U+0001..U+001F,
// U+007F..U+009F and the Unicode noncharacters (U+FDD0..U+FDEF and every
// U+xxFFFE / U+xxFFFF). A receiver MAY treat them as malformed; floe's
// decoder accepts them (docs/mqtt.md says why) and offers this test to any
// layer that wants to refuse them. `s` must be valid UTF-8.
bool HasDisallowedCodePoint(std::string_view s);

// ---- Reading one packet's fields.
class Reader {
 public:
  explicit Reader(std::span<const char> in) : in_(in) {}
  uint8_t U8();
  uint16_t U16();  // Two Byte Integer
  uint32_t U32();  // Four Byte Integer
  uint32_t Vbi();  // Variable Byte Integer
  // A UTF-8 Encoded String, checked as above; `what` names the field in the
  // message ("topic name").
  std::string_view Utf8(std::string_view what);
  std::string_view Binary();
  // `n` raw bytes (a payload, or a properties block).
  std::string_view Bytes(size_t n);
  std::string_view Rest() { return Bytes(remaining()); }

  bool ok() const { return error_.empty(); }
  bool empty() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }
  const std::string& error() const { return error_; }
  void Fail(std::string_view why);

 private:
  const char* Take(size_t n, std::string_view what);
  std::span<const char> in_;
  size_t pos_ = 0;
  std::string error_;
};

// ---- Writing. Lengths are checked by the encoder before it writes.
inline void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
inline void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
inline void PutU32(std::string* out, uint32_t v) {
  PutU16(out, static_cast<uint16_t>(v >> 16));
  PutU16(out, static_cast<uint16_t>(v));
}
// A string or binary field: a Two Byte Integer length, then the bytes.
// `s.size()` must be at most 65,535.
inline void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutU16(out, static_cast<uint16_t>(s.size()));
  out->append(s);
}
inline constexpr size_t kMaxStringBytes = 65'535;

}  // namespace floe::mqtt
