#include "log/batch_cache.h"

namespace floe::log {

std::shared_ptr<const std::string> BatchCache::Find(uint64_t segment_id, uint64_t offset, bool touch) {
  MutexLock l(&mu_);
  auto found = index_.find({segment_id, offset});
  if (found == index_.end()) return nullptr;
  if (touch) lru_.splice(lru_.begin(), lru_, found->second);
  return found->second->bytes;
}

void BatchCache::Insert(uint64_t segment_id, uint64_t offset, std::shared_ptr<const std::string> bytes) {
  MutexLock l(&mu_);
  auto [it, inserted] = index_.try_emplace({segment_id, offset});
  if (!inserted) return;  // a concurrent reader loaded it first
  used_bytes_ += bytes->size();
  lru_.push_front({segment_id, offset, std::move(bytes)});
  it->second = lru_.begin();
  // Keep at least the newest batch so a reader of one huge batch reuses it.
  while (used_bytes_ > capacity_bytes_ && lru_.size() > 1) {
    used_bytes_ -= lru_.back().bytes->size();
    index_.erase({lru_.back().segment_id, lru_.back().offset});
    lru_.pop_back();
  }
}

}  // namespace floe::log
