// Internals of the stream (stream.h is its public header), shared by the
// files that implement it:
//   stream.cc       the public methods, Open and Close
//   recovery.cc     opening a stream: segments, the torn tail, the dedup window
//   writer.cc       appends, the writer's slices, group commit, healing
//   active_segment.cc  new segments, rolls, preallocation, the idle writer file
//   writer_pool.cc  the threads every stream's writer runs on
//   reader.cc       reads, seeks by seq and by time, loading batches
//   retention.cc    deleting the oldest segments
//   batch_cache.cc  verified batches kept for readers (batch_cache.h)
// The file format and recovery rules are in docs/format.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/logging.h"
#include "base/mutex.h"
#include "base/status.h"
#include "log/batch.h"
#include "log/batch_cache.h"
#include "log/dedup.h"
#include "log/disk_guard.h"
#include "log/sealed_index.h"
#include "log/segment.h"
#include "log/slot_table.h"
#include "log/stream.h"
#include "log/writer_pool.h"

namespace floe::log {
namespace internal {

// A segment as the stream knows it, shared (by shared_ptr) between the
// stream's list of segments and readers still reading it after retention
// dropped it. The fields above the first line are set before the segment is
// published in Stream::Impl::segments_ and never change (no_direct aside,
// an atomic any reader may set); the fields below
// the second line are guarded by Stream::Impl::mu_ and written only by the
// writer thread (or by Recover and CreateSegment before the segment is
// published). They carry no GUARDED_BY: the annotation cannot name the
// mutex of the Impl that holds the segment, so these are checked by review
// (and TSan), not by clang.
//
// Read handles: a segment holds no descriptor of its own. Readers get one
// from `files` (Stream::Impl::ReadHandle), which opens it on demand and
// closes it when it has gone unused longest among the cache's bound, so an
// idle segment costs no descriptor. Once retention has chosen the segment
// it sets `removed` and, before it unlinks the file, pins an open handle
// here for the readers still holding the segment; from then on readers use
// only that handle, never the path.
struct Segment {
  explicit Segment(std::shared_ptr<SegmentFileCache> cache)
      : files(std::move(cache)), file_key(SegmentFileCache::NewKeys(2)) {}
  ~Segment() {
    files->Erase(BufferedKey());
    files->Erase(DirectKey());
  }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  uint64_t id = 0;
  uint64_t base_seq = 0;
  std::string path;
  int64_t created_us = 0;
  const std::shared_ptr<SegmentFileCache> files;  // outlives the segment
  // The cache's keys of its buffered handle and of its O_DIRECT handle (for
  // large cold reads: the page cache never saw these bytes, since writes
  // bypass it, and its small readahead makes buffered reads of them slow).
  const uint64_t file_key;
  uint64_t BufferedKey() const { return file_key; }
  uint64_t DirectKey() const { return file_key + 1; }
  // Set when the file system refused O_DIRECT for it: readers stop asking.
  std::atomic<bool> no_direct{false};
  // ---- guarded by file_mu (taken after Stream::Impl::retention_mu_, never
  // with mu_; the cache's lock may be taken under it):
  Mutex file_mu;
  bool removed GUARDED_BY(file_mu) = false;            // retention unlinks (or unlinked) the file
  std::shared_ptr<File> pinned GUARDED_BY(file_mu);    // removed: the buffered handle readers use
  // ---- guarded by Stream::Impl::mu_:
  uint64_t end_seq = 0;     // one past the last seq it holds
  uint64_t size = 0;        // end of its last written batch (committed bytes)
  int64_t first_ts = 0;
  int64_t last_ts = 0;
  std::vector<IndexEntry> index;
};

// What a reader needs of a segment, copied under Stream::Impl::mu_; owned by
// the one thread that reads with it.
struct SegmentView {
  std::shared_ptr<Segment> seg;
  uint64_t start_offset = 0;
  uint64_t size = 0;
  uint64_t end_seq = 0;
};

// Appends waiting to be written together, as one batch. While it sits in
// Stream::Impl::pending_ it is guarded by mu_ and appenders add to it; once
// the writer thread takes it out, it belongs to the writer thread alone.
struct Group {
  std::string buf;  // kBatchHeaderSize reserved, then records
  uint64_t base_seq = 0;
  uint32_t count = 0;
  int64_t first_ts = 0;
  int64_t last_ts = 0;
  struct Waiter {
    uint64_t first_seq;
    uint32_t count;
    AppendCallback done;
  };
  std::vector<Waiter> waiters;
};

}  // namespace internal

// The stream behind Stream's public methods.
//
// Threads: Open runs Recover on its own thread before anything else can see
// the stream; then the writer owns the active segment and does every write,
// sync, roll and resolution. The writer is not a thread of its own: it is
// the stream's slices (RunSlice) on a WriterPool shared by every stream of
// the process, one slice at a time, so "the writer thread" below means
// whichever pool thread runs the current slice. Every other method may be
// called from any thread. Marked below: which thread may call each method,
// and which lock guards each member (GUARDED_BY, checked by the clang
// thread-safety build). Recover takes mu_ around what it touches of the
// guarded members although no other thread can see them yet: it costs
// nothing there and keeps the analysis whole.
//
// Lock order: retention_mu_, then mu_, then the cache's own lock.
class Stream::Impl : public WriterPool::Job {
 public:
  using Segment = internal::Segment;
  using SegmentView = internal::SegmentView;
  using Group = internal::Group;

  Impl(std::string dir, StreamOptions options)
      : dir_(std::move(dir)),
        options_(std::move(options)),
        env_(options_.env ? options_.env : Env::Default()),
        slots_(1),
        dedup_(options_.dedup_per_producer, options_.dedup_max_producers),
        cache_(options_.cache_bytes) {}
  ~Impl() override { Close(); }

  // Open's thread, once, before StartWriter (recovery.cc).
  Status Recover() EXCLUDES(mu_);
  // Open's thread, once, after Recover: the writer starts taking appends.
  void StartWriter() {
    pool_ = options_.writer_pool ? options_.writer_pool : WriterPool::Shared();
    writer_started_ = true;
  }
  // Any thread; idempotent. Stops the writer after it wrote what is pending.
  void Close() EXCLUDES(mu_);

  // Any thread (writer.cc).
  void AppendAsync(std::span<const Message> messages, AppendCallback done) EXCLUDES(mu_);
  Status RollForTest() EXCLUDES(mu_);
  // Any thread (reader.cc).
  Result<ReadResult> Read(const ReadOptions& options) EXCLUDES(mu_);
  Result<uint64_t> SeekTime(int64_t ts) EXCLUDES(mu_);
  bool WaitFor(uint64_t seq, std::chrono::milliseconds timeout) EXCLUDES(mu_);
  // Any thread, the writer's Maintain included (retention.cc).
  Status EnforceRetention() EXCLUDES(retention_mu_, mu_);

  // Any thread.
  // A line about this stream: to options_.logger if set, else the node's
  // log (base/log.h) at `level` with event `event`.
  void Log(const std::string& line, std::string_view event = "stream.error", logging::Level level = logging::Level::kWarn);

  // Immutable.
  const std::string dir_;
  const StreamOptions options_;
  Env* const env_;
  // Set once by Recover, then read-only.
  std::unique_ptr<FileLock> lock_;
  RecoveryReport report_;

  // Held by EnforceRetention from choosing segments to removing their files
  // (it guards no member: it keeps two removals in order); taken before mu_.
  Mutex retention_mu_ ACQUIRED_BEFORE(mu_);

  mutable Mutex mu_;   // after retention_mu_, before cache_'s lock, when held together
  CondVar space_cv_;     // wakes blocked appenders: pending_bytes_, closing_, failed_
  CondVar frontier_cv_;  // wakes WaitFor, RollForTest and Close: the frontier, rolls_done_, writer_done_
  SlotTable slots_ GUARDED_BY(mu_);
  DedupIndex dedup_ GUARDED_BY(mu_);
  std::deque<Group> pending_ GUARDED_BY(mu_);
  uint64_t pending_bytes_ GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<Segment>> segments_ GUARDED_BY(mu_);  // in seq order; back() is active
  uint64_t first_seq_ GUARDED_BY(mu_) = 1;
  int64_t last_ts_ GUARDED_BY(mu_) = 0;
  // Not OK once a failed write could not be recorded as holes: the stream
  // refuses writes until Heal records them (Unavailable, or NoSpace when the
  // disk is full). Written only by the writer thread.
  Status failed_ GUARDED_BY(mu_);
  int64_t heal_at_us_ GUARDED_BY(mu_) = 0;  // when the writer next tries Heal
  int heal_failures_ GUARDED_BY(mu_) = 0;
  bool closing_ GUARDED_BY(mu_) = false;
  bool closed_ GUARDED_BY(mu_) = false;
  // The writer is scheduled on the pool, or running: an append need not
  // schedule it again. Cleared by the slice that finds nothing more to do.
  bool writer_scheduled_ GUARDED_BY(mu_) = false;
  bool writer_done_ GUARDED_BY(mu_) = false;     // the last slice ran: Close may go on
  bool maintain_pending_ GUARDED_BY(mu_) = false;  // written since the last Maintain
  int64_t last_maintain_us_ GUARDED_BY(mu_) = 0;
  bool roll_requested_ GUARDED_BY(mu_) = false;  // TEST_RollSegment
  uint64_t rolls_done_ GUARDED_BY(mu_) = 0;
  Status roll_status_ GUARDED_BY(mu_);
  std::function<void(uint64_t)> frontier_listener_ GUARDED_BY(mu_);
  StreamStats counters_ GUARDED_BY(mu_);  // groups_written, syncs, holes

  // Writer thread only (and Recover, before the writer starts).
  std::unique_ptr<SegmentAppender> appender_;
  // Where the active segment's reserved blocks end (Preallocate); 0 after
  // recovery (the first write reserves from the start, a no-op where blocks
  // are already there).
  uint64_t allocated_ = 0;
  // When the writer last wrote (µs of env_); options_.idle_file_close_us
  // later it closes its descriptor, so an idle stream holds only LOCK.
  int64_t last_write_us_ = 0;
  static constexpr uint64_t kMinPreallocation = 1 << 20;
  static constexpr uint64_t kMaxPreallocation = 64 << 20;
  uint64_t next_segment_id_ = 1;
  // Segment files a failed CreateSegment could not remove: Heal removes them
  // before it records holes (recovery must never meet two segments with one
  // base seq).
  std::vector<std::string> abandoned_;
  // Set by StartWriter before any append can come; read-only after.
  std::shared_ptr<WriterPool> pool_;
  bool writer_started_ = false;

  // Its own lock; any thread.
  BatchCache cache_;
  // Set by Recover (options_.disk_guard, or one of the stream's own); its own lock.
  std::shared_ptr<DiskGuard> guard_;

 private:
  // Writer thread only (writer.cc); CreateSegment also from Recover.
  // One slice of the writer: a group written, a roll, the close, or
  // maintenance; true if more is waiting (WriterPool::Job).
  bool RunSlice() override EXCLUDES(mu_);
  // When the writer should next run Maintain on its own (µs from now), or
  // -1: never, until it writes again. An idle healthy stream arms no timer.
  int64_t MaintenanceDelayUs() REQUIRES(mu_);
  // Any thread, mu_ held: the writer has work; true if the caller must
  // Schedule it on the pool (after letting go of mu_).
  bool NeedsWake() REQUIRES(mu_) {
    if (writer_scheduled_) return false;
    writer_scheduled_ = true;
    return true;
  }
  // Takes the front group of pending_ (there must be one) and writes and
  // resolves it, letting go of mu_ meanwhile; returns with mu_ held again.
  void WriteOneGroup() REQUIRES(mu_);
  Status WriteGroups(std::deque<Group>& groups) EXCLUDES(mu_);
  void FinishGroups(std::deque<Group>& groups, const Status& write_status) EXCLUDES(mu_);
  Status Roll(uint64_t base_seq) EXCLUDES(mu_);
  Status Preallocate(uint64_t end) EXCLUDES(mu_);
  // The writer's handle of the active segment, opened again if an idle
  // period let it go (LetGoOfIdleFile).
  Status EnsureWriterFile() EXCLUDES(mu_);
  void LetGoOfIdleFile() EXCLUDES(mu_);
  uint64_t PreallocationStep(uint64_t end) const;
  Status CreateSegment(uint64_t base_seq, std::string_view first_batch, bool preallocate = true) EXCLUDES(mu_);
  // A hole segment: preallocated if the disk allows, else without (a full
  // disk may still hold a few KiB, and the holes must be recorded).
  Status CreateHoleSegment(uint64_t first, uint64_t end, int64_t ts, bool* preallocated = nullptr) EXCLUDES(mu_);
  // Under mu_: marks every producer seq of `groups` unstored (dedup.h).
  void MarkUnstored(const std::deque<Group>& groups) REQUIRES(mu_);
  bool OutOfOrderLocked(std::span<const Message> messages, Status* why) REQUIRES(mu_);
  // A write failed with NoSpace: tells the guard what room would do.
  void ReportNoSpace(const Status& s, uint64_t group_bytes) EXCLUDES(mu_);
  // Writer thread, failed_ set: cuts the active segment back to its
  // committed end (durably), removes abandoned segments, records every
  // in-doubt seq as a hole in a new segment, and clears failed_.
  Status Heal() EXCLUDES(mu_);
  void ScheduleHeal(const Status& why) REQUIRES(mu_);
  void Maintain() EXCLUDES(mu_);

  // Recover's steps (recovery.cc).
  Status RecoverSteps() EXCLUDES(mu_);  // Recover, before its errors are said as what they are
  Result<std::vector<SegmentHeader>> LoadSegmentHeaders();
  Status RecoverSegment(const SegmentHeader& header, const SegmentHeader* next) EXCLUDES(mu_);
  // The sealed segment's index file (log/sealed_index.h) if it is whole and
  // agrees with `header`, `next` and the file's size; nullopt otherwise.
  std::optional<SealedIndex> LoadSealedIndex(const SegmentHeader& header, const SegmentHeader& next);
  // Writes `seg`'s index file (sync=fdatasync only: under sync=none a sealed
  // segment's bytes may not be on disk); a failure is logged, not returned
  // (recovery then walks the segment). Without mu_.
  void WriteSealedIndex(const Segment& seg) EXCLUDES(mu_);
  Status ResumeWriting() EXCLUDES(mu_);
  Status RebuildDedup() EXCLUDES(mu_);

  // Any thread (reader.cc).
  // A segment for readers, its read handles to be opened on demand (it opens
  // no file); the other fields are the caller's to fill in.
  Result<std::shared_ptr<Segment>> OpenSegmentForReading(const SegmentHeader& header);
  // A read handle on seg's file from the segment file cache, opened if it
  // holds none: buffered, or O_DIRECT (null where direct I/O is off or
  // refused). Keep it no longer than the read that needs it.
  Result<std::shared_ptr<File>> ReadHandle(Segment& seg, bool direct) EXCLUDES(mu_);
  // Retention, before unlinking seg's file: readers holding seg keep a handle.
  void PinForRemoval(Segment& seg, bool readers) EXCLUDES(mu_);
  static Result<std::shared_ptr<std::string>> ReadDirect(File& file, uint64_t offset, uint64_t len);
  static constexpr uint32_t kDirectReadBytes = 64 * 1024;  // smaller batches: buffered reads
  Result<BatchHeader> ReadBatchHeader(Segment& seg, uint64_t offset);
  Result<BatchHeader> LoadHeader(Segment& seg, uint64_t offset);
  Result<std::shared_ptr<const std::string>> LoadBatch(Segment& seg, uint64_t offset);
  bool NextView(uint64_t seq, SegmentView* view) REQUIRES(mu_);
};

}  // namespace floe::log
