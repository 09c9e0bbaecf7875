#include "mqtt/properties.h"

#include <array>
#include <type_traits>

#include <fmt/format.h>

#include "mqtt/topic.h"

namespace floe::mqtt {

namespace {

constexpr uint16_t Bit(PropertyScope s) { return static_cast<uint16_t>(1u << static_cast<int>(s)); }

using S = PropertyScope;
constexpr uint16_t kPublishAndWill = Bit(S::kPublish) | Bit(S::kWill);
constexpr uint16_t kAcks = Bit(S::kPuback) | Bit(S::kPubrec) | Bit(S::kPubrel) | Bit(S::kPubcomp) |
                           Bit(S::kSuback) | Bit(S::kUnsuback);

// MQTT 5.0 Table 2-4, in identifier order.
constexpr std::array<PropertyInfo, 27> kProperties = {{
    {PropertyId::kPayloadFormatIndicator, "Payload Format Indicator", PropertyType::kByte, kPublishAndWill},
    {PropertyId::kMessageExpiryInterval, "Message Expiry Interval", PropertyType::kFourByteInteger, kPublishAndWill},
    {PropertyId::kContentType, "Content Type", PropertyType::kUtf8String, kPublishAndWill},
    {PropertyId::kResponseTopic, "Response Topic", PropertyType::kUtf8String, kPublishAndWill},
    {PropertyId::kCorrelationData, "Correlation Data", PropertyType::kBinaryData, kPublishAndWill},
    {PropertyId::kSubscriptionIdentifier, "Subscription Identifier", PropertyType::kVariableByteInteger,
     Bit(S::kPublish) | Bit(S::kSubscribe)},
    {PropertyId::kSessionExpiryInterval, "Session Expiry Interval", PropertyType::kFourByteInteger,
     Bit(S::kConnect) | Bit(S::kConnack) | Bit(S::kDisconnect)},
    {PropertyId::kAssignedClientIdentifier, "Assigned Client Identifier", PropertyType::kUtf8String,
     Bit(S::kConnack)},
    {PropertyId::kServerKeepAlive, "Server Keep Alive", PropertyType::kTwoByteInteger, Bit(S::kConnack)},
    {PropertyId::kAuthenticationMethod, "Authentication Method", PropertyType::kUtf8String,
     Bit(S::kConnect) | Bit(S::kConnack) | Bit(S::kAuth)},
    {PropertyId::kAuthenticationData, "Authentication Data", PropertyType::kBinaryData,
     Bit(S::kConnect) | Bit(S::kConnack) | Bit(S::kAuth)},
    {PropertyId::kRequestProblemInformation, "Request Problem Information", PropertyType::kByte, Bit(S::kConnect)},
    {PropertyId::kWillDelayInterval, "Will Delay Interval", PropertyType::kFourByteInteger, Bit(S::kWill)},
    {PropertyId::kRequestResponseInformation, "Request Response Information", PropertyType::kByte,
     Bit(S::kConnect)},
    {PropertyId::kResponseInformation, "Response Information", PropertyType::kUtf8String, Bit(S::kConnack)},
    {PropertyId::kServerReference, "Server Reference", PropertyType::kUtf8String,
     Bit(S::kConnack) | Bit(S::kDisconnect)},
    {PropertyId::kReasonString, "Reason String", PropertyType::kUtf8String,
     Bit(S::kConnack) | kAcks | Bit(S::kDisconnect) | Bit(S::kAuth)},
    {PropertyId::kReceiveMaximum, "Receive Maximum", PropertyType::kTwoByteInteger,
     Bit(S::kConnect) | Bit(S::kConnack)},
    {PropertyId::kTopicAliasMaximum, "Topic Alias Maximum", PropertyType::kTwoByteInteger,
     Bit(S::kConnect) | Bit(S::kConnack)},
    {PropertyId::kTopicAlias, "Topic Alias", PropertyType::kTwoByteInteger, Bit(S::kPublish)},
    {PropertyId::kMaximumQos, "Maximum QoS", PropertyType::kByte, Bit(S::kConnack)},
    {PropertyId::kRetainAvailable, "Retain Available", PropertyType::kByte, Bit(S::kConnack)},
    {PropertyId::kUserProperty, "User Property", PropertyType::kUtf8StringPair,
     Bit(S::kConnect) | Bit(S::kConnack) | kPublishAndWill | kAcks | Bit(S::kSubscribe) | Bit(S::kUnsubscribe) |
         Bit(S::kDisconnect) | Bit(S::kAuth)},
    {PropertyId::kMaximumPacketSize, "Maximum Packet Size", PropertyType::kFourByteInteger,
     Bit(S::kConnect) | Bit(S::kConnack)},
    {PropertyId::kWildcardSubscriptionAvailable, "Wildcard Subscription Available", PropertyType::kByte,
     Bit(S::kConnack)},
    {PropertyId::kSubscriptionIdentifierAvailable, "Subscription Identifier Available", PropertyType::kByte,
     Bit(S::kConnack)},
    {PropertyId::kSharedSubscriptionAvailable, "Shared Subscription Available", PropertyType::kByte,
     Bit(S::kConnack)},
}};

DecodeError Malformed(std::string message) { return {ReasonCode::kMalformedPacket, std::move(message), 0}; }
DecodeError ProtocolError(std::string message) { return {ReasonCode::kProtocolError, std::move(message), 0}; }

const PropertyInfo& Info(PropertyId id) { return *FindProperty(static_cast<uint8_t>(id)); }

}  // namespace

std::string_view PropertyScopeName(PropertyScope s) {
  if (s == PropertyScope::kWill) return "Will Properties";
  return PacketTypeName(static_cast<PacketType>(s));
}

bool PropertyInfo::MayRepeat(PropertyScope scope) const {
  return id == PropertyId::kUserProperty ||
         (id == PropertyId::kSubscriptionIdentifier && scope == PropertyScope::kPublish);
}

const PropertyInfo* FindProperty(uint32_t id) {
  for (const PropertyInfo& p : kProperties) {
    if (static_cast<uint32_t>(p.id) == id) return &p;
  }
  return nullptr;
}

std::span<const PropertyInfo> AllProperties() { return kProperties; }

bool Properties::Has(PropertyId id) const {
  switch (id) {
    case PropertyId::kPayloadFormatIndicator: return payload_format_indicator.has_value();
    case PropertyId::kMessageExpiryInterval: return message_expiry_interval.has_value();
    case PropertyId::kContentType: return content_type.has_value();
    case PropertyId::kResponseTopic: return response_topic.has_value();
    case PropertyId::kCorrelationData: return correlation_data.has_value();
    case PropertyId::kSubscriptionIdentifier: return !subscription_identifiers.empty();
    case PropertyId::kSessionExpiryInterval: return session_expiry_interval.has_value();
    case PropertyId::kAssignedClientIdentifier: return assigned_client_identifier.has_value();
    case PropertyId::kServerKeepAlive: return server_keep_alive.has_value();
    case PropertyId::kAuthenticationMethod: return authentication_method.has_value();
    case PropertyId::kAuthenticationData: return authentication_data.has_value();
    case PropertyId::kRequestProblemInformation: return request_problem_information.has_value();
    case PropertyId::kWillDelayInterval: return will_delay_interval.has_value();
    case PropertyId::kRequestResponseInformation: return request_response_information.has_value();
    case PropertyId::kResponseInformation: return response_information.has_value();
    case PropertyId::kServerReference: return server_reference.has_value();
    case PropertyId::kReasonString: return reason_string.has_value();
    case PropertyId::kReceiveMaximum: return receive_maximum.has_value();
    case PropertyId::kTopicAliasMaximum: return topic_alias_maximum.has_value();
    case PropertyId::kTopicAlias: return topic_alias.has_value();
    case PropertyId::kMaximumQos: return maximum_qos.has_value();
    case PropertyId::kRetainAvailable: return retain_available.has_value();
    case PropertyId::kUserProperty: return !user_properties.empty();
    case PropertyId::kMaximumPacketSize: return maximum_packet_size.has_value();
    case PropertyId::kWildcardSubscriptionAvailable: return wildcard_subscription_available.has_value();
    case PropertyId::kSubscriptionIdentifierAvailable: return subscription_identifier_available.has_value();
    case PropertyId::kSharedSubscriptionAvailable: return shared_subscription_available.has_value();
  }
  return false;
}

uint32_t Properties::PresentMask() const {
  // In table order (kProperties), one test per field.
  const bool present[] = {
      payload_format_indicator.has_value(), message_expiry_interval.has_value(), content_type.has_value(),
      response_topic.has_value(), correlation_data.has_value(), !subscription_identifiers.empty(),
      session_expiry_interval.has_value(), assigned_client_identifier.has_value(), server_keep_alive.has_value(),
      authentication_method.has_value(), authentication_data.has_value(), request_problem_information.has_value(),
      will_delay_interval.has_value(), request_response_information.has_value(), response_information.has_value(),
      server_reference.has_value(), reason_string.has_value(), receive_maximum.has_value(),
      topic_alias_maximum.has_value(), topic_alias.has_value(), maximum_qos.has_value(),
      retain_available.has_value(), !user_properties.empty(), maximum_packet_size.has_value(),
      wildcard_subscription_available.has_value(), subscription_identifier_available.has_value(),
      shared_subscription_available.has_value(),
  };
  static_assert(std::size(present) == kProperties.size());
  uint32_t mask = 0;
  for (size_t i = 0; i < std::size(present); ++i) mask |= static_cast<uint32_t>(present[i]) << i;
  return mask;
}

namespace {

// Reads one value of `info`'s type into `*slot`; a second one is a Protocol
// Error ("It is a Protocol Error to include X more than once").
template <typename T>
std::optional<DecodeError> ReadOnce(Reader& r, const PropertyInfo& info, PropertyScope scope, std::optional<T>* slot) {
  T v{};
  if constexpr (std::is_same_v<T, std::string_view>) {
    v = info.type == PropertyType::kBinaryData ? r.Binary() : r.Utf8(info.name);
  } else {
    switch (info.type) {
      case PropertyType::kByte: v = static_cast<T>(r.U8()); break;
      case PropertyType::kTwoByteInteger: v = static_cast<T>(r.U16()); break;
      case PropertyType::kFourByteInteger: v = static_cast<T>(r.U32()); break;
      default: break;
    }
  }
  if (!r.ok()) return Malformed(fmt::format("{} in {}: {}", info.name, PropertyScopeName(scope), r.error()));
  if (slot->has_value()) {
    return ProtocolError(fmt::format("{} appears more than once in {}", info.name, PropertyScopeName(scope)));
  }
  *slot = v;
  return std::nullopt;
}

}  // namespace

std::optional<DecodeError> ReadProperties(Reader& outer, PropertyScope scope, Properties* out) {
  uint32_t length = outer.Vbi();
  std::string_view block = outer.Bytes(length);
  if (!outer.ok()) {
    return Malformed(fmt::format("{}: the property length: {}", PropertyScopeName(scope), outer.error()));
  }
  Reader r(std::span<const char>(block.data(), block.size()));
  while (!r.empty()) {
    uint32_t id = r.Vbi();
    if (!r.ok()) return Malformed(fmt::format("{}: a property identifier: {}", PropertyScopeName(scope), r.error()));
    const PropertyInfo* info = FindProperty(id);
    if (info == nullptr) {
      return Malformed(fmt::format("{}: unknown property identifier 0x{:02X} [2.2.2.2]", PropertyScopeName(scope), id));
    }
    if (!info->AllowedIn(scope)) {
      return Malformed(fmt::format("{} (0x{:02X}) is not allowed in {} [2.2.2.2]", info->name, id,
                                   PropertyScopeName(scope)));
    }
    std::optional<DecodeError> err;
    switch (info->id) {
      case PropertyId::kPayloadFormatIndicator: err = ReadOnce(r, *info, scope, &out->payload_format_indicator); break;
      case PropertyId::kMessageExpiryInterval: err = ReadOnce(r, *info, scope, &out->message_expiry_interval); break;
      case PropertyId::kContentType: err = ReadOnce(r, *info, scope, &out->content_type); break;
      case PropertyId::kResponseTopic: err = ReadOnce(r, *info, scope, &out->response_topic); break;
      case PropertyId::kCorrelationData: err = ReadOnce(r, *info, scope, &out->correlation_data); break;
      case PropertyId::kSubscriptionIdentifier: {
        uint32_t v = r.Vbi();
        if (!r.ok()) return Malformed(fmt::format("Subscription Identifier: {}", r.error()));
        if (!info->MayRepeat(scope) && !out->subscription_identifiers.empty()) {
          return ProtocolError(fmt::format("Subscription Identifier appears more than once in {}",
                                           PropertyScopeName(scope)));
        }
        out->subscription_identifiers.push_back(v);
        break;
      }
      case PropertyId::kSessionExpiryInterval: err = ReadOnce(r, *info, scope, &out->session_expiry_interval); break;
      case PropertyId::kAssignedClientIdentifier:
        err = ReadOnce(r, *info, scope, &out->assigned_client_identifier);
        break;
      case PropertyId::kServerKeepAlive: err = ReadOnce(r, *info, scope, &out->server_keep_alive); break;
      case PropertyId::kAuthenticationMethod: err = ReadOnce(r, *info, scope, &out->authentication_method); break;
      case PropertyId::kAuthenticationData: err = ReadOnce(r, *info, scope, &out->authentication_data); break;
      case PropertyId::kRequestProblemInformation:
        err = ReadOnce(r, *info, scope, &out->request_problem_information);
        break;
      case PropertyId::kWillDelayInterval: err = ReadOnce(r, *info, scope, &out->will_delay_interval); break;
      case PropertyId::kRequestResponseInformation:
        err = ReadOnce(r, *info, scope, &out->request_response_information);
        break;
      case PropertyId::kResponseInformation: err = ReadOnce(r, *info, scope, &out->response_information); break;
      case PropertyId::kServerReference: err = ReadOnce(r, *info, scope, &out->server_reference); break;
      case PropertyId::kReasonString: err = ReadOnce(r, *info, scope, &out->reason_string); break;
      case PropertyId::kReceiveMaximum: err = ReadOnce(r, *info, scope, &out->receive_maximum); break;
      case PropertyId::kTopicAliasMaximum: err = ReadOnce(r, *info, scope, &out->topic_alias_maximum); break;
      case PropertyId::kTopicAlias: err = ReadOnce(r, *info, scope, &out->topic_alias); break;
      case PropertyId::kMaximumQos: err = ReadOnce(r, *info, scope, &out->maximum_qos); break;
      case PropertyId::kRetainAvailable: err = ReadOnce(r, *info, scope, &out->retain_available); break;
      case PropertyId::kUserProperty: {
        std::string_view name = r.Utf8("User Property name");
        std::string_view value = r.Utf8("User Property value");
        if (!r.ok()) return Malformed(fmt::format("{}: {} [MQTT-1.5.7-1]", PropertyScopeName(scope), r.error()));
        out->user_properties.push_back({name, value});
        break;
      }
      case PropertyId::kMaximumPacketSize: err = ReadOnce(r, *info, scope, &out->maximum_packet_size); break;
      case PropertyId::kWildcardSubscriptionAvailable:
        err = ReadOnce(r, *info, scope, &out->wildcard_subscription_available);
        break;
      case PropertyId::kSubscriptionIdentifierAvailable:
        err = ReadOnce(r, *info, scope, &out->subscription_identifier_available);
        break;
      case PropertyId::kSharedSubscriptionAvailable:
        err = ReadOnce(r, *info, scope, &out->shared_subscription_available);
        break;
    }
    if (err) return err;
  }
  return std::nullopt;
}

namespace {

std::optional<DecodeError> CheckZeroOne(const std::optional<uint8_t>& v, PropertyId id) {
  if (v && *v > 1) {
    return ProtocolError(fmt::format("{} is {}; only 0 or 1 is allowed", Info(id).name, *v));
  }
  return std::nullopt;
}

std::optional<DecodeError> CheckNotZero(bool zero, PropertyId id) {
  if (zero) return ProtocolError(fmt::format("{} is 0, which is not allowed", Info(id).name));
  return std::nullopt;
}

// Only the encoder can hand over a string that is not valid: a decoded one
// was checked as it was read.
std::optional<DecodeError> CheckString(const std::optional<std::string_view>& s, PropertyId id) {
  if (!s) return std::nullopt;
  if (s->size() > kMaxStringBytes) {
    return Malformed(fmt::format("{} is {} bytes, more than 65,535", Info(id).name, s->size()));
  }
  if (Info(id).type == PropertyType::kUtf8String) {
    std::string_view bad = Utf8Error(*s);
    if (!bad.empty()) return Malformed(fmt::format("{} {} [MQTT-1.5.4-1, MQTT-1.5.4-2]", Info(id).name, bad));
  }
  return std::nullopt;
}

#define FLOE_MQTT_CHECK(expr)            \
  do {                                   \
    if (auto floe_err_ = (expr)) return floe_err_; \
  } while (0)

}  // namespace

std::optional<DecodeError> ValidateProperties(const Properties& p, PropertyScope scope, Sender sender,
                                              bool check_encoding) {
  const uint32_t present = p.PresentMask();
  // The common case, nothing to check (AUTH alone requires a property).
  if (present == 0 && scope != PropertyScope::kAuth) return std::nullopt;
  for (size_t i = 0; i < kProperties.size(); ++i) {
    if ((present >> i & 1) && !kProperties[i].AllowedIn(scope)) {
      return Malformed(
          fmt::format("{} is not allowed in {} [2.2.2.2]", kProperties[i].name, PropertyScopeName(scope)));
    }
  }
  FLOE_MQTT_CHECK(CheckZeroOne(p.payload_format_indicator, PropertyId::kPayloadFormatIndicator));
  FLOE_MQTT_CHECK(CheckZeroOne(p.request_problem_information, PropertyId::kRequestProblemInformation));
  FLOE_MQTT_CHECK(CheckZeroOne(p.request_response_information, PropertyId::kRequestResponseInformation));
  FLOE_MQTT_CHECK(CheckZeroOne(p.maximum_qos, PropertyId::kMaximumQos));
  FLOE_MQTT_CHECK(CheckZeroOne(p.retain_available, PropertyId::kRetainAvailable));
  FLOE_MQTT_CHECK(CheckZeroOne(p.wildcard_subscription_available, PropertyId::kWildcardSubscriptionAvailable));
  FLOE_MQTT_CHECK(
      CheckZeroOne(p.subscription_identifier_available, PropertyId::kSubscriptionIdentifierAvailable));
  FLOE_MQTT_CHECK(CheckZeroOne(p.shared_subscription_available, PropertyId::kSharedSubscriptionAvailable));
  FLOE_MQTT_CHECK(CheckNotZero(p.receive_maximum == 0, PropertyId::kReceiveMaximum));
  FLOE_MQTT_CHECK(CheckNotZero(p.maximum_packet_size == 0u, PropertyId::kMaximumPacketSize));
  if (p.topic_alias == 0) {
    return DecodeError{ReasonCode::kTopicAliasInvalid, "Topic Alias is 0, which is not permitted [MQTT-3.3.2-8]", 0};
  }
  for (uint32_t id : p.subscription_identifiers) {
    if (id == 0 || id > kMaxVariableByteInteger) {
      return ProtocolError(fmt::format("Subscription Identifier {} is outside 1..268,435,455", id));
    }
  }
  if (p.subscription_identifiers.size() > 1 && scope != PropertyScope::kPublish) {
    return ProtocolError(fmt::format("Subscription Identifier appears more than once in {}", PropertyScopeName(scope)));
  }
  if (scope == PropertyScope::kPublish && sender == Sender::kClient && !p.subscription_identifiers.empty()) {
    return ProtocolError("a PUBLISH from a client carries a Subscription Identifier [MQTT-3.3.4-6]");
  }
  if (scope == PropertyScope::kDisconnect && sender == Sender::kServer && p.session_expiry_interval) {
    return ProtocolError("a DISCONNECT from the server carries a Session Expiry Interval [MQTT-3.14.2-2]");
  }
  if (scope == PropertyScope::kConnect && p.authentication_data && !p.authentication_method) {
    return ProtocolError("CONNECT has Authentication Data but no Authentication Method [3.1.2.11.10]");
  }
  if (scope == PropertyScope::kAuth && !p.authentication_method) {
    return ProtocolError("AUTH has no Authentication Method [3.15.2.2.2]");
  }
  if (p.response_topic && HasWildcard(*p.response_topic)) {
    return ProtocolError("Response Topic contains a wildcard [MQTT-3.3.2-14]");
  }
  if (p.response_topic && p.response_topic->empty()) return ProtocolError("Response Topic is empty [MQTT-4.7.3-1]");
  if (!check_encoding) return std::nullopt;
  FLOE_MQTT_CHECK(CheckString(p.content_type, PropertyId::kContentType));
  FLOE_MQTT_CHECK(CheckString(p.correlation_data, PropertyId::kCorrelationData));
  FLOE_MQTT_CHECK(CheckString(p.assigned_client_identifier, PropertyId::kAssignedClientIdentifier));
  FLOE_MQTT_CHECK(CheckString(p.authentication_method, PropertyId::kAuthenticationMethod));
  FLOE_MQTT_CHECK(CheckString(p.authentication_data, PropertyId::kAuthenticationData));
  FLOE_MQTT_CHECK(CheckString(p.response_information, PropertyId::kResponseInformation));
  FLOE_MQTT_CHECK(CheckString(p.server_reference, PropertyId::kServerReference));
  FLOE_MQTT_CHECK(CheckString(p.reason_string, PropertyId::kReasonString));
  FLOE_MQTT_CHECK(CheckString(p.response_topic, PropertyId::kResponseTopic));
  if (p.response_topic) {
    Status s = ValidateTopicName(*p.response_topic);
    if (!s.ok()) {
      return ProtocolError(fmt::format("Response Topic: {} [MQTT-3.3.2-14]", s.message()));
    }
  }
  for (const UserProperty& u : p.user_properties) {
    FLOE_MQTT_CHECK(CheckString(u.name, PropertyId::kUserProperty));
    FLOE_MQTT_CHECK(CheckString(u.value, PropertyId::kUserProperty));
    if (!Utf8Error(u.name).empty() || !Utf8Error(u.value).empty()) {
      return Malformed("a User Property is not a valid UTF-8 string pair [MQTT-1.5.7-1]");
    }
  }
  return std::nullopt;
}

namespace {

// Calls visit(info, value-kind...) for every present property, in identifier
// order; used for both sizing and writing so the two cannot disagree.
template <typename Sink>
void ForEachProperty(const Properties& p, Sink&& sink) {
  auto byte = [&](PropertyId id, const std::optional<uint8_t>& v) { if (v) sink.Byte(id, *v); };
  auto two = [&](PropertyId id, const std::optional<uint16_t>& v) { if (v) sink.Two(id, *v); };
  auto four = [&](PropertyId id, const std::optional<uint32_t>& v) { if (v) sink.Four(id, *v); };
  auto str = [&](PropertyId id, const std::optional<std::string_view>& v) { if (v) sink.Str(id, *v); };
  byte(PropertyId::kPayloadFormatIndicator, p.payload_format_indicator);
  four(PropertyId::kMessageExpiryInterval, p.message_expiry_interval);
  str(PropertyId::kContentType, p.content_type);
  str(PropertyId::kResponseTopic, p.response_topic);
  str(PropertyId::kCorrelationData, p.correlation_data);
  for (uint32_t id : p.subscription_identifiers) sink.Vbi(PropertyId::kSubscriptionIdentifier, id);
  four(PropertyId::kSessionExpiryInterval, p.session_expiry_interval);
  str(PropertyId::kAssignedClientIdentifier, p.assigned_client_identifier);
  two(PropertyId::kServerKeepAlive, p.server_keep_alive);
  str(PropertyId::kAuthenticationMethod, p.authentication_method);
  str(PropertyId::kAuthenticationData, p.authentication_data);
  byte(PropertyId::kRequestProblemInformation, p.request_problem_information);
  four(PropertyId::kWillDelayInterval, p.will_delay_interval);
  byte(PropertyId::kRequestResponseInformation, p.request_response_information);
  str(PropertyId::kResponseInformation, p.response_information);
  str(PropertyId::kServerReference, p.server_reference);
  str(PropertyId::kReasonString, p.reason_string);
  two(PropertyId::kReceiveMaximum, p.receive_maximum);
  two(PropertyId::kTopicAliasMaximum, p.topic_alias_maximum);
  two(PropertyId::kTopicAlias, p.topic_alias);
  byte(PropertyId::kMaximumQos, p.maximum_qos);
  byte(PropertyId::kRetainAvailable, p.retain_available);
  for (const UserProperty& u : p.user_properties) sink.Pair(u.name, u.value);
  four(PropertyId::kMaximumPacketSize, p.maximum_packet_size);
  byte(PropertyId::kWildcardSubscriptionAvailable, p.wildcard_subscription_available);
  byte(PropertyId::kSubscriptionIdentifierAvailable, p.subscription_identifier_available);
  byte(PropertyId::kSharedSubscriptionAvailable, p.shared_subscription_available);
}

// Every identifier is one byte (Table 2-4), so an id costs 1.
struct SizeSink {
  size_t n = 0;
  void Byte(PropertyId, uint8_t) { n += 2; }
  void Two(PropertyId, uint16_t) { n += 3; }
  void Four(PropertyId, uint32_t) { n += 5; }
  void Vbi(PropertyId, uint32_t v) { n += 1 + VariableByteIntegerSize(v); }
  void Str(PropertyId, std::string_view s) { n += 3 + s.size(); }
  void Pair(std::string_view a, std::string_view b) { n += 5 + a.size() + b.size(); }
};

struct WriteSink {
  std::string* out;
  void Id(PropertyId id) { PutU8(out, static_cast<uint8_t>(id)); }
  void Byte(PropertyId id, uint8_t v) { Id(id); PutU8(out, v); }
  void Two(PropertyId id, uint16_t v) { Id(id); PutU16(out, v); }
  void Four(PropertyId id, uint32_t v) { Id(id); PutU32(out, v); }
  void Vbi(PropertyId id, uint32_t v) { Id(id); PutVariableByteInteger(out, v); }
  void Str(PropertyId id, std::string_view s) { Id(id); PutLengthPrefixed(out, s); }
  void Pair(std::string_view a, std::string_view b) {
    Id(PropertyId::kUserProperty);
    PutLengthPrefixed(out, a);
    PutLengthPrefixed(out, b);
  }
};

}  // namespace

size_t PropertiesSize(const Properties& p) {
  SizeSink s;
  ForEachProperty(p, s);
  return s.n;
}

void PutProperties(std::string* out, const Properties& p) {
  size_t n = PropertiesSize(p);
  PutVariableByteInteger(out, static_cast<uint32_t>(n));
  WriteSink w{out};
  ForEachProperty(p, w);
}

}  // namespace floe::mqtt
