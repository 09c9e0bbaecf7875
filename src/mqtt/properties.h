// MQTT 5 properties (MQTT 5.0 section 2.2.2, Table 2-4): every property with
// its identifier, its data type, the packets it may appear in and whether it
// may appear more than once. MQTT 3.1.1 has no properties.
//
// A decoded Properties points into the packet it came from (string views).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt/primitives.h"
#include "mqtt/types.h"

namespace floe::mqtt {

enum class PropertyId : uint8_t {
  kPayloadFormatIndicator = 0x01,
  kMessageExpiryInterval = 0x02,
  kContentType = 0x03,
  kResponseTopic = 0x08,
  kCorrelationData = 0x09,
  kSubscriptionIdentifier = 0x0B,
  kSessionExpiryInterval = 0x11,
  kAssignedClientIdentifier = 0x12,
  kServerKeepAlive = 0x13,
  kAuthenticationMethod = 0x15,
  kAuthenticationData = 0x16,
  kRequestProblemInformation = 0x17,
  kWillDelayInterval = 0x18,
  kRequestResponseInformation = 0x19,
  kResponseInformation = 0x1A,
  kServerReference = 0x1C,
  kReasonString = 0x1F,
  kReceiveMaximum = 0x21,
  kTopicAliasMaximum = 0x22,
  kTopicAlias = 0x23,
  kMaximumQos = 0x24,
  kRetainAvailable = 0x25,
  kUserProperty = 0x26,
  kMaximumPacketSize = 0x27,
  kWildcardSubscriptionAvailable = 0x28,
  kSubscriptionIdentifierAvailable = 0x29,
  kSharedSubscriptionAvailable = 0x2A,
};

enum class PropertyType : uint8_t {
  kByte,
  kTwoByteInteger,
  kFourByteInteger,
  kVariableByteInteger,
  kUtf8String,
  kBinaryData,
  kUtf8StringPair,
};

// Where a set of properties stands: a packet's variable header, or the Will
// Properties inside CONNECT's payload.
enum class PropertyScope : uint8_t {
  kWill = 0,  // not a packet type: packet types are 1..15
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
  kDisconnect = 14,
  kAuth = 15,
};
std::string_view PropertyScopeName(PropertyScope s);

struct PropertyInfo {
  PropertyId id;
  std::string_view name;
  PropertyType type;
  uint16_t scopes;  // bit (1 << PropertyScope) for each scope it may appear in
  // Whether it may appear more than once in `scope`: User Property anywhere,
  // Subscription Identifier in PUBLISH (one per matching subscription).
  bool MayRepeat(PropertyScope scope) const;
  bool AllowedIn(PropertyScope scope) const { return (scopes >> static_cast<int>(scope)) & 1; }
};
// The table entry for `id`, or nullptr for an identifier MQTT 5 does not define.
const PropertyInfo* FindProperty(uint32_t id);
// Every property, in identifier order.
std::span<const PropertyInfo> AllProperties();

struct UserProperty {
  std::string_view name;
  std::string_view value;
  bool operator==(const UserProperty&) const = default;
};

// Every MQTT 5 property; a packet uses those its scope allows. An absent
// optional is an absent property (the spec's default applies).
struct Properties {
  std::optional<uint8_t> payload_format_indicator;  // 0 bytes, 1 UTF-8
  std::optional<uint32_t> message_expiry_interval;  // seconds
  std::optional<std::string_view> content_type;
  std::optional<std::string_view> response_topic;
  std::optional<std::string_view> correlation_data;
  std::vector<uint32_t> subscription_identifiers;  // 1..268,435,455 each
  std::optional<uint32_t> session_expiry_interval;  // seconds; 0xFFFFFFFF never
  std::optional<std::string_view> assigned_client_identifier;
  std::optional<uint16_t> server_keep_alive;  // seconds
  std::optional<std::string_view> authentication_method;
  std::optional<std::string_view> authentication_data;
  std::optional<uint8_t> request_problem_information;  // 0 or 1
  std::optional<uint32_t> will_delay_interval;         // seconds
  std::optional<uint8_t> request_response_information;  // 0 or 1
  std::optional<std::string_view> response_information;
  std::optional<std::string_view> server_reference;
  std::optional<std::string_view> reason_string;
  std::optional<uint16_t> receive_maximum;      // not 0
  std::optional<uint16_t> topic_alias_maximum;
  std::optional<uint16_t> topic_alias;          // not 0
  std::optional<uint8_t> maximum_qos;           // 0 or 1
  std::optional<uint8_t> retain_available;      // 0 or 1
  std::vector<UserProperty> user_properties;    // in the order received [MQTT-3.3.2-18]
  std::optional<uint32_t> maximum_packet_size;  // not 0
  std::optional<uint8_t> wildcard_subscription_available;    // 0 or 1
  std::optional<uint8_t> subscription_identifier_available;  // 0 or 1
  std::optional<uint8_t> shared_subscription_available;      // 0 or 1

  bool empty() const { return PresentMask() == 0; }
  // Whether property `id` is present.
  bool Has(PropertyId id) const;
  // Bit i set when AllProperties()[i] is present.
  uint32_t PresentMask() const;
  bool operator==(const Properties&) const = default;
};

// Reads a Property Length and the properties it covers into `*out`.
// Malformed (0x81): an unknown identifier, a property not allowed in
// `scope` ("an Identifier which is not valid for its packet type", section
// 2.2.2.2), a value cut short or not of its type (a bad UTF-8 string).
// Protocol Error (0x82): a property given twice where only one is allowed.
// Values are checked afterwards by ValidateProperties.
std::optional<DecodeError> ReadProperties(Reader& r, PropertyScope scope, Properties* out);

// The rules on values, shared by decoder and encoder: Malformed (0x81) for a
// property not allowed in `scope`; Protocol Error (0x82) for a value the
// protocol forbids (Receive Maximum or Maximum Packet Size 0, a 0/1 byte
// with another value, Subscription Identifier 0 or above 268,435,455, more
// than one where only one is allowed, Authentication Data without a Method, a
// Response Topic that is not a valid topic name); 0x94 Topic Alias invalid for
// Topic Alias 0; and the `sender` rules (a client's PUBLISH carries no
// Subscription Identifier; a server's DISCONNECT no Session Expiry Interval).
// `check_encoding` false skips the string length and UTF-8 checks, for
// properties the Reader already checked as it decoded them.
std::optional<DecodeError> ValidateProperties(const Properties& p, PropertyScope scope, Sender sender,
                                              bool check_encoding = true);

// The encoded size of the properties (without the Property Length).
size_t PropertiesSize(const Properties& p);
// Appends the Property Length and the properties, in identifier order (user
// properties and subscription identifiers in their own order). `p` must have
// passed ValidateProperties and PropertiesSize must fit a Variable Byte
// Integer.
void PutProperties(std::string* out, const Properties& p);

}  // namespace floe::mqtt
