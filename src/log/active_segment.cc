// The writer's active segment: creating a segment (its header durable
// before any batch), rolling, hole segments, reserving blocks ahead of the
// writes in steps, and the writer's file handle let go while idle. Every
// function here runs on the writer (a slice on the pool, writer_pool.h) or
// in Recover, without mu_ unless it says so (docs/format.md).
#include <algorithm>

#include <fmt/format.h>

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

// Writer thread, without mu_. Seals the active segment, whose every batch is
// resolved, and starts a new one at base_seq. Under sync=none the sealed
// segment is fdatasync'd first: a power loss may then cut only the active
// segment, never leave a sealed one ending short of the next one's base seq
// (which recovery refuses as corruption).
Status Stream::Impl::Roll(uint64_t base_seq) {
  if (options_.sync == SyncMode::kNone && appender_->file()) FLOE_RETURN_IF_ERROR(appender_->Sync());
  return CreateSegment(base_seq, {});
}

// Writer thread (or Recover), without mu_. Creates segment next_segment_id_
// starting at base_seq, optionally with a first batch, makes it durable (file
// and directory entry) and makes it the active segment.
Status Stream::Impl::CreateSegment(uint64_t base_seq, std::string_view first_batch, bool preallocate) {
  const uint64_t id = next_segment_id_;
  const std::string path = dir_ + "/" + SegmentFileName(id);
  auto wf = env_->Open(path, {.create = true, .exclusive = true, .writable = true, .direct = options_.direct_io});
  if (!wf) return wf.error();
  std::shared_ptr<File> wfile = std::move(*wf);
  ++next_segment_id_;  // never reuse an id, even if this attempt fails
  SegmentHeader h{id, base_seq, static_cast<int64_t>(env_->NowMicros())};
  auto appender = std::make_unique<SegmentAppender>(wfile, 0, std::string());
  const uint64_t allocate = options_.preallocate && preallocate ? PreallocationStep(0) : 0;
  auto write = [&]() -> Status {
    if (allocate > 0) FLOE_RETURN_IF_ERROR(wfile->Allocate(0, allocate));
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
  auto opened = ws.ok() ? OpenSegmentForReading(h) : Result<std::shared_ptr<Segment>>(Err(ws));
  if (!opened) {
    // Best effort: leave no half-made segment behind to confuse recovery.
    wfile.reset();
    appender.reset();
    Status removed = env_->Remove(path);
    if (removed.ok()) removed = env_->SyncDir(dir_);
    if (!removed.ok() && env_->Exists(path)) abandoned_.push_back(path);
    return opened.error();
  }

  std::shared_ptr<Segment> seg = std::move(*opened);
  seg->size = appender->end();
  seg->end_seq = base_seq;
  {
    // An empty segment takes the newest timestamp so far, keeping segment
    // timestamps non-decreasing for SeekTime's binary search.
    MutexLock l(&mu_);
    seg->first_ts = seg->last_ts = last_ts_;
  }
  if (!first_batch.empty()) {
    auto bh = DecodeBatchHeader({first_batch.data(), first_batch.size()});
    seg->end_seq = bh->end_seq();
    seg->first_ts = seg->last_ts = bh->first_ts;
    seg->index.push_back({base_seq, kSegmentHeaderSize, bh->first_ts});
  }
  std::shared_ptr<Segment> sealed;  // the segment this one follows, sealed now
  {
    MutexLock l(&mu_);
    if (!segments_.empty()) sealed = segments_.back();
    segments_.push_back(std::move(seg));
  }
  appender_ = std::move(appender);
  if (sealed) WriteSealedIndex(*sealed);
  allocated_ = allocate;
  return Status::OK();
}

uint64_t Stream::Impl::PreallocationStep(uint64_t end) const {
  return std::min<uint64_t>(std::clamp<uint64_t>(end, kMinPreallocation, kMaxPreallocation), options_.segment_bytes);
}

// Writer thread, without mu_. Reserves the active segment's blocks ahead of
// a write to `end` (fallocate, the file's size kept), a step at a time: as
// much again as the segment holds, 1 MiB to 64 MiB. So a stream reserves
// space in proportion to what it holds, and a busy one still allocates only
// every few MiB, not in each fdatasync.
Status Stream::Impl::Preallocate(uint64_t end) {
  if (!options_.preallocate || end <= allocated_ || allocated_ >= options_.segment_bytes) return Status::OK();
  const uint64_t to = std::min(std::max(end, appender_->end() + PreallocationStep(appender_->end())),
                               std::max(end, options_.segment_bytes));
  FLOE_RETURN_IF_ERROR(appender_->file()->Allocate(allocated_, to - allocated_));
  allocated_ = to;
  return Status::OK();
}

// Writer thread, without mu_.
Status Stream::Impl::CreateHoleSegment(uint64_t first, uint64_t end, int64_t ts, bool* preallocated) {
  const std::string batch = EncodeHoleBatch(first, static_cast<uint32_t>(end - first), ts);
  Status s = CreateSegment(first, batch);
  if (preallocated) *preallocated = s.ok() && options_.preallocate;
  if (s.code() == ErrorCode::kNoSpace && options_.preallocate) s = CreateSegment(first, batch, /*preallocate=*/false);
  return s;
}

Status Stream::Impl::EnsureWriterFile() {
  if (appender_->file()) return Status::OK();
  std::string path;
  {
    MutexLock l(&mu_);
    path = segments_.back()->path;
  }
  auto wf = env_->Open(path, {.writable = true, .direct = options_.direct_io});
  if (!wf) return IsOutOfDescriptors(wf.error()) ? OutOfDescriptors(wf.error(), "writing " + path) : wf.error();
  appender_->TakeFile(std::move(*wf));
  return Status::OK();
}

// Writer thread, without mu_, the stream idle and healthy: every write was
// synced (sync=none: synced now), so the handle can go.
void Stream::Impl::LetGoOfIdleFile() {
  if (!appender_->file() || options_.idle_file_close_us == 0) return;
  if (static_cast<int64_t>(env_->NowMicros()) - last_write_us_ < static_cast<int64_t>(options_.idle_file_close_us))
    return;
  {
    MutexLock l(&mu_);
    if (!pending_.empty() || !failed_.ok()) return;
  }
  if (options_.sync == SyncMode::kNone && !appender_->Sync().ok()) return;
  appender_->LetGoOfFile();
}

// Writer thread or Recover, without mu_. The segment is sealed: its fields
// no longer change (retention only unlinks it).
void Stream::Impl::WriteSealedIndex(const Segment& seg) {
  if (options_.sync != SyncMode::kFdatasync) return;
  SealedIndex x;
  {
    MutexLock l(&mu_);
    x = SealedIndex{seg.id, seg.base_seq, seg.end_seq, seg.size, seg.first_ts, seg.last_ts, seg.index};
  }
  const std::string bytes = EncodeSealedIndex(x);
  const std::string path = dir_ + "/" + SealedIndexFileName(seg.id);
  Status s = env_->Exists(path) ? env_->Remove(path) : Status::OK();
  if (s.ok()) {
    auto f = env_->Open(path, {.create = true, .exclusive = true, .writable = true});
    s = f ? (*f)->WriteAt(0, {bytes.data(), bytes.size()}) : f.error();
  }
  if (!s.ok()) Log(fmt::format("writing the index of sealed segment {} failed ({}); recovery walks it instead", seg.id, s.ToString()));
}

}  // namespace floe::log
