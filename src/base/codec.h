// Primitive encoding of frame bodies and bank records (docs/protocol.md "Encoding"):
// little-endian integers, strings with a u16 length, blobs with a u32 length.
// The Decoder never reads out of bounds: the first failure sticks, and every
// later read returns zero or empty.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/coding.h"
#include "base/status.h"

namespace floe {

class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { PutFixed16(out_, v); }
  void U32(uint32_t v) { PutFixed32(out_, v); }
  void U64(uint64_t v) { PutFixed64(out_, v); }
  void I64(int64_t v) { PutFixed64(out_, static_cast<uint64_t>(v)); }
  // Strings are names and texts: at most 65535 bytes (longer ones are cut).
  void String(std::string_view s);
  void Blob(std::string_view b);

 private:
  std::string* out_;
};

class Decoder {
 public:
  explicit Decoder(std::span<const char> in) : in_(in) {}
  uint8_t U8();
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  int64_t I64() { return static_cast<int64_t>(U64()); }
  std::string_view String();
  std::string_view Blob();
  // A count of items each at least `min_item_bytes` long: fails (instead of
  // letting a caller reserve memory for it) when the rest cannot hold them.
  uint32_t Count(size_t min_item_bytes);

  bool ok() const { return error_.empty(); }
  size_t remaining() const { return in_.size() - pos_; }
  // OK if every read succeeded and every byte was consumed.
  Status Finish() const;
  void Fail(std::string_view why);

 private:
  const char* Take(size_t n);
  std::span<const char> in_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace floe
