// One segment file: its header block, the appender that frames batches onto
// it (aligned for direct I/O), and the scan recovery runs over it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "log/batch.h"

namespace floe::log {

struct SegmentHeader {
  uint64_t id = 0;
  uint64_t base_seq = 0;
  int64_t created_us = 0;
};

std::string SegmentFileName(uint64_t id);                // "<id:020>.seg"
bool ParseSegmentFileName(const std::string& name, uint64_t* id);
std::string EncodeSegmentHeader(const SegmentHeader& h);  // kSegmentHeaderSize bytes
Result<SegmentHeader> DecodeSegmentHeader(std::span<const char> block);

// Sparse index entry: the batch at `offset` starts with seq `seq`; its
// records were appended no earlier than `first_ts`.
struct IndexEntry {
  uint64_t seq;
  uint64_t offset;
  int64_t first_ts;
};

// Appends bytes at the end of a segment file. With a direct (O_DIRECT) file it
// rewrites the last partial block with the new bytes after it, padded with
// zeros to the block size; the rewritten prefix is byte-identical to what is
// already there, so a torn rewrite cannot damage acknowledged bytes.
// Owned and called by the stream's writer thread only.
class SegmentAppender {
 public:
  // `end` is where the segment's valid bytes end; `tail` must hold the bytes
  // of the file in [AlignDown(end), end) when the file is direct.
  SegmentAppender(std::shared_ptr<File> file, uint64_t end, std::string tail);
  ~SegmentAppender();
  SegmentAppender(const SegmentAppender&) = delete;
  SegmentAppender& operator=(const SegmentAppender&) = delete;

  // Writes the pieces contiguously at end(); on success end() grows by their
  // total size. On failure the file's contents past end() are unspecified.
  Status Append(std::span<const std::string_view> pieces);
  Status Sync() { return file_->Sync(); }
  uint64_t end() const { return end_; }
  File* file() const { return file_.get(); }

 private:
  std::shared_ptr<File> file_;
  uint64_t end_;
  std::string tail_;        // direct only: bytes of the last partial block
  char* buf_ = nullptr;     // direct only: aligned staging buffer
  size_t buf_cap_ = 0;
};

// What a scan of a segment found.
struct SegmentScan {
  uint64_t end_offset = kSegmentHeaderSize;  // end of the last good batch
  uint64_t end_seq = 0;                       // one past the last seq covered
  int64_t first_ts = 0, last_ts = 0;
  uint64_t batches = 0;
  std::vector<IndexEntry> index;
  // Set when the scan stopped at bytes that are neither a good batch nor zero
  // padding: where, and why.
  bool bad_tail = false;
  Status tail_error;
  // Set when a good batch was found after the bad bytes: damage in the middle
  // of the segment, not a torn tail.
  bool good_after_bad = false;
};

struct ScanOptions {
  bool verify_crc = true;       // false: walk headers only (sealed segments)
  uint64_t stop_seq = UINT64_MAX;  // stop before a batch that starts at or above this seq
  uint64_t index_interval = 4096;
};

// Walks the batches of a segment whose header says `base_seq`.
Result<SegmentScan> ScanSegment(File* file, uint64_t base_seq, const ScanOptions& options);

}  // namespace floe::log
