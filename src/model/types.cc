#include "model/types.h"

#include <fmt/format.h>

namespace floe {

void EncodeStreamConfigFields(Encoder& e, const StreamConfig& c) {
  e.U64(c.retention_bytes);
  e.U64(c.retention_age_ms);
  e.U32(c.max_message_bytes);
  e.U8(static_cast<uint8_t>(c.sync));
  e.U32(c.ack_wait_ms);
  e.U32(c.max_deliveries);
  e.String(c.dead_letter);
}

StreamConfig DecodeStreamConfigFields(Decoder& d) {
  StreamConfig c;
  c.retention_bytes = d.U64();
  c.retention_age_ms = d.U64();
  c.max_message_bytes = d.U32();
  const uint8_t sync = d.U8();
  if (d.ok() && sync > 1) d.Fail("unknown sync mode");
  c.sync = static_cast<SyncMode>(sync);
  c.ack_wait_ms = d.U32();
  c.max_deliveries = d.U32();
  c.dead_letter = std::string(d.String());
  return c;
}

Status ValidateStreamName(std::string_view name) {
  if (name.empty() || name.size() > 128)
    return Status::InvalidArgument(fmt::format("name must be 1 to 128 bytes, got {}", name.size()));
  if (name[0] == '.') return Status::InvalidArgument("name must not start with '.'");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return Status::InvalidArgument(fmt::format("name '{}' may use only A-Z a-z 0-9 . _ -", name));
  }
  return Status::OK();
}

}  // namespace floe
