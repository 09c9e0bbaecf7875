// Opening a stream: the segments' headers, the walk of every segment, the
// torn tail of the last one, and the state the writer resumes from
// (docs/format.md, "Recovery"). Runs on Open's thread before the writer
// starts and before any other thread can see the stream; it takes mu_ around
// the members it guards all the same (uncontended, and the clang analysis
// checks them here as everywhere).
#include <algorithm>

#include <fmt/format.h>

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

Status Stream::Impl::Recover() {
  Status s = RecoverSteps();
  // Out of descriptors is said as that, whichever open met it: it is no
  // damage of the stream, and it passes when files are closed.
  if (IsOutOfDescriptors(s)) return OutOfDescriptors(s, "opening stream " + dir_);
  return s;
}

Status Stream::Impl::RecoverSteps() {
  if (!env_->Exists(dir_)) {
    if (!options_.create_if_missing) return Status::NotFound("stream directory " + dir_ + " does not exist");
    FLOE_RETURN_IF_ERROR(env_->CreateDir(dir_));
  }
  auto lock = env_->Lock(dir_ + "/LOCK");
  if (!lock) {
    // Only a lock another holder has is "open elsewhere" (Env::Lock says
    // kUnavailable for exactly that); any other failure is what it is.
    if (lock.error().code() == ErrorCode::kUnavailable)
      return Status::Unavailable("stream " + dir_ + " is open elsewhere: " + std::string(lock.error().message()));
    return Status(lock.error().code(), "stream " + dir_ + ": " + std::string(lock.error().message()));
  }
  lock_ = std::move(*lock);
  guard_ = options_.disk_guard;
  if (!guard_) {
    guard_ = std::make_shared<DiskGuard>(DiskGuardOptions{
        .env = env_,
        .dir = dir_,
        .reserve_bytes = 0,
        .probe_interval_us = static_cast<int64_t>(options_.heal_min_backoff_us),
        .logger = options_.logger});
  }

  auto headers = LoadSegmentHeaders();
  if (!headers) return headers.error();
  if (headers->empty()) {
    // An empty stream reserves nothing ahead: its first write does.
    FLOE_RETURN_IF_ERROR(CreateSegment(1, {}, /*preallocate=*/false));
    report_.segments = 1;
    return Status::OK();
  }
  for (size_t i = 0; i < headers->size(); ++i) {
    const bool last = i + 1 == headers->size();
    FLOE_RETURN_IF_ERROR(RecoverSegment((*headers)[i], last ? nullptr : &(*headers)[i + 1]));
  }
  FLOE_RETURN_IF_ERROR(ResumeWriting());

  {
    MutexLock l(&mu_);
    first_seq_ = segments_.front()->base_seq;
    slots_ = SlotTable(segments_.back()->end_seq);
    report_.segments = segments_.size();
    report_.frontier = slots_.frontier();
  }
  return RebuildDedup();
}

// The headers of the stream's segments, in id order; empty when there are
// none left to recover (a new stream, or one whose only segment was torn
// while being created). Sets next_segment_id_ past every id found.
Result<std::vector<SegmentHeader>> Stream::Impl::LoadSegmentHeaders() {
  auto names = env_->ListDir(dir_);
  if (!names) return Err(names.error());
  std::vector<uint64_t> ids;
  for (const auto& n : *names) {
    uint64_t id;
    if (ParseSegmentFileName(n, &id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  std::vector<SegmentHeader> headers;
  if (ids.empty()) {
    report_.events.push_back("new stream");
    return headers;
  }
  next_segment_id_ = ids.back() + 1;

  // Headers first: a last segment whose header never became durable holds
  // nothing (batches are written only after the header is synced).
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string path = dir_ + "/" + SegmentFileName(ids[i]);
    auto file = env_->Open(path, {});
    if (!file) return Err(file.error());
    std::string block(kSegmentHeaderSize, '\0');
    auto n = (*file)->ReadAt(0, block);
    if (!n) return Err(n.error());
    block.resize(*n);
    auto h = DecodeSegmentHeader(block);
    if (!h) {
      auto size = (*file)->Size();
      bool last = i + 1 == ids.size();
      if (last && size && *size <= kSegmentHeaderSize) {
        report_.events.push_back(fmt::format("removed segment {} with a torn header ({})", path, h.error().message()));
        FLOE_RETURN_ERR_IF_ERROR(env_->Remove(path));
        break;
      }
      return Err(Status::Corruption(fmt::format("segment {}: {}", path, h.error().message())));
    }
    if (h->id != ids[i]) return Err(Status::Corruption(fmt::format("segment {} names id {}", path, h->id)));
    headers.push_back(*h);
  }
  return headers;
}

// Walks one segment and appends it to segments_. `next` is the following
// segment's header, or null for the last (active) segment, whose torn tail is
// cut here.
Status Stream::Impl::RecoverSegment(const SegmentHeader& header, const SegmentHeader* next) {
  const bool last = next == nullptr;
  auto opened = OpenSegmentForReading(header);
  if (!opened) return opened.error();
  std::shared_ptr<Segment> seg = std::move(*opened);
  const std::string index_path = dir_ + "/" + SealedIndexFileName(header.id);
  if (!last) {
    if (std::optional<SealedIndex> x = LoadSealedIndex(header, *next)) {
      seg->end_seq = x->end_seq;
      seg->size = x->size;
      MutexLock l(&mu_);
      seg->first_ts = x->first_ts;
      seg->last_ts = x->last_ts;
      seg->index = std::move(x->index);
      last_ts_ = std::max(last_ts_, x->last_ts);
      ++report_.segments_from_index;
      segments_.push_back(std::move(seg));
      return Status::OK();
    }
  } else if (env_->Exists(index_path)) {
    // Active again (the segment after it was torn away): it grows, so its
    // index would go stale.
    FLOE_RETURN_IF_ERROR(env_->Remove(index_path));
  }
  // A handle of its own for the scan, closed when it ends: recovering a
  // stream must not leave every segment open (readers open them on demand).
  auto file_or = env_->Open(seg->path, {});
  if (!file_or) return file_or.error();
  const std::unique_ptr<File> file = std::move(*file_or);
  ScanOptions so;
  so.verify_crc = last;
  so.index_interval = options_.index_interval_bytes;
  if (!last) so.stop_seq = next->base_seq;
  if (!last && next->base_seq < seg->base_seq)
    return Status::Corruption(fmt::format("segment {} starts below segment {}", next->id, seg->id));
  auto scan = ScanSegment(file.get(), seg->base_seq, so);
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
    auto size = file->Size();
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
  {
    MutexLock l(&mu_);
    // Empty segments inherit the previous timestamp (see CreateSegment).
    seg->first_ts = scan->batches ? scan->first_ts : last_ts_;
    seg->last_ts = scan->batches ? scan->last_ts : last_ts_;
    seg->index = std::move(scan->index);
    last_ts_ = std::max(last_ts_, scan->last_ts);
    if (last) report_.batches_in_last_segment = scan->batches;
    segments_.push_back(seg);
  }
  if (!last) WriteSealedIndex(*seg);  // the next open need not walk it again
  return Status::OK();
}

std::optional<SealedIndex> Stream::Impl::LoadSealedIndex(const SegmentHeader& header, const SegmentHeader& next) {
  const std::string path = dir_ + "/" + SealedIndexFileName(header.id);
  if (!env_->Exists(path)) return std::nullopt;
  auto ignore = [&](std::string_view why) -> std::optional<SealedIndex> {
    report_.events.push_back(fmt::format("ignored the index of segment {} ({}); walked the segment", header.id, why));
    return std::nullopt;
  };
  auto file = env_->Open(path, {});
  if (!file) return ignore(file.error().message());
  auto size = (*file)->Size();
  if (!size) return ignore(size.error().message());
  if (*size > (64u << 20)) return ignore("larger than any index");
  std::string bytes(*size, '\0');
  auto n = (*file)->ReadAt(0, bytes);
  if (!n) return ignore(n.error().message());
  bytes.resize(*n);
  auto x = DecodeSealedIndex(bytes);
  if (!x) return ignore(x.error().message());
  if (x->id != header.id || x->base_seq != header.base_seq) return ignore("it names another segment");
  if (x->end_seq != next.base_seq) return ignore("it ends where the next segment does not begin");
  auto seg_file = env_->Open(dir_ + "/" + SegmentFileName(header.id), {});
  if (!seg_file) return ignore(seg_file.error().message());
  auto seg_size = (*seg_file)->Size();
  if (!seg_size || *seg_size < x->size) return ignore("the segment is shorter than it says");
  return std::move(*x);
}

// Opens the active segment for the writer, at the end of its last good batch.
Status Stream::Impl::ResumeWriting() {
  std::shared_ptr<Segment> last;
  {
    MutexLock l(&mu_);
    last = segments_.back();
  }
  Segment& active = *last;
  auto wf = env_->Open(active.path, {.writable = true, .direct = options_.direct_io});
  if (!wf) return wf.error();
  std::shared_ptr<File> wfile = std::move(*wf);
  // What the scan found may exist only in the page cache (the previous
  // process died between write and fdatasync): make it and the directory
  // durable before the frontier can show it.
  FLOE_RETURN_IF_ERROR(wfile->Sync());
  FLOE_RETURN_IF_ERROR(env_->SyncDir(dir_));
  std::string tail;
  if (wfile->direct() && active.size % kDirectIoAlignment != 0) {
    // Through the writer's own handle (aligned reads): no other descriptor.
    const uint64_t start = active.size & ~(uint64_t{kDirectIoAlignment} - 1);
    auto read = ReadDirect(*wfile, start, active.size - start);
    if (!read) return read.error();
    if ((*read)->size() != active.size - start) return Status::IOError("short read of segment tail " + active.path);
    tail = std::move(**read);
  }
  appender_ = std::make_unique<SegmentAppender>(wfile, active.size, std::move(tail));
  return Status::OK();
}

// Rebuilds the producer dedup window by reading the last dedup_window_bytes
// of the log (whole segments).
Status Stream::Impl::RebuildDedup() {
  uint64_t from;
  uint64_t frontier;  // fixed: no write happens before the writer starts
  bool whole_log;
  {
    MutexLock l(&mu_);
    from = segments_.back()->base_seq;
    uint64_t bytes = 0;
    for (auto it = segments_.rbegin(); it != segments_.rend() && bytes < options_.dedup_window_bytes; ++it) {
      from = (*it)->base_seq;
      bytes += (*it)->size;
    }
    whole_log = from == segments_.front()->base_seq;
    frontier = slots_.frontier();
  }
  while (from <= frontier) {
    auto r = Read({.from_seq = from, .max_messages = 4096, .max_bytes = 16 << 20});
    if (!r) return Status(r.error().code(), "rebuilding producer window: " + std::string(r.error().message()));
    MutexLock l(&mu_);
    for (const Entry& e : r->entries)
      if (e.kind == Entry::Kind::kMessage) dedup_.Record(e.producer_id, e.producer_seq, e.seq);
    if (r->next_seq <= from) break;
    from = r->next_seq;
  }
  if (!whole_log) {
    MutexLock l(&mu_);
    dedup_.MarkAllTrimmed();  // what the window did not read may hold older copies
  }
  return Status::OK();
}

}  // namespace floe::log
