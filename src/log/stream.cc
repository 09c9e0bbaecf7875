#include "log/stream.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "log/dedup.h"
#include "log/format.h"
#include "log/segment.h"
#include "log/slot_table.h"

namespace floe::log {
namespace {

// A segment as the stream knows it. Immutable fields are set before the
// segment is published; the rest are guarded by Impl::mu_.
struct Segment {
  uint64_t id = 0;
  uint64_t base_seq = 0;
  std::string path;
  int64_t created_us = 0;
  std::shared_ptr<File> read_file;  // buffered handle for readers
  // O_DIRECT handle for large cold reads (null where the file system refuses
  // direct I/O): the page cache never saw these bytes, since writes bypass
  // it, and its small readahead makes buffered reads of them slow.
  std::shared_ptr<File> direct_read_file;
  // Guarded by mu_:
  uint64_t end_seq = 0;     // one past the last seq it holds
  uint64_t size = 0;        // end of its last written batch (committed bytes)
  int64_t first_ts = 0;
  int64_t last_ts = 0;
  std::vector<IndexEntry> index;
};

// What a reader needs of a segment, copied under the lock.
struct SegmentView {
  std::shared_ptr<Segment> seg;
  uint64_t start_offset = 0;
  uint64_t size = 0;
  uint64_t end_seq = 0;
};

// Appends waiting to be written together, as one batch.
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

}  // namespace

class Stream::Impl {
 public:
  Impl(std::string dir, StreamOptions options)
      : dir_(std::move(dir)),
        options_(std::move(options)),
        env_(options_.env ? options_.env : Env::Default()),
        slots_(1),
        dedup_(options_.dedup_per_producer, options_.dedup_max_producers) {}

  ~Impl() { Close(); }

  Status Recover();
  void StartWriter() { writer_ = std::thread([this] { WriterLoop(); }); }
  void Close();

  void AppendAsync(std::span<const Message> messages, AppendCallback done);
  Result<ReadResult> Read(const ReadOptions& options);
  Result<uint64_t> SeekTime(int64_t ts);
  bool WaitFor(uint64_t seq, std::chrono::milliseconds timeout);
  Status EnforceRetention();
  Status RollForTest();

  void Log(const std::string& line) {
    if (options_.logger) options_.logger(line);
    else std::fprintf(stderr, "floe log %s: %s\n", dir_.c_str(), line.c_str());
  }

  // Guarded by mu_ unless noted.
  mutable std::mutex mu_;
  std::condition_variable writer_cv_;
  std::condition_variable space_cv_;
  std::condition_variable frontier_cv_;

  const std::string dir_;
  const StreamOptions options_;
  Env* const env_;
  std::unique_ptr<FileLock> lock_;  // set once by Recover
  RecoveryReport report_;           // set once by Recover

  SlotTable slots_;
  DedupIndex dedup_;
  std::deque<Group> pending_;
  uint64_t pending_bytes_ = 0;
  std::vector<std::shared_ptr<Segment>> segments_;  // in seq order; back() is active
  uint64_t first_seq_ = 1;
  int64_t last_ts_ = 0;
  Status failed_;
  bool closing_ = false;
  bool closed_ = false;
  bool writer_active_ = false;   // the writer thread is busy (no need to wake it)
  bool roll_requested_ = false;  // TEST_RollSegment
  uint64_t rolls_done_ = 0;
  Status roll_status_;
  std::function<void(uint64_t)> frontier_listener_;
  StreamStats counters_;  // groups_written, syncs, holes

  // Writer thread only (and Recover, before the writer starts).
  std::unique_ptr<SegmentAppender> appender_;
  uint64_t next_segment_id_ = 1;
  std::thread writer_;

  // Verified batches recently read, shared with readers.
  struct CachedBatch {
    uint64_t segment_id;
    uint64_t offset;
    std::shared_ptr<const std::string> bytes;
  };
  std::mutex cache_mu_;              // after mu_ when both are held
  std::list<CachedBatch> cache_;     // most recent first
  struct CacheKeyHash {
    size_t operator()(const std::pair<uint64_t, uint64_t>& k) const {
      return std::hash<uint64_t>()(k.first * 0x9E3779B97F4A7C15ull ^ k.second);
    }
  };
  std::unordered_map<std::pair<uint64_t, uint64_t>, std::list<CachedBatch>::iterator, CacheKeyHash> cache_index_;
  uint64_t cache_used_ = 0;          // bytes in cache_
  void CacheInsert(uint64_t segment_id, uint64_t offset, std::shared_ptr<const std::string> bytes);

 private:
  void WriterLoop();
  void WriteOneGroup(std::unique_lock<std::mutex>& l);
  Status WriteGroups(std::deque<Group>& groups);
  void FinishGroups(std::deque<Group>& groups, const Status& write_status);
  Status CreateSegment(uint64_t base_seq, std::string_view first_batch);
  void Maintain();
  Result<std::shared_ptr<const std::string>> LoadBatch(const Segment& seg, uint64_t offset);
  Result<BatchHeader> LoadHeader(const Segment& seg, uint64_t offset);
  std::shared_ptr<File> OpenDirectReader(const std::string& path);
  static Result<std::shared_ptr<std::string>> ReadDirect(File& file, uint64_t offset, uint64_t len);
  static constexpr uint32_t kDirectReadBytes = 64 * 1024;  // smaller batches: buffered reads
  bool NextView(uint64_t seq, SegmentView* view);
  Status ScanAll();
};

// ---------------------------------------------------------------------------
// Recovery

Status Stream::Impl::Recover() {
  if (!env_->Exists(dir_)) {
    if (!options_.create_if_missing) return Status::NotFound("stream directory " + dir_ + " does not exist");
    FLOE_RETURN_IF_ERROR(env_->CreateDir(dir_));
  }
  auto lock = env_->Lock(dir_ + "/LOCK");
  if (!lock) return Status(lock.error().code(), "stream " + dir_ + " is open elsewhere: " + std::string(lock.error().message()));
  lock_ = std::move(*lock);

  auto names = env_->ListDir(dir_);
  if (!names) return names.error();
  std::vector<uint64_t> ids;
  for (const auto& n : *names) {
    uint64_t id;
    if (ParseSegmentFileName(n, &id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  if (ids.empty()) {
    report_.events.push_back("new stream");
    FLOE_RETURN_IF_ERROR(CreateSegment(1, {}));
    report_.segments = 1;
    return Status::OK();
  }
  next_segment_id_ = ids.back() + 1;

  // Headers first: a last segment whose header never became durable holds
  // nothing (batches are written only after the header is synced).
  std::vector<SegmentHeader> headers;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string path = dir_ + "/" + SegmentFileName(ids[i]);
    auto file = env_->Open(path, {});
    if (!file) return file.error();
    std::string block(kSegmentHeaderSize, '\0');
    auto n = (*file)->ReadAt(0, block);
    if (!n) return n.error();
    block.resize(*n);
    auto h = DecodeSegmentHeader(block);
    if (!h) {
      auto size = (*file)->Size();
      bool last = i + 1 == ids.size();
      if (last && size && *size <= kSegmentHeaderSize) {
        report_.events.push_back(fmt::format("removed segment {} with a torn header ({})", path, h.error().message()));
        FLOE_RETURN_IF_ERROR(env_->Remove(path));
        ids.pop_back();
        break;
      }
      return Status::Corruption(fmt::format("segment {}: {}", path, h.error().message()));
    }
    if (h->id != ids[i]) return Status::Corruption(fmt::format("segment {} names id {}", path, h->id));
    headers.push_back(*h);
  }
  if (ids.empty()) {
    FLOE_RETURN_IF_ERROR(CreateSegment(1, {}));
    report_.segments = 1;
    return Status::OK();
  }

  for (size_t i = 0; i < headers.size(); ++i) {
    const bool last = i + 1 == headers.size();
    auto seg = std::make_shared<Segment>();
    seg->id = headers[i].id;
    seg->base_seq = headers[i].base_seq;
    seg->created_us = headers[i].created_us;
    seg->path = dir_ + "/" + SegmentFileName(seg->id);
    auto rf = env_->Open(seg->path, {});
    if (!rf) return rf.error();
    seg->read_file = std::move(*rf);
    seg->direct_read_file = OpenDirectReader(seg->path);
    ScanOptions so;
    so.verify_crc = last;
    so.index_interval = options_.index_interval_bytes;
    if (!last) so.stop_seq = headers[i + 1].base_seq;
    if (!last && headers[i + 1].base_seq < seg->base_seq)
      return Status::Corruption(fmt::format("segment {} starts below segment {}", headers[i + 1].id, seg->id));
    auto scan = ScanSegment(seg->read_file.get(), seg->base_seq, so);
    if (!scan) return scan.error();
    if (!last) {
      // A sealed segment must run exactly up to the next one. Bad bytes are
      // allowed only after that point: the tail of a failed write that the
      // next segment superseded with holes.
      if (scan->end_seq != so.stop_seq) {
        return Status::Corruption(fmt::format(
            "segment {} ends at seq {} but the next begins at {}{}", seg->path, scan->end_seq, so.stop_seq,
            scan->bad_tail ? ": " + std::string(scan->tail_error.message()) : ""));
      }
    } else if (scan->bad_tail) {
      auto size = seg->read_file->Size();
      const uint64_t cut = size ? *size - scan->end_offset : 0;
      // Under sync=none several unsynced writes may reach the disk in any
      // order, so a good batch after a bad one proves nothing there.
      if (scan->good_after_bad && options_.sync == SyncMode::kFdatasync)
        return Status::Corruption(fmt::format("segment {}: damaged batch followed by good ones ({}); not a torn tail",
                                              seg->path, scan->tail_error.message()));
      if (options_.recovery == RecoveryPolicy::kAbsoluteConsistency)
        return Status::Corruption(fmt::format("segment {}: torn tail ({})", seg->path, scan->tail_error.message()));
      auto wf = env_->Open(seg->path, {.writable = true});
      if (!wf) return wf.error();
      FLOE_RETURN_IF_ERROR((*wf)->Truncate(scan->end_offset));
      FLOE_RETURN_IF_ERROR((*wf)->Sync());
      report_.truncated_bytes = cut;
      report_.events.push_back(fmt::format("truncated torn tail of {}: {} bytes cut at offset {} ({})", seg->path,
                                           cut, scan->end_offset, scan->tail_error.message()));
    }
    seg->end_seq = scan->end_seq;
    seg->size = scan->end_offset;
    // Empty segments inherit the previous timestamp (see CreateSegment).
    seg->first_ts = scan->batches ? scan->first_ts : last_ts_;
    seg->last_ts = scan->batches ? scan->last_ts : last_ts_;
    seg->index = std::move(scan->index);
    last_ts_ = std::max(last_ts_, scan->last_ts);
    if (last) report_.batches_in_last_segment = scan->batches;
    segments_.push_back(std::move(seg));
  }

  // Resume writing at the end of the last segment.
  Segment& active = *segments_.back();
  auto wf = env_->Open(active.path, {.writable = true, .direct = options_.direct_io});
  if (!wf) return wf.error();
  std::shared_ptr<File> wfile = std::move(*wf);
  // What the scan found may exist only in the page cache (the previous
  // process died between write and fdatasync): make it and the directory
  // durable before the frontier can show it.
  FLOE_RETURN_IF_ERROR(wfile->Sync());
  FLOE_RETURN_IF_ERROR(env_->SyncDir(dir_));
  std::string tail;
  if (wfile->direct()) {
    const uint64_t start = active.size & ~(uint64_t{kDirectIoAlignment} - 1);
    tail.resize(active.size - start);
    auto n = active.read_file->ReadAt(start, tail);
    if (!n) return n.error();
    if (*n != tail.size()) return Status::IOError("short read of segment tail " + active.path);
  }
  appender_ = std::make_unique<SegmentAppender>(wfile, active.size, std::move(tail));

  first_seq_ = segments_.front()->base_seq;
  slots_ = SlotTable(active.end_seq);
  report_.segments = segments_.size();
  report_.frontier = slots_.frontier();

  // Rebuild the producer dedup window from the tail of the log.
  uint64_t from = active.base_seq;
  uint64_t bytes = 0;
  for (auto it = segments_.rbegin(); it != segments_.rend() && bytes < options_.dedup_window_bytes; ++it) {
    from = (*it)->base_seq;
    bytes += (*it)->size;
  }
  while (from <= slots_.frontier()) {
    auto r = Read({.from_seq = from, .max_messages = 4096, .max_bytes = 16 << 20});
    if (!r) return Status(r.error().code(), "rebuilding producer window: " + std::string(r.error().message()));
    for (const Entry& e : r->entries)
      if (e.kind == Entry::Kind::kMessage) dedup_.Record(e.producer_id, e.producer_seq, e.seq);
    if (r->next_seq <= from) break;
    from = r->next_seq;
  }
  return Status::OK();
}

// Creates segment `next_segment_id_` starting at base_seq, optionally with a
// first batch, makes it durable (file and directory entry) and makes it the
// active segment. Writer thread (or Recover).
Status Stream::Impl::CreateSegment(uint64_t base_seq, std::string_view first_batch) {
  const uint64_t id = next_segment_id_;
  const std::string path = dir_ + "/" + SegmentFileName(id);
  auto wf = env_->Open(path, {.create = true, .exclusive = true, .writable = true, .direct = options_.direct_io});
  if (!wf) return wf.error();
  std::shared_ptr<File> wfile = std::move(*wf);
  ++next_segment_id_;  // never reuse an id, even if this attempt fails
  SegmentHeader h{id, base_seq, static_cast<int64_t>(env_->NowMicros())};
  auto appender = std::make_unique<SegmentAppender>(wfile, 0, std::string());
  auto write = [&]() -> Status {
    if (options_.preallocate) FLOE_RETURN_IF_ERROR(wfile->Allocate(0, options_.segment_bytes));
    // The header alone first: a crash can then tear only a file of at most
    // one block, which recovery recognises and removes.
    const std::string header = EncodeSegmentHeader(h);
    std::string_view pieces[1] = {header};
    FLOE_RETURN_IF_ERROR(appender->Append(pieces));
    FLOE_RETURN_IF_ERROR(appender->Sync());
    FLOE_RETURN_IF_ERROR(env_->SyncDir(dir_));
    if (!first_batch.empty()) {
      pieces[0] = first_batch;
      FLOE_RETURN_IF_ERROR(appender->Append(pieces));
      FLOE_RETURN_IF_ERROR(appender->Sync());
    }
    return Status::OK();
  };
  Status ws = write();
  auto rf = ws.ok() ? env_->Open(path, {}) : Result<std::unique_ptr<File>>(Err(ws));
  if (!rf) {
    // Best effort: leave no half-made segment behind to confuse recovery.
    wfile.reset();
    appender.reset();
    if (env_->Remove(path).ok()) (void)env_->SyncDir(dir_);
    return rf.error();
  }

  auto seg = std::make_shared<Segment>();
  seg->id = id;
  seg->base_seq = base_seq;
  seg->path = path;
  seg->created_us = h.created_us;
  seg->read_file = std::move(*rf);
  seg->direct_read_file = OpenDirectReader(path);
  seg->size = appender->end();
  seg->end_seq = base_seq;
  {
    // An empty segment takes the newest timestamp so far, keeping segment
    // timestamps non-decreasing for SeekTime's binary search.
    std::lock_guard l(mu_);
    seg->first_ts = seg->last_ts = last_ts_;
  }
  if (!first_batch.empty()) {
    auto bh = DecodeBatchHeader({first_batch.data(), first_batch.size()});
    seg->end_seq = bh->end_seq();
    seg->first_ts = seg->last_ts = bh->first_ts;
    seg->index.push_back({base_seq, kSegmentHeaderSize, bh->first_ts});
  }
  {
    std::lock_guard l(mu_);
    segments_.push_back(std::move(seg));
  }
  appender_ = std::move(appender);
  return Status::OK();
}

// ---------------------------------------------------------------------------
// Appending

void Stream::Impl::AppendAsync(std::span<const Message> messages, AppendCallback done) {
  size_t bytes = 0;
  for (const Message& m : messages) {
    const size_t size = RecordSize(m);
    if (size > options_.max_message_bytes) {
      done({Status::InvalidArgument(fmt::format("message of {} bytes exceeds the limit of {}", size,
                                                options_.max_message_bytes))});
      return;
    }
    bytes += size;
  }
  if (messages.empty() || messages.size() > UINT32_MAX || bytes + kBatchHeaderSize > kMaxBatchSize) {
    done({Status::InvalidArgument(messages.empty() ? "append of no messages" : "append too large for one batch")});
    return;
  }
  std::unique_lock l(mu_);
  space_cv_.wait(l, [&] { return pending_bytes_ < options_.max_pending_bytes || closing_ || !failed_.ok(); });
  if (closing_) {
    l.unlock();
    done({Status::FailedPrecondition("stream is closed")});
    return;
  }
  if (!failed_.ok()) {
    Status s = failed_;
    l.unlock();
    done({s});
    return;
  }
  // Assign seqs and mark them in doubt: invisible until resolved.
  const uint32_t count = static_cast<uint32_t>(messages.size());
  const uint64_t first = slots_.Assign(count);
  const int64_t ts = last_ts_ = std::max<int64_t>(last_ts_, static_cast<int64_t>(env_->NowMicros()));
  if (pending_.empty() || pending_.back().buf.size() + bytes > options_.max_group_bytes) {
    pending_.emplace_back();
    Group& g = pending_.back();
    g.buf.reserve(std::min<uint64_t>(options_.max_group_bytes, 1 << 20));
    g.buf.resize(kBatchHeaderSize);
    g.base_seq = first;
    g.first_ts = ts;
  }
  Group& g = pending_.back();
  for (uint32_t i = 0; i < count; ++i) {
    AppendRecord(&g.buf, messages[i], static_cast<uint32_t>(first + i - g.base_seq), ts);
    dedup_.Record(messages[i].producer_id, messages[i].producer_seq, first + i);
  }
  g.count += count;
  g.last_ts = ts;
  g.waiters.push_back({first, count, std::move(done)});
  pending_bytes_ += bytes;
  const bool wake = !writer_active_;
  l.unlock();
  if (wake) writer_cv_.notify_one();
}

// The writer thread owns the active segment. writer_active_ is set while it
// works (writing, rolling, maintenance), so appenders know not to wake it.
void Stream::Impl::WriterLoop() {
  std::unique_lock l(mu_);
  while (true) {
    writer_cv_.wait_for(l, std::chrono::seconds(1),
                        [&] { return !pending_.empty() || roll_requested_ || closing_; });
    if (!pending_.empty()) {
      WriteOneGroup(l);
      continue;
    }
    if (roll_requested_) {
      roll_requested_ = false;
      writer_active_ = true;
      const uint64_t next = slots_.next_seq();
      Status fail = failed_;
      l.unlock();
      Status s = fail.ok() ? CreateSegment(next, {}) : fail;
      l.lock();
      writer_active_ = false;
      roll_status_ = s;
      ++rolls_done_;
      frontier_cv_.notify_all();
      continue;
    }
    if (closing_) break;
    writer_active_ = true;
    l.unlock();
    Maintain();
    l.lock();
    writer_active_ = false;
  }
}

// Requires mu_ held by `l` and a group pending; writes the front group and
// resolves its appends. Returns with `l` held.
void Stream::Impl::WriteOneGroup(std::unique_lock<std::mutex>& l) {
  writer_active_ = true;
  // One batch per write and fdatasync: then at most the last batch of a
  // segment can be unsynced at a crash, and a good batch after a bad one
  // proves damage to synced data rather than a torn tail (docs/format.md).
  std::deque<Group> groups;
  groups.push_back(std::move(pending_.front()));
  pending_.pop_front();
  Status fail = failed_;
  l.unlock();
  Status s = fail.ok() ? WriteGroups(groups) : fail;
  FinishGroups(groups, s);
  l.lock();
  writer_active_ = false;
}

Status Stream::Impl::WriteGroups(std::deque<Group>& groups) {
  uint64_t total = 0;
  for (Group& g : groups) {
    FinishBatch(g.buf, BatchType::kData, g.base_seq, g.count, g.first_ts, g.last_ts);
    total += g.buf.size();
  }
  // Roll before a write that would pass the segment size, or by age.
  bool roll = appender_->end() > kSegmentHeaderSize && appender_->end() + total > options_.segment_bytes;
  if (options_.segment_age_us > 0 && appender_->end() > kSegmentHeaderSize) {
    std::lock_guard lg(mu_);
    roll |= static_cast<int64_t>(env_->NowMicros()) - segments_.back()->created_us >
            static_cast<int64_t>(options_.segment_age_us);
  }
  if (roll) {
    if (options_.sync == SyncMode::kNone) FLOE_RETURN_IF_ERROR(appender_->Sync());
    FLOE_RETURN_IF_ERROR(CreateSegment(groups.front().base_seq, {}));
  }
  std::vector<std::string_view> pieces;
  pieces.reserve(groups.size());
  for (Group& g : groups) pieces.emplace_back(g.buf);
  FLOE_RETURN_IF_ERROR(appender_->Append(pieces));
  if (options_.sync == SyncMode::kFdatasync) FLOE_RETURN_IF_ERROR(appender_->Sync());
  return Status::OK();
}

// Resolves every append of `groups`: committed if the write succeeded, else a
// hole made durable in a new segment, else (that failed too) left in doubt
// with the stream refusing further writes.
void Stream::Impl::FinishGroups(std::deque<Group>& groups, const Status& write_status) {
  SlotState state = SlotState::kCommitted;
  Status result = write_status;
  bool already_failed = false;
  if (!write_status.ok()) {
    {
      std::lock_guard l(mu_);
      already_failed = !failed_.ok();
    }
    const uint64_t first = groups.front().base_seq;
    const uint64_t end = groups.back().base_seq + groups.back().count;
    {
      // After a failed write or fdatasync the bytes past the committed end
      // may be in the page cache but never reach the disk (Linux forgets
      // pages whose write-back failed): cut them so that a reopened stream
      // cannot read and serve them.
      uint64_t committed;
      {
        std::lock_guard l(mu_);
        committed = segments_.back()->size;
      }
      (void)appender_->file()->Truncate(committed);
    }
    Status hole = already_failed ? failed_
                                 : CreateSegment(first, EncodeHoleBatch(first, static_cast<uint32_t>(end - first),
                                                                        groups.back().last_ts));
    if (hole.ok()) {
      state = SlotState::kHole;
      Log(fmt::format("write of seqs [{}, {}) failed ({}); recorded them as holes in segment {}", first, end,
                      write_status.ToString(), next_segment_id_ - 1));
    } else {
      state = SlotState::kInDoubt;
      if (!already_failed) {
        Log(fmt::format("write of seqs [{}, {}) failed ({}) and recording the holes failed too ({}); "
                        "the stream refuses writes until reopened",
                        first, end, write_status.ToString(), hole.ToString()));
      }
    }
  }

  std::vector<std::pair<AppendCallback, AppendResult>> done;
  std::function<void(uint64_t)> listener;
  uint64_t frontier;
  {
    std::lock_guard l(mu_);
    Segment& seg = *segments_.back();
    uint64_t offset = appender_->end();
    for (auto it = groups.rbegin(); it != groups.rend(); ++it) offset -= it->buf.size();
    for (Group& g : groups) {
      pending_bytes_ -= g.buf.size() - kBatchHeaderSize;
      if (state == SlotState::kCommitted) {
        // Index the new batch, sparse by bytes.
        if (seg.index.empty() || offset - seg.index.back().offset >= options_.index_interval_bytes)
          seg.index.push_back({g.base_seq, offset, g.first_ts});
        if (seg.end_seq == seg.base_seq) seg.first_ts = g.first_ts;
        seg.last_ts = g.last_ts;
        seg.end_seq = g.base_seq + g.count;
        const uint64_t batch_offset = offset;
        offset += g.buf.size();
        CacheInsert(seg.id, batch_offset, std::make_shared<const std::string>(std::move(g.buf)));
      } else {
        // Not stored: forget the producer seqs so a resend counts as new.
        RecordIterator ri(BatchHeader{0, static_cast<uint32_t>(g.buf.size()), BatchType::kData, g.base_seq, g.count},
                          g.buf);
        RecordView r;
        while (ri.Next(&r).value_or(false)) dedup_.Forget(r.producer_id, r.producer_seq, r.seq);
      }
      for (Group::Waiter& w : g.waiters) {
        if (state != SlotState::kInDoubt) slots_.Resolve(w.first_seq, state);
        done.emplace_back(std::move(w.done),
                          AppendResult{result, w.first_seq, w.count, state == SlotState::kHole});
      }
    }
    if (state == SlotState::kCommitted) {
      seg.size = appender_->end();
      ++counters_.groups_written;
      if (options_.sync == SyncMode::kFdatasync) ++counters_.syncs;
    } else if (state == SlotState::kHole) {
      counters_.holes += groups.back().base_seq + groups.back().count - groups.front().base_seq;
    } else if (failed_.ok()) {
      failed_ = Status::FailedPrecondition("stream refuses writes after a failed write it could not record as holes (" +
                                           write_status.ToString() + "); reopen it");
    }
    frontier = slots_.frontier();
    listener = frontier_listener_;
  }
  space_cv_.notify_all();
  frontier_cv_.notify_all();
  if (listener && state != SlotState::kInDoubt) listener(frontier);
  for (auto& [cb, r] : done) cb(r);
}

// Periodic work when idle: roll by age, retention.
void Stream::Impl::Maintain() {
  if (options_.segment_age_us > 0 && appender_->end() > kSegmentHeaderSize) {
    uint64_t next;
    int64_t created;
    {
      std::lock_guard l(mu_);
      next = slots_.next_seq();
      created = segments_.back()->created_us;
    }
    std::unique_lock l(mu_);
    const bool idle = pending_.empty() && slots_.frontier() + 1 == next && failed_.ok();
    l.unlock();
    if (idle && static_cast<int64_t>(env_->NowMicros()) - created > static_cast<int64_t>(options_.segment_age_us)) {
      Status s = CreateSegment(next, {});
      if (!s.ok()) Log("rolling segment by age failed: " + s.ToString());
    }
  }
  Status s = EnforceRetention();
  if (!s.ok()) Log("retention: " + s.ToString());
}

Status Stream::Impl::RollForTest() {
  // The writer thread owns the active segment: ask it to roll and wait.
  std::unique_lock l(mu_);
  const uint64_t target = rolls_done_ + 1;
  roll_requested_ = true;
  writer_cv_.notify_one();
  frontier_cv_.wait(l, [&] { return rolls_done_ >= target || closing_; });
  return rolls_done_ >= target ? roll_status_ : Status::FailedPrecondition("stream is closed");
}

Status Stream::Impl::EnforceRetention() {
  if (options_.retention_bytes == 0 && options_.retention_age_us == 0) return Status::OK();
  std::vector<std::shared_ptr<Segment>> doomed;
  {
    std::lock_guard l(mu_);
    uint64_t total = 0;
    for (auto& s : segments_) total += s->size;
    const int64_t now = static_cast<int64_t>(env_->NowMicros());
    size_t drop = 0;
    // Never the active segment.
    while (drop + 1 < segments_.size()) {
      const Segment& s = *segments_[drop];
      const bool too_big = options_.retention_bytes > 0 && total > options_.retention_bytes;
      // Empty segments carry the previous segment's newest timestamp.
      const bool too_old = options_.retention_age_us > 0 &&
                           now - s.last_ts > static_cast<int64_t>(options_.retention_age_us);
      if (!too_big && !too_old) break;
      total -= s.size;
      ++drop;
    }
    if (drop == 0) return Status::OK();
    doomed.assign(segments_.begin(), segments_.begin() + static_cast<long>(drop));
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<long>(drop));
    first_seq_ = segments_.front()->base_seq;
  }
  // Oldest first, so a crash midway leaves a contiguous stream.
  for (auto& s : doomed) FLOE_RETURN_IF_ERROR(env_->Remove(s->path));
  return env_->SyncDir(dir_);
}

void Stream::Impl::Close() {
  {
    std::lock_guard l(mu_);
    if (closed_) return;
    closed_ = true;
    closing_ = true;
  }
  writer_cv_.notify_all();
  space_cv_.notify_all();
  frontier_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

// ---------------------------------------------------------------------------
// Reading

Result<BatchHeader> Stream::Impl::LoadHeader(const Segment& seg, uint64_t offset) {
  {
    std::lock_guard l(cache_mu_);
    auto found = cache_index_.find({seg.id, offset});
    if (found != cache_index_.end()) return DecodeBatchHeader(*found->second->bytes);
  }
  char head[kBatchHeaderSize];
  auto n = seg.read_file->ReadAt(offset, {head, sizeof head});
  if (!n) return Err(n.error());
  if (*n != sizeof head) return Err(Status::Corruption(fmt::format("{}: batch at {} truncated", seg.path, offset)));
  auto h = DecodeBatchHeader({head, sizeof head});
  if (!h) return Err(Status::Corruption(fmt::format("{} at offset {}: {}", seg.path, offset, h.error().message())));
  return h;
}

std::shared_ptr<File> Stream::Impl::OpenDirectReader(const std::string& path) {
  if (!options_.direct_io) return nullptr;
  auto f = env_->Open(path, {.direct = true});
  if (!f || !(*f)->direct()) return nullptr;
  return std::move(*f);
}

// Reads [offset, offset+len) through an O_DIRECT handle: the aligned blocks
// around it into an aligned buffer, then the range out of them. A short
// result means the file ends early.
Result<std::shared_ptr<std::string>> Stream::Impl::ReadDirect(File& file, uint64_t offset, uint64_t len) {
  constexpr uint64_t kAlign = kDirectIoAlignment;
  const uint64_t start = offset & ~(kAlign - 1);
  const uint64_t end = (offset + len + kAlign - 1) & ~(kAlign - 1);
  std::unique_ptr<char, decltype(&std::free)> buf(static_cast<char*>(std::aligned_alloc(kAlign, end - start)),
                                                  &std::free);
  if (!buf) return Err(Status::Internal("out of memory reading a batch"));
  auto n = file.ReadAt(start, {buf.get(), static_cast<size_t>(end - start)});
  if (!n) return Err(n.error());
  const uint64_t got = *n > offset - start ? std::min<uint64_t>(*n - (offset - start), len) : 0;
  return std::make_shared<std::string>(buf.get() + (offset - start), got);
}

Result<std::shared_ptr<const std::string>> Stream::Impl::LoadBatch(const Segment& seg, uint64_t offset) {
  {
    std::lock_guard l(cache_mu_);
    auto found = cache_index_.find({seg.id, offset});
    if (found != cache_index_.end()) {
      cache_.splice(cache_.begin(), cache_, found->second);
      return found->second->bytes;
    }
  }
  std::string head(kBatchHeaderSize, '\0');
  auto n = seg.read_file->ReadAt(offset, head);
  if (!n) return Err(n.error());
  if (*n != head.size()) return Err(Status::Corruption(fmt::format("{}: batch at {} truncated", seg.path, offset)));
  auto h = DecodeBatchHeader(head);
  if (!h) return Err(Status::Corruption(fmt::format("{} at offset {}: {}", seg.path, offset, h.error().message())));
  std::shared_ptr<std::string> bytes;
  if (seg.direct_read_file && h->length >= kDirectReadBytes) {
    auto direct = ReadDirect(*seg.direct_read_file, offset, h->length);
    if (!direct) return Err(direct.error());
    bytes = std::move(*direct);
  } else {
    bytes = std::make_shared<std::string>(h->length, '\0');
    n = seg.read_file->ReadAt(offset, *bytes);
    if (!n) return Err(n.error());
  }
  if (bytes->size() != h->length)
    return Err(Status::Corruption(fmt::format("{}: batch at {} truncated", seg.path, offset)));
  auto v = VerifyBatch(*bytes);
  if (!v) return Err(Status::Corruption(fmt::format("{} at offset {}: {}", seg.path, offset, v.error().message())));
  std::shared_ptr<const std::string> out = std::move(bytes);
  CacheInsert(seg.id, offset, out);
  return out;
}

void Stream::Impl::CacheInsert(uint64_t segment_id, uint64_t offset, std::shared_ptr<const std::string> bytes) {
  std::lock_guard l(cache_mu_);
  auto [it, inserted] = cache_index_.try_emplace({segment_id, offset});
  if (!inserted) return;  // a concurrent reader loaded it first
  cache_used_ += bytes->size();
  cache_.push_front({segment_id, offset, std::move(bytes)});
  it->second = cache_.begin();
  // Keep at least the newest batch so a reader of one huge batch reuses it.
  while (cache_used_ > options_.cache_bytes && cache_.size() > 1) {
    cache_used_ -= cache_.back().bytes->size();
    cache_index_.erase({cache_.back().segment_id, cache_.back().offset});
    cache_.pop_back();
  }
}

// Finds the segment holding `seq` and where to start scanning for it.
// Requires mu_.
bool Stream::Impl::NextView(uint64_t seq, SegmentView* view) {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), seq,
                             [](uint64_t s, const std::shared_ptr<Segment>& g) { return s < g->base_seq; });
  if (it == segments_.begin()) return false;
  --it;
  // Skip segments superseded to emptiness (a failed write at their start).
  while ((*it)->end_seq <= seq) {
    if (++it == segments_.end()) return false;
  }
  const Segment& seg = **it;
  view->seg = *it;
  view->size = seg.size;
  view->end_seq = seg.end_seq;
  auto ix = std::upper_bound(seg.index.begin(), seg.index.end(), seq,
                             [](uint64_t s, const IndexEntry& e) { return s < e.seq; });
  view->start_offset = ix == seg.index.begin() ? kSegmentHeaderSize : std::prev(ix)->offset;
  return true;
}

Result<ReadResult> Stream::Impl::Read(const ReadOptions& options) {
  ReadResult out;
  uint64_t seq = options.from_seq;
  out.next_seq = seq;
  uint64_t frontier;
  SegmentView view;
  {
    std::lock_guard l(mu_);
    if (seq < first_seq_)
      return Err(Status::OutOfRange(fmt::format("seq {} is below the stream's first seq {}", seq, first_seq_)));
    frontier = slots_.frontier();
    if (seq > frontier || !NextView(seq, &view)) return out;
  }
  size_t bytes = 0;
  uint64_t offset = view.start_offset;
  while (seq <= frontier && out.entries.size() < options.max_messages) {
    if (offset >= view.size || seq >= view.end_seq) {
      std::lock_guard l(mu_);
      if (!NextView(seq, &view)) break;
      offset = view.start_offset;
      continue;
    }
    // Skip batches below `seq` by their header alone: a damaged batch
    // nobody asked for must not fail the read.
    auto head = LoadHeader(*view.seg, offset);
    if (!head) return Err(head.error());
    if (head->end_seq() <= seq) {
      offset += head->length;
      continue;
    }
    auto batch = LoadBatch(*view.seg, offset);
    if (!batch) return Err(batch.error());
    const std::string& b = **batch;
    auto h = DecodeBatchHeader(b);  // verified by LoadBatch
    offset += h->length;
    if (h->type == BatchType::kHole) {
      Entry e;
      e.kind = Entry::Kind::kGap;
      e.seq = seq;
      e.gap_count = std::min(h->end_seq(), frontier + 1) - seq;
      e.timestamp_us = h->first_ts;
      seq += e.gap_count;
      out.entries.push_back(std::move(e));
      continue;
    }
    RecordIterator it(*h, b);
    RecordView r;
    bool full = false;
    while (it.Next(&r).value_or(false)) {
      if (r.seq < seq) continue;
      if (r.seq > frontier || out.entries.size() >= options.max_messages) { full = true; break; }
      const size_t size = r.payload.size() + r.key.size() + r.headers.size();
      if (!out.entries.empty() && bytes + size > options.max_bytes) { full = true; break; }
      bytes += size;
      Entry e;
      e.seq = r.seq;
      e.timestamp_us = r.timestamp_us;
      e.producer_id = r.producer_id;
      e.producer_seq = r.producer_seq;
      e.key = r.key;
      e.headers = r.headers;
      e.payload = r.payload;
      e.bytes = *batch;
      out.entries.push_back(std::move(e));
      seq = r.seq + 1;
    }
    if (full) break;
  }
  out.next_seq = seq;
  return out;
}

Result<uint64_t> Stream::Impl::SeekTime(int64_t ts) {
  SegmentView view;
  uint64_t frontier;
  {
    std::lock_guard l(mu_);
    frontier = slots_.frontier();
    // Timestamps never decrease along the stream: binary search the segments,
    // then the sparse index, then scan at most an index interval of batches.
    auto seg = std::lower_bound(segments_.begin(), segments_.end(), ts,
                                [](const std::shared_ptr<Segment>& s, int64_t t) { return s->last_ts < t; });
    if (seg == segments_.end()) return frontier + 1;
    const Segment& s = **seg;
    auto ix = std::lower_bound(s.index.begin(), s.index.end(), ts,
                               [](const IndexEntry& e, int64_t t) { return e.first_ts < t; });
    if (ix != s.index.begin()) --ix;
    view.seg = *seg;
    view.size = s.size;
    view.end_seq = s.end_seq;
    view.start_offset = ix == s.index.end() ? kSegmentHeaderSize : ix->offset;
  }
  uint64_t offset = view.start_offset;
  while (offset < view.size) {
    auto head = LoadHeader(*view.seg, offset);
    if (!head) return Err(head.error());
    if (head->base_seq >= view.end_seq) break;
    if (head->last_ts < ts) {
      offset += head->length;
      continue;
    }
    auto batch = LoadBatch(*view.seg, offset);
    if (!batch) return Err(batch.error());
    auto h = DecodeBatchHeader(**batch);
    offset += h->length;
    if (h->type == BatchType::kHole) return std::min(h->base_seq, frontier + 1);
    RecordIterator it(*h, **batch);
    RecordView r;
    while (it.Next(&r).value_or(false))
      if (r.timestamp_us >= ts) return std::min(r.seq, frontier + 1);
  }
  return std::min(view.end_seq, frontier + 1);
}

bool Stream::Impl::WaitFor(uint64_t seq, std::chrono::milliseconds timeout) {
  std::unique_lock l(mu_);
  return frontier_cv_.wait_for(l, timeout, [&] { return slots_.frontier() >= seq || closing_; }) &&
         slots_.frontier() >= seq;
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<Stream>> Stream::Open(const std::string& dir, StreamOptions options) {
  if (options.max_group_bytes + kBatchHeaderSize > kMaxBatchSize || options.max_message_bytes > options.max_group_bytes)
    return Err(Status::InvalidArgument("max_message_bytes <= max_group_bytes < 64 MiB required"));
  auto impl = std::make_unique<Impl>(dir, std::move(options));
  Status s = impl->Recover();
  if (!s.ok()) return Err(s);
  for (const auto& e : impl->report_.events) impl->Log(e);
  impl->StartWriter();
  return std::unique_ptr<Stream>(new Stream(std::move(impl)));
}

Stream::Stream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Stream::~Stream() = default;

void Stream::AppendAsync(std::span<const Message> messages, AppendCallback done) {
  impl_->AppendAsync(messages, std::move(done));
}

AppendResult Stream::Append(std::span<const Message> messages) {
  std::mutex m;
  std::condition_variable cv;
  bool ready = false;
  AppendResult out;
  AppendAsync(messages, [&](const AppendResult& r) {
    std::lock_guard l(m);
    out = r;
    ready = true;
    cv.notify_one();
  });
  std::unique_lock l(m);
  cv.wait(l, [&] { return ready; });
  return out;
}

Result<ReadResult> Stream::Read(const ReadOptions& options) { return impl_->Read(options); }
Result<uint64_t> Stream::SeekTime(int64_t ts) { return impl_->SeekTime(ts); }
bool Stream::WaitFor(uint64_t seq, std::chrono::milliseconds timeout) { return impl_->WaitFor(seq, timeout); }

void Stream::SetFrontierListener(std::function<void(uint64_t)> listener) {
  std::lock_guard l(impl_->mu_);
  impl_->frontier_listener_ = std::move(listener);
}

Stream::ProducerLookup Stream::LookupProducer(uint64_t producer_id, uint64_t producer_seq) const {
  std::lock_guard l(impl_->mu_);
  auto f = impl_->dedup_.Find(producer_id, producer_seq);
  switch (f.found) {
    case DedupIndex::Found::kNew: return {};
    case DedupIndex::Found::kBelowWindow: return {ProducerLookup::State::kBelowWindow, 0};
    case DedupIndex::Found::kKnown:
      return {f.seq <= impl_->slots_.frontier() ? ProducerLookup::State::kCommitted : ProducerLookup::State::kInDoubt,
              f.seq};
  }
  return {};
}

uint64_t Stream::HighestProducerSeq(uint64_t producer_id, uint64_t* seq) const {
  std::lock_guard l(impl_->mu_);
  return impl_->dedup_.Highest(producer_id, seq);
}

Status Stream::EnforceRetention() { return impl_->EnforceRetention(); }

Status Stream::health() const {
  std::lock_guard l(impl_->mu_);
  return impl_->failed_;
}

StreamStats Stream::stats() const {
  std::lock_guard l(impl_->mu_);
  StreamStats s = impl_->counters_;
  s.first_seq = impl_->first_seq_;
  s.frontier = impl_->slots_.frontier();
  s.next_seq = impl_->slots_.next_seq();
  s.segments = impl_->segments_.size();
  s.bytes = 0;
  for (auto& g : impl_->segments_) s.bytes += g->size;
  s.in_doubt = impl_->slots_.in_doubt_ranges();
  return s;
}

uint64_t Stream::first_seq() const {
  std::lock_guard l(impl_->mu_);
  return impl_->first_seq_;
}

uint64_t Stream::frontier() const {
  std::lock_guard l(impl_->mu_);
  return impl_->slots_.frontier();
}

const RecoveryReport& Stream::recovery_report() const { return impl_->report_; }
const std::string& Stream::dir() const { return impl_->dir_; }
Status Stream::TEST_RollSegment() { return impl_->RollForTest(); }

}  // namespace floe::log
