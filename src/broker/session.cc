#include "broker/session.h"

#include <fmt/format.h>

#include "base/codec.h"

namespace floe::broker {

namespace {
constexpr uint8_t kSessionEncodingVersion = 1;
}

std::string SessionKey(uint64_t id) { return fmt::format("{}{:016x}", kSessionsPrefix, id); }

std::string_view SessionKindName(SessionRecord::Kind k) {
  return k == SessionRecord::Kind::kProducer ? "producer" : "consumer";
}

std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  Encoder e(&out);
  e.U8(kSessionEncodingVersion);
  e.U64(r.id);
  e.U8(static_cast<uint8_t>(r.kind));
  e.String(r.stream);
  e.String(r.consumer);
  e.String(r.holder);
  e.U64(r.epoch);
  e.I64(r.updated_ms);
  e.U64(r.last_producer_seq);
  e.U64(r.last_seq);
  e.U64(r.messages);
  e.U64(r.answers);
  e.U32(r.pending);
  e.U64(r.conveying_producer_seq);
  e.U64(r.conveying_total);
  e.U64(r.bytes_conveyed);
  return out;
}

Result<SessionRecord> DecodeSessionRecord(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  if (d.U8() != kSessionEncodingVersion) return Err(Status::Corruption("unknown session record version"));
  SessionRecord r;
  r.id = d.U64();
  const uint8_t kind = d.U8();
  r.stream = std::string(d.String());
  r.consumer = std::string(d.String());
  r.holder = std::string(d.String());
  r.epoch = d.U64();
  r.updated_ms = d.I64();
  r.last_producer_seq = d.U64();
  r.last_seq = d.U64();
  r.messages = d.U64();
  r.answers = d.U64();
  r.pending = d.U32();
  r.conveying_producer_seq = d.U64();
  r.conveying_total = d.U64();
  r.bytes_conveyed = d.U64();
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption("session record: " + std::string(s.message())));
  if (kind != 1 && kind != 2) return Err(Status::Corruption(fmt::format("session record: kind {}", kind)));
  r.kind = static_cast<SessionRecord::Kind>(kind);
  return r;
}

}  // namespace floe::broker
