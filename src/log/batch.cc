#include "log/batch.h"

#include <fmt/format.h>

#include "base/coding.h"
#include "base/crc32c.h"

namespace floe::log {
namespace {

size_t HeadersSize(std::span<const Header> headers) {
  size_t n = 0;
  for (const Header& h : headers) n += 2 + h.name.size() + 4 + h.value.size();
  return n;
}

// memcpy with a null source is undefined even for 0 bytes, and an empty
// string_view may have a null data().
inline void CopyBytes(char* dst, std::string_view src) {
  if (!src.empty()) std::memcpy(dst, src.data(), src.size());
}

size_t EncodedHeadersSize(const Message& m) {
  return m.headers.empty() ? m.encoded_headers.size() : HeadersSize(m.headers);
}

}  // namespace

size_t RecordSize(const Message& m) {
  return kRecordFixedSize + m.key.size() + EncodedHeadersSize(m) + m.payload.size();
}

void AppendRecord(std::string* dst, const Message& m, uint32_t seq_delta, int64_t timestamp_us) {
  const size_t size = RecordSize(m);
  const size_t start = dst->size();
  dst->resize(start + size);
  char* p = dst->data() + start;
  EncodeFixed32(p, static_cast<uint32_t>(size - 4));
  EncodeFixed32(p + 4, seq_delta);
  EncodeFixed64(p + 8, static_cast<uint64_t>(timestamp_us));
  EncodeFixed64(p + 16, m.producer_id);
  EncodeFixed64(p + 24, m.producer_seq);
  p += 32;
  EncodeFixed32(p, static_cast<uint32_t>(m.key.size()));
  CopyBytes(p + 4, m.key);
  p += 4 + m.key.size();
  EncodeFixed32(p, static_cast<uint32_t>(EncodedHeadersSize(m)));
  p += 4;
  if (m.headers.empty() && !m.encoded_headers.empty()) {
    CopyBytes(p, m.encoded_headers);
    p += m.encoded_headers.size();
  }
  for (const Header& h : m.headers) {
    EncodeFixed16(p, static_cast<uint16_t>(h.name.size()));
    CopyBytes(p + 2, h.name);
    p += 2 + h.name.size();
    EncodeFixed32(p, static_cast<uint32_t>(h.value.size()));
    CopyBytes(p + 4, h.value);
    p += 4 + h.value.size();
  }
  EncodeFixed32(p, static_cast<uint32_t>(m.payload.size()));
  CopyBytes(p + 4, m.payload);
}

void FinishBatch(std::span<char> buf, BatchType type, uint64_t base_seq, uint32_t count, int64_t first_ts,
                 int64_t last_ts) {
  char* p = buf.data();
  EncodeFixed32(p + kBatchMagicOff, kBatchMagic);
  EncodeFixed32(p + kBatchLengthOff, static_cast<uint32_t>(buf.size()));
  p[kBatchVersionOff] = static_cast<char>(kBatchVersion);
  p[kBatchTypeOff] = static_cast<char>(type);
  EncodeFixed16(p + kBatchFlagsOff, 0);
  EncodeFixed64(p + kBatchBaseSeqOff, base_seq);
  EncodeFixed32(p + kBatchCountOff, count);
  EncodeFixed32(p + kBatchReservedOff, 0);
  EncodeFixed64(p + kBatchFirstTsOff, static_cast<uint64_t>(first_ts));
  EncodeFixed64(p + kBatchLastTsOff, static_cast<uint64_t>(last_ts));
  EncodeFixed32(p + kBatchCrcOff, crc32c::Value(p + kBatchLengthOff, buf.size() - kBatchLengthOff));
}

std::string EncodeHoleBatch(uint64_t base_seq, uint32_t count, int64_t ts) {
  std::string b(kBatchHeaderSize, '\0');
  FinishBatch(b, BatchType::kHole, base_seq, count, ts, ts);
  return b;
}

Result<BatchHeader> DecodeBatchHeader(std::span<const char> bytes) {
  if (bytes.size() < kBatchHeaderSize) return Err(Status::Corruption("batch header truncated"));
  const char* p = bytes.data();
  if (DecodeFixed32(p + kBatchMagicOff) != kBatchMagic) return Err(Status::Corruption("bad batch magic"));
  BatchHeader h;
  h.crc = DecodeFixed32(p + kBatchCrcOff);
  h.length = DecodeFixed32(p + kBatchLengthOff);
  if (static_cast<uint8_t>(p[kBatchVersionOff]) != kBatchVersion)
    return Err(Status::Corruption(fmt::format("unknown batch version {}", static_cast<uint8_t>(p[kBatchVersionOff]))));
  uint8_t type = static_cast<uint8_t>(p[kBatchTypeOff]);
  if (type != static_cast<uint8_t>(BatchType::kData) && type != static_cast<uint8_t>(BatchType::kHole))
    return Err(Status::Corruption(fmt::format("unknown batch type {}", type)));
  h.type = static_cast<BatchType>(type);
  if (h.length < kBatchHeaderSize || h.length > kMaxBatchSize)
    return Err(Status::Corruption(fmt::format("batch length {} out of bounds", h.length)));
  h.base_seq = DecodeFixed64(p + kBatchBaseSeqOff);
  h.count = DecodeFixed32(p + kBatchCountOff);
  h.first_ts = static_cast<int64_t>(DecodeFixed64(p + kBatchFirstTsOff));
  h.last_ts = static_cast<int64_t>(DecodeFixed64(p + kBatchLastTsOff));
  if (h.count == 0) return Err(Status::Corruption("batch covers no seq"));
  if (h.base_seq == 0 || h.base_seq + h.count < h.base_seq) return Err(Status::Corruption("batch seq range invalid"));
  if (h.type == BatchType::kHole && h.length != kBatchHeaderSize)
    return Err(Status::Corruption("hole batch carries records"));
  if (h.type == BatchType::kData && (h.length - kBatchHeaderSize) / kRecordFixedSize < h.count)
    return Err(Status::Corruption("batch too short for its record count"));
  return h;
}

Result<BatchHeader> VerifyBatch(std::span<const char> bytes) {
  auto h = DecodeBatchHeader(bytes);
  if (!h) return h;
  if (bytes.size() != h->length) return Err(Status::Corruption("batch length does not match its bytes"));
  uint32_t crc = crc32c::Value(bytes.data() + kBatchLengthOff, bytes.size() - kBatchLengthOff);
  if (crc != h->crc) return Err(Status::Corruption("batch checksum mismatch"));
  if (h->type == BatchType::kData) {
    RecordIterator it(*h, bytes);
    RecordView r;
    uint32_t n = 0;
    while (true) {
      auto more = it.Next(&r);
      if (!more) return Err(more.error());
      if (!*more) break;
      ++n;
    }
    if (n != h->count) return Err(Status::Corruption("batch record count mismatch"));
  }
  return h;
}

RecordIterator::RecordIterator(const BatchHeader& header, std::span<const char> batch)
    : header_(header), batch_(batch), pos_(kBatchHeaderSize) {}

Result<bool> RecordIterator::Next(RecordView* out) {
  if (header_.type != BatchType::kData || pos_ >= batch_.size()) {
    if (pos_ != batch_.size() && header_.type == BatchType::kData)
      return Err(Status::Corruption("record overruns batch"));
    return false;
  }
  const size_t left = batch_.size() - pos_;
  const char* p = batch_.data() + pos_;
  if (left < kRecordFixedSize) return Err(Status::Corruption("record truncated"));
  const uint32_t len = DecodeFixed32(p);
  if (len + size_t{4} > left || len + size_t{4} < kRecordFixedSize) return Err(Status::Corruption("record length out of bounds"));
  const char* end = p + 4 + len;
  const uint32_t delta = DecodeFixed32(p + 4);
  if (delta != index_) return Err(Status::Corruption("record seq out of order"));
  if (index_ >= header_.count) return Err(Status::Corruption("more records than the batch counts"));
  out->seq = header_.base_seq + delta;
  out->timestamp_us = static_cast<int64_t>(DecodeFixed64(p + 8));
  out->producer_id = DecodeFixed64(p + 16);
  out->producer_seq = DecodeFixed64(p + 24);
  const char* q = p + 32;
  std::string_view* fields[3] = {&out->key, &out->headers, &out->payload};
  for (std::string_view* f : fields) {
    if (end - q < 4) return Err(Status::Corruption("record field truncated"));
    uint32_t n = DecodeFixed32(q);
    q += 4;
    if (static_cast<size_t>(end - q) < n) return Err(Status::Corruption("record field overruns record"));
    *f = std::string_view(q, n);
    q += n;
  }
  if (q != end) return Err(Status::Corruption("record has trailing bytes"));
  pos_ += 4 + len;
  ++index_;
  return true;
}

Status ParseHeaders(std::string_view encoded, void (*fn)(void*, std::string_view, std::string_view), void* ctx) {
  size_t pos = 0;
  while (pos < encoded.size()) {
    if (encoded.size() - pos < 2) return Status::Corruption("header name length truncated");
    uint16_t nlen = DecodeFixed16(encoded.data() + pos);
    pos += 2;
    if (encoded.size() - pos < size_t{nlen} + 4) return Status::Corruption("header name truncated");
    std::string_view name = encoded.substr(pos, nlen);
    pos += nlen;
    uint32_t vlen = DecodeFixed32(encoded.data() + pos);
    pos += 4;
    if (encoded.size() - pos < vlen) return Status::Corruption("header value truncated");
    fn(ctx, name, encoded.substr(pos, vlen));
    pos += vlen;
  }
  return Status::OK();
}

}  // namespace floe::log
