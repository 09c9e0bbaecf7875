// Producer dedup window: for each producer session id, the producer seqs the
// stream holds (or has in doubt) and the stream seq of each, for the most
// recent `per_producer` of them and at most `max_producers` producers.
//
// The stream records here; the caller that serves a producer session (the
// broker, which handles one session's publishes in order) asks Lookup before
// appending, so a resent (session, producer seq) is stored at most once.
// Rebuilt from the tail of the log when a stream opens.
//
// It also keeps the order of each producer's messages across a failure
// (docs/protocol.md, "Order"): the producer seqs whose write failed, or whose
// append was refused, and that have not been appended since, are *unstored*.
// While a producer has an unstored seq u, the stream refuses its new
// messages above u (OutOfOrder), so a resend of u can never land behind a
// later message of the same producer. Unstored seqs live only in memory: a
// reopened stream starts without them, and the client resends in order
// after any reconnect.
//
// Not thread-safe: the owning Stream serialises calls under its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <set>
#include <span>
#include <unordered_map>

namespace floe::log {

class DedupIndex {
 public:
  DedupIndex(size_t per_producer, size_t max_producers)
      : per_producer_(per_producer), max_producers_(max_producers) {}

  void Record(uint64_t producer_id, uint64_t producer_seq, uint64_t seq);
  // Forgets the entry of a message whose write failed (its seq is a hole), so
  // a resend is accepted as new.
  void Forget(uint64_t producer_id, uint64_t producer_seq, uint64_t seq);

  // The message (producer id, producer seq) was not stored (its write failed,
  // or its append was refused) and must be resent before any later one.
  // Keeps at most `per_producer` per producer (more are not remembered: the
  // lowest ones already hold the later ones back).
  void MarkUnstored(uint64_t producer_id, uint64_t producer_seq);
  // Whether an append of `producer_seqs` (increasing) for the producer would
  // pass one of its unstored seqs: true if some unstored seq that the
  // append does not carry is below its highest seq.
  bool OutOfOrder(uint64_t producer_id, std::span<const uint64_t> producer_seqs) const;
  bool any_unstored() const { return unstored_ > 0; }
  size_t unstored(uint64_t producer_id) const;
  // Drops every unstored mark of the producer: its order starts afresh (a
  // new session of it, or a producer with no order to keep).
  void ForgetUnstored(uint64_t producer_id);
  // Every window rebuilt so far may miss older entries (the rebuild did not
  // read the whole log): seqs below a window are "below", not new.
  void MarkAllTrimmed();

  enum class Found { kNew, kKnown, kBelowWindow };
  struct Lookup {
    Found found = Found::kNew;
    uint64_t seq = 0;  // with kKnown: the stream seq holding it (maybe still in doubt)
  };
  Lookup Find(uint64_t producer_id, uint64_t producer_seq) const;
  // Highest producer seq held for the producer, 0 if none.
  uint64_t Highest(uint64_t producer_id, uint64_t* seq = nullptr) const;
  size_t producers() const { return windows_.size(); }

 private:
  struct Entry {
    uint64_t producer_seq;
    uint64_t seq;
  };
  struct Window {
    std::deque<Entry> entries;  // sorted by producer_seq
    bool trimmed = false;       // older entries were dropped
    std::set<uint64_t> unstored;  // see MarkUnstored
  };
  void Evict();

  size_t per_producer_;
  size_t max_producers_;
  std::unordered_map<uint64_t, Window> windows_;
  size_t unstored_ = 0;  // over every window
};

}  // namespace floe::log
