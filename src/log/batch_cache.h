// Verified batches kept in memory for the stream's readers: direct-I/O writes
// bypass the page cache, so tailing consumers would otherwise read what was
// just written back from the disk. Internal to the stream (stream.h).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "base/mutex.h"

namespace floe::log {

// An LRU map from (segment id, offset) to the bytes of a verified batch,
// bounded by the bytes it holds (but always keeping the newest batch, so a
// reader of one huge batch reuses it).
//
// Thread safety: every method may be called from any thread; mu_ guards
// every member below it. The stream's writer inserts while holding the
// stream's mutex, so the order is Stream::Impl::mu_ before mu_, never the
// other way.
class BatchCache {
 public:
  explicit BatchCache(uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  BatchCache(const BatchCache&) = delete;
  BatchCache& operator=(const BatchCache&) = delete;

  // The bytes of the batch at (segment_id, offset), or null when not held.
  // `touch` makes it the most recently used.
  std::shared_ptr<const std::string> Find(uint64_t segment_id, uint64_t offset, bool touch) EXCLUDES(mu_);
  // Keeps `bytes` as the batch at (segment_id, offset), unless a batch is
  // already held there (a concurrent reader loaded it first), then evicts the
  // least recently used past the capacity.
  void Insert(uint64_t segment_id, uint64_t offset, std::shared_ptr<const std::string> bytes) EXCLUDES(mu_);

 private:
  struct Cached {
    uint64_t segment_id;
    uint64_t offset;
    std::shared_ptr<const std::string> bytes;
  };
  using Key = std::pair<uint64_t, uint64_t>;  // segment id, offset
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.first * 0x9E3779B97F4A7C15ull ^ k.second); }
  };

  const uint64_t capacity_bytes_;
  Mutex mu_;
  std::list<Cached> lru_ GUARDED_BY(mu_);  // most recent first
  std::unordered_map<Key, std::list<Cached>::iterator, KeyHash> index_ GUARDED_BY(mu_);  // into lru_
  uint64_t used_bytes_ GUARDED_BY(mu_) = 0;                                              // bytes in lru_
};

}  // namespace floe::log
