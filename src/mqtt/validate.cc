#include "mqtt/validate.h"

#include <fmt/format.h>

#include "mqtt/primitives.h"
#include "mqtt/topic.h"

namespace floe::mqtt {

namespace {

DecodeError Malformed(std::string m) { return {ReasonCode::kMalformedPacket, std::move(m), 0}; }
DecodeError ProtocolError(std::string m) { return {ReasonCode::kProtocolError, std::move(m), 0}; }

using Check = std::optional<DecodeError>;

#define FLOE_MQTT_CHECK(expr)                     \
  do {                                            \
    if (Check floe_err_ = (expr)) return floe_err_; \
  } while (0)

// A string field's encoding rules (the decoder's Reader checked them as it
// read; the encoder is handed arbitrary views).
Check Text(std::string_view s, std::string_view what, bool decoded = false) {
  if (decoded) return std::nullopt;
  if (s.size() > kMaxStringBytes) return Malformed(fmt::format("{} is {} bytes, more than 65,535", what, s.size()));
  std::string_view bad = Utf8Error(s);
  if (!bad.empty()) return Malformed(fmt::format("{} {} [MQTT-1.5.4-1, MQTT-1.5.4-2]", what, bad));
  return std::nullopt;
}

Check BinaryField(std::string_view s, std::string_view what, bool decoded) {
  if (decoded) return std::nullopt;
  if (s.size() > kMaxStringBytes) return Malformed(fmt::format("{} is {} bytes, more than 65,535", what, s.size()));
  return std::nullopt;
}

Check Props(const Properties& p, PropertyScope scope, Version v, Sender sender, bool decoded) {
  if (v != Version::kV5) return std::nullopt;  // 3.1.1 has none; the encoder leaves them out
  return ValidateProperties(p, scope, sender, /*check_encoding=*/!decoded);
}

Check PacketId(uint16_t id, PacketType t) {
  if (id == 0) {
    return ProtocolError(fmt::format("{} has Packet Identifier 0; it must be non-zero [MQTT-2.2.1-3]",
                                     PacketTypeName(t)));
  }
  return std::nullopt;
}

Check Reason(PacketType t, ReasonCode r, Version v) {
  if (!IsReasonCodeAllowed(t, r, v)) {
    return ProtocolError(fmt::format("{} cannot carry reason code 0x{:02X} ({}) in MQTT {}", PacketTypeName(t),
                                     static_cast<uint8_t>(r), ReasonCodeName(r), VersionName(v)));
  }
  return std::nullopt;
}

// A topic name in a PUBLISH or a Will: its encoding is Malformed, its content
// (empty, wildcards) a Protocol Error.
Check TopicName(std::string_view topic, std::string_view what, bool decoded) {
  if (decoded) {  // the encoding is known good: only the content rules
    if (topic.empty()) return ProtocolError(fmt::format("{} is empty [MQTT-4.7.3-1]", what));
    if (HasWildcard(topic)) {
      return ProtocolError(fmt::format("{} \"{}\" contains a wildcard [MQTT-3.3.2-2, MQTT-4.7.0-1]", what, topic));
    }
    return std::nullopt;
  }
  FLOE_MQTT_CHECK(Text(topic, what));
  Status s = ValidateTopicName(topic);
  if (!s.ok()) return ProtocolError(fmt::format("{}: {}", what, s.message()));
  return std::nullopt;
}

Check Filter(std::string_view filter, Version v) {
  FLOE_MQTT_CHECK(Text(filter, "topic filter"));
  Status s = ValidateTopicFilter(filter, v);
  if (!s.ok()) return ProtocolError(std::string(s.message()));
  return std::nullopt;
}

Check Direction(PacketType t, Sender sender) {
  bool client_only = t == PacketType::kConnect || t == PacketType::kSubscribe || t == PacketType::kUnsubscribe ||
                     t == PacketType::kPingreq;
  bool server_only = t == PacketType::kConnack || t == PacketType::kSuback || t == PacketType::kUnsuback ||
                     t == PacketType::kPingresp;
  if (sender == Sender::kClient && server_only) {
    return ProtocolError(fmt::format("a client does not send {}", PacketTypeName(t)));
  }
  if (sender == Sender::kServer && client_only) {
    return ProtocolError(fmt::format("a server does not send {}", PacketTypeName(t)));
  }
  return std::nullopt;
}

Check Validate(const Connect& c, Version, Sender sender, bool decoded) {
  const Version v = c.version;
  FLOE_MQTT_CHECK(Text(c.client_id, "client identifier", decoded));
  if (v == Version::kV311 && c.client_id.empty() && !c.clean_start) {
    return DecodeError{ReasonCode::kClientIdentifierNotValid,
                       "a 3.1.1 CONNECT with an empty client identifier must set CleanSession [MQTT-3.1.3-7, -8]", 0};
  }
  FLOE_MQTT_CHECK(Props(c.properties, PropertyScope::kConnect, v, sender, decoded));
  if (c.will) {
    if (c.will->qos > 2) return Malformed("Will QoS is 3 [MQTT-3.1.2-12]");
    FLOE_MQTT_CHECK(Props(c.will->properties, PropertyScope::kWill, v, sender, decoded));
    FLOE_MQTT_CHECK(TopicName(c.will->topic, "will topic", decoded));
    FLOE_MQTT_CHECK(BinaryField(c.will->payload, "will payload", decoded));
  }
  if (c.user_name) FLOE_MQTT_CHECK(Text(*c.user_name, "user name", decoded));
  if (c.password) {
    FLOE_MQTT_CHECK(BinaryField(*c.password, "password", decoded));
    if (v == Version::kV311 && !c.user_name) {
      return Malformed("a 3.1.1 CONNECT has a password but no user name [MQTT-3.1.2-22]");
    }
  }
  return std::nullopt;
}

Check Validate(const Connack& c, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(Reason(PacketType::kConnack, c.reason, v));
  if (c.session_present && IsFailure(c.reason)) {
    return ProtocolError("CONNACK refuses the connection yet sets Session Present [MQTT-3.2.2-6]");
  }
  return Props(c.properties, PropertyScope::kConnack, v, sender, decoded);
}

Check Validate(const Publish& p, Version v, Sender sender, bool decoded) {
  if (p.qos > 2) return Malformed("PUBLISH has QoS 3 [MQTT-3.3.1-4]");
  if (p.dup && p.qos == 0) return Malformed("PUBLISH has DUP set with QoS 0 [MQTT-3.3.1-2]");
  if (p.qos > 0) {
    FLOE_MQTT_CHECK(PacketId(p.packet_id, PacketType::kPublish));
  } else if (p.packet_id != 0) {
    return ProtocolError("a QoS 0 PUBLISH has no Packet Identifier [MQTT-2.2.1-2]");
  }
  FLOE_MQTT_CHECK(Props(p.properties, PropertyScope::kPublish, v, sender, decoded));
  if (p.topic.empty() && v == Version::kV5 && p.properties.topic_alias) return std::nullopt;
  if (p.topic.empty()) {
    return ProtocolError(v == Version::kV5
                             ? "PUBLISH has an empty topic name and no Topic Alias [3.3.2.1]"
                             : "PUBLISH has an empty topic name [MQTT-4.7.3-1]");
  }
  return TopicName(p.topic, "topic name", decoded);
}

Check Validate(const PublishResponse& r, PacketType t, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(PacketId(r.packet_id, t));
  FLOE_MQTT_CHECK(Reason(t, r.reason, v));
  return Props(r.properties, static_cast<PropertyScope>(t), v, sender, decoded);
}

Check Validate(const Subscribe& s, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(PacketId(s.packet_id, PacketType::kSubscribe));
  FLOE_MQTT_CHECK(Props(s.properties, PropertyScope::kSubscribe, v, sender, decoded));
  if (s.subscriptions.empty()) return ProtocolError("SUBSCRIBE has no topic filter [MQTT-3.8.3-2]");
  for (const Subscription& sub : s.subscriptions) {
    FLOE_MQTT_CHECK(Filter(sub.filter, v));
    const SubscriptionOptions& o = sub.options;
    if (o.max_qos > 2) {
      // 3.1.1: "the Server MUST treat a SUBSCRIBE packet as malformed"
      // [MQTT-3-8.3-4]; MQTT 5 calls it a Protocol Error (3.8.3.1).
      std::string m = fmt::format("SUBSCRIBE asks for QoS 3 on \"{}\"", sub.filter);
      return v == Version::kV5 ? ProtocolError(m) : Malformed(m);
    }
    if (v == Version::kV5) {
      if (static_cast<uint8_t>(o.retain_handling) > 2) {
        return ProtocolError(fmt::format("SUBSCRIBE has Retain Handling 3 on \"{}\" (3.8.3.1)", sub.filter));
      }
      if (o.no_local && SplitSharedFilter(sub.filter)) {
        return ProtocolError(
            fmt::format("SUBSCRIBE sets No Local on shared subscription \"{}\" [MQTT-3.8.3-4]", sub.filter));
      }
    }
  }
  return std::nullopt;
}

Check ReasonList(PacketType t, const std::vector<ReasonCode>& reasons, Version v) {
  for (ReasonCode r : reasons) FLOE_MQTT_CHECK(Reason(t, r, v));
  return std::nullopt;
}

Check Validate(const Suback& s, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(PacketId(s.packet_id, PacketType::kSuback));
  FLOE_MQTT_CHECK(Props(s.properties, PropertyScope::kSuback, v, sender, decoded));
  if (s.reasons.empty()) return ProtocolError("SUBACK has no reason code [MQTT-3.8.4-6]");
  return ReasonList(PacketType::kSuback, s.reasons, v);
}

Check Validate(const Unsubscribe& u, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(PacketId(u.packet_id, PacketType::kUnsubscribe));
  FLOE_MQTT_CHECK(Props(u.properties, PropertyScope::kUnsubscribe, v, sender, decoded));
  if (u.filters.empty()) return ProtocolError("UNSUBSCRIBE has no topic filter [MQTT-3.10.3-2]");
  for (std::string_view f : u.filters) FLOE_MQTT_CHECK(Filter(f, v));
  return std::nullopt;
}

Check Validate(const Unsuback& u, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(PacketId(u.packet_id, PacketType::kUnsuback));
  FLOE_MQTT_CHECK(Props(u.properties, PropertyScope::kUnsuback, v, sender, decoded));
  if (v == Version::kV5 && u.reasons.empty()) return ProtocolError("UNSUBACK has no reason code [MQTT-3.11.3-1]");
  return ReasonList(PacketType::kUnsuback, u.reasons, v);
}

Check Validate(const Disconnect& d, Version v, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(Reason(PacketType::kDisconnect, d.reason, v));
  return Props(d.properties, PropertyScope::kDisconnect, v, sender, decoded);
}

Check Validate(const Auth& a, Version v, Sender sender, bool decoded) {
  if (v != Version::kV5) return Malformed("AUTH (packet type 15) does not exist in MQTT 3.1.1");
  FLOE_MQTT_CHECK(Reason(PacketType::kAuth, a.reason, v));
  return Props(a.properties, PropertyScope::kAuth, v, sender, decoded);
}

}  // namespace

std::optional<DecodeError> ValidatePacket(const Packet& p, Version version, Sender sender, bool decoded) {
  FLOE_MQTT_CHECK(Direction(TypeOf(p), sender));
  return std::visit(
      [&](const auto& packet) -> Check {
        using T = std::decay_t<decltype(packet)>;
        if constexpr (std::is_same_v<T, Pingreq> || std::is_same_v<T, Pingresp>) {
          return std::nullopt;
        } else if constexpr (std::is_base_of_v<PublishResponse, T>) {
          return Validate(packet, T::kType, version, sender, decoded);
        } else {
          return Validate(packet, version, sender, decoded);
        }
      },
      p);
}

PacketType TypeOf(const Packet& p) {
  return std::visit([](const auto& packet) { return std::decay_t<decltype(packet)>::kType; }, p);
}

}  // namespace floe::mqtt
