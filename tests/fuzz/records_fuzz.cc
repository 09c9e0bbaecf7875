// Fuzzes the decoders of the bank records a node reads back (docs/bank.md,
// docs/cluster.md): consumer cursors, session records, node records and
// stream configs. The first input byte picks the record kind, the rest is
// the value. Whatever decodes must re-encode to bytes that decode to the
// same encoding (round trip); nothing may read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "broker/cursor.h"
#include "broker/registry.h"
#include "broker/session.h"
#include "cluster/cluster.h"

namespace {

template <typename Decode, typename Encode>
void RoundTrip(std::string_view in, Decode decode, Encode encode) {
  auto r = decode(in);
  if (!r) return;
  const std::string once = encode(*r);
  auto again = decode(once);
  if (!again) abort();
  if (encode(*again) != once) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace floe;
  switch (data[0] % 4) {
    case 0:
      RoundTrip(in, [](std::string_view b) { return broker::Cursor::Decode(b); },
                [](const broker::Cursor& c) { return c.Encode(); });
      break;
    case 1:
      RoundTrip(in, [](std::string_view b) { return broker::DecodeSessionRecord(b); },
                [](const broker::SessionRecord& r) { return broker::EncodeSessionRecord(r); });
      break;
    case 2:
      RoundTrip(in, [](std::string_view b) { return cluster::DecodeNodeInfo(b); },
                [](const cluster::NodeInfo& n) { return cluster::EncodeNodeInfo(n); });
      break;
    case 3:
      RoundTrip(in, [](std::string_view b) { return broker::DecodeStreamConfig(b); },
                [](const StreamConfig& c) { return broker::EncodeStreamConfig(c); });
      break;
  }
  return 0;
}
