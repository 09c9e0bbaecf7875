// Retention: deleting whole sealed segments, oldest first, past the byte and
// age limits (docs/format.md, "Retention and rolling").
#include "log/stream_internal.h"

namespace floe::log {

// Any thread: Stream::EnforceRetention, and the writer's Maintain after each
// idle second. Takes mu_ to choose and unlink the segments from segments_,
// then removes their files without it; readers still holding one keep
// reading it through the handle PinForRemoval keeps for them. retention_mu_, held throughout,
// keeps two calls from removing files out of order: one removing a newer
// segment while the other still removes an older one could leave a gap in
// seqs at a crash, which recovery takes for corruption.
Status Stream::Impl::EnforceRetention() {
  if (options_.retention_bytes == 0 && options_.retention_age_us == 0) return Status::OK();
  MutexLock retention(&retention_mu_);
  std::vector<std::shared_ptr<Segment>> doomed;
  {
    MutexLock l(&mu_);
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
  // Oldest first, so a crash midway leaves a contiguous stream. A reader
  // that copied a view of the segment before it left segments_ may still
  // hold it (use_count above doomed's own), and no one can take a new hold
  // now; such readers get a handle pinned before the path goes.
  for (auto& s : doomed) {
    PinForRemoval(*s, /*readers=*/s.use_count() > 1);
    // The index first: a crash between the two leaves a segment that
    // recovery walks, never an index of a segment that is gone.
    const std::string index_path = dir_ + "/" + SealedIndexFileName(s->id);
    if (env_->Exists(index_path)) FLOE_RETURN_IF_ERROR(env_->Remove(index_path));
    FLOE_RETURN_IF_ERROR(env_->Remove(s->path));
  }
  return env_->SyncDir(dir_);
}

}  // namespace floe::log
