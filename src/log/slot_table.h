// The in-doubt slot table: which assigned seqs are still being written, and
// the visible frontier.
//
// This is the heart of the message-log claim (docs/claims.md): an append is
// given seqs by Assign(), which marks those slots *in doubt*; the write is
// attempted elsewhere; Resolve() records whether it succeeded (kCommitted:
// the seqs are the messages) or failed (kHole: the seqs are no message,
// forever); only then can the frontier pass the slots and make them visible.
//
// States of a range of slots, moved only by the stream's writer:
//   kInDoubt   --Resolve(kCommitted)-->  kCommitted
//   kInDoubt   --Resolve(kHole)------->  kHole
// A range that stays in doubt forever (the stream failed before its outcome
// could be made durable) pins the frontier below it.
//
// Invariant: frontier() is the highest seq s such that every slot <= s is
// resolved; it never decreases. Ranges resolve in any order.
//
// Not thread-safe: the owning Stream serialises calls under its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace floe::log {

enum class SlotState : uint8_t { kInDoubt, kCommitted, kHole };

class SlotTable {
 public:
  // The first seq to assign is next_seq; everything below it is resolved.
  explicit SlotTable(uint64_t next_seq) : next_seq_(next_seq), frontier_(next_seq - 1) {}

  // Assigns `count` (> 0) consecutive seqs and marks them in doubt; returns the first.
  uint64_t Assign(uint32_t count);
  // Resolves the range that Assign returned `first` for. Returns false (and
  // changes nothing) if no in-doubt range starts at `first`.
  bool Resolve(uint64_t first, SlotState state);
  // Resolves every in-doubt range to `state`; returns how many seqs.
  uint64_t ResolveAllInDoubt(SlotState state);
  // Returns the state of an assigned seq not yet passed by the frontier, or
  // kCommitted for one at or below it (whose real state the log holds).
  SlotState StateOf(uint64_t seq) const;

  uint64_t frontier() const { return frontier_; }
  uint64_t next_seq() const { return next_seq_; }
  size_t in_doubt_ranges() const;

 private:
  struct Range {
    uint64_t first;
    uint32_t count;
    SlotState state;
  };
  void Advance();

  uint64_t next_seq_;
  uint64_t frontier_;
  std::deque<Range> ranges_;  // assigned ranges above the frontier, in seq order
};

}  // namespace floe::log
