// The MQTT packet codec: bytes <-> packets for MQTT 5.0 and 3.1.1, with no
// session logic (docs/mqtt.md, "Packet layer"). The session layer above it
// finds packets in the byte stream (mqtt/frame.h), decodes each with
// DecodePacket, acts, and encodes its answers with EncodePacket.
//
// Every control packet of both versions is a plain struct. String and binary
// fields are views: a decoded packet points into the bytes it was decoded
// from (keep them, or copy what you keep); a packet to encode points into
// whatever the caller owns.
//
// One set of rules (mqtt/validate.h) binds both directions: whatever
// DecodePacket returns, EncodePacket accepts, and whatever EncodePacket
// writes, DecodePacket reads back as the same packet (for 3.1.1: as far as
// 3.1.1 can say it; see EncodePacket).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"
#include "mqtt/properties.h"
#include "mqtt/types.h"

namespace floe::mqtt {

struct Will {
  Properties properties;  // Will Properties (MQTT 5 only)
  std::string_view topic;
  std::string_view payload;
  uint8_t qos = 0;
  bool retain = false;
  bool operator==(const Will&) const = default;
};

struct Connect {
  static constexpr PacketType kType = PacketType::kConnect;
  Version version = Version::kV5;  // the Protocol Level; CONNECT names its own version
  bool clean_start = true;         // 3.1.1: CleanSession
  uint16_t keep_alive = 0;         // seconds; 0 is off
  Properties properties;
  std::string_view client_id;      // may be empty (the server assigns one)
  std::optional<Will> will;
  std::optional<std::string_view> user_name;
  std::optional<std::string_view> password;  // binary data
  bool operator==(const Connect&) const = default;
};

struct Connack {
  static constexpr PacketType kType = PacketType::kConnack;
  bool session_present = false;
  // 3.1.1 return codes are carried as the reason codes they map to
  // (ToConnectReturnCode / FromConnectReturnCode).
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Connack&) const = default;
};

struct Publish {
  static constexpr PacketType kType = PacketType::kPublish;
  bool dup = false;
  uint8_t qos = 0;         // 0, 1 or 2
  bool retain = false;
  std::string_view topic;  // MQTT 5: empty when a Topic Alias stands for it
  uint16_t packet_id = 0;  // QoS 1 and 2 only; 0 for QoS 0
  Properties properties;
  std::string_view payload;
  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
struct PublishResponse {
  uint16_t packet_id = 0;
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const PublishResponse&) const = default;
};
struct Puback : PublishResponse { static constexpr PacketType kType = PacketType::kPuback; };
struct Pubrec : PublishResponse { static constexpr PacketType kType = PacketType::kPubrec; };
struct Pubrel : PublishResponse { static constexpr PacketType kType = PacketType::kPubrel; };
struct Pubcomp : PublishResponse { static constexpr PacketType kType = PacketType::kPubcomp; };

enum class RetainHandling : uint8_t {
  kSendOnSubscribe = 0,
  kSendIfNewSubscription = 1,
  kDoNotSend = 2,
};

// MQTT 5 subscription options (3.8.3.1); 3.1.1 has only the QoS.
struct SubscriptionOptions {
  uint8_t max_qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  RetainHandling retain_handling = RetainHandling::kSendOnSubscribe;
  bool operator==(const SubscriptionOptions&) const = default;
};

struct Subscription {
  std::string_view filter;
  SubscriptionOptions options;
  bool operator==(const Subscription&) const = default;
};

struct Subscribe {
  static constexpr PacketType kType = PacketType::kSubscribe;
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<Subscription> subscriptions;  // at least one
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  static constexpr PacketType kType = PacketType::kSuback;
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<ReasonCode> reasons;  // one per filter, in order; 3.1.1: 0, 1, 2 or 0x80
  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  static constexpr PacketType kType = PacketType::kUnsubscribe;
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<std::string_view> filters;  // at least one
  bool operator==(const Unsubscribe&) const = default;
};

struct Unsuback {
  static constexpr PacketType kType = PacketType::kUnsuback;
  uint16_t packet_id = 0;
  Properties properties;
  std::vector<ReasonCode> reasons;  // MQTT 5: one per filter; 3.1.1 has none
  bool operator==(const Unsuback&) const = default;
};

struct Pingreq {
  static constexpr PacketType kType = PacketType::kPingreq;
  bool operator==(const Pingreq&) const = default;
};
struct Pingresp {
  static constexpr PacketType kType = PacketType::kPingresp;
  bool operator==(const Pingresp&) const = default;
};

struct Disconnect {
  static constexpr PacketType kType = PacketType::kDisconnect;
  ReasonCode reason = ReasonCode::kSuccess;  // Normal disconnection
  Properties properties;
  bool operator==(const Disconnect&) const = default;
};

// MQTT 5 only.
struct Auth {
  static constexpr PacketType kType = PacketType::kAuth;
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;  // must hold the Authentication Method
  bool operator==(const Auth&) const = default;
};

using Packet = std::variant<Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback,
                            Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect, Auth>;
PacketType TypeOf(const Packet& p);

struct DecodeOptions {
  Version version = Version::kV5;   // ignored for CONNECT, which names its own
  Sender sender = Sender::kClient;  // who wrote the bytes
  // The largest packet accepted, in bytes (fixed header included): the
  // Maximum Packet Size the server announced. A larger one is refused with
  // 0x95 before anything in it is read.
  uint32_t max_packet_size = kMaxPacketSize;
};

// Decodes exactly one whole packet, fixed header included (as FrameSplitter
// or SplitFrame delimit it). Checks every rule of docs/mqtt.md's decoder
// table; an error says which reason the server answers with. Never reads
// outside `packet`, whatever it holds.
DecodeResult<Packet> DecodePacket(std::span<const char> packet, const DecodeOptions& options);

struct EncodeOptions {
  Version version = Version::kV5;   // ignored for CONNECT, which names its own
  Sender sender = Sender::kServer;  // who sends the packet
  // The peer's Maximum Packet Size. When a CONNACK, an acknowledgement,
  // DISCONNECT or AUTH would exceed it, its Reason String and User Properties
  // are left out [MQTT-3.2.2-19, -20; 3.4.2-2, -3 ...]; what still exceeds it
  // is refused (the server then drops a PUBLISH as if sent [MQTT-3.1.2-25]).
  uint32_t max_packet_size = kMaxPacketSize;
};

// Appends the encoded packet to `*out` (nothing on error).
//   InvalidArgument: the packet breaks a rule a decoder would refuse it for
//     (the same rules, with the same messages), or 3.1.1 cannot say it: AUTH,
//     a failure reason in an acknowledgement or DISCONNECT, a SUBACK failure
//     other than 0x80, a CONNACK reason with no 3.1.1 return code.
//   OutOfRange: the packet is larger than `max_packet_size` (or than MQTT can
//     frame).
// For 3.1.1 what that version has no field for is left out: properties,
// subscription options other than the QoS, success reasons other than 0x00 in
// acknowledgements, UNSUBACK reason codes.
Status EncodePacket(const Packet& packet, const EncodeOptions& options, std::string* out);

}  // namespace floe::mqtt
