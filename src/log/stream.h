// A stream: a named, append-only, ordered log of messages on disk.
//
//   auto s = Stream::Open("/data/orders", {});
//   s->AppendAsync(msgs, [](const AppendResult& r) { ... });   // durable when called
//   auto batch = s->Read({.from_seq = 1});                      // up to the frontier
//
// Appends are given seqs at once and marked in doubt (invisible to readers);
// a writer thread writes waiting appends together as one batch and makes them
// durable with one fdatasync (group commit); then each append is resolved to
// committed or, if the write failed, to a hole recorded durably in a new
// segment; only then does the visible frontier pass it and the callback run.
// See docs/format.md for the files and the recovery rules.
//
// Thread safety: every method may be called from any thread. Callbacks run on
// the stream's writer thread (or inline when an append is refused at once):
// keep them short.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "log/batch.h"
#include "log/disk_guard.h"
#include "metrics/metrics.h"

namespace floe::log {

class WriterPool;        // writer_pool.h
class SegmentFileCache;  // segment.h

// When an append is acknowledged.
enum class SyncMode {
  kFdatasync,  // after its bytes are written and fdatasync'd (the default)
  kNone,       // sync=none: after write(); a crash of the machine (not of the
               // process) can lose acknowledged messages and reuse their seqs
};

// What Open does with bytes at the end of the last segment that are neither a
// good batch nor zero padding.
enum class RecoveryPolicy {
  kTruncateTornTail,      // cut them, report what was cut (the default)
  kAbsoluteConsistency,   // refuse to open
};

// Instruments a stream's writer updates (src/metrics), usually shared by
// every stream of a node; any may be null. Owned by the caller; they outlive
// the stream.
struct LogMetrics {
  metrics::Histogram* fdatasync_ns = nullptr;    // each fdatasync of a group commit
  metrics::Histogram* group_messages = nullptr;  // messages per group commit
  metrics::Counter* group_bytes = nullptr;       // batch bytes written
  metrics::Counter* write_errors = nullptr;      // group commits whose write or fdatasync failed
  metrics::Counter* sync_errors = nullptr;       // failed fdatasyncs
};

struct StreamOptions {
  Env* env = nullptr;  // nullptr: Env::Default()
  bool create_if_missing = true;
  SyncMode sync = SyncMode::kFdatasync;
  bool direct_io = true;                     // O_DIRECT writes where the file system allows
  bool preallocate = true;                   // fallocate segments ahead of writes, in steps (1 to 64 MiB)
  uint64_t segment_bytes = 256ull << 20;     // roll when a segment would pass this
  uint64_t segment_age_us = 0;               // roll a segment this old (0: never)
  uint64_t retention_bytes = 0;              // delete oldest segments past this total (0: keep)
  uint64_t retention_age_us = 0;             // delete segments whose newest record is older (0: keep)
  uint32_t max_message_bytes = 8u << 20;     // one record, fixed fields included
  uint64_t max_group_bytes = 8ull << 20;     // bytes per batch written
  uint64_t max_pending_bytes = 64ull << 20;  // appends block while this much waits
  uint64_t index_interval_bytes = 4096;
  // Recently written and read batches kept in memory for readers: direct-I/O
  // writes bypass the page cache, so tailing consumers would otherwise read
  // from the disk.
  uint64_t cache_bytes = 64ull << 20;
  // An idle stream's writer closes its segment file after this long without
  // a write (reopened at the next one), so an idle stream holds one
  // descriptor, its LOCK. 0: never closed.
  uint64_t idle_file_close_us = 10'000'000;
  // Open read handles of segment files, bounded and shared with other
  // streams (segment.h); nullptr: the process's (2048 handles).
  std::shared_ptr<SegmentFileCache> segment_files;
  uint64_t dedup_window_bytes = 64ull << 20; // log tail re-read at open to rebuild dedup
  size_t dedup_per_producer = 4096;
  size_t dedup_max_producers = 100000;
  RecoveryPolicy recovery = RecoveryPolicy::kTruncateTornTail;
  // The data directory's disk guard, shared with the other streams on that
  // disk (disk_guard.h); nullptr: the stream makes its own, without reserve.
  std::shared_ptr<DiskGuard> disk_guard;
  // After a failure it could not record as holes, the stream retries
  // recording them (and so heals by itself) after this backoff, doubling up
  // to the max; meanwhile appends are refused with Unavailable (NoSpace for
  // a full disk).
  uint64_t heal_min_backoff_us = 100'000;
  uint64_t heal_max_backoff_us = 30'000'000;
  // The threads that write and sync (writer_pool.h); nullptr: the process's
  // shared pool. A stream has no thread of its own.
  std::shared_ptr<WriterPool> writer_pool;
  // Receives one line per notable event (recovery cuts, failures); nullptr: stderr.
  std::function<void(const std::string&)> logger;
  const LogMetrics* metrics = nullptr;  // nullptr: none
};

struct AppendResult {
  Status status;           // OK: committed and (by default) durable
  uint64_t first_seq = 0;  // seqs assigned, when any were
  uint32_t count = 0;
  bool hole = false;       // the write failed and [first_seq, +count) are holes
  // Refused (no seqs) because a producer's earlier message is unstored:
  // resend that one first (dedup.h, docs/protocol.md "Order").
  bool out_of_order = false;
};
using AppendCallback = std::function<void(const AppendResult&)>;

// One item of a read: a message, or a gap of `gap_count` hole seqs. The views
// point into a batch that `bytes` keeps alive (no copy per message).
struct Entry {
  enum class Kind : uint8_t { kMessage, kGap };
  Kind kind = Kind::kMessage;
  uint64_t seq = 0;
  uint64_t gap_count = 0;
  int64_t timestamp_us = 0;
  uint64_t producer_id = 0;
  uint64_t producer_seq = 0;
  std::string_view key;
  std::string_view headers;  // encoded; see ParseHeaders
  std::string_view payload;
  std::shared_ptr<const std::string> bytes;  // owns what the views point to
};

struct ReadOptions {
  uint64_t from_seq = 1;
  size_t max_messages = 100;    // entries, gaps included
  size_t max_bytes = 1 << 20;   // payload+key+header bytes; the first message always fits
};

struct ReadResult {
  std::vector<Entry> entries;
  uint64_t next_seq = 0;  // where the next read should start
};

struct RecoveryReport {
  uint64_t segments = 0;
  uint64_t segments_from_index = 0;  // sealed segments taken from their index file, not walked
  uint64_t batches_in_last_segment = 0;
  uint64_t truncated_bytes = 0;   // cut from the tail of the last segment
  uint64_t frontier = 0;
  std::vector<std::string> events;
};

struct StreamStats {
  uint64_t first_seq = 0;    // lowest seq still held (retention moves it)
  uint64_t frontier = 0;     // highest visible seq (first_seq - 1 when empty)
  uint64_t next_seq = 0;     // next seq to assign
  uint64_t bytes = 0;        // on disk, segment headers included
  uint64_t segments = 0;
  uint64_t groups_written = 0;
  uint64_t syncs = 0;
  uint64_t holes = 0;        // seqs resolved as holes since open
  size_t in_doubt = 0;       // append calls assigned but not resolved
  uint64_t heals = 0;        // failures healed by recording their holes later
};

class Stream {
 public:
  static Result<std::unique_ptr<Stream>> Open(const std::string& dir, StreamOptions options);
  // Writes what is pending, then stops the writer.
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Appends messages as consecutive seqs. `done` runs once: when the write is
  // durable (OK), when it failed (error, with hole=true if the seqs became
  // holes), or at once if refused (error, no seqs): Unavailable once the
  // stream is closing (its node gives it up: retry where it goes next), or
  // while it refuses writes after a failure it could not record (it heals
  // by itself: see heal_min_backoff_us); NoSpace while the disk is full;
  // Aborted with out_of_order=true when a producer's earlier message is
  // unstored. Every error is retriable but InvalidArgument.
  //
  // Order: a failed write fails every append queued behind it, and a
  // producer's messages are never stored past one of its unstored messages
  // (dedup.h), so each producer's messages are stored in producer-seq order.
  // Blocks while more than max_pending_bytes wait to be written
  // (backpressure).
  void AppendAsync(std::span<const Message> messages, AppendCallback done);
  AppendResult Append(std::span<const Message> messages);  // waits for the outcome

  // Reads visible entries from options.from_seq. OutOfRange if from_seq is
  // below first_seq (retention deleted it). Never returns an unresolved seq.
  Result<ReadResult> Read(const ReadOptions& options);
  // The first seq whose record was appended at or after `timestamp_us`
  // (frontier+1 when none).
  Result<uint64_t> SeekTime(int64_t timestamp_us);
  // Waits until the frontier reaches `seq`, the stream closes, or the timeout
  // passes; returns whether the frontier reached it.
  bool WaitFor(uint64_t seq, std::chrono::milliseconds timeout);
  // Called on the writer thread with the new frontier whenever it advances.
  void SetFrontierListener(std::function<void(uint64_t)> listener);

  // Producer dedup (see dedup.h): where a (producer id, producer seq) stands.
  struct ProducerLookup {
    enum class State { kNew, kCommitted, kInDoubt, kBelowWindow } state = State::kNew;
    uint64_t seq = 0;
  };
  ProducerLookup LookupProducer(uint64_t producer_id, uint64_t producer_seq) const;
  // Highest producer seq the stream holds for the producer, 0 if none known.
  uint64_t HighestProducerSeq(uint64_t producer_id, uint64_t* seq = nullptr) const;
  // Forgets the producer's unstored messages (dedup.h): its later messages
  // are accepted again. For a producer session opened anew (its client
  // resends in order from there) and for producers with no order to keep.
  void ForgetUnstored(uint64_t producer_id);

  // Deletes whole segments past the retention limits (the writer also does
  // this by itself after each roll and once a second).
  Status EnforceRetention();
  // OK, or why the stream refuses writes (a failed write it could not record,
  // or a full disk).
  Status health() const;
  StreamStats stats() const;  // every counter; walks the segments
  uint64_t first_seq() const;  // as stats().first_seq, cheaply
  uint64_t frontier() const;   // as stats().frontier, cheaply
  const RecoveryReport& recovery_report() const;
  const std::string& dir() const;

  // Test hooks.
  Status TEST_RollSegment();

 private:
  class Impl;
  explicit Stream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace floe::log
