#include "broker/cursor.h"

#include <algorithm>
#include <climits>

#include <fmt/format.h>

#include "base/codec.h"

namespace floe::broker {

namespace {
constexpr uint8_t kCursorEncodingVersion = 1;
}

std::vector<uint64_t> Cursor::Due(int64_t now_ms, size_t max) const {
  std::vector<uint64_t> out;
  for (const auto& [seq, p] : pending_) {
    if (out.size() >= max) break;
    if (p.deadline_ms <= now_ms) out.push_back(seq);
  }
  return out;
}

void Cursor::Delivered(uint64_t seq, uint64_t session, int64_t deadline_ms) {
  PendingEntry& p = pending_[seq];
  ++p.delivery_count;
  p.session_id = session;
  p.deadline_ms = deadline_ms;
  AdvanceNext(seq + 1);
}

void Cursor::Done(uint64_t seq) {
  pending_.erase(seq);
  if (seq > ack_floor_) AddDone(seq, seq + 1);
  AdvanceNext(seq + 1);
  Raise();
}

void Cursor::Gap(uint64_t first, uint64_t count) {
  const uint64_t end = first + count;
  // Holes never hold a delivered message; should a gap notice claim a
  // pending seq anyway, that delivery stays pending.
  uint64_t from = std::max(first, ack_floor_ + 1);
  for (auto it = pending_.lower_bound(from); it != pending_.end() && it->first < end; ++it) {
    if (from < it->first) AddDone(from, it->first);
    from = it->first + 1;
  }
  if (from < end) AddDone(from, end);
  AdvanceNext(end);
  Raise();
}

Status Cursor::Apply(const AnswerItem& item, int64_t now_ms, int64_t ack_wait_ms) {
  auto it = pending_.find(item.seq);
  if (it == pending_.end()) {
    if (IsAnswered(item.seq)) return Status::OK();
    return Status::NotFound(fmt::format("seq {} is not pending for this consumer", item.seq));
  }
  switch (item.kind) {
    case AnswerKind::kAck:
    case AnswerKind::kTerminate:
      Done(item.seq);
      break;
    case AnswerKind::kNak:
      it->second.session_id = 0;
      it->second.deadline_ms = now_ms + item.delay_ms;
      break;
    case AnswerKind::kInProgress:
      it->second.deadline_ms = now_ms + ack_wait_ms;
      break;
  }
  return Status::OK();
}

void Cursor::Release(uint64_t session, int64_t now_ms) {
  for (auto& [seq, p] : pending_) {
    if (p.session_id == session) {
      p.session_id = 0;
      p.deadline_ms = std::min(p.deadline_ms, now_ms);
    }
  }
}

void Cursor::ReleaseAll(int64_t now_ms) {
  for (auto& [seq, p] : pending_) {
    if (p.session_id != 0) p.deadline_ms = std::min(p.deadline_ms, now_ms);
    p.session_id = 0;
  }
}

void Cursor::Postpone(uint64_t seq, int64_t until_ms) {
  auto it = pending_.find(seq);
  if (it == pending_.end()) return;
  it->second.session_id = 0;
  it->second.deadline_ms = until_ms;
}

const PendingEntry* Cursor::Find(uint64_t seq) const {
  auto it = pending_.find(seq);
  return it == pending_.end() ? nullptr : &it->second;
}

int64_t Cursor::NextDeadline() const {
  int64_t d = INT64_MAX;
  for (const auto& [seq, p] : pending_) d = std::min(d, p.deadline_ms);
  return d;
}

void Cursor::Raise() {
  // Ranges never touch, so at most the first one starts at the floor.
  if (!done_above_.empty() && done_above_.begin()->first == ack_floor_ + 1) {
    ack_floor_ = done_above_.begin()->second - 1;
    done_above_.erase(done_above_.begin());
  }
}

void Cursor::AddDone(uint64_t first, uint64_t end) {
  // Merge with a range that ends at or after `first` and starts before it.
  auto it = done_above_.upper_bound(first);
  if (it != done_above_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) {
      first = prev->first;
      end = std::max(end, prev->second);
      it = done_above_.erase(prev);
    }
  }
  // Absorb the ranges that start within [first, end].
  while (it != done_above_.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = done_above_.erase(it);
  }
  done_above_.emplace(first, end);
}

bool Cursor::IsAnswered(uint64_t seq) const {
  if (seq <= ack_floor_) return true;
  auto it = done_above_.upper_bound(seq);
  return it != done_above_.begin() && std::prev(it)->second > seq;
}

std::string Cursor::Encode() const {
  std::string out;
  Encoder e(&out);
  e.U8(kCursorEncodingVersion);
  e.U64(ack_floor_);
  e.U64(next_seq_);
  e.U32(static_cast<uint32_t>(done_above_.size()));
  for (const auto& [first, end] : done_above_) {
    e.U64(first);
    e.U64(end);
  }
  e.U32(static_cast<uint32_t>(pending_.size()));
  for (const auto& [seq, p] : pending_) {
    e.U64(seq);
    e.U32(p.delivery_count);
    e.I64(p.deadline_ms);
    e.U64(p.session_id);
  }
  return out;
}

Result<Cursor> Cursor::Decode(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  if (d.U8() != kCursorEncodingVersion) return Err(Status::Corruption("unknown cursor encoding version"));
  Cursor c;
  c.ack_floor_ = d.U64();
  c.next_seq_ = d.U64();
  uint32_t n = d.Count(16);
  uint64_t prev_end = c.ack_floor_ + 1;
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    const uint64_t first = d.U64(), end = d.U64();
    // Ranges in order, not touching each other or the floor, below next_seq.
    if (d.ok() && (first <= prev_end || end <= first || end > c.next_seq_)) d.Fail("answered range out of order");
    c.done_above_.emplace(first, end);
    prev_end = end;
  }
  n = d.Count(28);
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    uint64_t seq = d.U64();
    if (d.ok() && (seq <= c.ack_floor_ || seq >= c.next_seq_ || c.IsAnswered(seq) || c.pending_.count(seq)))
      d.Fail("pending seq outside (ack floor, next seq) or already answered");
    PendingEntry p;
    p.delivery_count = d.U32();
    p.deadline_ms = d.I64();
    p.session_id = d.U64();
    c.pending_[seq] = p;
  }
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption("cursor: " + std::string(s.message())));
  if (c.next_seq_ <= c.ack_floor_) return Err(Status::Corruption("cursor: next seq not above the ack floor"));
  return c;
}

}  // namespace floe::broker
