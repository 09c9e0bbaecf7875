#include "log/sealed_index.h"

#include <cinttypes>
#include <cstdio>

#include <fmt/format.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/format.h"

namespace floe::log {
namespace {

// magic u32, version u16, reserved u16, id, base_seq, end_seq, size u64,
// first_ts, last_ts i64, count u32, then count × (seq u64, offset u64,
// first_ts i64), then crc32c u32 of everything before it.
constexpr size_t kFixedSize = 4 + 2 + 2 + 8 * 4 + 8 * 2 + 4;
constexpr size_t kEntrySize = 24;
constexpr size_t kCrcSize = 4;

Status Bad(std::string_view why) { return Status::Corruption(fmt::format("sealed segment index: {}", why)); }

}  // namespace

std::string SealedIndexFileName(uint64_t id) { return fmt::format("{:020}.idx", id); }

bool ParseSealedIndexFileName(const std::string& name, uint64_t* id) {
  return ParseNumberedFileName(name, ".idx", id);
}

std::string EncodeSealedIndex(const SealedIndex& x) {
  std::string out;
  out.reserve(kFixedSize + x.index.size() * kEntrySize + kCrcSize);
  PutFixed32(&out, kSealedIndexMagic);
  PutFixed16(&out, kSealedIndexVersion);
  PutFixed16(&out, 0);
  PutFixed64(&out, x.id);
  PutFixed64(&out, x.base_seq);
  PutFixed64(&out, x.end_seq);
  PutFixed64(&out, x.size);
  PutFixed64(&out, static_cast<uint64_t>(x.first_ts));
  PutFixed64(&out, static_cast<uint64_t>(x.last_ts));
  PutFixed32(&out, static_cast<uint32_t>(x.index.size()));
  for (const IndexEntry& e : x.index) {
    PutFixed64(&out, e.seq);
    PutFixed64(&out, e.offset);
    PutFixed64(&out, static_cast<uint64_t>(e.first_ts));
  }
  PutFixed32(&out, crc32c::Value(out.data(), out.size()));
  return out;
}

Result<SealedIndex> DecodeSealedIndex(std::string_view b) {
  if (b.size() < kFixedSize + kCrcSize) return Err(Bad("too short"));
  const char* p = b.data();
  if (DecodeFixed32(p) != kSealedIndexMagic) return Err(Bad("bad magic"));
  if (DecodeFixed16(p + 4) != kSealedIndexVersion) return Err(Bad(fmt::format("version {}", DecodeFixed16(p + 4))));
  const uint32_t count = DecodeFixed32(p + kFixedSize - 4);
  if ((b.size() - kFixedSize - kCrcSize) / kEntrySize < count ||
      b.size() != kFixedSize + static_cast<size_t>(count) * kEntrySize + kCrcSize)
    return Err(Bad("length does not match its entry count"));
  const size_t body = b.size() - kCrcSize;
  if (DecodeFixed32(p + body) != crc32c::Value(p, body)) return Err(Bad("checksum mismatch"));
  SealedIndex x;
  x.id = DecodeFixed64(p + 8);
  x.base_seq = DecodeFixed64(p + 16);
  x.end_seq = DecodeFixed64(p + 24);
  x.size = DecodeFixed64(p + 32);
  x.first_ts = static_cast<int64_t>(DecodeFixed64(p + 40));
  x.last_ts = static_cast<int64_t>(DecodeFixed64(p + 48));
  if (x.end_seq < x.base_seq || x.size < kSegmentHeaderSize || x.last_ts < x.first_ts)
    return Err(Bad("its bounds are inconsistent"));
  x.index.reserve(count);
  const char* e = p + kFixedSize;
  for (uint32_t i = 0; i < count; ++i, e += kEntrySize) {
    IndexEntry entry{DecodeFixed64(e), DecodeFixed64(e + 8), static_cast<int64_t>(DecodeFixed64(e + 16))};
    const bool in_bounds = entry.seq >= x.base_seq && entry.seq < x.end_seq && entry.offset >= kSegmentHeaderSize &&
                           entry.offset < x.size;
    const bool ascending =
        x.index.empty() || (entry.seq > x.index.back().seq && entry.offset > x.index.back().offset);
    if (!in_bounds || !ascending) return Err(Bad(fmt::format("entry {} is out of order or bounds", i)));
    x.index.push_back(entry);
  }
  return x;
}

}  // namespace floe::log
