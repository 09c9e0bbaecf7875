// An MQTT session's bank record and the ids its core sessions get
// (docs/mqtt.md "Sessions").
#include <fmt/format.h>

#include "base/codec.h"
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"

namespace floe::frontend::mqtt {

uint64_t ClientHash(std::string_view client_id) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : std::string_view("floe.mqtt")) h = (h ^ c) * 0x100000001b3ull;
  h = (h ^ 0) * 0x100000001b3ull;
  for (unsigned char c : client_id) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t ConsumerSessionId(std::string_view client_id, uint64_t generation) {
  const uint64_t h = ClientHash(fmt::format("{}\n{}", client_id, generation)) & ~uint64_t{1};
  return h == 0 ? 2 : h;
}

std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  Encoder e(&out);
  e.U8(2);  // record version
  e.String(r.client_id);
  e.U64(r.generation);
  e.U32(r.expiry_s);
  e.U32(static_cast<uint32_t>(r.subscriptions.size()));
  for (const auto& s : r.subscriptions) {
    e.String(s.filter);
    e.U8(s.options.max_qos);
    e.U8(s.options.no_local);
    e.U8(s.options.retain_as_published);
    e.U8(static_cast<uint8_t>(s.options.retain_handling));
    e.U32(s.identifier);
    e.I64(s.since_us);
  }
  return out;
}

Result<SessionRecord> DecodeSessionRecord(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  SessionRecord r;
  if (d.U8() != 2) return Err(Status::Corruption("MQTT session record: unknown version"));
  r.client_id = std::string(d.String());
  r.generation = d.U64();
  r.expiry_s = d.U32();
  const uint32_t n = d.Count(17);
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    SessionRecord::Sub s;
    s.filter = std::string(d.String());
    s.options.max_qos = d.U8();
    s.options.no_local = d.U8() != 0;
    s.options.retain_as_published = d.U8() != 0;
    s.options.retain_handling = static_cast<codec::RetainHandling>(d.U8() % 3);
    s.identifier = d.U32();
    s.since_us = d.I64();
    r.subscriptions.push_back(std::move(s));
  }
  FLOE_RETURN_ERR_IF_ERROR(d.Finish());
  return r;
}

}  // namespace floe::frontend::mqtt
