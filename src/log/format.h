// On-disk format constants of a stream. The layout, byte by byte, and the
// rules recovery follows are in docs/format.md; keep the two in step.
//
// A stream is a directory:
//   LOCK                     flock'd by the process that has the stream open
//   <id:020>.seg             segment files, id increasing, never reused
// A segment file is a 4096-byte header block followed by record batches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace floe::log {

// Segment header block.
inline constexpr uint32_t kSegmentMagic = 0x47534C46;  // "FLSG"
inline constexpr uint16_t kSegmentVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 4096;     // one direct-I/O block
inline constexpr size_t kSegmentHeaderUsed = 36;       // bytes of it that carry fields
// Offsets within the segment header.
inline constexpr size_t kSegMagicOff = 0;       // u32
inline constexpr size_t kSegVersionOff = 4;     // u16
inline constexpr size_t kSegFlagsOff = 6;       // u16, 0
inline constexpr size_t kSegIdOff = 8;          // u64
inline constexpr size_t kSegBaseSeqOff = 16;    // u64
inline constexpr size_t kSegCreatedOff = 24;    // i64 microseconds since the epoch
inline constexpr size_t kSegCrcOff = 32;        // u32 CRC32C of bytes [0, 32)

// Record batch header.
inline constexpr uint32_t kBatchMagic = 0x42534C46;  // "FLSB"
inline constexpr uint8_t kBatchVersion = 1;
inline constexpr size_t kBatchHeaderSize = 48;
inline constexpr size_t kBatchMagicOff = 0;     // u32
inline constexpr size_t kBatchCrcOff = 4;       // u32 CRC32C of bytes [8, length)
inline constexpr size_t kBatchLengthOff = 8;    // u32 whole batch, header included
inline constexpr size_t kBatchVersionOff = 12;  // u8
inline constexpr size_t kBatchTypeOff = 13;     // u8 BatchType
inline constexpr size_t kBatchFlagsOff = 14;    // u16, 0
inline constexpr size_t kBatchBaseSeqOff = 16;  // u64 first seq covered
inline constexpr size_t kBatchCountOff = 24;    // u32 seqs covered
inline constexpr size_t kBatchReservedOff = 28; // u32, 0
inline constexpr size_t kBatchFirstTsOff = 32;  // i64 microseconds
inline constexpr size_t kBatchLastTsOff = 40;   // i64 microseconds

enum class BatchType : uint8_t {
  kData = 1,  // `count` records, one per seq, in seq order
  kHole = 2,  // no records: seqs [base, base+count) are holes forever
};

// Record: fixed fields, then key, headers and payload.
//   u32 length        bytes after this field
//   u32 seq_delta     seq - batch base_seq
//   i64 timestamp_us  append time, non-decreasing within a stream
//   u64 producer_id   producer session id, 0 = anonymous
//   u64 producer_seq  the producer's own number for the message
//   u32 key_len, key bytes
//   u32 headers_len, headers bytes (repeated: u16 name_len, name, u32 value_len, value)
//   u32 payload_len, payload bytes
inline constexpr size_t kRecordFixedSize = 4 + 4 + 8 + 8 + 8 + 4 + 4 + 4;  // 44

// Largest batch the log writes or accepts when reading. A message must fit in
// one batch.
inline constexpr uint32_t kMaxBatchSize = 64u << 20;

}  // namespace floe::log
