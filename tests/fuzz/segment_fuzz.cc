// libFuzzer target for the segment parsers (src/log/segment.h):
// DecodeSegmentHeader, and ScanSegment — the walk recovery runs over the last
// segment after a crash — over an in-memory file.
//
// The first input byte picks a mode; the rest is the data:
//   0  raw file: the bytes are the whole segment file, header block included.
//   1  fixed-up body: a valid header block, then the bytes, in which every
//      batch header that decodes and fits gets a correct CRC (from the last to
//      the first, so enclosing batches stay valid too). Mutations then reach
//      the scan's logic past the checksum.
//   2  damaged log: the bytes describe a run of valid data and hole batches,
//      zero padding, then one damage (a flipped byte, a truncation or appended
//      garbage) and scan options; the scan must keep exactly the batches
//      before the damage and report the rest.
//
// Properties checked on every scan (a violated one aborts):
//   * no crash, out-of-bounds read or UB on any file;
//   * end_offset, end_seq, batches and the index agree with each other and
//     lie inside the file; with CRCs on, every batch the scan kept verifies
//     and they cover seqs base..end_seq without a gap;
//   * a clean end (no bad tail) means only zeros follow end_offset;
//   * scanning is deterministic, and recovery is idempotent: after cutting the
//     file at end_offset a second scan finds the same batches and no bad tail.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/env.h"
#include "log/batch.h"
#include "log/format.h"
#include "log/segment.h"

namespace floe::log {
namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// A file held in memory, enough of the File contract for ScanSegment.
class MemoryFile final : public File {
 public:
  explicit MemoryFile(std::string bytes) : bytes_(std::move(bytes)) {}

  Result<size_t> ReadAt(uint64_t offset, std::span<char> buf) override {
    if (offset >= bytes_.size()) return size_t{0};
    const size_t n = std::min<uint64_t>(buf.size(), bytes_.size() - offset);
    std::memcpy(buf.data(), bytes_.data() + offset, n);
    return n;
  }
  Status WriteAt(uint64_t offset, std::span<const char> data) override {
    if (offset + data.size() > bytes_.size()) bytes_.resize(offset + data.size());
    std::memcpy(bytes_.data() + offset, data.data(), data.size());
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }
  Status Truncate(uint64_t size) override {
    bytes_.resize(size);
    return Status::OK();
  }
  Status Allocate(uint64_t, uint64_t) override { return Status::OK(); }
  Result<uint64_t> Size() override { return static_cast<uint64_t>(bytes_.size()); }

  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

bool SameScan(const SegmentScan& a, const SegmentScan& b) {
  if (a.end_offset != b.end_offset || a.end_seq != b.end_seq || a.batches != b.batches ||
      a.first_ts != b.first_ts || a.last_ts != b.last_ts || a.bad_tail != b.bad_tail ||
      a.good_after_bad != b.good_after_bad || a.index.size() != b.index.size())
    return false;
  for (size_t i = 0; i < a.index.size(); ++i) {
    if (a.index[i].seq != b.index[i].seq || a.index[i].offset != b.index[i].offset ||
        a.index[i].first_ts != b.index[i].first_ts)
      return false;
  }
  return true;
}

// Scans `bytes` as a segment starting at base_seq and checks every property
// that holds whatever the bytes are. Returns the scan.
SegmentScan ScanAndCheck(const std::string& bytes, uint64_t base_seq, const ScanOptions& options) {
  MemoryFile file(bytes);
  auto scan_or = ScanSegment(&file, base_seq, options);
  FUZZ_CHECK(scan_or.has_value());  // a memory file never fails a read
  const SegmentScan& scan = *scan_or;

  auto again = ScanSegment(&file, base_seq, options);
  FUZZ_CHECK(again.has_value() && SameScan(scan, *again));

  FUZZ_CHECK(scan.end_seq >= base_seq);
  FUZZ_CHECK(scan.good_after_bad ? scan.bad_tail : true);
  FUZZ_CHECK(scan.bad_tail ? !scan.tail_error.ok() : true);
  if (bytes.size() <= kSegmentHeaderSize) {
    FUZZ_CHECK(scan.batches == 0 && !scan.bad_tail);
  }
  FUZZ_CHECK(scan.end_offset >= kSegmentHeaderSize);
  if (scan.batches == 0) {
    FUZZ_CHECK(scan.end_offset == kSegmentHeaderSize && scan.end_seq == base_seq && scan.index.empty());
    return scan;
  }
  FUZZ_CHECK(scan.end_offset <= bytes.size());
  FUZZ_CHECK(scan.end_seq > base_seq);
  FUZZ_CHECK(!scan.index.empty());
  FUZZ_CHECK(scan.index.front().offset == kSegmentHeaderSize && scan.index.front().seq == base_seq);
  for (size_t i = 0; i < scan.index.size(); ++i) {
    const IndexEntry& e = scan.index[i];
    FUZZ_CHECK(e.offset < scan.end_offset && e.seq < scan.end_seq);
    if (i > 0) FUZZ_CHECK(e.offset > scan.index[i - 1].offset && e.seq > scan.index[i - 1].seq);
  }

  // Walk what the scan kept: consecutive batch headers covering base..end_seq.
  uint64_t off = kSegmentHeaderSize, seq = base_seq, n = 0;
  size_t next_index = 0;
  while (off < scan.end_offset) {
    const std::span<const char> rest(bytes.data() + off, bytes.size() - off);
    auto h = DecodeBatchHeader(rest);
    FUZZ_CHECK(h.has_value());
    FUZZ_CHECK(h->base_seq == seq);
    FUZZ_CHECK(h->base_seq < options.stop_seq);
    FUZZ_CHECK(h->length <= scan.end_offset - off);
    if (options.verify_crc) FUZZ_CHECK(VerifyBatch(rest.first(h->length)).has_value());
    if (next_index < scan.index.size() && scan.index[next_index].offset == off) {
      FUZZ_CHECK(scan.index[next_index].seq == h->base_seq);
      ++next_index;
    }
    off += h->length;
    seq = h->end_seq();
    ++n;
  }
  FUZZ_CHECK(off == scan.end_offset && seq == scan.end_seq && n == scan.batches);
  FUZZ_CHECK(next_index == scan.index.size());  // every index entry is a batch start

  // A clean end with no stop_seq: nothing but zeros after the last batch.
  if (!scan.bad_tail && options.stop_seq == UINT64_MAX) {
    FUZZ_CHECK(std::all_of(bytes.begin() + static_cast<long>(scan.end_offset), bytes.end(),
                           [](char c) { return c == 0; }));
  }

  // Recovery cuts a bad tail at end_offset; the next open scans again and
  // must find the same stream, now clean.
  if (options.verify_crc && scan.bad_tail) {
    const SegmentScan cut = ScanAndCheck(bytes.substr(0, scan.end_offset), base_seq, options);
    FUZZ_CHECK(!cut.bad_tail && cut.end_seq == scan.end_seq && cut.batches == scan.batches &&
               cut.end_offset == scan.end_offset);
  }
  return scan;
}

void CheckHeaderBlock(std::span<const char> block) {
  auto h = DecodeSegmentHeader(block);
  if (!h) return;
  FUZZ_CHECK(h->base_seq != 0);
  // What decodes re-encodes to something that decodes to the same fields.
  const std::string again = EncodeSegmentHeader(*h);
  FUZZ_CHECK(again.size() == kSegmentHeaderSize);
  auto h2 = DecodeSegmentHeader(again);
  FUZZ_CHECK(h2.has_value() && h2->id == h->id && h2->base_seq == h->base_seq && h2->created_us == h->created_us);
}

ScanOptions PickOptions(FuzzedDataProvider& in, uint64_t base_seq) {
  ScanOptions o;
  o.verify_crc = in.ConsumeBool();
  if (in.ConsumeBool()) o.stop_seq = base_seq + in.ConsumeIntegralInRange<uint64_t>(0, 64);
  o.index_interval = in.ConsumeIntegralInRange<uint64_t>(1, 8192);
  return o;
}

// Mode 1: gives every batch-looking header that fits a correct CRC, last
// first so that a batch enclosing another is fixed after it.
void FixChecksums(std::string* body) {
  std::vector<std::pair<size_t, uint32_t>> found;
  for (size_t i = 0; i + kBatchHeaderSize <= body->size(); ++i) {
    if (DecodeFixed32(body->data() + i) != kBatchMagic) continue;
    auto h = DecodeBatchHeader(std::span<const char>(body->data() + i, body->size() - i));
    if (h && h->length <= body->size() - i) found.emplace_back(i, h->length);
  }
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    char* p = body->data() + it->first;
    EncodeFixed32(p + kBatchCrcOff, crc32c::Value(p + kBatchLengthOff, it->second - kBatchLengthOff));
  }
}

void RunFixedUp(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint64_t base_seq = in.ConsumeIntegralInRange<uint64_t>(1, 1 << 20);
  const ScanOptions options = PickOptions(in, base_seq);
  std::string body = in.ConsumeRemainingBytesAsString();
  FixChecksums(&body);
  std::string file = EncodeSegmentHeader({.id = 1, .base_seq = base_seq, .created_us = 1});
  CheckHeaderBlock(file);
  file += body;
  ScanAndCheck(file, base_seq, options);
}

// Mode 2: a well-formed segment, one damage, and what the scan must keep.
void RunDamaged(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint64_t base_seq = in.ConsumeIntegralInRange<uint64_t>(1, 1 << 20);
  std::string file = EncodeSegmentHeader({.id = 7, .base_seq = base_seq, .created_us = 1});
  std::vector<uint64_t> starts, ends, seqs;  // per batch: offsets and first seq
  uint64_t seq = base_seq;
  int64_t ts = 1000;
  const size_t batches = in.ConsumeIntegralInRange<size_t>(1, 12);
  for (size_t b = 0; b < batches; ++b) {
    starts.push_back(file.size());
    seqs.push_back(seq);
    const uint32_t count = in.ConsumeIntegralInRange<uint32_t>(1, 5);
    if (in.ConsumeIntegralInRange<int>(0, 4) == 0) {
      file += EncodeHoleBatch(seq, count, ts);
    } else {
      std::string buf(kBatchHeaderSize, '\0');
      for (uint32_t i = 0; i < count; ++i) {
        const std::string payload = in.ConsumeRandomLengthString(200);
        AppendRecord(&buf, Message{.payload = payload, .producer_id = 1, .producer_seq = seq + i}, i, ts);
      }
      FinishBatch(buf, BatchType::kData, seq, count, ts, ts);
      file += buf;
    }
    ends.push_back(file.size());
    seq += count;
    ts += in.ConsumeIntegralInRange<int64_t>(0, 100);
  }
  const uint64_t end_seq = seq;
  const uint64_t data_end = file.size();
  if (in.ConsumeBool()) file.resize((file.size() + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment, '\0');

  ScanOptions options = PickOptions(in, base_seq);
  enum { kNone, kFlip, kTruncate, kGarbage } damage = static_cast<decltype(kNone)>(in.ConsumeIntegralInRange<int>(0, 3));
  uint64_t at = 0;  // offset of the damaged byte / the cut
  switch (damage) {
    case kNone: break;
    case kFlip:
      at = in.ConsumeIntegralInRange<uint64_t>(kSegmentHeaderSize, data_end - 1);
      file[at] = static_cast<char>(file[at] ^ static_cast<char>(in.ConsumeIntegralInRange<int>(1, 255)));
      break;
    case kTruncate:
      at = in.ConsumeIntegralInRange<uint64_t>(kSegmentHeaderSize, data_end);
      file.resize(at);
      break;
    case kGarbage: {
      at = file.size();
      std::string garbage = in.ConsumeRandomLengthString(256);
      if (garbage.empty() || std::all_of(garbage.begin(), garbage.end(), [](char c) { return c == 0; }))
        garbage.push_back('\x01');
      file += garbage;
      break;
    }
  }
  const SegmentScan scan = ScanAndCheck(file, base_seq, options);

  // Which batches survive the damage intact: those wholly before it.
  size_t intact = batches;
  if (damage == kFlip || damage == kTruncate) {
    intact = 0;
    while (intact < batches && ends[intact] <= at) ++intact;
  }
  // stop_seq cuts the walk at the first batch starting at or above it.
  size_t stop = batches;
  for (size_t b = 0; b < batches; ++b) {
    if (seqs[b] >= options.stop_seq) {
      stop = b;
      break;
    }
  }
  if (!options.verify_crc) {
    // Headers only: a flip inside a record body goes unnoticed, so only the
    // batches before the damage are certain.
    FUZZ_CHECK(scan.batches >= std::min(intact, stop));
    return;
  }
  const size_t expect = std::min(intact, stop);
  FUZZ_CHECK(scan.batches == expect);
  FUZZ_CHECK(scan.end_seq == (expect == batches ? end_seq : seqs[expect]));
  FUZZ_CHECK(scan.end_offset == (expect == 0 ? kSegmentHeaderSize : ends[expect - 1]));
  if (stop < intact) {
    FUZZ_CHECK(!scan.bad_tail);  // stopped on purpose before any damage
    return;
  }
  // With a stop_seq, damage that turns a header into one starting at or past
  // it ends the walk cleanly by design (the bytes belong to the next
  // segment's range); the outcome then depends on what the damage produced.
  if (options.stop_seq != UINT64_MAX) return;
  switch (damage) {
    case kNone:
      FUZZ_CHECK(!scan.bad_tail);
      break;
    case kFlip:
      // The damaged batch fails its CRC (or magic); the batches after it are
      // good, so this is damage in the middle, not a torn tail. (The converse
      // is not checked: a payload may itself hold a valid batch.)
      FUZZ_CHECK(scan.bad_tail);
      if (intact + 1 < batches) FUZZ_CHECK(scan.good_after_bad);
      break;
    case kTruncate:
      // A cut inside a batch leaves a partial batch; on a boundary, none.
      FUZZ_CHECK(scan.bad_tail == (at != scan.end_offset));
      break;
    case kGarbage:
      FUZZ_CHECK(scan.bad_tail);
      break;
  }
}

}  // namespace
}  // namespace floe::log

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::log;
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  ++data;
  --size;
  switch (mode) {
    case 0: {
      const std::string file(reinterpret_cast<const char*>(data), size);
      CheckHeaderBlock(file);
      auto h = DecodeSegmentHeader(file);
      ScanOptions options;
      options.index_interval = 512;
      ScanAndCheck(file, h ? h->base_seq : 1, options);
      break;
    }
    case 1: RunFixedUp(data, size); break;
    case 2: RunDamaged(data, size); break;
  }
  return 0;
}
