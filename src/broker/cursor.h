// A durable consumer's cursor: which seqs of a stream it has been given and
// how each was answered. Kept apart from the log (persisted in the bank by
// CursorFlusher), as the message-log claim requires.
//
//   seq <= ack_floor            answered (ACK, TERM, a gap, or dead-lettered)
//   seq in done_above           answered, above the floor
//   seq in pending              delivered, not answered: outstanding with a
//                               session until its deadline, or (session 0)
//                               waiting to be redelivered at its deadline
//   next_seq <= seq             never delivered
//
// Invariant: ack_floor < every seq in done_above and in pending < next_seq.
// A confirmed answer (persisted before the node confirmed it) is never
// undone, so a confirmed ACK is never redelivered.
//
// Not thread-safe: the owner (ConsumerGroup) serialises access.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/types.h"

namespace floe::broker {

struct PendingEntry {
  uint32_t delivery_count = 0;
  int64_t deadline_ms = 0;   // outstanding: ack timeout; released: redeliver at
  uint64_t session_id = 0;   // 0: released (not outstanding with any session)
};

class Cursor {
 public:
  explicit Cursor(uint64_t first_seq = 1) : ack_floor_(first_seq - 1), next_seq_(first_seq) {}

  // Seqs due for redelivery now (released or past their deadline), lowest
  // first, at most `max`.
  std::vector<uint64_t> Due(int64_t now_ms, size_t max) const;
  // Records a delivery of `seq` to `session` (first or again).
  void Delivered(uint64_t seq, uint64_t session, int64_t deadline_ms);
  // Moves next_seq past a newly delivered range end (exclusive).
  void AdvanceNext(uint64_t next) { if (next > next_seq_) next_seq_ = next; }
  // Marks seq answered for good (ACK, TERM, gap, dead letter).
  void Done(uint64_t seq);
  // Marks the holes [first, first+count) answered: they hold no message.
  void Gap(uint64_t first, uint64_t count);

  // Applies one consumer answer. NotFound if seq is not pending (an ACK of an
  // already answered seq is OK: answers are idempotent).
  Status Apply(const AnswerItem& item, int64_t now_ms, int64_t ack_wait_ms);
  // The session went away: its outstanding deliveries are redelivered at once.
  void Release(uint64_t session, int64_t now_ms);
  // Releases every outstanding delivery (after a restart: no session survives).
  void ReleaseAll(int64_t now_ms);
  // A pending seq is not due again before `until_ms` (a dead-letter move that
  // failed is retried then); its delivery count is kept. No-op if not pending.
  void Postpone(uint64_t seq, int64_t until_ms);

  uint64_t ack_floor() const { return ack_floor_; }
  uint64_t next_seq() const { return next_seq_; }
  const std::map<uint64_t, PendingEntry>& pending() const { return pending_; }
  bool IsAnswered(uint64_t seq) const;
  const PendingEntry* Find(uint64_t seq) const;
  // Earliest deadline of any pending entry (INT64_MAX if none).
  int64_t NextDeadline() const;

  // Versioned binary encoding for the bank (docs/bank.md).
  std::string Encode() const;
  static Result<Cursor> Decode(std::string_view bytes);

 private:
  void Raise();  // moves ack_floor over answered seqs
  // Adds [first, end) to done_above_, merging with neighbours.
  void AddDone(uint64_t first, uint64_t end);

  uint64_t ack_floor_;
  uint64_t next_seq_;
  // Answered seqs above the floor, as disjoint ranges first -> end
  // (exclusive), not adjacent to one another: a gap of a million holes is one
  // entry.
  std::map<uint64_t, uint64_t> done_above_;
  std::map<uint64_t, PendingEntry> pending_;
};

}  // namespace floe::broker
