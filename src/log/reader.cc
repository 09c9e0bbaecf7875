// Reading: entries from a seq up to the visible frontier, seeking by time,
// and loading (verified) batches from the cache or the segment files.
//
// Readers take mu_ only to copy what they need of a segment (SegmentView);
// the file reads happen without it, so a reader never holds up the writer.
// Segment files are opened on demand through the bounded segment file cache
// (segment.h) and closed when they have gone unused; a segment that
// retention drops while it is read stays readable through the handle
// retention pins in it for the readers still holding it (PinForRemoval).
#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

// Any thread (and Recover).
Result<std::shared_ptr<Stream::Impl::Segment>> Stream::Impl::OpenSegmentForReading(const SegmentHeader& header) {
  auto seg = std::make_shared<Segment>(options_.segment_files ? options_.segment_files : SegmentFileCache::Shared());
  seg->id = header.id;
  seg->base_seq = header.base_seq;
  seg->created_us = header.created_us;
  seg->path = dir_ + "/" + SegmentFileName(seg->id);
  return seg;
}

// Any thread, without mu_. The cache's hit needs no lock of the segment's;
// a miss opens the file under file_mu, so that it either opens before
// retention unlinks the file (whose pin then finds or reopens it) or sees
// `removed` and takes the pinned handle: never a path that is gone.
Result<std::shared_ptr<File>> Stream::Impl::ReadHandle(Segment& seg, bool direct) {
  if (direct && (!options_.direct_io || seg.no_direct.load(std::memory_order_relaxed))) return nullptr;
  const uint64_t key = direct ? seg.DirectKey() : seg.BufferedKey();
  if (auto f = seg.files->Find(key)) return f;
  MutexLock l(&seg.file_mu);
  if (seg.removed) {
    if (direct) return nullptr;  // a removed segment is read buffered
    if (!seg.pinned) return Err(Status::NotFound(fmt::format("{}: removed by retention", seg.path)));
    return seg.pinned;
  }
  auto f = seg.files->Get(key, [&]() -> Result<std::shared_ptr<File>> {
    auto opened = env_->Open(seg.path, {.direct = direct});
    if (!opened) return Err(opened.error());
    if (direct && !(*opened)->direct()) {
      seg.no_direct.store(true, std::memory_order_relaxed);
      return std::shared_ptr<File>();  // not cached: the buffered handle serves
    }
    return std::shared_ptr<File>(std::move(*opened));
  });
  if (!f && IsOutOfDescriptors(f.error())) return Err(OutOfDescriptors(f.error(), "reading " + seg.path));
  return f;
}

// Retention (retention_mu_ held, not mu_), after it took seg out of
// segments_ and before it unlinks the file. `readers`: someone besides
// retention may still hold seg; only then is a handle kept (opened now if
// the cache has none), since no one can take a new hold of it.
void Stream::Impl::PinForRemoval(Segment& seg, bool readers) {
  MutexLock l(&seg.file_mu);
  seg.removed = true;
  if (!readers) return;
  seg.pinned = seg.files->Find(seg.BufferedKey());
  if (seg.pinned) return;
  auto f = env_->Open(seg.path, {});
  if (f) {
    seg.pinned = std::move(*f);
  } else {
    // Those readers will fail with NotFound; retention goes on regardless.
    Log(fmt::format("keeping {} open for its readers before removing it failed: {}", seg.path,
                    f.error().ToString()));
  }
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

// The one place a batch header is read from a segment file: the 48 bytes at
// `offset`, decoded (no CRC: that needs the whole batch).
Result<BatchHeader> Stream::Impl::ReadBatchHeader(Segment& seg, uint64_t offset) {
  auto file = ReadHandle(seg, /*direct=*/false);
  if (!file) return Err(file.error());
  char head[kBatchHeaderSize];
  auto n = (*file)->ReadAt(offset, {head, sizeof head});
  if (!n) return Err(n.error());
  if (*n != sizeof head) return Err(Status::Corruption(fmt::format("{}: batch at {} truncated", seg.path, offset)));
  auto h = DecodeBatchHeader({head, sizeof head});
  if (!h) return Err(Status::Corruption(fmt::format("{} at offset {}: {}", seg.path, offset, h.error().message())));
  return h;
}

// The header of the batch at `offset`, from the cache when it holds the
// batch (without making it recent: skipping a batch is not using it).
Result<BatchHeader> Stream::Impl::LoadHeader(Segment& seg, uint64_t offset) {
  if (auto cached = cache_.Find(seg.id, offset, /*touch=*/false)) return DecodeBatchHeader(*cached);
  return ReadBatchHeader(seg, offset);
}

// The whole batch at `offset`, verified (CRC and every record), from the
// cache or else from the file, then cached.
Result<std::shared_ptr<const std::string>> Stream::Impl::LoadBatch(Segment& seg, uint64_t offset) {
  if (auto cached = cache_.Find(seg.id, offset, /*touch=*/true)) return cached;
  auto h = ReadBatchHeader(seg, offset);
  if (!h) return Err(h.error());
  std::shared_ptr<std::string> bytes;
  std::shared_ptr<File> direct;
  if (h->length >= kDirectReadBytes) {
    auto d = ReadHandle(seg, /*direct=*/true);
    if (!d) return Err(d.error());
    direct = std::move(*d);
  }
  if (direct) {
    auto read = ReadDirect(*direct, offset, h->length);
    if (!read) return Err(read.error());
    bytes = std::move(*read);
  } else {
    auto file = ReadHandle(seg, /*direct=*/false);
    if (!file) return Err(file.error());
    bytes = std::make_shared<std::string>(h->length, '\0');
    auto n = (*file)->ReadAt(offset, *bytes);
    if (!n) return Err(n.error());
    bytes->resize(*n);
  }
  if (bytes->size() != h->length)
    return Err(Status::Corruption(fmt::format("{}: batch at {} truncated", seg.path, offset)));
  auto v = VerifyBatch(*bytes);
  if (!v) return Err(Status::Corruption(fmt::format("{} at offset {}: {}", seg.path, offset, v.error().message())));
  std::shared_ptr<const std::string> out = std::move(bytes);
  cache_.Insert(seg.id, offset, out);
  return out;
}

namespace {

// A view of `seg` starting at the index entry `ix` (the segment's first batch
// when `ix` is the index's end). Requires Stream::Impl::mu_.
internal::SegmentView ViewAt(const std::shared_ptr<internal::Segment>& seg,
                             std::vector<IndexEntry>::const_iterator ix) {
  return {seg, ix == seg->index.end() ? kSegmentHeaderSize : ix->offset, seg->size, seg->end_seq};
}

}  // namespace

// Finds the segment holding `seq` and where to start scanning for it.
bool Stream::Impl::NextView(uint64_t seq, SegmentView* view) {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), seq,
                             [](uint64_t s, const std::shared_ptr<Segment>& g) { return s < g->base_seq; });
  if (it == segments_.begin()) return false;
  --it;
  // Skip segments superseded to emptiness (a failed write at their start).
  while ((*it)->end_seq <= seq) {
    if (++it == segments_.end()) return false;
  }
  const auto& index = (*it)->index;
  auto ix = std::upper_bound(index.begin(), index.end(), seq,
                             [](uint64_t s, const IndexEntry& e) { return s < e.seq; });
  *view = ViewAt(*it, ix == index.begin() ? index.end() : std::prev(ix));
  return true;
}

// Any thread.
Result<ReadResult> Stream::Impl::Read(const ReadOptions& options) {
  ReadResult out;
  uint64_t seq = options.from_seq;
  out.next_seq = seq;
  uint64_t frontier;
  SegmentView view;
  {
    MutexLock l(&mu_);
    if (seq < first_seq_)
      return Err(Status::OutOfRange(fmt::format("seq {} is below the stream's first seq {}", seq, first_seq_)));
    frontier = slots_.frontier();
    if (seq > frontier || !NextView(seq, &view)) return out;
  }
  size_t bytes = 0;
  uint64_t offset = view.start_offset;
  while (seq <= frontier && out.entries.size() < options.max_messages) {
    if (offset >= view.size || seq >= view.end_seq) {
      MutexLock l(&mu_);
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

// Any thread.
Result<uint64_t> Stream::Impl::SeekTime(int64_t ts) {
  SegmentView view;
  uint64_t frontier;
  {
    MutexLock l(&mu_);
    frontier = slots_.frontier();
    // Timestamps never decrease along the stream: binary search the segments,
    // then the sparse index, then scan at most an index interval of batches.
    auto seg = std::lower_bound(segments_.begin(), segments_.end(), ts,
                                [](const std::shared_ptr<Segment>& s, int64_t t) { return s->last_ts < t; });
    if (seg == segments_.end()) return frontier + 1;
    const auto& index = (*seg)->index;
    auto ix = std::lower_bound(index.begin(), index.end(), ts,
                               [](const IndexEntry& e, int64_t t) { return e.first_ts < t; });
    if (ix != index.begin()) --ix;
    view = ViewAt(*seg, ix);
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

// Any thread.
bool Stream::Impl::WaitFor(uint64_t seq, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock l(&mu_);
  while (slots_.frontier() < seq && !closing_ && frontier_cv_.WaitUntil(&mu_, deadline)) {}
  return slots_.frontier() >= seq;
}

}  // namespace floe::log
