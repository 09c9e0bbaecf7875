#include "log/segment.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/format.h"

namespace floe::log {

std::string SegmentFileName(uint64_t id) { return fmt::format("{:020}.seg", id); }

bool ParseNumberedFileName(const std::string& name, std::string_view suffix, uint64_t* id) {
  if (name.size() != 20 + suffix.size() || name.compare(20, suffix.size(), suffix) != 0) return false;
  uint64_t v = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(name[i] - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;  // 20 digits can pass 2^64
    v = v * 10 + digit;
  }
  *id = v;
  return true;
}

bool ParseSegmentFileName(const std::string& name, uint64_t* id) { return ParseNumberedFileName(name, ".seg", id); }

std::string EncodeSegmentHeader(const SegmentHeader& h) {
  std::string b(kSegmentHeaderSize, '\0');
  char* p = b.data();
  EncodeFixed32(p + kSegMagicOff, kSegmentMagic);
  EncodeFixed16(p + kSegVersionOff, kSegmentVersion);
  EncodeFixed16(p + kSegFlagsOff, 0);
  EncodeFixed64(p + kSegIdOff, h.id);
  EncodeFixed64(p + kSegBaseSeqOff, h.base_seq);
  EncodeFixed64(p + kSegCreatedOff, static_cast<uint64_t>(h.created_us));
  EncodeFixed32(p + kSegCrcOff, crc32c::Value(p, kSegCrcOff));
  return b;
}

Result<SegmentHeader> DecodeSegmentHeader(std::span<const char> block) {
  if (block.size() < kSegmentHeaderUsed) return Err(Status::Corruption("segment header truncated"));
  const char* p = block.data();
  if (DecodeFixed32(p + kSegMagicOff) != kSegmentMagic) return Err(Status::Corruption("bad segment magic"));
  if (DecodeFixed32(p + kSegCrcOff) != crc32c::Value(p, kSegCrcOff))
    return Err(Status::Corruption("segment header checksum mismatch"));
  if (DecodeFixed16(p + kSegVersionOff) != kSegmentVersion)
    return Err(Status::Corruption(fmt::format("unknown segment version {}", DecodeFixed16(p + kSegVersionOff))));
  SegmentHeader h;
  h.id = DecodeFixed64(p + kSegIdOff);
  h.base_seq = DecodeFixed64(p + kSegBaseSeqOff);
  h.created_us = static_cast<int64_t>(DecodeFixed64(p + kSegCreatedOff));
  if (h.base_seq == 0) return Err(Status::Corruption("segment base seq is 0"));
  return h;
}

// ---------------------------------------------------------------------------

namespace {
constexpr uint64_t AlignDown(uint64_t v) { return v & ~(uint64_t{kDirectIoAlignment} - 1); }
constexpr uint64_t AlignUp(uint64_t v) { return AlignDown(v + kDirectIoAlignment - 1); }
}  // namespace

SegmentAppender::SegmentAppender(std::shared_ptr<File> file, uint64_t end, std::string tail)
    : file_(std::move(file)), end_(end), tail_(std::move(tail)) {}

SegmentAppender::~SegmentAppender() { std::free(buf_); }

Status SegmentAppender::Append(std::span<const std::string_view> pieces) {
  size_t total = 0;
  for (auto p : pieces) total += p.size();
  if (total == 0) return Status::OK();
  if (!file_->direct()) {
    // Buffered: write each piece where it belongs; one pwrite per piece keeps
    // the copy out of the hot path (the caller passes few, large pieces).
    uint64_t off = end_;
    for (auto p : pieces) {
      FLOE_RETURN_IF_ERROR(file_->WriteAt(off, {p.data(), p.size()}));
      off += p.size();
    }
    end_ = off;
    return Status::OK();
  }
  // Direct: [tail | pieces | zero padding] written from the aligned offset.
  const uint64_t start = AlignDown(end_);
  const size_t len = AlignUp(tail_.size() + total);
  if (len > buf_cap_) {
    std::free(buf_);
    buf_cap_ = std::max<size_t>(len, 1 << 20);
    buf_ = static_cast<char*>(std::aligned_alloc(kDirectIoAlignment, buf_cap_));
    if (buf_ == nullptr) abort();
  }
  char* p = buf_;
  std::memcpy(p, tail_.data(), tail_.size());
  p += tail_.size();
  for (auto piece : pieces) {
    std::memcpy(p, piece.data(), piece.size());
    p += piece.size();
  }
  const size_t used = static_cast<size_t>(p - buf_);
  std::memset(p, 0, len - used);
  FLOE_RETURN_IF_ERROR(file_->WriteAt(start, {buf_, len}));
  end_ += total;
  // Invariant: tail_ holds [AlignDown(end_), end_).
  const size_t keep = static_cast<size_t>(end_ - AlignDown(end_));
  tail_.assign(buf_ + used - keep, keep);
  return Status::OK();
}

// ---------------------------------------------------------------------------

namespace {

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// Reads up to buf->size() bytes at off into buf, resizing it to what was read.
Status ReadChunk(File* file, uint64_t off, std::string* buf) {
  auto n = file->ReadAt(off, *buf);
  if (!n) return n.error();
  buf->resize(*n);
  return Status::OK();
}

// True if a whole, CRC-valid batch starts at some offset in [from, size).
bool FindGoodBatchAfter(File* file, uint64_t from, uint64_t size, uint64_t min_seq) {
  constexpr size_t kWindow = 1 << 20;
  std::string win;
  std::string batch;
  for (uint64_t off = from; off + kBatchHeaderSize <= size;) {
    win.resize(kWindow);
    if (!ReadChunk(file, off, &win).ok() || win.size() < 4) return false;
    for (size_t i = 0; i + 4 <= win.size(); ++i) {
      if (DecodeFixed32(win.data() + i) != kBatchMagic) continue;
      batch.resize(kBatchHeaderSize);
      if (!ReadChunk(file, off + i, &batch).ok()) continue;
      auto h = DecodeBatchHeader(batch);
      if (!h || h->base_seq < min_seq) continue;
      batch.resize(h->length);
      if (!ReadChunk(file, off + i, &batch).ok() || batch.size() != h->length) continue;
      if (VerifyBatch(batch)) return true;
    }
    off += win.size() >= 4 ? win.size() - 3 : 1;
  }
  return false;
}

}  // namespace

Result<SegmentScan> ScanSegment(File* file, uint64_t base_seq, const ScanOptions& options) {
  auto size_or = file->Size();
  if (!size_or) return Err(size_or.error());
  const uint64_t size = *size_or;
  SegmentScan scan;
  scan.end_seq = base_seq;
  uint64_t off = kSegmentHeaderSize;
  uint64_t last_indexed = 0;
  std::string buf;
  while (off < size) {
    Status bad;
    if (size - off < kBatchHeaderSize) {
      bad = Status::Corruption("partial batch header");
    } else {
      buf.resize(kBatchHeaderSize);
      FLOE_RETURN_ERR_IF_ERROR(ReadChunk(file, off, &buf));
      auto h = DecodeBatchHeader(buf);
      if (!h) {
        bad = h.error();
      } else if (h->base_seq >= options.stop_seq) {
        break;  // superseded by the next segment (see docs/format.md)
      } else if (h->base_seq != scan.end_seq) {
        bad = Status::Corruption(fmt::format("batch starts at seq {}, expected {}", h->base_seq, scan.end_seq));
      } else if (h->length > size - off) {
        bad = Status::Corruption("batch runs past the end of the file");
      } else {
        if (options.verify_crc) {
          buf.resize(h->length);
          FLOE_RETURN_ERR_IF_ERROR(ReadChunk(file, off, &buf));
          auto v = VerifyBatch(buf);
          if (!v) bad = v.error();
        }
        if (bad.ok()) {
          if (scan.batches == 0 || off - last_indexed >= options.index_interval) {
            scan.index.push_back({h->base_seq, off, h->first_ts});
            last_indexed = off;
          }
          if (scan.batches == 0) scan.first_ts = h->first_ts;
          scan.last_ts = std::max(scan.last_ts, h->last_ts);
          scan.end_seq = h->end_seq();
          off += h->length;
          scan.end_offset = off;
          ++scan.batches;
          continue;
        }
      }
    }
    // Bytes at `off` are not a good batch. Zero padding (direct-I/O blocks,
    // preallocation) to the end of the file is a clean end.
    bool zeros = true;
    for (uint64_t z = off; z < size && zeros;) {
      buf.resize(std::min<uint64_t>(size - z, 1 << 20));
      FLOE_RETURN_ERR_IF_ERROR(ReadChunk(file, z, &buf));
      if (buf.empty()) break;
      zeros = AllZero(buf.data(), buf.size());
      z += buf.size();
    }
    if (!zeros) {
      scan.bad_tail = true;
      scan.tail_error = Status::Corruption(fmt::format("at offset {}: {}", off, bad.message()));
      scan.good_after_bad = FindGoodBatchAfter(file, off + 1, size, scan.end_seq);
    }
    break;
  }
  return scan;
}

// ---------------------------------------------------------------------------

std::shared_ptr<SegmentFileCache> SegmentFileCache::Shared() {
  static const auto shared = std::make_shared<SegmentFileCache>();
  return shared;
}

uint64_t SegmentFileCache::NewKeys(uint64_t n) {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(n, std::memory_order_relaxed);
}

std::shared_ptr<File> SegmentFileCache::Find(uint64_t key) {
  MutexLock l(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->file;
}

Result<std::shared_ptr<File>> SegmentFileCache::Get(uint64_t key, const Opener& open) {
  if (auto f = Find(key)) return f;
  auto opened = open();
  if (!opened && IsOutOfDescriptors(opened.error())) {
    // Our own idle handles may be what fills the table: give half back.
    std::vector<std::shared_ptr<File>> closing;
    {
      MutexLock l(&mu_);
      TrimLocked(lru_.size() / 2, &closing);
    }
    closing.clear();
    opened = open();
  }
  if (!opened || *opened == nullptr) return opened;
  std::vector<std::shared_ptr<File>> closing;
  MutexLock l(&mu_);
  auto [it, inserted] = index_.try_emplace(key);
  if (!inserted) {
    // Another reader opened it meanwhile: use theirs, close ours (after
    // letting go of mu_: `closing` is destroyed after `l`).
    closing.push_back(std::move(*opened));
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->file;
  }
  lru_.push_front({key, *opened});
  it->second = lru_.begin();
  TrimLocked(capacity_, &closing);
  return std::move(*opened);
}

void SegmentFileCache::Erase(uint64_t key) {
  std::shared_ptr<File> closing;
  MutexLock l(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  closing = std::move(it->second->file);
  lru_.erase(it->second);
  index_.erase(it);
}

void SegmentFileCache::SetCapacity(size_t capacity) {
  std::vector<std::shared_ptr<File>> closing;
  MutexLock l(&mu_);
  capacity_ = capacity;
  TrimLocked(capacity_, &closing);
}

size_t SegmentFileCache::capacity() const {
  MutexLock l(&mu_);
  return capacity_;
}

size_t SegmentFileCache::size() const {
  MutexLock l(&mu_);
  return lru_.size();
}

void SegmentFileCache::TrimLocked(size_t keep, std::vector<std::shared_ptr<File>>* out) {
  while (lru_.size() > keep) {
    out->push_back(std::move(lru_.back().file));
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

bool IsOutOfDescriptors(const Status& s) {
  // strerror(ENFILE), "Too many open files in system", begins with
  // strerror(EMFILE): one search finds both (glibc's texts).
  if (s.ok()) return false;
  static const std::string emfile = std::strerror(EMFILE);
  static const std::string enfile = std::strerror(ENFILE);
  const std::string_view m = s.message();
  return m.find(emfile) != std::string_view::npos || m.find(enfile) != std::string_view::npos;
}

Status OutOfDescriptors(const Status& s, std::string_view context) {
  constexpr std::string_view kSaid = "too many open files (limit ";
  // Said already (by a read under Recover, say): once is enough.
  if (s.message().find(kSaid) != std::string_view::npos) return Status::Unavailable(s.message());
  rlimit nofile{};
  std::string limit = "unknown";
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0)
    limit = nofile.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(nofile.rlim_cur);
  return Status::Unavailable(fmt::format("{}{}): {}: {}", kSaid, limit, context, s.message()));
}

}  // namespace floe::log
