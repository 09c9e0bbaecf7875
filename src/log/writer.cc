// Appending: seq assignment, the writer thread, group commit and the
// resolution of each append to committed or hole, and creating segments.
//
// Group commit, exactly: appends that arrive while the writer is busy gather
// in groups of at most max_group_bytes. The writer takes one group at a time
// and writes it as one batch with one write and (sync=fdatasync) one
// fdatasync; only after that fdatasync returns are its appends resolved and
// their callbacks run. A roll or a hole adds the syncs of creating a segment
// (docs/format.md).
#include <algorithm>

#include <fmt/format.h>

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

// Any thread.
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
  Status refused;
  bool wake = false;
  {
    MutexLock l(&mu_);
    while (pending_bytes_ >= options_.max_pending_bytes && !closing_ && failed_.ok()) space_cv_.Wait(&mu_);
    if (closing_) {
      refused = Status::Unavailable("stream is closed");
    } else if (!failed_.ok()) {
      refused = failed_;
    } else {
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
      wake = !writer_active_;
    }
  }
  // Refused: the callback runs here, on the caller's thread, without mu_.
  if (!refused.ok()) {
    done({refused});
    return;
  }
  if (wake) writer_cv_.Signal();
}

// The writer thread owns the active segment. writer_active_ is set while it
// works (writing, rolling, maintenance), so appenders know not to wake it.
void Stream::Impl::WriterLoop() {
  mu_.Lock();
  while (true) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (pending_.empty() && !roll_requested_ && !closing_ && writer_cv_.WaitUntil(&mu_, deadline)) {}
    if (!pending_.empty()) {
      WriteOneGroup();
      continue;
    }
    if (roll_requested_) {
      roll_requested_ = false;
      writer_active_ = true;
      const uint64_t next = slots_.next_seq();
      Status fail = failed_;
      mu_.Unlock();
      Status s = fail.ok() ? Roll(next) : fail;
      mu_.Lock();
      writer_active_ = false;
      roll_status_ = s;
      ++rolls_done_;
      frontier_cv_.SignalAll();
      continue;
    }
    if (closing_) break;
    writer_active_ = true;
    mu_.Unlock();
    Maintain();
    mu_.Lock();
    writer_active_ = false;
  }
  mu_.Unlock();
}

// Writer thread, mu_ held and a group pending: writes the front group and
// resolves its appends, with mu_ released around the write, the sync and the
// callbacks.
void Stream::Impl::WriteOneGroup() {
  writer_active_ = true;
  // One batch per write and fdatasync: then at most the last batch of a
  // segment can be unsynced at a crash, and a good batch after a bad one
  // proves damage to synced data rather than a torn tail (docs/format.md).
  std::deque<Group> groups;
  groups.push_back(std::move(pending_.front()));
  pending_.pop_front();
  Status fail = failed_;
  mu_.Unlock();
  Status s = fail.ok() ? WriteGroups(groups) : fail;
  FinishGroups(groups, s);
  mu_.Lock();
  writer_active_ = false;
}

// Writer thread, without mu_. Writes `groups` at the end of the active
// segment (rolling first if due) and, under sync=fdatasync, syncs them.
Status Stream::Impl::WriteGroups(std::deque<Group>& groups) {
  uint64_t total = 0;
  for (Group& g : groups) {
    FinishBatch(g.buf, BatchType::kData, g.base_seq, g.count, g.first_ts, g.last_ts);
    total += g.buf.size();
  }
  // Roll before a write that would pass the segment size, or by age.
  bool roll = appender_->end() > kSegmentHeaderSize && appender_->end() + total > options_.segment_bytes;
  if (options_.segment_age_us > 0 && appender_->end() > kSegmentHeaderSize) {
    MutexLock lg(&mu_);
    roll |= static_cast<int64_t>(env_->NowMicros()) - segments_.back()->created_us >
            static_cast<int64_t>(options_.segment_age_us);
  }
  if (roll) FLOE_RETURN_IF_ERROR(Roll(groups.front().base_seq));
  std::vector<std::string_view> pieces;
  pieces.reserve(groups.size());
  for (Group& g : groups) pieces.emplace_back(g.buf);
  FLOE_RETURN_IF_ERROR(appender_->Append(pieces));
  if (options_.sync == SyncMode::kFdatasync) FLOE_RETURN_IF_ERROR(appender_->Sync());
  return Status::OK();
}

// Writer thread, without mu_. Resolves every append of `groups`: committed if
// the write succeeded, else a hole made durable in a new segment, else (that
// failed too) left in doubt with the stream refusing further writes. Runs
// the callbacks last, after the outcome is durable.
void Stream::Impl::FinishGroups(std::deque<Group>& groups, const Status& write_status) {
  SlotState state = SlotState::kCommitted;
  Status result = write_status;
  if (!write_status.ok()) {
    const uint64_t first = groups.front().base_seq;
    const uint64_t end = groups.back().base_seq + groups.back().count;
    Status earlier_failure;  // the stream had already failed before this write
    uint64_t committed;
    {
      MutexLock l(&mu_);
      earlier_failure = failed_;
      committed = segments_.back()->size;
    }
    const bool already_failed = !earlier_failure.ok();
    // After a failed write or fdatasync the bytes past the committed end may
    // be in the page cache but never reach the disk (Linux forgets pages
    // whose write-back failed): cut them so that a reopened stream cannot
    // read and serve them.
    (void)appender_->file()->Truncate(committed);
    Status hole = already_failed ? earlier_failure
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
    MutexLock l(&mu_);
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
        cache_.Insert(seg.id, batch_offset, std::make_shared<const std::string>(std::move(g.buf)));
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
  space_cv_.SignalAll();
  frontier_cv_.SignalAll();
  if (listener && state != SlotState::kInDoubt) listener(frontier);
  for (auto& [cb, r] : done) cb(r);
}

// Writer thread, without mu_. Seals the active segment, whose every batch is
// resolved, and starts a new one at base_seq. Under sync=none the sealed
// segment is fdatasync'd first: a power loss may then cut only the active
// segment, never leave a sealed one ending short of the next one's base seq
// (which recovery refuses as corruption).
Status Stream::Impl::Roll(uint64_t base_seq) {
  if (options_.sync == SyncMode::kNone) FLOE_RETURN_IF_ERROR(appender_->Sync());
  return CreateSegment(base_seq, {});
}

// Writer thread (or Recover), without mu_. Creates segment next_segment_id_
// starting at base_seq, optionally with a first batch, makes it durable (file
// and directory entry) and makes it the active segment.
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
  auto opened = ws.ok() ? OpenSegmentForReading(h) : Result<std::shared_ptr<Segment>>(Err(ws));
  if (!opened) {
    // Best effort: leave no half-made segment behind to confuse recovery.
    wfile.reset();
    appender.reset();
    if (env_->Remove(path).ok()) (void)env_->SyncDir(dir_);
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
  {
    MutexLock l(&mu_);
    segments_.push_back(std::move(seg));
  }
  appender_ = std::move(appender);
  return Status::OK();
}

// Writer thread, without mu_: periodic work when idle, rolling by age and
// retention.
void Stream::Impl::Maintain() {
  if (options_.segment_age_us > 0 && appender_->end() > kSegmentHeaderSize) {
    uint64_t next;
    int64_t created;
    bool idle;
    {
      MutexLock l(&mu_);
      next = slots_.next_seq();
      created = segments_.back()->created_us;
      idle = pending_.empty() && slots_.frontier() + 1 == next && failed_.ok();
    }
    if (idle && static_cast<int64_t>(env_->NowMicros()) - created > static_cast<int64_t>(options_.segment_age_us)) {
      Status s = Roll(next);
      if (!s.ok()) Log("rolling segment by age failed: " + s.ToString());
    }
  }
  Status s = EnforceRetention();
  if (!s.ok()) Log("retention: " + s.ToString());
}

// Any thread but the writer's: the writer thread owns the active segment, so
// ask it to roll and wait.
Status Stream::Impl::RollForTest() {
  MutexLock l(&mu_);
  const uint64_t target = rolls_done_ + 1;
  roll_requested_ = true;
  writer_cv_.Signal();
  while (rolls_done_ < target && !closing_) frontier_cv_.Wait(&mu_);
  return rolls_done_ >= target ? roll_status_ : Status::FailedPrecondition("stream is closed");
}

}  // namespace floe::log
