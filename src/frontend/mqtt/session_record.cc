// An MQTT session's bank record and the ids its core sessions get
// (docs/mqtt.md "Sessions").
#include <fmt/format.h>

#include "base/codec.h"
#include "frontend/mqtt/session_record.h"

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

// Version 4: version 3 with the stream of each inbound and outbound QoS 2
// entry. Versions 3 and 2 (2 lacks everything after the subscriptions) are
// still read: their entries are the default MQTT stream's.
std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  Encoder e(&out);
  e.U8(4);  // record version
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
  e.String(r.node);
  e.I64(r.left_at_ms);
  e.U8(r.will ? 1 : 0);
  if (r.will) {
    e.String(r.will->topic);
    e.Blob(r.will->headers);
    e.Blob(r.will->payload);
    e.U8(r.will->qos);
    e.U8(r.will->retain);
    e.U32(r.will->delay_s);
    e.U64(r.will->producer_seq);
  }
  e.U32(static_cast<uint32_t>(r.qos2_in.size()));
  for (const auto& [id, pseq] : r.qos2_in) {
    e.U16(id);
    e.U64(pseq);
    auto stream = r.qos2_in_stream.find(id);
    e.String(stream == r.qos2_in_stream.end() ? std::string_view() : std::string_view(stream->second));
  }
  e.U32(static_cast<uint32_t>(r.qos2_out.size()));
  for (const auto& [key, o] : r.qos2_out) {
    e.String(key.first);
    e.U64(key.second);
    e.U16(o.packet_id);
    e.U8(o.released);
  }
  e.U32(static_cast<uint32_t>(r.qos2_held.size()));
  for (const auto& [id, released] : r.qos2_held) {
    e.U16(id);
    e.U8(released);
  }
  return out;
}

Result<SessionRecord> DecodeSessionRecord(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  SessionRecord r;
  const uint8_t version = d.U8();
  if (version < 2 || version > 4) return Err(Status::Corruption("MQTT session record: unknown version"));
  r.client_id = std::string(d.String());
  r.generation = d.U64();
  r.expiry_s = d.U32();
  const uint32_t n = d.Count(17);
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    SessionRecord::Sub s;
    s.filter = std::string(d.String());
    s.options.max_qos = std::min<uint8_t>(d.U8(), 2);
    s.options.no_local = d.U8() != 0;
    s.options.retain_as_published = d.U8() != 0;
    s.options.retain_handling = static_cast<codec::RetainHandling>(d.U8() % 3);
    s.identifier = d.U32();
    s.since_us = d.I64();
    r.subscriptions.push_back(std::move(s));
  }
  if (version >= 3 && d.ok()) {
    r.node = std::string(d.String());
    r.left_at_ms = d.I64();
    if (d.U8() != 0) {
      SessionRecord::Will w;
      w.topic = std::string(d.String());
      w.headers = std::string(d.Blob());
      w.payload = std::string(d.Blob());
      w.qos = std::min<uint8_t>(d.U8(), 2);
      w.retain = d.U8() != 0;
      w.delay_s = d.U32();
      w.producer_seq = d.U64();
      r.will = std::move(w);
    }
    const uint32_t in = d.Count(version >= 4 ? 12 : 10);
    for (uint32_t i = 0; i < in && d.ok(); ++i) {
      const uint16_t id = d.U16();
      r.qos2_in[id] = d.U64();
      if (version >= 4) {
        std::string stream(d.String());
        if (!stream.empty()) r.qos2_in_stream[id] = std::move(stream);
      }
    }
    const uint32_t out = d.Count(version >= 4 ? 13 : 11);
    for (uint32_t i = 0; i < out && d.ok(); ++i) {
      std::string stream = version >= 4 ? std::string(d.String()) : std::string();
      const SessionRecord::DeliveryKey seq{std::move(stream), d.U64()};
      SessionRecord::Out o;
      o.packet_id = d.U16();
      o.released = d.U8() != 0;
      r.qos2_out[seq] = o;
    }
    const uint32_t held = d.Count(3);
    for (uint32_t i = 0; i < held && d.ok(); ++i) {
      const uint16_t id = d.U16();
      r.qos2_held[id] = d.U8() != 0;
    }
  }
  FLOE_RETURN_ERR_IF_ERROR(d.Finish());
  return r;
}

}  // namespace floe::frontend::mqtt
