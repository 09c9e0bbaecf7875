#include "base/codec.h"

#include <fmt/format.h>

namespace floe {

void Encoder::String(std::string_view s) {
  if (s.size() > UINT16_MAX) s = s.substr(0, UINT16_MAX);
  U16(static_cast<uint16_t>(s.size()));
  out_->append(s);
}

void Encoder::Blob(std::string_view b) {
  U32(static_cast<uint32_t>(b.size()));
  out_->append(b);
}

void Decoder::Fail(std::string_view why) {
  if (error_.empty()) error_ = fmt::format("{} at body offset {}", why, pos_);
}

const char* Decoder::Take(size_t n) {
  if (!ok()) return nullptr;
  if (in_.size() - pos_ < n) {
    Fail(fmt::format("truncated: need {} bytes, {} left", n, in_.size() - pos_));
    return nullptr;
  }
  const char* p = in_.data() + pos_;
  pos_ += n;
  return p;
}

uint8_t Decoder::U8() {
  const char* p = Take(1);
  return p ? static_cast<uint8_t>(*p) : 0;
}
uint16_t Decoder::U16() {
  const char* p = Take(2);
  return p ? DecodeFixed16(p) : 0;
}
uint32_t Decoder::U32() {
  const char* p = Take(4);
  return p ? DecodeFixed32(p) : 0;
}
uint64_t Decoder::U64() {
  const char* p = Take(8);
  return p ? DecodeFixed64(p) : 0;
}

std::string_view Decoder::String() {
  const uint16_t n = U16();
  const char* p = Take(n);
  return p ? std::string_view(p, n) : std::string_view();
}

std::string_view Decoder::Blob() {
  const uint32_t n = U32();
  const char* p = Take(n);
  return p ? std::string_view(p, n) : std::string_view();
}

uint32_t Decoder::Count(size_t min_item_bytes) {
  const uint32_t n = U32();
  if (ok() && min_item_bytes > 0 && n > remaining() / min_item_bytes) {
    Fail(fmt::format("count {} cannot fit in {} bytes", n, remaining()));
    return 0;
  }
  return ok() ? n : 0;
}

Status Decoder::Finish() const {
  if (!ok()) return Status::InvalidArgument(error_);
  if (pos_ != in_.size()) return Status::InvalidArgument(fmt::format("{} trailing bytes", in_.size() - pos_));
  return Status::OK();
}

}  // namespace floe
