// MQTT 5.0 and 3.1.1: protocol versions, packet types, reason codes and the
// error a decoder hands the session layer (docs/mqtt.md, "Packet layer").
//
// Numbers here are the protocol's own and are pinned: they are what goes on
// the wire. The packet layer never talks to the broker core; it turns bytes
// into packets and back, and says which reason code the server should send
// when bytes are not a valid packet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace floe::mqtt {

// The CONNECT packet's Protocol Level byte. Everything after CONNECT is
// decoded and encoded for the version the CONNECT chose.
enum class Version : uint8_t {
  kV311 = 4,  // MQTT 3.1.1 (OASIS, 2014)
  kV5 = 5,    // MQTT 5.0 (OASIS, 2019)
};
std::string_view VersionName(Version v);

// Bits 7-4 of a fixed header's first byte. 0 is forbidden; 15 (AUTH) exists
// only in MQTT 5.
enum class PacketType : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,
};
std::string_view PacketTypeName(PacketType t);

// Who wrote the bytes being decoded (or who is sending the bytes being
// encoded). Some packets flow one way only (a client never sends CONNACK), and
// some rules bind one side (a client's PUBLISH carries no Subscription
// Identifier [MQTT-3.3.4-6]; a server's DISCONNECT no Session Expiry Interval
// [MQTT-3.14.2-2]). floe is the server, so it decodes kClient bytes.
enum class Sender : uint8_t { kClient, kServer };

// The largest packet the Remaining Length can describe: one type byte, four
// length bytes, 268,435,455 bytes after them.
inline constexpr uint32_t kMaxVariableByteInteger = 268'435'455;
inline constexpr uint32_t kMaxPacketSize = 1 + 4 + kMaxVariableByteInteger;

// MQTT 5 reason codes (section 2.4, Table 2-6). One byte; below 0x80 is
// success, 0x80 and above failure. Several names share a value (0x00 is
// Success, Normal disconnection and Granted QoS 0); the enum names the value
// once and ReasonCodeName gives the common name.
enum class ReasonCode : uint8_t {
  kSuccess = 0x00,  // also Normal disconnection, Granted QoS 0
  kGrantedQos1 = 0x01,
  kGrantedQos2 = 0x02,
  kDisconnectWithWillMessage = 0x04,
  kNoMatchingSubscribers = 0x10,
  kNoSubscriptionExisted = 0x11,
  kContinueAuthentication = 0x18,
  kReAuthenticate = 0x19,
  kUnspecifiedError = 0x80,
  kMalformedPacket = 0x81,
  kProtocolError = 0x82,
  kImplementationSpecificError = 0x83,
  kUnsupportedProtocolVersion = 0x84,
  kClientIdentifierNotValid = 0x85,
  kBadUserNameOrPassword = 0x86,
  kNotAuthorized = 0x87,
  kServerUnavailable = 0x88,
  kServerBusy = 0x89,
  kBanned = 0x8A,
  kServerShuttingDown = 0x8B,
  kBadAuthenticationMethod = 0x8C,
  kKeepAliveTimeout = 0x8D,
  kSessionTakenOver = 0x8E,
  kTopicFilterInvalid = 0x8F,
  kTopicNameInvalid = 0x90,
  kPacketIdentifierInUse = 0x91,
  kPacketIdentifierNotFound = 0x92,
  kReceiveMaximumExceeded = 0x93,
  kTopicAliasInvalid = 0x94,
  kPacketTooLarge = 0x95,
  kMessageRateTooHigh = 0x96,
  kQuotaExceeded = 0x97,
  kAdministrativeAction = 0x98,
  kPayloadFormatInvalid = 0x99,
  kRetainNotSupported = 0x9A,
  kQosNotSupported = 0x9B,
  kUseAnotherServer = 0x9C,
  kServerMoved = 0x9D,
  kSharedSubscriptionsNotSupported = 0x9E,
  kConnectionRateExceeded = 0x9F,
  kMaximumConnectTime = 0xA0,
  kSubscriptionIdentifiersNotSupported = 0xA1,
  kWildcardSubscriptionsNotSupported = 0xA2,
};
// "Success", "Malformed Packet", ...; "unknown reason code" for other values.
std::string_view ReasonCodeName(ReasonCode r);
inline bool IsFailure(ReasonCode r) { return static_cast<uint8_t>(r) >= 0x80; }
// Whether `r` is one of the reason codes `type` may carry in `version`
// (MQTT 5 Tables 3-1 and 3-4..3-11; for 3.1.1, the CONNACK codes below as
// mapped, SUBACK 0x00/0x01/0x02/0x80, and Success elsewhere).
bool IsReasonCodeAllowed(PacketType type, ReasonCode r, Version version);

// MQTT 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3).
enum class ConnectReturnCode : uint8_t {
  kAccepted = 0,
  kUnacceptableProtocolVersion = 1,
  kIdentifierRejected = 2,
  kServerUnavailable = 3,
  kBadUserNameOrPassword = 4,
  kNotAuthorized = 5,
};
// The 3.1.1 return code a CONNACK reason becomes, or nothing when 3.1.1 has
// no code for it (the server then closes without a CONNACK [MQTT-3.2.2-6 of
// 3.1.1]). docs/mqtt.md has the table.
std::optional<ConnectReturnCode> ToConnectReturnCode(ReasonCode r);
// A 3.1.1 return code as the MQTT 5 reason code the rest of floe speaks;
// nothing for values above 5.
std::optional<ReasonCode> FromConnectReturnCode(uint8_t code);

// Why bytes are not a packet, and what the server answers: a CONNACK (when
// the packet was CONNECT) or a DISCONNECT with `reason`, then it closes.
// `reason` is one of 0x81 Malformed Packet (the bytes cannot be parsed),
// 0x82 Protocol Error (parsed, but holds what the protocol forbids), 0x84
// Unsupported Protocol Version (CONNECT only), 0x85 Client Identifier not
// valid (a 3.1.1 CONNECT only), 0x94 Topic Alias invalid, 0x95 Packet too
// large. A 3.1.1 client gets no DISCONNECT: the session layer closes (after a
// CONNACK return code for 0x84 and 0x85).
struct DecodeError {
  ReasonCode reason = ReasonCode::kMalformedPacket;
  std::string message;
  // CONNECT only: the Protocol Level the client asked for (0 when the packet
  // ended before it), so the answer can be given in the client's version.
  uint8_t protocol_level = 0;

  bool operator==(const DecodeError&) const = default;
};

template <typename T>
using DecodeResult = tl::expected<T, DecodeError>;

}  // namespace floe::mqtt
