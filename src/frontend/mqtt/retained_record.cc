// The retained record's encoding (docs/mqtt.md "Retained messages"); floe_base
// only, so tests/fuzz/retained_fuzz.cc compiles it alone.
#include <fmt/format.h>

#include "base/codec.h"
#include "frontend/mqtt/retained.h"

namespace floe::frontend::mqtt {

namespace {
constexpr uint8_t kRetainedVersion = 1;
}  // namespace

uint64_t RetainedTopicHash(std::string_view topic) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : std::string_view("floe.mqtt.retained")) h = (h ^ c) * 0x100000001b3ull;
  h = (h ^ 0) * 0x100000001b3ull;
  for (unsigned char c : topic) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string RetainedKey(std::string_view topic) {
  return fmt::format("{}{:016x}", kRetainedPrefix, RetainedTopicHash(topic));
}

std::string EncodeRetainedRecord(const RetainedRecord& r) {
  std::string out;
  out.reserve(1 + 8 + 2 + r.topic.size() + 4 + r.headers.size() + 4 + r.payload.size());
  Encoder e(&out);
  e.U8(kRetainedVersion);
  e.U64(r.seq);
  e.String(r.topic);  // a topic name is at most 65,535 bytes [MQTT-4.7.3-3]: never cut
  e.Blob(r.headers);
  e.Blob(r.payload);
  return out;
}

Result<RetainedRecord> DecodeRetainedRecord(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  const uint8_t version = d.U8();
  if (d.ok() && version != kRetainedVersion)
    return Err(Status::Corruption(fmt::format("MQTT retained record: unknown version {}", version)));
  RetainedRecord r;
  r.seq = d.U64();
  r.topic = std::string(d.String());
  r.headers = std::string(d.Blob());
  r.payload = std::string(d.Blob());
  if (Status s = d.Finish(); !s.ok()) return Err(Status::Corruption("MQTT retained record: " + std::string(s.message())));
  if (r.seq == 0) return Err(Status::Corruption("MQTT retained record: seq 0"));
  if (r.topic.empty()) return Err(Status::Corruption("MQTT retained record: empty topic"));
  if (r.payload.empty()) return Err(Status::Corruption("MQTT retained record: empty payload"));
  return r;
}

}  // namespace floe::frontend::mqtt
