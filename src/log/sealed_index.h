// A sealed segment's index file, `<id:020>.idx` beside `<id:020>.seg`: what
// recovery's walk of the segment would find (where it ends, its seqs and
// timestamps, the sparse index), so that opening a stream reads only its
// active segment and the dedup window, however many segments it holds
// (docs/format.md "Sealed segment index").
//
// Written by the writer when it seals a segment (after the segment's last
// fdatasync), and by recovery for a sealed segment it had to walk. Never
// synced: it is a cache. A missing, torn, damaged or stale index (its CRC,
// id, base seq, end seq against the next segment, or size against the
// file do not agree) is ignored and the segment walked as before.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "log/segment.h"

namespace floe::log {

inline constexpr uint32_t kSealedIndexMagic = 0x58494C46;  // "FLIX"
inline constexpr uint16_t kSealedIndexVersion = 1;

struct SealedIndex {
  uint64_t id = 0;
  uint64_t base_seq = 0;
  uint64_t end_seq = 0;  // one past its last seq: the next segment's base seq
  uint64_t size = 0;     // end of its last batch
  int64_t first_ts = 0;
  int64_t last_ts = 0;
  std::vector<IndexEntry> index;
};

std::string SealedIndexFileName(uint64_t id);  // "<id:020>.idx"
bool ParseSealedIndexFileName(const std::string& name, uint64_t* id);
std::string EncodeSealedIndex(const SealedIndex& x);
// Refuses (Corruption) anything but a whole, well-formed index: its entries
// ascending, inside [base_seq, end_seq) and [header, size).
Result<SealedIndex> DecodeSealedIndex(std::string_view bytes);

}  // namespace floe::log
