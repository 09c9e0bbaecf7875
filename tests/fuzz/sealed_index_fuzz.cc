// Fuzzes the sealed segment index decoder (log/sealed_index.h), which
// recovery reads for every sealed segment: whatever decodes re-encodes to the
// same bytes (one form) and keeps its invariants; nothing reads out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "log/format.h"
#include "log/sealed_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::log;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto x = DecodeSealedIndex(in);
  if (!x) return 0;
  if (EncodeSealedIndex(*x) != in) abort();
  for (size_t i = 0; i < x->index.size(); ++i) {
    const IndexEntry& e = x->index[i];
    if (e.seq < x->base_seq || e.seq >= x->end_seq || e.offset < kSegmentHeaderSize || e.offset >= x->size) abort();
    if (i > 0 && (e.seq <= x->index[i - 1].seq || e.offset <= x->index[i - 1].offset)) abort();
  }
  return 0;
}
