// Appending: seq assignment, the writer's slices, group commit and the
// resolution of each append to committed or hole, and creating segments.
//
// Group commit, exactly: appends that arrive while the writer is busy gather
// in groups of at most max_group_bytes. The writer takes one group at a time
// and writes it as one batch with one write and (sync=fdatasync) one
// fdatasync; only after that fdatasync returns are its appends resolved and
// their callbacks run. A roll or a hole adds the syncs of creating a segment
// (docs/format.md).
#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

namespace {

// Whether `messages` would pass an unstored message of one of their
// producers (dedup.h); sets *why if so. Requires the stream's mu_ (dedup is
// passed in to keep the helper free of the Impl).
bool OutOfOrder(const DedupIndex& dedup, std::span<const Message> messages, Status* why) {
  // Usually one producer per append; group the seqs of each, in order.
  std::vector<std::pair<uint64_t, uint64_t>> seqs;  // (producer id, producer seq)
  seqs.reserve(messages.size());
  for (const Message& m : messages)
    if (m.producer_id != 0) seqs.emplace_back(m.producer_id, m.producer_seq);
  std::stable_sort(seqs.begin(), seqs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<uint64_t> one;
  for (size_t i = 0; i < seqs.size();) {
    const uint64_t producer = seqs[i].first;
    one.clear();
    for (; i < seqs.size() && seqs[i].first == producer; ++i) one.push_back(seqs[i].second);
    std::sort(one.begin(), one.end());
    if (dedup.OutOfOrder(producer, one)) {
      *why = Status::Aborted(fmt::format(
          "producer {:016x}: an earlier message of this producer was not stored (its write failed or was "
          "refused); resend it before producer seq {}",
          producer, one.back()));
      return true;
    }
  }
  return false;
}

}  // namespace

bool Stream::Impl::OutOfOrderLocked(std::span<const Message> messages, Status* why) {
  return OutOfOrder(dedup_, messages, why);
}

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
  bool out_of_order = false;
  bool wake = false;
  {
    MutexLock l(&mu_);
    while (pending_bytes_ >= options_.max_pending_bytes && !closing_ && failed_.ok()) space_cv_.Wait(&mu_);
    // A full disk is said as the guard says it (with the room needed).
    Status admit;
    if (!closing_ && (failed_.ok() || failed_.code() == ErrorCode::kNoSpace)) admit = guard_->Admit();
    if (closing_) {
      refused = Status::Unavailable("stream is closed");
    } else if (!failed_.ok() || !admit.ok() || (dedup_.any_unstored() && OutOfOrderLocked(messages, &refused))) {
      if (refused.ok()) refused = !admit.ok() ? admit : failed_;
      else out_of_order = true;
      // Not stored: the producers' later messages must wait for these.
      for (const Message& m : messages) dedup_.MarkUnstored(m.producer_id, m.producer_seq);
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
      wake = NeedsWake();
    }
  }
  // Refused: the callback runs here, on the caller's thread, without mu_.
  if (!refused.ok()) {
    AppendResult r{refused};
    r.out_of_order = out_of_order;
    done(r);
    return;
  }
  if (wake) pool_->Schedule(this);
}

// One slice of the writer, on a pool thread (writer_pool.h): the front
// group written and synced, else a requested roll, else the close, else
// maintenance. It returns with more to do while groups wait, so a busy
// stream is queued again behind the others after every group.
bool Stream::Impl::RunSlice() {
  int64_t maintain_in_us = -1;
  {
    MutexLock l(&mu_);
    if (!pending_.empty()) {
      WriteOneGroup();
      maintain_pending_ = true;
      // A stream that never goes idle still gets its maintenance (retention,
      // rolls by age) once a second, between groups.
      const int64_t now = static_cast<int64_t>(env_->NowMicros());
      if (now - last_maintain_us_ >= 1'000'000) {
        last_maintain_us_ = now;
        maintain_pending_ = false;
        mu_.Unlock();
        Maintain();
        mu_.Lock();
      }
    } else if (roll_requested_) {
      roll_requested_ = false;
      const uint64_t next = slots_.next_seq();
      Status fail = failed_;
      mu_.Unlock();
      Status s = fail.ok() ? Roll(next) : fail;
      mu_.Lock();
      roll_status_ = s;
      ++rolls_done_;
      frontier_cv_.SignalAll();
    } else if (closing_) {
      writer_done_ = true;
      frontier_cv_.SignalAll();
      return false;
    } else {
      maintain_pending_ = false;
      last_maintain_us_ = static_cast<int64_t>(env_->NowMicros());
      mu_.Unlock();
      Maintain();
      mu_.Lock();
    }
    if (!pending_.empty() || roll_requested_ || closing_) return true;
    writer_scheduled_ = false;
    maintain_in_us = MaintenanceDelayUs();
  }
  if (maintain_in_us >= 0) pool_->ScheduleAfter(this, maintain_in_us);
  return false;
}

int64_t Stream::Impl::MaintenanceDelayUs() {
  constexpr int64_t kSecond = 1'000'000;
  constexpr int64_t kMinute = 60 * kSecond;
  // A heal waits, or the disk is full (Maintain probes for room).
  if (!failed_.ok() || guard_->full())
    return std::max<int64_t>(static_cast<int64_t>(options_.heal_min_backoff_us), 1000);
  // Retention by bytes and rolls are due only after writes.
  if (maintain_pending_) return kSecond;
  const int64_t now = static_cast<int64_t>(env_->NowMicros());
  int64_t delay = -1;
  auto soonest = [&](int64_t at) {
    const int64_t d = std::clamp<int64_t>(at - now, kSecond, kMinute);
    delay = delay < 0 ? d : std::min(delay, d);
  };
  if (options_.segment_age_us > 0 && segments_.back()->size > kSegmentHeaderSize)
    soonest(segments_.back()->created_us + static_cast<int64_t>(options_.segment_age_us));
  if (options_.retention_age_us > 0 && segments_.size() > 1)
    soonest(segments_.front()->last_ts + static_cast<int64_t>(options_.retention_age_us));
  // The writer's descriptor goes after an idle period (LetGoOfIdleFile).
  if (appender_->file() && options_.idle_file_close_us > 0)
    soonest(last_write_us_ + static_cast<int64_t>(options_.idle_file_close_us));
  return delay;
}

// Writer thread, mu_ held and a group pending: writes the front group and
// resolves its appends, with mu_ released around the write, the sync and the
// callbacks.
void Stream::Impl::WriteOneGroup() {
  // One batch per write and fdatasync: then at most the last batch of a
  // segment can be unsynced at a crash, and a good batch after a bad one
  // proves damage to synced data rather than a torn tail (docs/format.md).
  std::deque<Group> groups;
  groups.push_back(std::move(pending_.front()));
  pending_.pop_front();
  Status fail = failed_;
  mu_.Unlock();
  Status s = fail.ok() ? WriteGroups(groups) : fail;
  if (!s.ok() && fail.ok() && options_.metrics && options_.metrics->write_errors) options_.metrics->write_errors->Add();
  if (!s.ok()) {
    // Order (stream.h): every append queued behind a failed one fails with
    // it, as one range of holes, and its producer seqs become unstored in
    // the same step, so no later append of those producers can slip in
    // between. The queued groups carry the seqs that follow, contiguously.
    MutexLock l(&mu_);
    while (!pending_.empty()) {
      groups.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    MarkUnstored(groups);
  }
  FinishGroups(groups, s);
  mu_.Lock();
}

void Stream::Impl::MarkUnstored(const std::deque<Group>& groups) {
  for (const Group& g : groups) {
    RecordIterator ri(BatchHeader{0, static_cast<uint32_t>(g.buf.size()), BatchType::kData, g.base_seq, g.count},
                      g.buf);
    RecordView r;
    while (ri.Next(&r).value_or(false)) dedup_.MarkUnstored(r.producer_id, r.producer_seq);
  }
}

void Stream::Impl::ReportNoSpace(const Status& s, uint64_t group_bytes) {
  if (s.code() != ErrorCode::kNoSpace) return;
  // What lets this stream go on: a new segment (preallocated) and the batch.
  const uint64_t need = (options_.preallocate ? PreallocationStep(0) : 0) + group_bytes;
  guard_->Full(fmt::format("writing stream {} ({})", dir_, s.message()), need);
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
  FLOE_RETURN_IF_ERROR(EnsureWriterFile());
  if (roll) FLOE_RETURN_IF_ERROR(Roll(groups.front().base_seq));
  FLOE_RETURN_IF_ERROR(Preallocate(appender_->end() + total));
  std::vector<std::string_view> pieces;
  pieces.reserve(groups.size());
  for (Group& g : groups) pieces.emplace_back(g.buf);
  FLOE_RETURN_IF_ERROR(appender_->Append(pieces));
  if (options_.sync == SyncMode::kFdatasync) {
    const auto t0 = std::chrono::steady_clock::now();
    Status synced = appender_->Sync();
    if (const LogMetrics* m = options_.metrics) {
      if (m->fdatasync_ns)
        m->fdatasync_ns->Observe(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count()));
      if (!synced.ok() && m->sync_errors) m->sync_errors->Add();
    }
    FLOE_RETURN_IF_ERROR(synced);
  }
  if (const LogMetrics* m = options_.metrics) {
    uint64_t messages = 0;
    for (const Group& g : groups) messages += g.count;
    if (m->group_messages) m->group_messages->Observe(messages);
    if (m->group_bytes) m->group_bytes->Add(total);
  }
  last_write_us_ = static_cast<int64_t>(env_->NowMicros());
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
    uint64_t group_bytes = 0;
    for (const Group& g : groups) group_bytes += g.buf.size();
    bool preallocated = false;
    // After a failed write or fdatasync the bytes past the committed end may
    // be in the page cache but never reach the disk (Linux forgets pages
    // whose write-back failed): cut them, durably, so that a reopened stream
    // cannot read and serve them — and so that recovery never meets them
    // next to the hole segment that claims their seqs. If that fails the
    // holes are not recorded now; Heal cuts again first.
    Status hole = earlier_failure;
    if (!already_failed) {
      hole = EnsureWriterFile();
      if (hole.ok()) hole = appender_->file()->Truncate(committed);
      if (hole.ok()) hole = appender_->file()->Sync();
      if (hole.ok()) hole = CreateHoleSegment(first, end, groups.back().last_ts, &preallocated);
    }
    // A full disk, unless the hole segment just found room for a whole
    // preallocation step (the ENOSPC has passed).
    if (!(hole.ok() && preallocated)) ReportNoSpace(write_status, group_bytes);
    if (hole.ok()) {
      state = SlotState::kHole;
      Log(fmt::format("write of seqs [{}, {}) failed ({}); recorded them as holes in segment {}", first, end,
                      write_status.ToString(), next_segment_id_ - 1),
          "stream.write_failed", logging::Level::kError);
    } else {
      state = SlotState::kInDoubt;
      if (!already_failed) {
        Log(fmt::format("write of seqs [{}, {}) failed ({}) and recording the holes failed too ({}); "
                        "the stream refuses writes until it records them (retrying with backoff)",
                        first, end, write_status.ToString(), hole.ToString()),
            "stream.write_failed", logging::Level::kError);
        if (write_status.code() != ErrorCode::kNoSpace) ReportNoSpace(hole, group_bytes);
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
      ScheduleHeal(write_status);
    }
    frontier = slots_.frontier();
    listener = frontier_listener_;
  }
  space_cv_.SignalAll();
  frontier_cv_.SignalAll();
  if (listener && state != SlotState::kInDoubt) listener(frontier);
  for (auto& [cb, r] : done) cb(r);
}

// Writer thread, without mu_: periodic work when idle, rolling by age and
// retention.
void Stream::Impl::Maintain() {
  const bool room = guard_->Probe();
  bool heal = false;
  {
    MutexLock l(&mu_);
    // A full disk heals when the guard finds room again, not before.
    heal = !failed_.ok() && static_cast<int64_t>(env_->NowMicros()) >= heal_at_us_ &&
           (room || failed_.code() != ErrorCode::kNoSpace);
  }
  if (heal) {
    Status s = Heal();
    if (!s.ok()) {
      MutexLock l(&mu_);
      ScheduleHeal(s);
    }
  }
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
  LetGoOfIdleFile();
}

// mu_ held, writer thread: the stream refuses writes until Heal succeeds,
// tried again after a backoff that doubles from heal_min_backoff_us.
void Stream::Impl::ScheduleHeal(const Status& why) {
  const uint64_t backoff =
      std::min<uint64_t>(std::max<uint64_t>(options_.heal_min_backoff_us, 1) << std::min(heal_failures_, 20),
                         std::max(options_.heal_max_backoff_us, options_.heal_min_backoff_us));
  ++heal_failures_;
  heal_at_us_ = static_cast<int64_t>(env_->NowMicros() + backoff);
  const std::string text = fmt::format(
      "stream refuses writes after a failed write it could not record as holes ({}); it retries in {} ms", why.ToString(),
      backoff / 1000);
  failed_ = why.code() == ErrorCode::kNoSpace || guard_->full() ? Status::NoSpace(text) : Status::Unavailable(text);
}

// Writer thread, without mu_. The same repair a reopen would make (the
// committed bytes are exactly what recovery keeps), done in place: sessions
// keep the stream. Every assigned seq above the frontier is in doubt here
// (failed_ refused every append since), so they become one range of holes.
Status Stream::Impl::Heal() {
  uint64_t committed, first, next;
  int64_t ts;
  {
    MutexLock l(&mu_);
    committed = segments_.back()->size;
    first = slots_.frontier() + 1;
    next = slots_.next_seq();
    ts = last_ts_;
  }
  FLOE_RETURN_IF_ERROR(EnsureWriterFile());
  FLOE_RETURN_IF_ERROR(appender_->file()->Truncate(committed));
  FLOE_RETURN_IF_ERROR(appender_->file()->Sync());
  if (!abandoned_.empty()) {
    for (const std::string& path : abandoned_)
      if (env_->Exists(path)) FLOE_RETURN_IF_ERROR(env_->Remove(path));
    FLOE_RETURN_IF_ERROR(env_->SyncDir(dir_));
    abandoned_.clear();
  }
  // A fresh segment either way: the old appender's state past the committed
  // end is unspecified after the failed write.
  FLOE_RETURN_IF_ERROR(next > first ? CreateHoleSegment(first, next, ts) : CreateSegment(next, {}));
  std::function<void(uint64_t)> listener;
  uint64_t frontier;
  {
    MutexLock l(&mu_);
    const uint64_t n = slots_.ResolveAllInDoubt(SlotState::kHole);
    counters_.holes += n;
    ++counters_.heals;
    failed_ = Status::OK();
    heal_failures_ = 0;
    frontier = slots_.frontier();
    listener = frontier_listener_;
  }
  Log(fmt::format("recorded seqs [{}, {}) as holes in segment {} after the earlier failure; the stream accepts writes again",
                  first, next, next_segment_id_ - 1),
      "stream.healed", logging::Level::kInfo);
  space_cv_.SignalAll();
  frontier_cv_.SignalAll();
  if (listener) listener(frontier);
  return Status::OK();
}

// Any thread but the writer's: the writer thread owns the active segment, so
// ask it to roll and wait.
Status Stream::Impl::RollForTest() {
  MutexLock l(&mu_);
  if (closing_) return Status::FailedPrecondition("stream is closed");
  const uint64_t target = rolls_done_ + 1;
  roll_requested_ = true;
  if (NeedsWake()) {
    mu_.Unlock();
    pool_->Schedule(this);
    mu_.Lock();
  }
  while (rolls_done_ < target && !closing_) frontier_cv_.Wait(&mu_);
  return rolls_done_ >= target ? roll_status_ : Status::FailedPrecondition("stream is closed");
}

}  // namespace floe::log
