// Every refusal docs/mqtt.md lists, each with the reason code the server
// answers with: 0x81 Malformed Packet, 0x82 Protocol Error, 0x84 Unsupported
// Protocol Version, 0x85 Client Identifier not valid, 0x94 Topic Alias
// invalid, 0x95 Packet too large. Each case is a packet written by hand; the
// same body with the fault removed decodes (so the fault, not a typo, is what
// is refused) where a "fixed" body is given.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mqtt/codec.h"
#include "mqtt/primitives.h"
#include "test_util.h"

namespace floe::mqtt {
namespace {

using testing::Hex;
using testing::ToHex;

constexpr auto k5 = Version::kV5;
constexpr auto k311 = Version::kV311;
constexpr auto kC = Sender::kClient;
constexpr auto kS = Sender::kServer;

// The first byte, the Remaining Length computed from the body, the body.
std::string Build(uint8_t first, std::string_view body_hex) {
  std::string body = Hex(body_hex);
  std::string out(1, static_cast<char>(first));
  PutVariableByteInteger(&out, static_cast<uint32_t>(body.size()));
  return out + body;
}

struct Case {
  const char* name;
  Version version;
  Sender sender;
  uint8_t first;
  const char* body;
  ReasonCode expected;
  const char* fixed = nullptr;  // the same packet without the fault: decodes
};

constexpr ReasonCode k81 = ReasonCode::kMalformedPacket;
constexpr ReasonCode k82 = ReasonCode::kProtocolError;
constexpr ReasonCode k84 = ReasonCode::kUnsupportedProtocolVersion;
constexpr ReasonCode k85 = ReasonCode::kClientIdentifierNotValid;
constexpr ReasonCode k94 = ReasonCode::kTopicAliasInvalid;

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      // ---- CONNECT
      {"protocol name not MQTT", k5, kC, 0x10, "00 04 'MQTX' 05 02 00 3c 00 00 01 'a'", k84,
       "00 04 'MQTT' 05 02 00 3c 00 00 01 'a'"},
      {"protocol level 3 with name MQTT", k5, kC, 0x10, "00 04 'MQTT' 03 02 00 3c 00 01 'a'", k84},
      {"MQTT 3.1 (MQIsdp)", k5, kC, 0x10, "00 06 'MQIsdp' 03 02 00 3c 00 01 'a'", k84},
      {"protocol level 6", k5, kC, 0x10, "00 04 'MQTT' 06 02 00 3c 00 00 01 'a'", k84},
      {"reserved connect flag [MQTT-3.1.2-3]", k5, kC, 0x10, "00 04 'MQTT' 05 03 00 3c 00 00 01 'a'", k81,
       "00 04 'MQTT' 05 02 00 3c 00 00 01 'a'"},
      {"will QoS 3 [MQTT-3.1.2-12]", k5, kC, 0x10, "00 04 'MQTT' 05 1e 00 3c 00 00 01 'a' 00 00 01 't' 00 00", k81,
       "00 04 'MQTT' 05 16 00 3c 00 00 01 'a' 00 00 01 't' 00 00"},
      {"will QoS without will flag [MQTT-3.1.2-11]", k5, kC, 0x10, "00 04 'MQTT' 05 0a 00 3c 00 00 01 'a'", k81},
      {"will retain without will flag [MQTT-3.1.2-13]", k311, kC, 0x10, "00 04 'MQTT' 04 22 00 3c 00 01 'a'", k81},
      {"3.1.1 password without user name [MQTT-3.1.2-22]", k311, kC, 0x10,
       "00 04 'MQTT' 04 42 00 3c 00 01 'a' 00 01 'p'", k81,
       "00 04 'MQTT' 04 c2 00 3c 00 01 'a' 00 01 'u' 00 01 'p'"},
      {"3.1.1 empty client id without clean session [MQTT-3.1.3-8]", k311, kC, 0x10,
       "00 04 'MQTT' 04 00 00 3c 00 00", k85, "00 04 'MQTT' 04 02 00 3c 00 00"},
      {"client id not UTF-8", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 00 00 02 c0 80", k81},
      {"client id with U+0000", k311, kC, 0x10, "00 04 'MQTT' 04 02 00 3c 00 02 'a' 00", k81},
      {"Topic Alias is not a CONNECT property", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 03 23 00 01 00 01 'a'", k81,
       "00 04 'MQTT' 05 02 00 3c 03 22 00 01 00 01 'a'"},
      {"Will Delay Interval outside the Will Properties", k5, kC, 0x10,
       "00 04 'MQTT' 05 02 00 3c 05 18 00 00 00 01 00 01 'a'", k81},
      {"unknown property identifier", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 01 7f 00 01 'a'", k81},
      {"Session Expiry Interval twice", k5, kC, 0x10,
       "00 04 'MQTT' 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 01 'a'", k82,
       "00 04 'MQTT' 05 02 00 3c 05 11 00 00 00 01 00 01 'a'"},
      {"Receive Maximum 0", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 03 21 00 00 00 01 'a'", k82,
       "00 04 'MQTT' 05 02 00 3c 03 21 00 01 00 01 'a'"},
      {"Maximum Packet Size 0", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 05 27 00 00 00 00 00 01 'a'", k82},
      {"Request Problem Information 2", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 02 17 02 00 01 'a'", k82,
       "00 04 'MQTT' 05 02 00 3c 02 17 01 00 01 'a'"},
      {"Request Response Information 2", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 02 19 02 00 01 'a'", k82},
      {"Authentication Data without Method", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 04 16 00 01 'x' 00 01 'a'", k82,
       "00 04 'MQTT' 05 02 00 3c 08 15 00 01 'm' 16 00 01 'x' 00 01 'a'"},
      {"property length past the end", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 7f 00 01 'a'", k81},
      {"bytes after the last field", k5, kC, 0x10, "00 04 'MQTT' 05 02 00 3c 00 00 01 'a' 00", k81},
      {"will flag but no will fields [MQTT-3.1.2-9]", k5, kC, 0x10, "00 04 'MQTT' 05 06 00 3c 00 00 01 'a'", k81},
      {"user name flag but no user name [MQTT-3.1.2-17]", k5, kC, 0x10, "00 04 'MQTT' 05 82 00 3c 00 00 01 'a'", k81},
      {"password flag but no password [MQTT-3.1.2-19]", k5, kC, 0x10, "00 04 'MQTT' 05 42 00 3c 00 00 01 'a'", k81},
      {"will topic with a wildcard", k5, kC, 0x10, "00 04 'MQTT' 05 06 00 3c 00 00 01 'a' 00 00 01 '#' 00 00", k82,
       "00 04 'MQTT' 05 06 00 3c 00 00 01 'a' 00 00 01 't' 00 00"},
      {"Topic Alias in the Will Properties", k5, kC, 0x10,
       "00 04 'MQTT' 05 06 00 3c 00 00 01 'a' 03 23 00 01 00 01 't' 00 00", k81},
      {"Payload Format Indicator 2 in the Will", k5, kC, 0x10,
       "00 04 'MQTT' 05 06 00 3c 00 00 01 'a' 02 01 02 00 01 't' 00 00", k82},
      {"CONNECT from a server", k5, kS, 0x10, "00 04 'MQTT' 05 02 00 3c 00 00 01 'a'", k82},
      {"CONNECT flags 1 [MQTT-2.1.3-1]", k5, kC, 0x11, "00 04 'MQTT' 05 02 00 3c 00 00 01 'a'", k81},

      // ---- CONNACK (as a client decodes it)
      {"CONNACK reserved flags [MQTT-3.2.2-1]", k5, kS, 0x20, "02 00 00", k81, "01 00 00"},
      {"3.1.1 CONNACK return code 6", k311, kS, 0x20, "00 06", k82, "00 05"},
      {"CONNACK reason 0x10", k5, kS, 0x20, "00 10 00", k82, "00 9c 00"},
      {"CONNACK refusal with Session Present [MQTT-3.2.2-6]", k5, kS, 0x20, "01 87 00", k82, "00 87 00"},
      {"CONNACK from a client", k5, kC, 0x20, "00 00 00", k82},
      {"Maximum QoS 2", k5, kS, 0x20, "00 00 02 24 02", k82, "00 00 02 24 01"},
      {"Retain Available 2", k5, kS, 0x20, "00 00 02 25 02", k82},
      {"Shared Subscription Available 7", k5, kS, 0x20, "00 00 02 2a 07", k82},
      {"Will Delay Interval in CONNACK", k5, kS, 0x20, "00 00 05 18 00 00 00 01", k81},
      {"Assigned Client Identifier twice", k5, kS, 0x20, "00 00 08 12 00 01 'a' 12 00 01 'b'", k82},
      {"3.1.1 CONNACK with properties", k311, kS, 0x20, "00 00 00", k81},

      // ---- PUBLISH
      {"QoS 3 [MQTT-3.3.1-4]", k5, kC, 0x36, "00 01 't' 00 01 00", k81},
      {"DUP on QoS 0 [MQTT-3.3.1-2]", k5, kC, 0x38, "00 01 't' 00", k81},
      {"QoS 1 with packet identifier 0 [MQTT-2.2.1-3]", k5, kC, 0x32, "00 01 't' 00 00 00", k82,
       "00 01 't' 00 01 00"},
      {"3.1.1 QoS 2 with packet identifier 0", k311, kC, 0x34, "00 01 't' 00 00", k82, "00 01 't' 00 01"},
      {"'+' in a topic name [MQTT-3.3.2-2]", k5, kC, 0x30, "00 03 'a/+' 00", k82, "00 03 'a/b' 00"},
      {"'#' in a 3.1.1 topic name", k311, kC, 0x30, "00 01 '#'", k82},
      {"empty topic name without Topic Alias", k5, kC, 0x30, "00 00 00", k82, "00 00 03 23 00 05"},
      {"3.1.1 empty topic name [MQTT-4.7.3-1]", k311, kC, 0x30, "00 00 'x'", k82},
      {"Topic Alias 0 [MQTT-3.3.2-8]", k5, kC, 0x30, "00 01 't' 03 23 00 00", k94, "00 01 't' 03 23 00 01"},
      {"Subscription Identifier from a client [MQTT-3.3.4-6]", k5, kC, 0x30, "00 01 't' 02 0b 01", k82},
      {"Subscription Identifier 0 (from the server)", k5, kS, 0x30, "00 01 't' 02 0b 00", k82, "00 01 't' 02 0b 01"},
      {"Payload Format Indicator 2", k5, kC, 0x30, "00 01 't' 02 01 02", k82, "00 01 't' 02 01 01"},
      {"Response Topic with a wildcard [MQTT-3.3.2-14]", k5, kC, 0x30, "00 01 't' 04 08 00 01 '#'", k82,
       "00 01 't' 04 08 00 01 'r'"},
      {"Content Type twice", k5, kC, 0x30, "00 01 't' 08 03 00 01 'a' 03 00 01 'b'", k82},
      {"Topic Alias twice", k5, kC, 0x30, "00 01 't' 06 23 00 01 23 00 02", k82},
      {"Reason String is not a PUBLISH property", k5, kC, 0x30, "00 01 't' 04 1f 00 01 'x'", k81},
      {"topic name with a surrogate", k5, kC, 0x30, "00 03 ed a0 80 00", k81},
      {"topic name with U+0000", k311, kC, 0x30, "00 03 'a' 00 'b'", k81},
      {"topic name cut short", k311, kC, 0x30, "00 05 'ab'", k81},
      {"property length past the end of a PUBLISH", k5, kC, 0x30, "00 01 't' 05 01", k81},
      {"Message Expiry Interval cut short", k5, kC, 0x30, "00 01 't' 02 02 00", k81},
      {"User Property value not UTF-8 [MQTT-1.5.7-1]", k5, kC, 0x30, "00 01 't' 07 26 00 01 'k' 00 01 ff", k81,
       "00 01 't' 07 26 00 01 'k' 00 01 'v'"},

      // ---- PUBACK, PUBREC, PUBREL, PUBCOMP
      {"PUBACK packet identifier 0", k5, kC, 0x40, "00 00", k82, "00 01"},
      {"PUBACK reason 0x92", k5, kC, 0x40, "00 01 92", k82, "00 01 10"},
      {"3.1.1 PUBACK with a reason byte", k311, kC, 0x40, "00 01 00", k81, "00 01"},
      {"PUBACK cut short", k5, kC, 0x40, "00", k81},
      {"PUBACK Reason String twice", k5, kC, 0x40, "00 01 80 08 1f 00 01 'a' 1f 00 01 'b'", k82,
       "00 01 80 04 1f 00 01 'a'"},
      {"Content Type is not a PUBACK property", k5, kC, 0x40, "00 01 00 04 03 00 01 'a'", k81},
      {"PUBREC flags 2", k5, kC, 0x52, "00 01", k81},
      {"PUBREL flags 0 [MQTT-3.6.1-1]", k5, kC, 0x60, "00 01", k81},
      {"PUBREL flags 3", k311, kC, 0x63, "00 01", k81},
      {"PUBREL reason 0x10", k5, kC, 0x62, "00 01 10", k82, "00 01 92"},
      {"PUBCOMP reason 0x97", k5, kS, 0x70, "00 01 97", k82},

      // ---- SUBSCRIBE
      {"SUBSCRIBE flags 0 [MQTT-3.8.1-1]", k5, kC, 0x80, "00 01 00 00 01 'a' 00", k81},
      {"SUBSCRIBE without a filter [MQTT-3.8.3-2]", k5, kC, 0x82, "00 01 00", k82, "00 01 00 00 01 'a' 00"},
      {"3.1.1 SUBSCRIBE without a filter [MQTT-3.8.3-3]", k311, kC, 0x82, "00 01", k82},
      {"SUBSCRIBE packet identifier 0", k5, kC, 0x82, "00 00 00 00 01 'a' 00", k82},
      {"reserved subscription option bits [MQTT-3.8.3-5]", k5, kC, 0x82, "00 01 00 00 01 'a' 40", k81},
      {"3.1.1 reserved requested QoS bits", k311, kC, 0x82, "00 01 00 01 'a' 04", k81, "00 01 00 01 'a' 02"},
      {"subscription QoS 3", k5, kC, 0x82, "00 01 00 00 01 'a' 03", k82},
      {"3.1.1 subscription QoS 3", k311, kC, 0x82, "00 01 00 01 'a' 03", k81},
      {"Retain Handling 3", k5, kC, 0x82, "00 01 00 00 01 'a' 30", k82, "00 01 00 00 01 'a' 20"},
      {"No Local on a shared subscription [MQTT-3.8.3-4]", k5, kC, 0x82, "00 01 00 00 0a '$share/g/a' 04", k82,
       "00 01 00 00 0a '$share/g/a' 08"},
      {"'#' not last [MQTT-4.7.1-1]", k5, kC, 0x82, "00 01 00 00 05 'a/#/b' 00", k82, "00 01 00 00 05 'a/+/b' 00"},
      {"'+' not alone in its level [MQTT-4.7.1-2]", k5, kC, 0x82, "00 01 00 00 02 'a+' 00", k82},
      {"'#' not alone in its level", k311, kC, 0x82, "00 01 00 02 'a#' 00", k82},
      {"$share without a filter [MQTT-4.8.2-2]", k5, kC, 0x82, "00 01 00 00 08 '$share/g' 00", k82},
      {"$share with an empty ShareName [MQTT-4.8.2-1]", k5, kC, 0x82, "00 01 00 00 09 '$share//a' 00", k82},
      {"$share with a wildcard ShareName", k5, kC, 0x82, "00 01 00 00 0b '$share/g#/a' 00", k82},
      {"empty topic filter [MQTT-4.7.3-1]", k5, kC, 0x82, "00 01 00 00 00 00", k82},
      {"topic filter with U+0000", k5, kC, 0x82, "00 01 00 00 01 00 00", k81},
      {"subscription options missing", k5, kC, 0x82, "00 01 00 00 01 'a'", k81},
      {"Subscription Identifier 0", k5, kC, 0x82, "00 01 02 0b 00 00 01 'a' 00", k82,
       "00 01 02 0b 01 00 01 'a' 00"},
      {"two Subscription Identifiers", k5, kC, 0x82, "00 01 04 0b 01 0b 02 00 01 'a' 00", k82},
      {"Subscription Identifier of five bytes", k5, kC, 0x82, "00 01 06 0b ff ff ff ff 01 00 01 'a' 00", k81},
      {"SUBSCRIBE from a server", k5, kS, 0x82, "00 01 00 00 01 'a' 00", k82},

      // ---- SUBACK
      {"SUBACK without a reason code", k5, kS, 0x90, "00 01 00", k82, "00 01 00 00"},
      {"SUBACK reason 0x92", k5, kS, 0x90, "00 01 00 92", k82, "00 01 00 a2"},
      {"3.1.1 SUBACK return code 0x87", k311, kS, 0x90, "00 01 87", k82, "00 01 80"},
      {"SUBACK from a client", k5, kC, 0x90, "00 01 00 00", k82},

      // ---- UNSUBSCRIBE, UNSUBACK
      {"UNSUBSCRIBE flags 0 [MQTT-3.10.1-1]", k5, kC, 0xa0, "00 01 00 00 01 'a'", k81},
      {"UNSUBSCRIBE without a filter [MQTT-3.10.3-2]", k5, kC, 0xa2, "00 01 00", k82, "00 01 00 00 01 'a'"},
      {"UNSUBSCRIBE of an invalid filter", k311, kC, 0xa2, "00 01 00 02 'a#'", k82},
      {"Subscription Identifier in UNSUBSCRIBE", k5, kC, 0xa2, "00 01 02 0b 01 00 01 'a'", k81},
      {"3.1.1 UNSUBACK with a reason byte", k311, kS, 0xb0, "00 01 00", k81, "00 01"},
      {"UNSUBACK without a reason code", k5, kS, 0xb0, "00 01 00", k82, "00 01 00 11"},
      {"UNSUBACK reason 0x10", k5, kS, 0xb0, "00 01 00 10", k82},

      // ---- PINGREQ, PINGRESP, DISCONNECT, AUTH
      {"PINGREQ with a body", k5, kC, 0xc0, "00", k81, ""},
      {"PINGREQ flags 1", k311, kC, 0xc1, "", k81},
      {"PINGRESP from a client", k5, kC, 0xd0, "", k82},
      {"3.1.1 DISCONNECT with a body", k311, kC, 0xe0, "00", k81, ""},
      {"DISCONNECT flags 1 [MQTT-3.14.1-1]", k5, kC, 0xe1, "", k81},
      {"DISCONNECT reason 0x05", k5, kC, 0xe0, "05", k82, "04"},
      {"Session Expiry in a server's DISCONNECT [MQTT-3.14.2-2]", k5, kS, 0xe0, "00 05 11 00 00 00 01", k82,
       "00 05 1c 00 02 'b' 'c'"},
      {"Topic Alias in DISCONNECT", k5, kC, 0xe0, "00 03 23 00 01", k81, "00 05 11 00 00 00 01"},
      {"AUTH without Authentication Method", k5, kC, 0xf0, "18 00", k82, "18 04 15 00 01 'm'"},
      {"AUTH in its short form has no method", k5, kC, 0xf0, "", k82},
      {"AUTH reason 0x01", k5, kC, 0xf0, "01 04 15 00 01 'm'", k82},
      {"AUTH flags 1 [MQTT-3.15.1-1]", k5, kC, 0xf1, "18 04 15 00 01 'm'", k81},
      {"AUTH in MQTT 3.1.1", k311, kC, 0xf0, "18 04 15 00 01 'm'", k81},
  };
  return cases;
}

TEST(Malformed, EveryCaseIsRefusedWithItsReason) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    std::string bytes = Build(c.first, c.body);
    auto r = testing::Decode(bytes, c.version, c.sender);
    if (r.has_value()) {
      ADD_FAILURE() << "decoded: " << ToHex(bytes);
      continue;
    }
    EXPECT_EQ(static_cast<int>(r.error().reason), static_cast<int>(c.expected))
        << ToHex(bytes) << ": " << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
    if (c.fixed != nullptr) {
      std::string fixed = Build(c.first, c.fixed);
      auto ok = testing::Decode(fixed, c.version, c.sender);
      EXPECT_TRUE(ok.has_value()) << "fixed: " << ToHex(fixed) << ": " << (ok ? "" : ok.error().message);
    }
  }
}

TEST(Malformed, ConnectErrorsCarryTheProtocolLevel) {
  auto r = testing::Decode(Build(0x10, "00 04 'MQTT' 03 02 00 3c 00 01 'a'"), k5);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().protocol_level, 3);
  r = testing::Decode(Build(0x10, "00 04 'MQTT' 04 03 00 3c 00 01 'a'"), k5);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, ReasonCode::kMalformedPacket);
  EXPECT_EQ(r.error().protocol_level, 4);  // answer (or close) as 3.1.1
  r = testing::Decode(Build(0x10, "00 04 'MQTT' 05 02 00 3c 03 21 00 00 00 01 'a'"), k5);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().protocol_level, 5);
}

TEST(Malformed, FixedHeaderAndRemainingLength) {
  struct Raw {
    const char* name;
    std::string bytes;
    Version version;
  };
  for (const Raw& raw : std::vector<Raw>{
           {"empty", "", k5},
           {"type byte only", Hex("c0"), k5},
           {"packet type 0", Hex("00 00"), k5},
           {"non-minimal Remaining Length [MQTT-1.5.5-1]", Hex("c0 80 00"), k5},
           {"Remaining Length of five bytes", Hex("30 ff ff ff ff 7f"), k5},
           {"Remaining Length longer than the packet", Hex("c0 02 00"), k311},
           {"Remaining Length shorter than the packet", Hex("40 02 00 01 00"), k311},
       }) {
    auto r = testing::Decode(raw.bytes, raw.version);
    ASSERT_FALSE(r.has_value()) << raw.name;
    EXPECT_EQ(r.error().reason, ReasonCode::kMalformedPacket) << raw.name << ": " << r.error().message;
  }
}

TEST(Malformed, PacketTooLargeIsItsOwnReason) {
  std::string p = Build(0x30, "00 01 't' 00 'payload'");  // 13 bytes
  ASSERT_EQ(p.size(), 13u);
  auto r = testing::Decode(p, k5, kC, 12);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, ReasonCode::kPacketTooLarge);
  EXPECT_TRUE(testing::Decode(p, k5, kC, 13).has_value());
  // Refused for its size even when it is malformed too: the size is checked
  // before anything in it is read.
  std::string junk(100, '\xff');
  r = testing::Decode(junk, k5, kC, 50);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().reason, ReasonCode::kPacketTooLarge);
}

TEST(Malformed, DisallowedCodePointsAreAccepted) {
  // U+0001 and U+FFFF in a topic: "MAY treat as malformed"; floe does not
  // (docs/mqtt.md), and keeps them byte for byte.
  auto r = testing::Decode(Build(0x30, "00 05 'a' 01 ef bf bf 00"), k5);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(std::get<Publish>(*r).topic, Hex("'a' 01 ef bf bf"));
  // A BOM is not stripped [MQTT-1.5.4-3].
  r = testing::Decode(Build(0x30, "00 04 ef bb bf 't' 00"), k5);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<Publish>(*r).topic.size(), 4u);
}

}  // namespace
}  // namespace floe::mqtt
