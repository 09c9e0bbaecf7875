#include "log/slot_table.h"

#include <algorithm>
#include <cassert>

namespace floe::log {

uint64_t SlotTable::Assign(uint32_t count) {
  assert(count > 0);
  const uint64_t first = next_seq_;
  ranges_.push_back({first, count, SlotState::kInDoubt});
  next_seq_ += count;
  return first;
}

bool SlotTable::Resolve(uint64_t first, SlotState state) {
  assert(state != SlotState::kInDoubt);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), first,
                             [](const Range& r, uint64_t f) { return r.first < f; });
  if (it == ranges_.end() || it->first != first || it->state != SlotState::kInDoubt) return false;
  it->state = state;
  Advance();
  return true;
}

uint64_t SlotTable::ResolveAllInDoubt(SlotState state) {
  assert(state != SlotState::kInDoubt);
  uint64_t n = 0;
  for (Range& r : ranges_) {
    if (r.state != SlotState::kInDoubt) continue;
    r.state = state;
    n += r.count;
  }
  Advance();
  return n;
}

void SlotTable::Advance() {
  while (!ranges_.empty() && ranges_.front().state != SlotState::kInDoubt) {
    // Invariant: ranges are contiguous, so the front range starts right after
    // the frontier.
    assert(ranges_.front().first == frontier_ + 1);
    frontier_ += ranges_.front().count;
    ranges_.pop_front();
  }
}

SlotState SlotTable::StateOf(uint64_t seq) const {
  if (seq <= frontier_) return SlotState::kCommitted;
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), seq,
                             [](uint64_t s, const Range& r) { return s < r.first; });
  assert(it != ranges_.begin());
  return std::prev(it)->state;
}

size_t SlotTable::in_doubt_ranges() const {
  return static_cast<size_t>(std::count_if(ranges_.begin(), ranges_.end(),
                                           [](const Range& r) { return r.state == SlotState::kInDoubt; }));
}

}  // namespace floe::log
