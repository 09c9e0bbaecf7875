#include "log/dedup.h"

#include <algorithm>
#include <vector>

namespace floe::log {
namespace {

template <typename Deque>
auto LowerBound(Deque& d, uint64_t producer_seq) {
  return std::lower_bound(d.begin(), d.end(), producer_seq,
                          [](const auto& e, uint64_t p) { return e.producer_seq < p; });
}

}  // namespace

void DedupIndex::Record(uint64_t producer_id, uint64_t producer_seq, uint64_t seq) {
  if (producer_id == 0) return;
  auto [it, inserted] = windows_.try_emplace(producer_id);
  Window& w = it->second;
  if (w.entries.empty() || w.entries.back().producer_seq < producer_seq) {
    w.entries.push_back({producer_seq, seq});  // the common case: in order
  } else {
    auto pos = LowerBound(w.entries, producer_seq);
    if (pos != w.entries.end() && pos->producer_seq == producer_seq) pos->seq = seq;
    else w.entries.insert(pos, {producer_seq, seq});
  }
  if (!w.unstored.empty()) unstored_ -= w.unstored.erase(producer_seq);  // stored (in doubt) again
  if (w.entries.size() > per_producer_) {
    w.entries.pop_front();
    w.trimmed = true;
  }
  if (inserted && windows_.size() > max_producers_) Evict();
}

void DedupIndex::Forget(uint64_t producer_id, uint64_t producer_seq, uint64_t seq) {
  auto it = windows_.find(producer_id);
  if (it == windows_.end()) return;
  auto& entries = it->second.entries;
  auto pos = LowerBound(entries, producer_seq);
  if (pos != entries.end() && pos->producer_seq == producer_seq && pos->seq == seq) entries.erase(pos);
}

void DedupIndex::MarkUnstored(uint64_t producer_id, uint64_t producer_seq) {
  if (producer_id == 0) return;
  Window& w = windows_[producer_id];
  if (w.unstored.size() >= per_producer_ && producer_seq > *w.unstored.rbegin()) return;
  if (w.unstored.insert(producer_seq).second) ++unstored_;
  if (w.unstored.size() > per_producer_) {
    w.unstored.erase(std::prev(w.unstored.end()));
    --unstored_;
  }
}

bool DedupIndex::OutOfOrder(uint64_t producer_id, std::span<const uint64_t> producer_seqs) const {
  if (unstored_ == 0 || producer_id == 0 || producer_seqs.empty()) return false;
  auto it = windows_.find(producer_id);
  if (it == windows_.end()) return false;
  const uint64_t highest = producer_seqs.back();
  for (uint64_t u : it->second.unstored) {
    if (u >= highest) return false;
    // An unstored seq the append carries itself is being resent: fine.
    if (!std::binary_search(producer_seqs.begin(), producer_seqs.end(), u)) return true;
  }
  return false;
}

void DedupIndex::MarkAllTrimmed() {
  for (auto& [id, w] : windows_) w.trimmed = true;
}

void DedupIndex::ForgetUnstored(uint64_t producer_id) {
  auto it = windows_.find(producer_id);
  if (it == windows_.end()) return;
  unstored_ -= it->second.unstored.size();
  it->second.unstored.clear();
}

size_t DedupIndex::unstored(uint64_t producer_id) const {
  auto it = windows_.find(producer_id);
  return it == windows_.end() ? 0 : it->second.unstored.size();
}

DedupIndex::Lookup DedupIndex::Find(uint64_t producer_id, uint64_t producer_seq) const {
  auto it = windows_.find(producer_id);
  if (it == windows_.end() || producer_id == 0) return {};
  const Window& w = it->second;
  if (w.entries.empty()) return {};
  if (producer_seq < w.entries.front().producer_seq && w.trimmed) return {Found::kBelowWindow, 0};
  auto pos = LowerBound(w.entries, producer_seq);
  if (pos != w.entries.end() && pos->producer_seq == producer_seq) return {Found::kKnown, pos->seq};
  return {};
}

uint64_t DedupIndex::Highest(uint64_t producer_id, uint64_t* seq) const {
  auto it = windows_.find(producer_id);
  if (it == windows_.end() || it->second.entries.empty()) return 0;
  if (seq) *seq = it->second.entries.back().seq;
  return it->second.entries.back().producer_seq;
}

void DedupIndex::Evict() {
  // Drop the producers that wrote least recently (lowest latest seq) until
  // 90% of the cap remain; amortised over many inserts.
  std::vector<std::pair<uint64_t, uint64_t>> latest;  // (latest seq, producer)
  latest.reserve(windows_.size());
  for (const auto& [id, w] : windows_) latest.emplace_back(w.entries.empty() ? 0 : w.entries.back().seq, id);
  size_t keep = max_producers_ - max_producers_ / 10;
  if (keep >= latest.size()) return;
  std::nth_element(latest.begin(), latest.begin() + static_cast<long>(latest.size() - keep), latest.end());
  for (size_t i = 0; i < latest.size() - keep; ++i) {
    auto it = windows_.find(latest[i].second);
    unstored_ -= it->second.unstored.size();
    windows_.erase(it);
  }
}

}  // namespace floe::log
