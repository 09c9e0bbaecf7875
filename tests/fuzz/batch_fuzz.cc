// libFuzzer target for the record batch decoder (src/log/batch.h): the
// parser every byte read from disk goes through.
//
// The first input byte picks a mode; the rest is the data:
//   0  raw: the bytes as they are, as a corrupt disk would hand them over.
//   1  checksummed: the bytes with the batch's length field set to their size
//      and a correct CRC, so mutations reach the record parser behind the
//      checksum instead of dying at it.
//   2  round trip: the bytes describe messages (headers given as views or
//      pre-encoded); encode them with AppendRecord and FinishBatch, then the
//      batch must verify and decode to exactly those messages, and flipping
//      any one byte must make it fail.
// Every mode also feeds the bytes to ParseHeaders.
//
// Properties checked (a violated one aborts, which libFuzzer reports):
//   * nothing crashes, reads out of bounds or trips UBSan on any input;
//   * a header that decodes is within the format's bounds;
//   * a batch that verifies has exactly `count` records, with seqs base_seq,
//     base_seq+1, ..., whose fields all lie inside the batch;
//   * headers that parse lie inside the encoded headers.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/batch.h"
#include "log/format.h"

namespace floe::log {
namespace {

// Aborts with a message: the fuzzer treats it as a crash and keeps the input.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

bool Inside(std::string_view part, std::span<const char> whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool Inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

struct HeaderCheck {
  std::string_view encoded;
  std::vector<std::pair<std::string_view, std::string_view>> seen;
};

void OnHeader(void* ctx, std::string_view name, std::string_view value) {
  auto* c = static_cast<HeaderCheck*>(ctx);
  FUZZ_CHECK(Inside(name, c->encoded));
  FUZZ_CHECK(Inside(value, c->encoded));
  c->seen.emplace_back(name, value);
}

// Parses headers; returns whether they parsed. Parsed views must lie inside.
bool CheckHeaders(std::string_view encoded, HeaderCheck* check) {
  check->encoded = encoded;
  check->seen.clear();
  return ParseHeaders(encoded, OnHeader, check).ok();
}

void CheckHeaderBounds(const BatchHeader& h) {
  FUZZ_CHECK(h.length >= kBatchHeaderSize);
  FUZZ_CHECK(h.length <= kMaxBatchSize);
  FUZZ_CHECK(h.count > 0);
  FUZZ_CHECK(h.base_seq > 0);
  FUZZ_CHECK(h.end_seq() > h.base_seq);  // no wrap-around
  FUZZ_CHECK(h.type == BatchType::kData || h.type == BatchType::kHole);
  if (h.type == BatchType::kHole) FUZZ_CHECK(h.length == kBatchHeaderSize);
  if (h.type == BatchType::kData) FUZZ_CHECK((h.length - kBatchHeaderSize) / kRecordFixedSize >= h.count);
}

// Runs the decoder over arbitrary bytes and checks what it accepts.
void CheckBytes(std::span<const char> bytes) {
  auto h = DecodeBatchHeader(bytes);
  if (h) CheckHeaderBounds(*h);

  // The iterator over a header-valid batch that was not verified: it is only
  // promised to handle verified batches, but it bounds-checks everything, so
  // garbage must give Corruption, never a read outside the span.
  if (h && bytes.size() >= h->length) {
    const auto batch = bytes.first(h->length);
    RecordIterator it(*h, batch);
    RecordView r;
    uint32_t n = 0;
    while (true) {
      auto more = it.Next(&r);
      if (!more || !*more) break;
      FUZZ_CHECK(r.seq == h->base_seq + n);
      FUZZ_CHECK(Inside(r.key, batch) && Inside(r.headers, batch) && Inside(r.payload, batch));
      ++n;
      FUZZ_CHECK(n <= h->count);
    }
  }

  auto v = VerifyBatch(bytes);
  if (!v) return;
  FUZZ_CHECK(h.has_value());
  CheckHeaderBounds(*v);
  FUZZ_CHECK(v->length == bytes.size());
  FUZZ_CHECK(v->base_seq == h->base_seq && v->count == h->count && v->type == h->type && v->crc == h->crc);
  FUZZ_CHECK(crc32c::Value(bytes.data() + kBatchLengthOff, bytes.size() - kBatchLengthOff) == v->crc);

  RecordIterator it(*v, bytes);
  RecordView r;
  uint32_t n = 0;
  HeaderCheck headers;
  while (true) {
    auto more = it.Next(&r);
    FUZZ_CHECK(more.has_value());  // VerifyBatch walked every record already
    if (!*more) break;
    FUZZ_CHECK(v->type == BatchType::kData);
    FUZZ_CHECK(r.seq == v->base_seq + n);
    FUZZ_CHECK(Inside(r.key, bytes) && Inside(r.headers, bytes) && Inside(r.payload, bytes));
    CheckHeaders(r.headers, &headers);
    ++n;
  }
  FUZZ_CHECK(n == (v->type == BatchType::kData ? v->count : 0));
}

// Mode 1: make the length field and CRC agree with the bytes.
void CheckChecksummed(std::string bytes) {
  if (bytes.size() < kBatchHeaderSize) return CheckBytes(bytes);
  EncodeFixed32(bytes.data() + kBatchMagicOff, kBatchMagic);
  EncodeFixed32(bytes.data() + kBatchLengthOff, static_cast<uint32_t>(bytes.size()));
  EncodeFixed32(bytes.data() + kBatchCrcOff,
                crc32c::Value(bytes.data() + kBatchLengthOff, bytes.size() - kBatchLengthOff));
  CheckBytes(bytes);
}

// Mode 2: encode messages described by the input, decode, compare.
void CheckRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  struct Owned {
    std::string key, payload;
    std::vector<std::string> names, values;
    std::vector<Header> headers;
    // How the headers are handed over: as Header views (0), pre-encoded by us
    // (1), or as pre-encoded bytes that need not parse at all (2).
    int header_form;
    std::string encoded;  // forms 1 and 2: Message::encoded_headers
    uint64_t producer_id, producer_seq;
    int64_t ts;
  };
  const uint64_t base_seq = in.ConsumeIntegralInRange<uint64_t>(1, UINT64_MAX - 1000);
  const size_t count = in.ConsumeIntegralInRange<size_t>(1, 64);
  std::vector<Owned> owned(count);
  // Empty fields as callers usually leave them: default views, data() null.
  auto view = [](const std::string& str) { return str.empty() ? std::string_view() : std::string_view(str); };
  // Kept away from the ends so adding the steps below cannot overflow.
  int64_t ts = in.ConsumeIntegralInRange<int64_t>(INT64_MIN / 2, INT64_MAX / 2);
  for (Owned& o : owned) {
    o.key = in.ConsumeRandomLengthString(64);
    const size_t nh = in.ConsumeIntegralInRange<size_t>(0, 3);
    for (size_t i = 0; i < nh; ++i) {
      o.names.push_back(in.ConsumeRandomLengthString(32));
      o.values.push_back(in.ConsumeRandomLengthString(64));
    }
    for (size_t i = 0; i < nh; ++i) o.headers.push_back({view(o.names[i]), view(o.values[i])});
    o.header_form = in.ConsumeIntegralInRange<int>(0, 2);
    if (o.header_form == 1) {
      for (const Header& h : o.headers) {
        PutFixed16(&o.encoded, static_cast<uint16_t>(h.name.size()));
        o.encoded += h.name;
        PutFixed32(&o.encoded, static_cast<uint32_t>(h.value.size()));
        o.encoded += h.value;
      }
    } else if (o.header_form == 2) {
      o.encoded = in.ConsumeRandomLengthString(64);
    }
    o.payload = in.ConsumeRandomLengthString(4096);
    o.producer_id = in.ConsumeIntegral<uint64_t>();
    o.producer_seq = in.ConsumeIntegral<uint64_t>();
    o.ts = ts;
    ts += in.ConsumeIntegralInRange<int64_t>(0, 1000);  // non-decreasing in a batch
  }

  std::string buf(kBatchHeaderSize, '\0');
  for (size_t i = 0; i < count; ++i) {
    const Owned& o = owned[i];
    Message m{.payload = o.payload,
              .key = view(o.key),
              .producer_id = o.producer_id, .producer_seq = o.producer_seq};
    if (o.header_form == 0) m.headers = o.headers;
    else m.encoded_headers = o.encoded;
    const size_t before = buf.size();
    AppendRecord(&buf, m, static_cast<uint32_t>(i), o.ts);
    FUZZ_CHECK(buf.size() - before == RecordSize(m));
  }
  FinishBatch(buf, BatchType::kData, base_seq, static_cast<uint32_t>(count), owned.front().ts, owned.back().ts);

  auto v = VerifyBatch(buf);
  FUZZ_CHECK(v.has_value());
  FUZZ_CHECK(v->base_seq == base_seq && v->count == count && v->length == buf.size());
  FUZZ_CHECK(v->first_ts == owned.front().ts && v->last_ts == owned.back().ts);
  RecordIterator it(*v, buf);
  RecordView r;
  HeaderCheck headers;
  for (size_t i = 0; i < count; ++i) {
    auto more = it.Next(&r);
    FUZZ_CHECK(more.has_value() && *more);
    const Owned& o = owned[i];
    FUZZ_CHECK(r.seq == base_seq + i);
    FUZZ_CHECK(r.timestamp_us == o.ts);
    FUZZ_CHECK(r.producer_id == o.producer_id && r.producer_seq == o.producer_seq);
    FUZZ_CHECK(r.key == o.key && r.payload == o.payload);
    if (o.header_form != 0) FUZZ_CHECK(r.headers == o.encoded);  // stored as given, byte for byte
    const bool parsed = CheckHeaders(r.headers, &headers);
    if (o.header_form == 2) continue;  // arbitrary bytes: parsing may fail
    FUZZ_CHECK(parsed);
    FUZZ_CHECK(headers.seen.size() == o.headers.size());
    for (size_t k = 0; k < o.headers.size(); ++k) {
      FUZZ_CHECK(headers.seen[k].first == o.names[k] && headers.seen[k].second == o.values[k]);
    }
  }
  auto end = it.Next(&r);
  FUZZ_CHECK(end.has_value() && !*end);
  CheckBytes(buf);

  // Any single changed byte is caught: bytes [0, 4) by the magic, [4, 8) by
  // the stored CRC, the rest by the CRC (it detects every burst of <= 32 bits).
  if (in.remaining_bytes() > 0) {
    const size_t pos = in.ConsumeIntegralInRange<size_t>(0, buf.size() - 1);
    const char flip = static_cast<char>(in.ConsumeIntegralInRange<int>(1, 255));
    buf[pos] ^= flip;
    FUZZ_CHECK(!VerifyBatch(buf).has_value());
    CheckBytes(buf);
  }
}

}  // namespace
}  // namespace floe::log

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::log;
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  HeaderCheck headers;
  CheckHeaders(rest, &headers);
  switch (mode) {
    case 0: CheckBytes(rest); break;
    case 1: CheckChecksummed(std::string(rest)); break;
    case 2: CheckRoundTrip(data + 1, size - 1); break;
  }
  return 0;
}
