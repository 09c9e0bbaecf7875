// Fuzzes the decoder of the MQTT session record (docs/mqtt.md "Sessions"),
// which every node reads back from the bank at CONNECT and in its keeper's
// scan of every session: whatever decodes must re-encode to bytes that
// decode to the same record (version 2 input re-encodes as version 3), and
// nothing may read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "frontend/mqtt/session_record.h"

namespace {

using floe::frontend::mqtt::SessionRecord;

bool Same(const SessionRecord& a, const SessionRecord& b) {
  if (a.client_id != b.client_id || a.generation != b.generation || a.expiry_s != b.expiry_s ||
      a.node != b.node || a.left_at_ms != b.left_at_ms || a.subscriptions.size() != b.subscriptions.size() ||
      a.will.has_value() != b.will.has_value() || a.qos2_in != b.qos2_in || a.qos2_in_stream != b.qos2_in_stream || a.qos2_held != b.qos2_held || a.qos2_out.size() != b.qos2_out.size())
    return false;
  for (size_t i = 0; i < a.subscriptions.size(); ++i) {
    const auto &x = a.subscriptions[i], &y = b.subscriptions[i];
    if (x.filter != y.filter || !(x.options == y.options) || x.identifier != y.identifier || x.since_us != y.since_us)
      return false;
  }
  if (a.will && (a.will->topic != b.will->topic || a.will->headers != b.will->headers ||
                 a.will->payload != b.will->payload || a.will->qos != b.will->qos ||
                 a.will->retain != b.will->retain || a.will->delay_s != b.will->delay_s ||
                 a.will->producer_seq != b.will->producer_seq))
    return false;
  for (auto ia = a.qos2_out.begin(), ib = b.qos2_out.begin(); ia != a.qos2_out.end(); ++ia, ++ib)
    if (ia->first != ib->first || ia->second.packet_id != ib->second.packet_id ||
        ia->second.released != ib->second.released)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::frontend::mqtt;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = DecodeSessionRecord(in);
  if (!r) return 0;
  const std::string once = EncodeSessionRecord(*r);
  auto again = DecodeSessionRecord(once);
  if (!again || !Same(*r, *again)) abort();
  if (EncodeSessionRecord(*again) != once) abort();
  return 0;
}
