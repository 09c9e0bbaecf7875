// DecodePacket: the fixed header, then each packet's fields in the order the
// specification gives them, then ValidatePacket on the result. Parsing
// failures are Malformed Packet (0x81); what parses but is not allowed comes
// from ValidatePacket.
#include <fmt/format.h>

#include "mqtt/codec.h"
#include "mqtt/primitives.h"
#include "mqtt/validate.h"

namespace floe::mqtt {

namespace {

DecodeError Malformed(std::string m) { return {ReasonCode::kMalformedPacket, std::move(m), 0}; }

using Result = DecodeResult<Packet>;

// The Reader's first failure, as a Malformed Packet naming the packet.
Result Failed(const Reader& r, PacketType t) {
  return tl::unexpected(Malformed(fmt::format("{}: {}", PacketTypeName(t), r.error())));
}

// Bytes left after the last field: the Remaining Length claims more than the
// packet holds.
Result Trailing(const Reader& r, PacketType t) {
  return tl::unexpected(Malformed(fmt::format("{} has {} bytes after its last field (the Remaining Length "
                                              "does not match its contents)",
                                              PacketTypeName(t), r.remaining())));
}

Result DecodeConnect(Reader& r, Sender sender) {
  auto fail = [](DecodeError e, uint8_t level) {
    e.protocol_level = level;
    return Result(tl::unexpected(std::move(e)));
  };
  std::string_view name = r.Utf8("protocol name");
  uint8_t level = r.U8();
  if (!r.ok()) return fail(Malformed(fmt::format("CONNECT: {}", r.error())), level);
  Connect c;
  if (name == "MQTT" && level == 4) {
    c.version = Version::kV311;
  } else if (name == "MQTT" && level == 5) {
    c.version = Version::kV5;
  } else {
    // "MQIsdp" level 3 is MQTT 3.1; anything else is not MQTT this server
    // speaks. Both get 0x84 (3.1.1: return code 0x01) [MQTT-3.1.2-1, -2].
    std::string what = name == "MQIsdp" ? fmt::format("MQTT 3.1 (\"MQIsdp\", level {})", level)
                       : name == "MQTT" ? fmt::format("protocol level {}", level)
                                        : fmt::format("protocol name \"{}\"", name);
    return fail({ReasonCode::kUnsupportedProtocolVersion,
                 fmt::format("CONNECT asks for {}; floe speaks MQTT 3.1.1 (level 4) and 5.0 (level 5)", what), level},
                level);
  }
  const bool v5 = c.version == Version::kV5;
  uint8_t flags = r.U8();
  c.keep_alive = r.U16();
  if (!r.ok()) return fail(Malformed(fmt::format("CONNECT: {}", r.error())), level);
  if (flags & 0x01) return fail(Malformed("CONNECT's reserved flag is set [MQTT-3.1.2-3]"), level);
  c.clean_start = flags & 0x02;
  const bool will_flag = flags & 0x04;
  const uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = flags & 0x20;
  const bool password_flag = flags & 0x40;
  const bool user_name_flag = flags & 0x80;
  if (!will_flag && (will_qos != 0 || will_retain)) {
    return fail(Malformed("CONNECT sets Will QoS or Will Retain without the Will Flag [MQTT-3.1.2-11, -13]"), level);
  }
  if (will_qos == 3) return fail(Malformed("CONNECT asks for Will QoS 3 [MQTT-3.1.2-12]"), level);
  if (v5) {
    if (auto e = ReadProperties(r, PropertyScope::kConnect, &c.properties)) return fail(std::move(*e), level);
  }
  c.client_id = r.Utf8("client identifier");
  if (will_flag) {
    Will w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (v5 && r.ok()) {
      if (auto e = ReadProperties(r, PropertyScope::kWill, &w.properties)) return fail(std::move(*e), level);
    }
    w.topic = r.Utf8("will topic");
    w.payload = r.Binary();
    c.will = std::move(w);
  }
  if (user_name_flag) c.user_name = r.Utf8("user name");
  if (password_flag) c.password = r.Binary();
  if (!r.ok()) return fail(Malformed(fmt::format("CONNECT: {} [MQTT-3.1.2-9, -17, -19]", r.error())), level);
  if (!r.empty()) {
    return fail(Malformed(fmt::format("CONNECT has {} bytes after its last field", r.remaining())), level);
  }
  if (auto e = ValidatePacket(c, c.version, sender, /*decoded=*/true)) return fail(std::move(*e), level);
  return Packet(std::move(c));
}

Result DecodeConnack(Reader& r, Version v) {
  Connack c;
  uint8_t flags = r.U8();
  uint8_t code = r.U8();
  if (!r.ok()) return Failed(r, PacketType::kConnack);
  if (flags & 0xFE) return tl::unexpected(Malformed("CONNACK's reserved flags are set [MQTT-3.2.2-1]"));
  c.session_present = flags & 0x01;
  if (v == Version::kV5) {
    c.reason = static_cast<ReasonCode>(code);
    if (auto e = ReadProperties(r, PropertyScope::kConnack, &c.properties)) return tl::unexpected(std::move(*e));
  } else {
    auto reason = FromConnectReturnCode(code);
    if (!reason) {
      return tl::unexpected(DecodeError{ReasonCode::kProtocolError,
                                        fmt::format("CONNACK return code {} is not one of 0..5", code), 0});
    }
    c.reason = *reason;
  }
  return Packet(std::move(c));
}

Result DecodePublish(Reader& r, uint8_t flags, Version v) {
  Publish p;
  p.dup = flags & 0x08;
  p.qos = (flags >> 1) & 0x03;
  p.retain = flags & 0x01;
  if (p.qos == 3) return tl::unexpected(Malformed("PUBLISH has both QoS bits set [MQTT-3.3.1-4]"));
  if (p.dup && p.qos == 0) return tl::unexpected(Malformed("PUBLISH has DUP set with QoS 0 [MQTT-3.3.1-2]"));
  p.topic = r.Utf8("topic name");
  if (p.qos > 0) p.packet_id = r.U16();
  if (!r.ok()) return Failed(r, PacketType::kPublish);
  if (v == Version::kV5) {
    if (auto e = ReadProperties(r, PropertyScope::kPublish, &p.properties)) return tl::unexpected(std::move(*e));
  }
  p.payload = r.Rest();
  return Packet(std::move(p));
}

// PUBACK, PUBREC, PUBREL, PUBCOMP: MQTT 5 may leave out the reason code
// (Remaining Length 2: Success) and the properties (Remaining Length 3).
template <typename T>
Result DecodePublishResponse(Reader& r, Version v) {
  T ack;
  ack.packet_id = r.U16();
  if (!r.ok()) return Failed(r, T::kType);
  if (v == Version::kV5 && !r.empty()) {
    ack.reason = static_cast<ReasonCode>(r.U8());
    if (!r.empty()) {
      if (auto e = ReadProperties(r, static_cast<PropertyScope>(T::kType), &ack.properties)) {
        return tl::unexpected(std::move(*e));
      }
    }
  }
  return Packet(std::move(ack));
}

Result DecodeSubscribe(Reader& r, Version v) {
  Subscribe s;
  s.packet_id = r.U16();
  if (!r.ok()) return Failed(r, PacketType::kSubscribe);
  if (v == Version::kV5) {
    if (auto e = ReadProperties(r, PropertyScope::kSubscribe, &s.properties)) return tl::unexpected(std::move(*e));
  }
  while (r.ok() && !r.empty()) {
    Subscription sub;
    sub.filter = r.Utf8("topic filter");
    uint8_t o = r.U8();
    if (!r.ok()) break;
    if (v == Version::kV5 && (o & 0xC0)) {
      return tl::unexpected(
          Malformed(fmt::format("subscription options of \"{}\" set reserved bits 6-7 [MQTT-3.8.3-5]", sub.filter)));
    }
    if (v == Version::kV311 && (o & 0xFC)) {
      return tl::unexpected(
          Malformed(fmt::format("requested QoS byte of \"{}\" sets reserved bits 2-7 [MQTT-3-8.3-4]", sub.filter)));
    }
    sub.options.max_qos = o & 0x03;
    sub.options.no_local = o & 0x04;
    sub.options.retain_as_published = o & 0x08;
    sub.options.retain_handling = static_cast<RetainHandling>((o >> 4) & 0x03);
    s.subscriptions.push_back(sub);
  }
  if (!r.ok()) return Failed(r, PacketType::kSubscribe);
  return Packet(std::move(s));
}

template <typename T>
Result DecodeAckList(Reader& r, Version v) {
  T ack;
  ack.packet_id = r.U16();
  if (!r.ok()) return Failed(r, T::kType);
  if (v == Version::kV5) {
    if (auto e = ReadProperties(r, static_cast<PropertyScope>(T::kType), &ack.properties)) {
      return tl::unexpected(std::move(*e));
    }
  }
  // 3.1.1's UNSUBACK is the packet identifier alone: anything more is trailing.
  if (v == Version::kV5 || T::kType == PacketType::kSuback) {
    while (!r.empty()) ack.reasons.push_back(static_cast<ReasonCode>(r.U8()));
  }
  return Packet(std::move(ack));
}

Result DecodeUnsubscribe(Reader& r, Version v) {
  Unsubscribe u;
  u.packet_id = r.U16();
  if (!r.ok()) return Failed(r, PacketType::kUnsubscribe);
  if (v == Version::kV5) {
    if (auto e = ReadProperties(r, PropertyScope::kUnsubscribe, &u.properties)) return tl::unexpected(std::move(*e));
  }
  while (r.ok() && !r.empty()) u.filters.push_back(r.Utf8("topic filter"));
  if (!r.ok()) return Failed(r, PacketType::kUnsubscribe);
  return Packet(std::move(u));
}

// DISCONNECT and AUTH: MQTT 5 may leave out the reason (Remaining Length 0)
// and the properties (Remaining Length 1).
template <typename T>
Result DecodeReasonAndProperties(Reader& r, Version v) {
  T p;
  if (v == Version::kV5 && !r.empty()) {
    p.reason = static_cast<ReasonCode>(r.U8());
    if (!r.empty()) {
      if (auto e = ReadProperties(r, static_cast<PropertyScope>(T::kType), &p.properties)) {
        return tl::unexpected(std::move(*e));
      }
    }
  }
  return Packet(std::move(p));
}

Result DecodeBody(PacketType type, uint8_t flags, Reader& r, Version v, Sender sender) {
  switch (type) {
    case PacketType::kConnect: return DecodeConnect(r, sender);
    case PacketType::kConnack: return DecodeConnack(r, v);
    case PacketType::kPublish: return DecodePublish(r, flags, v);
    case PacketType::kPuback: return DecodePublishResponse<Puback>(r, v);
    case PacketType::kPubrec: return DecodePublishResponse<Pubrec>(r, v);
    case PacketType::kPubrel: return DecodePublishResponse<Pubrel>(r, v);
    case PacketType::kPubcomp: return DecodePublishResponse<Pubcomp>(r, v);
    case PacketType::kSubscribe: return DecodeSubscribe(r, v);
    case PacketType::kSuback: return DecodeAckList<Suback>(r, v);
    case PacketType::kUnsubscribe: return DecodeUnsubscribe(r, v);
    case PacketType::kUnsuback: return DecodeAckList<Unsuback>(r, v);
    case PacketType::kPingreq: return Packet(Pingreq{});
    case PacketType::kPingresp: return Packet(Pingresp{});
    case PacketType::kDisconnect: return DecodeReasonAndProperties<Disconnect>(r, v);
    case PacketType::kAuth: return DecodeReasonAndProperties<Auth>(r, v);
  }
  return tl::unexpected(Malformed("unknown packet type"));
}

// The flags (bits 3-0) each type must carry (Table 2-2); PUBLISH's are its own.
bool FlagsValid(PacketType type, uint8_t flags) {
  switch (type) {
    case PacketType::kPublish: return true;
    case PacketType::kPubrel:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe:
      return flags == 0x02;
    default:
      return flags == 0x00;
  }
}

}  // namespace

DecodeResult<Packet> DecodePacket(std::span<const char> packet, const DecodeOptions& options) {
  if (packet.size() > options.max_packet_size) {
    return tl::unexpected(DecodeError{
        ReasonCode::kPacketTooLarge,
        fmt::format("a packet of {} bytes exceeds the Maximum Packet Size of {} [MQTT-3.2.2-15]", packet.size(),
                    options.max_packet_size),
        0});
  }
  if (packet.empty()) return tl::unexpected(Malformed("an empty packet"));
  const uint8_t first = static_cast<uint8_t>(packet[0]);
  const uint8_t type_bits = first >> 4;
  const uint8_t flags = first & 0x0F;
  if (type_bits == 0) return tl::unexpected(Malformed("packet type 0 is reserved [2.1.2]"));
  const auto type = static_cast<PacketType>(type_bits);
  VbiResult length = DecodeVariableByteInteger(packet.subspan(1));
  if (length.status == VbiStatus::kNeedMore) return tl::unexpected(Malformed("the Remaining Length is cut short"));
  if (length.status == VbiStatus::kMalformed) {
    return tl::unexpected(Malformed("the Remaining Length is longer than 4 bytes or not minimal [MQTT-1.5.5-1]"));
  }
  const size_t header = 1 + length.size;
  if (static_cast<uint64_t>(header) + length.value != packet.size()) {
    return tl::unexpected(Malformed(fmt::format("the Remaining Length says {} bytes but the packet has {}",
                                                length.value, packet.size() - header)));
  }
  // CONNECT names its own version; before it there is none to go by.
  const Version version = type == PacketType::kConnect ? Version::kV5 : options.version;
  if (type == PacketType::kAuth && version != Version::kV5) {
    return tl::unexpected(Malformed("packet type 15 (AUTH) does not exist in MQTT 3.1.1"));
  }
  if (!FlagsValid(type, flags)) {
    return tl::unexpected(Malformed(fmt::format("{} has fixed header flags 0x{:X}, not those Table 2-2 requires "
                                                "[MQTT-2.1.3-1]",
                                                PacketTypeName(type), flags)));
  }
  Reader r(packet.subspan(header));
  Result result = DecodeBody(type, flags, r, version, options.sender);
  if (!result || type == PacketType::kConnect) return result;  // CONNECT checked its own end and rules
  if (!r.ok()) return Failed(r, type);
  if (!r.empty()) return Trailing(r, type);
  if (auto e = ValidatePacket(*result, version, options.sender, /*decoded=*/true)) {
    return tl::unexpected(std::move(*e));
  }
  return result;
}

}  // namespace floe::mqtt
