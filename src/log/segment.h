// One segment file: its header block, the appender that frames batches onto
// it (aligned for direct I/O), the scan recovery runs over it, and the
// bounded cache of read handles every stream of a process shares.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/env.h"
#include "base/mutex.h"
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
// "<20 decimal digits><suffix>" -> the number (false past 2^64 - 1).
bool ParseNumberedFileName(const std::string& name, std::string_view suffix, uint64_t* id);
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
  File* file() const { return file_.get(); }  // null while let go
  // An idle stream's writer lets its descriptor go (end and tail kept, so
  // nothing is read back) and takes a new handle of the same file before
  // the next write. Every write it made was synced first (the caller's).
  void LetGoOfFile() { file_.reset(); }
  void TakeFile(std::shared_ptr<File> file) { file_ = std::move(file); }

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

// Open read handles of segment files, shared by every stream that uses it,
// at most `capacity` of them, least recently used closed first. A node
// serving thousands of streams of many segments each would otherwise hold
// two descriptors per segment for the segment's life; with the cache it
// holds O(streams) (each stream's lock and writer) plus this bound.
//
// A handle handed out stays open for as long as the caller holds it, evicted
// or not: eviction only drops the cache's reference, so a read in flight is
// never cut, and the open descriptors are at most the capacity plus the
// reads in flight.
//
// Keys come from NewKeys() and are never reused in the process, so a key
// can never find another file's handle. Whoever took a key erases it when
// the file goes (the segment's destructor).
//
// Thread safety: every method may be called from any thread; mu_ guards the
// members below it. No other lock is taken under mu_, and no file is opened
// or closed under it.
class SegmentFileCache {
 public:
  static constexpr size_t kDefaultCapacity = 2048;

  explicit SegmentFileCache(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}
  SegmentFileCache(const SegmentFileCache&) = delete;
  SegmentFileCache& operator=(const SegmentFileCache&) = delete;

  // The process's cache (kDefaultCapacity), for streams given none.
  static std::shared_ptr<SegmentFileCache> Shared();
  // `n` consecutive keys no one else has or will have.
  static uint64_t NewKeys(uint64_t n);

  using Opener = std::function<Result<std::shared_ptr<File>>()>;
  // The handle cached under `key`, made the most recently used; or, on a
  // miss, the one `open` returns, cached (the least recently used past the
  // capacity closed). `open` runs without the cache's lock; if it fails
  // for want of descriptors, the cache closes half of what it holds and
  // tries once more. A null handle from `open` is returned, not cached.
  Result<std::shared_ptr<File>> Get(uint64_t key, const Opener& open) EXCLUDES(mu_);
  // The handle cached under `key` (made the most recent), or null.
  std::shared_ptr<File> Find(uint64_t key) EXCLUDES(mu_);
  // Drops the handle under `key`, if any (closed once no caller holds it).
  void Erase(uint64_t key) EXCLUDES(mu_);
  // Closes the least recently used past `capacity`; later inserts keep to it.
  void SetCapacity(size_t capacity) EXCLUDES(mu_);
  size_t capacity() const EXCLUDES(mu_);
  size_t size() const EXCLUDES(mu_);  // handles held

 private:
  struct Entry {
    uint64_t key;
    std::shared_ptr<File> file;
  };
  // Unlinks entries past `keep` into `out`, for the caller to close after
  // letting go of mu_.
  void TrimLocked(size_t keep, std::vector<std::shared_ptr<File>>* out) REQUIRES(mu_);

  mutable Mutex mu_;
  size_t capacity_ GUARDED_BY(mu_);
  std::list<Entry> lru_ GUARDED_BY(mu_);  // most recent first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> index_ GUARDED_BY(mu_);  // into lru_
};

// True when `s` is a failure of open() (or the like) for want of file
// descriptors: EMFILE, the process's limit, or ENFILE, the system's. It
// recognises the strerror text that Status::FromErrno puts in the message,
// the only trace of errno a Status keeps.
bool IsOutOfDescriptors(const Status& s);
// `s`, an IsOutOfDescriptors failure, said as what it is: Unavailable (the
// call may succeed once descriptors are freed), "too many open files (limit
// N)", N the process's soft RLIMIT_NOFILE, then `context` and s's message
// (only s's message when s says that already).
Status OutOfDescriptors(const Status& s, std::string_view context);

}  // namespace floe::log
