// Encoding and decoding of record batches (docs/format.md). The decoder is
// the parser every byte read from disk goes through; it trusts nothing and is
// fuzzed (tests/fuzz/batch_fuzz.cc).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "log/format.h"

namespace floe::log {

struct Header {
  std::string_view name;
  std::string_view value;
};

// A message handed to the log. Views: the caller keeps the bytes alive for the
// duration of the append call only.
struct Message {
  std::string_view payload;
  std::string_view key;
  std::span<const Header> headers;
  // Headers already encoded (as ParseHeaders reads them); used when `headers`
  // is empty, so a broker can store what a producer sent without re-encoding.
  std::string_view encoded_headers;
  uint64_t producer_id = 0;   // producer session id; 0 = anonymous (no dedup)
  uint64_t producer_seq = 0;
};

struct BatchHeader {
  uint32_t crc = 0;
  uint32_t length = 0;
  BatchType type = BatchType::kData;
  uint64_t base_seq = 0;
  uint32_t count = 0;
  int64_t first_ts = 0;
  int64_t last_ts = 0;
  uint64_t end_seq() const { return base_seq + count; }
};

// A decoded record; views into the batch bytes.
struct RecordView {
  uint64_t seq = 0;
  int64_t timestamp_us = 0;
  uint64_t producer_id = 0;
  uint64_t producer_seq = 0;
  std::string_view key;
  std::string_view headers;  // encoded; see ParseHeaders
  std::string_view payload;
};

// Bytes a message takes as a record.
size_t RecordSize(const Message& m);
// Appends one record to dst.
void AppendRecord(std::string* dst, const Message& m, uint32_t seq_delta, int64_t timestamp_us);
// Fills in the header of a batch whose records start at buf[kBatchHeaderSize]
// (buf.size() is the whole batch) and computes its CRC.
void FinishBatch(std::span<char> buf, BatchType type, uint64_t base_seq, uint32_t count, int64_t first_ts,
                 int64_t last_ts);
// A complete hole batch for [base_seq, base_seq+count).
std::string EncodeHoleBatch(uint64_t base_seq, uint32_t count, int64_t ts);

// Checks magic, version, type and length bounds of the 48 header bytes; no CRC.
Result<BatchHeader> DecodeBatchHeader(std::span<const char> bytes);
// Decodes the header and verifies the CRC and every record of a whole batch
// (bytes.size() must equal the header's length).
Result<BatchHeader> VerifyBatch(std::span<const char> bytes);

// Iterates the records of a verified data batch. A plain value that takes no
// lock: one thread at a time, and the batch bytes must outlive it.
class RecordIterator {
 public:
  RecordIterator(const BatchHeader& header, std::span<const char> batch);
  // Returns false at the end; a malformed record gives Corruption.
  Result<bool> Next(RecordView* out);

 private:
  BatchHeader header_;
  std::span<const char> batch_;
  size_t pos_;
  uint32_t index_ = 0;
};

// Calls fn(name, value) for each encoded header; Corruption if malformed.
Status ParseHeaders(std::string_view encoded, void (*fn)(void*, std::string_view, std::string_view), void* ctx);

}  // namespace floe::log
