// Fuzzes the decoder of the MQTT retained record (docs/mqtt.md "Retained
// messages"), which a node reads back from the bank on every SUBSCRIBE and
// `floe mqtt retained` prints: whatever decodes must re-encode to the same
// bytes (the encoding has one form) and decode again; nothing may read out
// of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "frontend/mqtt/retained.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::frontend::mqtt;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = DecodeRetainedRecord(in);
  if (!r) return 0;
  const std::string once = EncodeRetainedRecord(*r);
  if (once != in) abort();
  auto again = DecodeRetainedRecord(once);
  if (!again || again->seq != r->seq || again->topic != r->topic || again->headers != r->headers ||
      again->payload != r->payload)
    abort();
  return 0;
}
