#include "mqtt/types.h"

#include <algorithm>
#include <array>
#include <initializer_list>

namespace floe::mqtt {

std::string_view VersionName(Version v) {
  switch (v) {
    case Version::kV311: return "3.1.1";
    case Version::kV5: return "5.0";
  }
  return "unknown version";
}

std::string_view PacketTypeName(PacketType t) {
  switch (t) {
    case PacketType::kConnect: return "CONNECT";
    case PacketType::kConnack: return "CONNACK";
    case PacketType::kPublish: return "PUBLISH";
    case PacketType::kPuback: return "PUBACK";
    case PacketType::kPubrec: return "PUBREC";
    case PacketType::kPubrel: return "PUBREL";
    case PacketType::kPubcomp: return "PUBCOMP";
    case PacketType::kSubscribe: return "SUBSCRIBE";
    case PacketType::kSuback: return "SUBACK";
    case PacketType::kUnsubscribe: return "UNSUBSCRIBE";
    case PacketType::kUnsuback: return "UNSUBACK";
    case PacketType::kPingreq: return "PINGREQ";
    case PacketType::kPingresp: return "PINGRESP";
    case PacketType::kDisconnect: return "DISCONNECT";
    case PacketType::kAuth: return "AUTH";
  }
  return "reserved packet type";
}

std::string_view ReasonCodeName(ReasonCode r) {
  switch (r) {
    case ReasonCode::kSuccess: return "Success";
    case ReasonCode::kGrantedQos1: return "Granted QoS 1";
    case ReasonCode::kGrantedQos2: return "Granted QoS 2";
    case ReasonCode::kDisconnectWithWillMessage: return "Disconnect with Will Message";
    case ReasonCode::kNoMatchingSubscribers: return "No matching subscribers";
    case ReasonCode::kNoSubscriptionExisted: return "No subscription existed";
    case ReasonCode::kContinueAuthentication: return "Continue authentication";
    case ReasonCode::kReAuthenticate: return "Re-authenticate";
    case ReasonCode::kUnspecifiedError: return "Unspecified error";
    case ReasonCode::kMalformedPacket: return "Malformed Packet";
    case ReasonCode::kProtocolError: return "Protocol Error";
    case ReasonCode::kImplementationSpecificError: return "Implementation specific error";
    case ReasonCode::kUnsupportedProtocolVersion: return "Unsupported Protocol Version";
    case ReasonCode::kClientIdentifierNotValid: return "Client Identifier not valid";
    case ReasonCode::kBadUserNameOrPassword: return "Bad User Name or Password";
    case ReasonCode::kNotAuthorized: return "Not authorized";
    case ReasonCode::kServerUnavailable: return "Server unavailable";
    case ReasonCode::kServerBusy: return "Server busy";
    case ReasonCode::kBanned: return "Banned";
    case ReasonCode::kServerShuttingDown: return "Server shutting down";
    case ReasonCode::kBadAuthenticationMethod: return "Bad authentication method";
    case ReasonCode::kKeepAliveTimeout: return "Keep Alive timeout";
    case ReasonCode::kSessionTakenOver: return "Session taken over";
    case ReasonCode::kTopicFilterInvalid: return "Topic Filter invalid";
    case ReasonCode::kTopicNameInvalid: return "Topic Name invalid";
    case ReasonCode::kPacketIdentifierInUse: return "Packet Identifier in use";
    case ReasonCode::kPacketIdentifierNotFound: return "Packet Identifier not found";
    case ReasonCode::kReceiveMaximumExceeded: return "Receive Maximum exceeded";
    case ReasonCode::kTopicAliasInvalid: return "Topic Alias invalid";
    case ReasonCode::kPacketTooLarge: return "Packet too large";
    case ReasonCode::kMessageRateTooHigh: return "Message rate too high";
    case ReasonCode::kQuotaExceeded: return "Quota exceeded";
    case ReasonCode::kAdministrativeAction: return "Administrative action";
    case ReasonCode::kPayloadFormatInvalid: return "Payload format invalid";
    case ReasonCode::kRetainNotSupported: return "Retain not supported";
    case ReasonCode::kQosNotSupported: return "QoS not supported";
    case ReasonCode::kUseAnotherServer: return "Use another server";
    case ReasonCode::kServerMoved: return "Server moved";
    case ReasonCode::kSharedSubscriptionsNotSupported: return "Shared Subscriptions not supported";
    case ReasonCode::kConnectionRateExceeded: return "Connection rate exceeded";
    case ReasonCode::kMaximumConnectTime: return "Maximum connect time";
    case ReasonCode::kSubscriptionIdentifiersNotSupported: return "Subscription Identifiers not supported";
    case ReasonCode::kWildcardSubscriptionsNotSupported: return "Wildcard Subscriptions not supported";
  }
  return "unknown reason code";
}

namespace {

bool In(ReasonCode r, std::initializer_list<uint8_t> codes) {
  return std::find(codes.begin(), codes.end(), static_cast<uint8_t>(r)) != codes.end();
}

// MQTT 5.0 Tables 3-1 (CONNACK), 3-4 (PUBACK), 3-5 (PUBREC), 3-6 (PUBREL),
// 3-7 (PUBCOMP), 3-8 (SUBACK), 3-9 (UNSUBACK), 3-10 (DISCONNECT), 3-11 (AUTH).
bool AllowedV5(PacketType type, ReasonCode r) {
  switch (type) {
    case PacketType::kConnack:
      return In(r, {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                    0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F});
    case PacketType::kPuback:
    case PacketType::kPubrec:
      return In(r, {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99});
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return In(r, {0x00, 0x92});
    case PacketType::kSuback:
      return In(r, {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2});
    case PacketType::kUnsuback:
      return In(r, {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91});
    case PacketType::kDisconnect:
      return In(r, {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                    0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2});
    case PacketType::kAuth:
      return In(r, {0x00, 0x18, 0x19});
    default:
      return r == ReasonCode::kSuccess;  // packets that carry no reason code
  }
}

}  // namespace

bool IsReasonCodeAllowed(PacketType type, ReasonCode r, Version version) {
  if (version == Version::kV5) return AllowedV5(type, r);
  switch (type) {
    case PacketType::kConnack:
      return ToConnectReturnCode(r).has_value();
    case PacketType::kSuback:
      return In(r, {0x00, 0x01, 0x02, 0x80});
    // 3.1.1 acknowledgements carry no code: a success-range reason is sent as
    // the plain packet; a failure cannot be said in 3.1.1 at all (the session
    // layer closes the connection instead of pretending success).
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
    case PacketType::kUnsuback:
      return AllowedV5(type, r) && !IsFailure(r);
    case PacketType::kAuth:
      return false;
    default:
      return r == ReasonCode::kSuccess;
  }
}

std::optional<ConnectReturnCode> ToConnectReturnCode(ReasonCode r) {
  switch (r) {
    case ReasonCode::kSuccess: return ConnectReturnCode::kAccepted;
    case ReasonCode::kUnsupportedProtocolVersion: return ConnectReturnCode::kUnacceptableProtocolVersion;
    case ReasonCode::kClientIdentifierNotValid: return ConnectReturnCode::kIdentifierRejected;
    case ReasonCode::kServerUnavailable:
    case ReasonCode::kServerBusy:
    case ReasonCode::kUseAnotherServer:
    case ReasonCode::kServerMoved:
    case ReasonCode::kConnectionRateExceeded:
      return ConnectReturnCode::kServerUnavailable;
    case ReasonCode::kBadUserNameOrPassword: return ConnectReturnCode::kBadUserNameOrPassword;
    case ReasonCode::kNotAuthorized:
    case ReasonCode::kBanned:
      return ConnectReturnCode::kNotAuthorized;
    default:
      return std::nullopt;
  }
}

std::optional<ReasonCode> FromConnectReturnCode(uint8_t code) {
  switch (code) {
    case 0: return ReasonCode::kSuccess;
    case 1: return ReasonCode::kUnsupportedProtocolVersion;
    case 2: return ReasonCode::kClientIdentifierNotValid;
    case 3: return ReasonCode::kServerUnavailable;
    case 4: return ReasonCode::kBadUserNameOrPassword;
    case 5: return ReasonCode::kNotAuthorized;
    default: return std::nullopt;
  }
}

}  // namespace floe::mqtt
