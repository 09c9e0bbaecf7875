// Every control packet of MQTT 5.0 and 3.1.1 round-trips through EncodePacket
// and DecodePacket with every field compared (MQTT 5: with every property its
// packet allows); a few packets match bytes written by hand from the
// specification's figures; what 3.1.1 cannot say is refused or left out as
// codec.h promises; the Maximum Packet Size is kept when encoding.
#include "mqtt/codec.h"

#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mqtt/frame.h"
#include "test_util.h"

namespace floe::mqtt {
namespace {

using testing::Decode;
using testing::Encode;
using testing::Hex;
using testing::ToHex;

// Every property `scope` allows, each with a value its rules accept.
Properties AllPropertiesOf(PropertyScope scope) {
  Properties p;
  for (const PropertyInfo& info : AllProperties()) {
    if (!info.AllowedIn(scope)) continue;
    switch (info.id) {
      case PropertyId::kPayloadFormatIndicator: p.payload_format_indicator = 1; break;
      case PropertyId::kMessageExpiryInterval: p.message_expiry_interval = 3600; break;
      case PropertyId::kContentType: p.content_type = "text/plain"; break;
      case PropertyId::kResponseTopic: p.response_topic = "reply/here"; break;
      case PropertyId::kCorrelationData: p.correlation_data = std::string_view("\x00\xff\x01", 3); break;
      case PropertyId::kSubscriptionIdentifier:
        p.subscription_identifiers = {268'435'455};
        if (scope == PropertyScope::kPublish) p.subscription_identifiers.push_back(1);  // one per match
        break;
      case PropertyId::kSessionExpiryInterval: p.session_expiry_interval = 0xFFFFFFFF; break;
      case PropertyId::kAssignedClientIdentifier: p.assigned_client_identifier = "auto-1f2e"; break;
      case PropertyId::kServerKeepAlive: p.server_keep_alive = 30; break;
      case PropertyId::kAuthenticationMethod: p.authentication_method = "SCRAM-SHA-1"; break;
      case PropertyId::kAuthenticationData: p.authentication_data = "client-first"; break;
      case PropertyId::kRequestProblemInformation: p.request_problem_information = 0; break;
      case PropertyId::kWillDelayInterval: p.will_delay_interval = 120; break;
      case PropertyId::kRequestResponseInformation: p.request_response_information = 1; break;
      case PropertyId::kResponseInformation: p.response_information = "responses/c1"; break;
      case PropertyId::kServerReference: p.server_reference = "node-b:1883"; break;
      case PropertyId::kReasonString: p.reason_string = "because"; break;
      case PropertyId::kReceiveMaximum: p.receive_maximum = 1000; break;
      case PropertyId::kTopicAliasMaximum: p.topic_alias_maximum = 16; break;
      case PropertyId::kTopicAlias: p.topic_alias = 7; break;
      case PropertyId::kMaximumQos: p.maximum_qos = 1; break;
      case PropertyId::kRetainAvailable: p.retain_available = 0; break;
      case PropertyId::kUserProperty:
        // The same name twice, in order [MQTT-3.3.2-18]; empty strings; a BOM.
        p.user_properties = {{"k", "v1"}, {"k", "v2"}, {"", ""}, {"\xEF\xBB\xBF" "bom", "\xC3\xA9"}};
        break;
      case PropertyId::kMaximumPacketSize: p.maximum_packet_size = 1 << 20; break;
      case PropertyId::kWildcardSubscriptionAvailable: p.wildcard_subscription_available = 1; break;
      case PropertyId::kSubscriptionIdentifierAvailable: p.subscription_identifier_available = 0; break;
      case PropertyId::kSharedSubscriptionAvailable: p.shared_subscription_available = 1; break;
    }
  }
  return p;
}

Sender SenderOf(const Packet& p) {
  switch (TypeOf(p)) {
    case PacketType::kConnect:
    case PacketType::kSubscribe:
    case PacketType::kUnsubscribe:
    case PacketType::kPingreq:
      return Sender::kClient;
    default:
      return Sender::kServer;
  }
}

void ExpectRoundTrip(const Packet& p, Version v) {
  Sender sender = SenderOf(p);
  std::string bytes = Encode(p, v, sender);
  ASSERT_FALSE(bytes.empty());
  auto frame = SplitFrame(testing::AsSpan(bytes), kMaxPacketSize);
  EXPECT_EQ(frame.kind, FrameResult::kPacket);
  EXPECT_EQ(frame.size, bytes.size());
  auto back = Decode(bytes, v, sender);
  ASSERT_TRUE(back.has_value()) << PacketTypeName(TypeOf(p)) << " " << VersionName(v) << ": "
                                << back.error().message << "\n" << ToHex(bytes);
  EXPECT_TRUE(*back == p) << PacketTypeName(TypeOf(p)) << " " << VersionName(v) << "\n" << ToHex(bytes);
  // Encoding is a function of the packet.
  EXPECT_EQ(Encode(*back, v, sender), bytes);
}

// Every packet type, as full as `v` allows (MQTT 5: every property allowed).
std::vector<Packet> EveryPacket(Version v) {
  const bool v5 = v == Version::kV5;
  auto props = [&](PropertyScope s) { return v5 ? AllPropertiesOf(s) : Properties{}; };
  std::vector<Packet> out;

  Connect full;
  full.version = v;
  full.clean_start = false;
  full.keep_alive = 65'535;
  full.properties = props(PropertyScope::kConnect);
  full.client_id = "sensor-17";
  Will will;
  will.properties = props(PropertyScope::kWill);
  will.topic = "status/sensor-17";
  will.payload = std::string_view("off\x00line", 8);
  will.qos = 2;
  will.retain = true;
  full.will = will;
  full.user_name = "alice";
  full.password = std::string_view("\x00secret", 7);
  out.push_back(full);
  Connect minimal;
  minimal.version = v;
  minimal.client_id = "";  // clean start with an empty id: the server assigns one
  out.push_back(minimal);
  Connect will_qos0 = minimal;
  will_qos0.client_id = "c";
  will_qos0.will = Will{props(PropertyScope::kWill), "w", "", 0, false};
  will_qos0.user_name = "";
  out.push_back(will_qos0);
  if (v5) {
    Connect password_only = minimal;  // MQTT 5 allows a password without a user name
    password_only.password = "token";
    out.push_back(password_only);
  }

  out.push_back(Connack{true, ReasonCode::kSuccess, props(PropertyScope::kConnack)});
  out.push_back(Connack{false, v5 ? ReasonCode::kQuotaExceeded : ReasonCode::kNotAuthorized, {}});
  for (ReasonCode r : {ReasonCode::kUnsupportedProtocolVersion, ReasonCode::kClientIdentifierNotValid,
                       ReasonCode::kServerUnavailable, ReasonCode::kBadUserNameOrPassword}) {
    out.push_back(Connack{false, r, {}});
  }

  for (uint8_t qos : {0, 1, 2}) {
    Publish p;
    p.qos = qos;
    p.dup = qos > 0;
    p.retain = qos == 1;
    p.topic = "sensors/room-1/temperature";
    p.packet_id = qos > 0 ? 65'535 : 0;
    p.properties = props(PropertyScope::kPublish);
    p.payload = std::string_view("21.5\x00\xff", 6);
    out.push_back(p);
  }
  Publish empty_payload;
  empty_payload.topic = "/";
  out.push_back(empty_payload);
  if (v5) {
    Publish by_alias;  // an empty topic name stands for the alias's
    by_alias.qos = 1;
    by_alias.packet_id = 1;
    by_alias.properties.topic_alias = 3;
    by_alias.payload = "x";
    out.push_back(by_alias);
  }

  const ReasonCode ack_reason = v5 ? ReasonCode::kQuotaExceeded : ReasonCode::kSuccess;
  out.push_back(Puback{{1, ReasonCode::kSuccess, {}}});
  out.push_back(Puback{{2, ack_reason, props(PropertyScope::kPuback)}});
  out.push_back(Pubrec{{3, ack_reason, props(PropertyScope::kPubrec)}});
  out.push_back(Pubrec{{65'535, ReasonCode::kSuccess, {}}});
  out.push_back(Pubrel{{4, v5 ? ReasonCode::kPacketIdentifierNotFound : ReasonCode::kSuccess,
                        props(PropertyScope::kPubrel)}});
  out.push_back(Pubrel{{5, ReasonCode::kSuccess, {}}});
  out.push_back(Pubcomp{{6, v5 ? ReasonCode::kPacketIdentifierNotFound : ReasonCode::kSuccess,
                         props(PropertyScope::kPubcomp)}});
  out.push_back(Pubcomp{{7, ReasonCode::kSuccess, {}}});
  if (v5) {
    // A success-range code without properties: the three-byte form.
    out.push_back(Puback{{8, ReasonCode::kNoMatchingSubscribers, {}}});
  }

  Subscribe sub;
  sub.packet_id = 10;
  sub.properties = props(PropertyScope::kSubscribe);
  if (v5) {
    sub.subscriptions = {
        {"sport/tennis/+", {2, true, true, RetainHandling::kDoNotSend}},
        {"#", {0, false, false, RetainHandling::kSendIfNewSubscription}},
        {"$share/group/a/#", {1, false, true, RetainHandling::kSendOnSubscribe}},
    };
  } else {
    sub.subscriptions = {{"sport/tennis/+", {2}}, {"#", {0}}, {"$share/group", {1}}};
  }
  out.push_back(sub);

  Suback suback;
  suback.packet_id = 10;
  suback.properties = props(PropertyScope::kSuback);
  suback.reasons = {ReasonCode::kGrantedQos2, ReasonCode::kSuccess, ReasonCode::kGrantedQos1,
                    v5 ? ReasonCode::kSharedSubscriptionsNotSupported : ReasonCode::kUnspecifiedError};
  out.push_back(suback);

  out.push_back(Unsubscribe{11, props(PropertyScope::kUnsubscribe), {"sport/tennis/+", "$share/group/a/#", "/"}});
  Unsuback unsuback{11, props(PropertyScope::kUnsuback), {}};
  if (v5) unsuback.reasons = {ReasonCode::kSuccess, ReasonCode::kNoSubscriptionExisted, ReasonCode::kNotAuthorized};
  out.push_back(unsuback);

  out.push_back(Pingreq{});
  out.push_back(Pingresp{});
  out.push_back(Disconnect{});
  if (v5) {
    Properties d = props(PropertyScope::kDisconnect);
    d.session_expiry_interval.reset();  // a server's DISCONNECT has none [MQTT-3.14.2-2]
    out.push_back(Disconnect{ReasonCode::kUseAnotherServer, d});
    out.push_back(Disconnect{ReasonCode::kSessionTakenOver, {}});
    out.push_back(Auth{ReasonCode::kContinueAuthentication, props(PropertyScope::kAuth)});
    Properties method_only;
    method_only.authentication_method = "SCRAM-SHA-1";
    out.push_back(Auth{ReasonCode::kSuccess, method_only});
  }
  return out;
}

TEST(RoundTrip, EveryPacketMqtt5) {
  std::vector<Packet> packets = EveryPacket(Version::kV5);
  std::set<PacketType> types;
  for (const Packet& p : packets) {
    types.insert(TypeOf(p));
    ExpectRoundTrip(p, Version::kV5);
  }
  EXPECT_EQ(types.size(), 15u);
}

TEST(RoundTrip, EveryPacketMqtt311) {
  std::vector<Packet> packets = EveryPacket(Version::kV311);
  std::set<PacketType> types;
  for (const Packet& p : packets) {
    types.insert(TypeOf(p));
    ExpectRoundTrip(p, Version::kV311);
  }
  EXPECT_EQ(types.size(), 14u);  // no AUTH in 3.1.1
}

TEST(RoundTrip, EveryPropertyIsCoveredByTheFullPackets) {
  std::set<PropertyId> seen;
  for (const Packet& p : EveryPacket(Version::kV5)) {
    std::visit(
        [&](const auto& packet) {
          if constexpr (requires { packet.properties; }) {
            for (const PropertyInfo& info : AllProperties()) {
              if (packet.properties.Has(info.id)) seen.insert(info.id);
            }
          }
          if constexpr (requires { packet.will; }) {
            if (packet.will) {
              for (const PropertyInfo& info : AllProperties()) {
                if (packet.will->properties.Has(info.id)) seen.insert(info.id);
              }
            }
          }
        },
        p);
  }
  EXPECT_EQ(seen.size(), AllProperties().size());
}

TEST(RoundTrip, LargePayloadWithAFourByteRemainingLength) {
  std::string payload(2'097'152, 'p');  // the Remaining Length needs 4 bytes
  Publish p;
  p.topic = "big";
  p.qos = 1;
  p.packet_id = 9;
  p.payload = payload;
  for (Version v : {Version::kV5, Version::kV311}) {
    std::string bytes = Encode(p, v, Sender::kClient);
    EXPECT_EQ(static_cast<uint8_t>(bytes[4]), 0x01);
    auto back = Decode(bytes, v);
    ASSERT_TRUE(back.has_value()) << back.error().message;
    EXPECT_EQ(std::get<Publish>(*back).payload.size(), payload.size());
  }
}

// ---- Bytes written by hand from the specification's figures.

struct Vector {
  const char* name;
  Version version;
  Sender sender;
  std::string bytes;
  Packet packet;
};

std::vector<Vector> HandWrittenVectors() {
  std::vector<Vector> v;
  {
    Connect c;
    c.version = Version::kV311;
    c.keep_alive = 60;
    c.client_id = "a";
    v.push_back({"3.1.1 CONNECT, clean session, keep alive 60", Version::kV311, Sender::kClient,
                 Hex("10 0d 00 04 'MQTT' 04 02 00 3c 00 01 'a'"), c});
  }
  {
    // Figure 3-6's variable header: flags 0xCE (user name, password, Will
    // QoS 1, Will Flag, Clean Start), keep alive 10, Session Expiry 10.
    Connect c;
    c.version = Version::kV5;
    c.keep_alive = 10;
    c.properties.session_expiry_interval = 10;
    c.client_id = "c";
    c.will = Will{{}, "w", "x", 1, false};
    c.user_name = "u";
    c.password = "p";
    v.push_back({"5.0 CONNECT of Figure 3-6", Version::kV5, Sender::kClient,
                 Hex("10 20 00 04 'MQTT' 05 ce 00 0a 05 11 00 00 00 0a"
                     " 00 01 'c' 00 00 01 'w' 00 01 'x' 00 01 'u' 00 01 'p'"),
                 c});
  }
  v.push_back({"5.0 CONNACK, success", Version::kV5, Sender::kServer, Hex("20 03 00 00 00"), Connack{}});
  v.push_back({"3.1.1 CONNACK, session present", Version::kV311, Sender::kServer, Hex("20 02 01 00"),
               Connack{true, ReasonCode::kSuccess, {}}});
  v.push_back({"3.1.1 CONNACK, unacceptable protocol version", Version::kV311, Sender::kServer, Hex("20 02 00 01"),
               Connack{false, ReasonCode::kUnsupportedProtocolVersion, {}}});
  {
    // Figure 3-9: topic "a/b", packet identifier 10, no properties.
    Publish p;
    p.qos = 1;
    p.topic = "a/b";
    p.packet_id = 10;
    p.payload = "hi";
    v.push_back({"5.0 PUBLISH of Figure 3-9", Version::kV5, Sender::kClient,
                 Hex("32 0a 00 03 'a/b' 00 0a 00 'hi'"), p});
    v.push_back({"3.1.1 PUBLISH", Version::kV311, Sender::kClient, Hex("32 09 00 03 'a/b' 00 0a 'hi'"), p});
    Publish q0;
    q0.retain = true;
    q0.topic = "a/b";
    v.push_back({"3.1.1 PUBLISH QoS 0 retained, empty payload", Version::kV311, Sender::kClient,
                 Hex("31 05 00 03 'a/b'"), q0});
  }
  v.push_back({"5.0 PUBACK, success, short form", Version::kV5, Sender::kServer, Hex("40 02 00 0a"),
               Puback{{10, ReasonCode::kSuccess, {}}}});
  v.push_back({"5.0 PUBACK, no matching subscribers", Version::kV5, Sender::kServer, Hex("40 03 00 0a 10"),
               Puback{{10, ReasonCode::kNoMatchingSubscribers, {}}}});
  v.push_back({"3.1.1 PUBREL", Version::kV311, Sender::kClient, Hex("62 02 00 0a"),
               Pubrel{{10, ReasonCode::kSuccess, {}}}});
  {
    // Figure 3-21: "a/b" at QoS 1, "c/d" at QoS 2, packet identifier 10.
    Subscribe s;
    s.packet_id = 10;
    s.subscriptions = {{"a/b", {1}}, {"c/d", {2}}};
    v.push_back({"5.0 SUBSCRIBE of Figure 3-21", Version::kV5, Sender::kClient,
                 Hex("82 0f 00 0a 00 00 03 'a/b' 01 00 03 'c/d' 02"), s});
    v.push_back({"3.1.1 SUBSCRIBE", Version::kV311, Sender::kClient, Hex("82 0e 00 0a 00 03 'a/b' 01 00 03 'c/d' 02"),
                 s});
  }
  v.push_back({"5.0 SUBACK, granted QoS 1", Version::kV5, Sender::kServer, Hex("90 04 00 0a 00 01"),
               Suback{10, {}, {ReasonCode::kGrantedQos1}}});
  v.push_back({"3.1.1 SUBACK, QoS 2 and failure", Version::kV311, Sender::kServer, Hex("90 04 00 0a 02 80"),
               Suback{10, {}, {ReasonCode::kGrantedQos2, ReasonCode::kUnspecifiedError}}});
  v.push_back({"3.1.1 UNSUBSCRIBE of Figure 3.30", Version::kV311, Sender::kClient,
               Hex("a2 0c 00 0a 00 03 'a/b' 00 03 'c/d'"), Unsubscribe{10, {}, {"a/b", "c/d"}}});
  v.push_back({"3.1.1 UNSUBACK", Version::kV311, Sender::kServer, Hex("b0 02 00 0a"), Unsuback{10, {}, {}}});
  v.push_back({"5.0 UNSUBACK", Version::kV5, Sender::kServer, Hex("b0 04 00 0a 00 00"),
               Unsuback{10, {}, {ReasonCode::kSuccess}}});
  v.push_back({"PINGREQ", Version::kV311, Sender::kClient, Hex("c0 00"), Pingreq{}});
  v.push_back({"PINGRESP", Version::kV5, Sender::kServer, Hex("d0 00"), Pingresp{}});
  v.push_back({"5.0 DISCONNECT, normal, short form", Version::kV5, Sender::kClient, Hex("e0 00"), Disconnect{}});
  {
    Properties p;
    p.server_reference = "b:1883";
    v.push_back({"5.0 DISCONNECT, use another server", Version::kV5, Sender::kServer,
                 Hex("e0 0b 9c 09 1c 00 06 'b:1883'"), Disconnect{ReasonCode::kUseAnotherServer, p}});
  }
  {
    Properties p;
    p.authentication_method = "SCRAM";
    v.push_back({"5.0 AUTH, continue", Version::kV5, Sender::kServer, Hex("f0 0a 18 08 15 00 05 'SCRAM'"),
                 Auth{ReasonCode::kContinueAuthentication, p}});
  }
  return v;
}

TEST(Vectors, HandWrittenBytesDecodeAndEncodeExactly) {
  for (const Vector& vec : HandWrittenVectors()) {
    SCOPED_TRACE(vec.name);
    auto got = Decode(vec.bytes, vec.version, vec.sender);
    ASSERT_TRUE(got.has_value()) << got.error().message;
    EXPECT_TRUE(*got == vec.packet);
    EXPECT_EQ(ToHex(Encode(vec.packet, vec.version, vec.sender)), ToHex(vec.bytes));
  }
}

TEST(Vectors, ShortFormsOfMqtt5AcknowledgementsDecode) {
  // A reason code without a property length (Remaining Length 3), and a
  // DISCONNECT with a reason only (Remaining Length 1).
  auto rec = Decode(Hex("50 03 00 07 97"), Version::kV5, Sender::kServer);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(std::get<Pubrec>(*rec).reason, ReasonCode::kQuotaExceeded);
  auto d = Decode(Hex("e0 01 8e"), Version::kV5, Sender::kServer);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(std::get<Disconnect>(*d).reason, ReasonCode::kSessionTakenOver);
  // The long form of a success with an empty property list decodes to the
  // same packet as the short form.
  auto longer = Decode(Hex("40 04 00 0a 00 00"), Version::kV5, Sender::kServer);
  ASSERT_TRUE(longer.has_value());
  EXPECT_TRUE(*longer == Packet(Puback{{10, ReasonCode::kSuccess, {}}}));
}

TEST(Vectors, ConnectTellsItsVersion) {
  auto v311 = Decode(Hex("10 0d 00 04 'MQTT' 04 02 00 3c 00 01 'a'"), Version::kV5);
  ASSERT_TRUE(v311.has_value());
  EXPECT_EQ(std::get<Connect>(*v311).version, Version::kV311);
  auto v5 = Decode(Hex("10 0e 00 04 'MQTT' 05 02 00 3c 00 00 01 'a'"), Version::kV311);
  ASSERT_TRUE(v5.has_value()) << v5.error().message;
  EXPECT_EQ(std::get<Connect>(*v5).version, Version::kV5);
}

// ---- What EncodePacket refuses or leaves out.

Status TryEncode(const Packet& p, Version v, Sender s, uint32_t max = kMaxPacketSize) {
  std::string out = "keep";
  Status st = EncodePacket(p, EncodeOptions{v, s, max}, &out);
  if (!st.ok()) {
    EXPECT_EQ(out, "keep") << "nothing is appended on error";
  }
  return st;
}

TEST(Encode, RefusesWhatTheDecoderWouldRefuse) {
  Publish wildcard;
  wildcard.topic = "a/+";
  EXPECT_EQ(TryEncode(wildcard, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Publish qos3;
  qos3.topic = "a";
  qos3.qos = 3;
  qos3.packet_id = 1;
  EXPECT_EQ(TryEncode(qos3, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Publish no_id;
  no_id.topic = "a";
  no_id.qos = 1;
  EXPECT_EQ(TryEncode(no_id, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Publish id_on_qos0;
  id_on_qos0.topic = "a";
  id_on_qos0.packet_id = 5;
  EXPECT_EQ(TryEncode(id_on_qos0, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Publish bad_utf8;
  bad_utf8.topic = "\xC0\x80";
  EXPECT_EQ(TryEncode(bad_utf8, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Publish sub_id_from_client;
  sub_id_from_client.topic = "a";
  sub_id_from_client.properties.subscription_identifiers = {1};
  EXPECT_EQ(TryEncode(sub_id_from_client, Version::kV5, Sender::kClient).code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(TryEncode(sub_id_from_client, Version::kV5, Sender::kServer).ok());
  Publish sub_id_too_big = sub_id_from_client;
  sub_id_too_big.properties.subscription_identifiers = {kMaxVariableByteInteger + 1};
  EXPECT_EQ(TryEncode(sub_id_too_big, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Puback wrong_place{{1, ReasonCode::kSuccess, {}}};
  wrong_place.properties.topic_alias = 1;  // not a PUBACK property
  EXPECT_EQ(TryEncode(wrong_place, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Puback bad_reason{{1, ReasonCode::kSessionTakenOver, {}}};
  EXPECT_EQ(TryEncode(bad_reason, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Subscribe none;
  none.packet_id = 1;
  EXPECT_EQ(TryEncode(none, Version::kV5, Sender::kClient).code(), ErrorCode::kInvalidArgument);
  Connack from_client;
  EXPECT_EQ(TryEncode(from_client, Version::kV5, Sender::kClient).code(), ErrorCode::kInvalidArgument);
  Auth no_method;
  EXPECT_EQ(TryEncode(no_method, Version::kV5, Sender::kServer).code(), ErrorCode::kInvalidArgument);
  Connect long_id;
  std::string id(65'536, 'a');
  long_id.client_id = id;
  EXPECT_EQ(TryEncode(long_id, Version::kV5, Sender::kClient).code(), ErrorCode::kInvalidArgument);
  Status s = TryEncode(wildcard, Version::kV5, Sender::kServer);
  EXPECT_NE(s.message().find("wildcard"), std::string_view::npos) << s.ToString();
}

TEST(Encode, WhatMqtt311CannotSay) {
  // No AUTH; no failure in an acknowledgement (the session closes instead of
  // pretending success); no CONNACK code for a Malformed Packet; no reason in
  // DISCONNECT.
  Properties method;
  method.authentication_method = "m";
  EXPECT_EQ(TryEncode(Auth{ReasonCode::kSuccess, method}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(TryEncode(Puback{{1, ReasonCode::kQuotaExceeded, {}}}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(TryEncode(Pubrec{{1, ReasonCode::kUnspecifiedError, {}}}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(TryEncode(Connack{false, ReasonCode::kMalformedPacket, {}}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(TryEncode(Disconnect{ReasonCode::kServerShuttingDown, {}}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(TryEncode(Suback{1, {}, {ReasonCode::kNotAuthorized}}, Version::kV311, Sender::kServer).code(),
            ErrorCode::kInvalidArgument);
  // Left out: properties, a success-range ack reason, v5 subscription options.
  Publish p;
  p.topic = "t";
  p.properties.content_type = "text/plain";
  EXPECT_EQ(ToHex(Encode(p, Version::kV311, Sender::kServer)), ToHex(Hex("30 03 00 01 't'")));
  EXPECT_EQ(ToHex(Encode(Puback{{7, ReasonCode::kNoMatchingSubscribers, {}}}, Version::kV311, Sender::kServer)),
            ToHex(Hex("40 02 00 07")));
  Subscribe s{3, {}, {{"a", {1, true, true, RetainHandling::kDoNotSend}}}};
  EXPECT_EQ(ToHex(Encode(s, Version::kV311, Sender::kClient)), ToHex(Hex("82 06 00 03 00 01 'a' 01")));
  // Mapped: a drained node's 0x9C becomes "server unavailable".
  EXPECT_EQ(ToHex(Encode(Connack{false, ReasonCode::kUseAnotherServer, {}}, Version::kV311, Sender::kServer)),
            ToHex(Hex("20 02 00 03")));
}

TEST(Encode, MaximumPacketSizeLeavesOutDiagnosticsThenRefuses) {
  Puback ack{{1, ReasonCode::kQuotaExceeded, {}}};
  ack.properties.reason_string = "the stream's quota is exhausted";
  ack.properties.user_properties = {{"node", "a"}};
  std::string full = Encode(ack, Version::kV5, Sender::kServer);
  ASSERT_GT(full.size(), 5u);
  // A maximum of 5 bytes: the reason string and user property go; the
  // reason code stays.
  std::string out;
  ASSERT_TRUE(EncodePacket(ack, EncodeOptions{Version::kV5, Sender::kServer, 5}, &out).ok());
  EXPECT_EQ(ToHex(out), ToHex(Hex("40 03 00 01 97")));
  // Below 5 nothing fits.
  EXPECT_EQ(TryEncode(ack, Version::kV5, Sender::kServer, 4).code(), ErrorCode::kOutOfRange);
  // A PUBLISH is never trimmed: too large is refused (the session drops it
  // as if sent [MQTT-3.1.2-25]).
  Publish p;
  p.topic = "t";
  p.payload = "0123456789";
  Status s = TryEncode(p, Version::kV5, Sender::kServer, 10);
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
  EXPECT_NE(s.message().find("Maximum Packet Size"), std::string_view::npos);
  EXPECT_TRUE(TryEncode(p, Version::kV5, Sender::kServer, 16).ok());  // exactly 16 bytes
  EXPECT_EQ(TryEncode(p, Version::kV5, Sender::kServer, 15).code(), ErrorCode::kOutOfRange);
}

TEST(Encode, AppendsToWhatIsThere) {
  std::string out = Hex("c0 00");
  ASSERT_TRUE(EncodePacket(Pingresp{}, EncodeOptions{Version::kV5, Sender::kServer, kMaxPacketSize}, &out).ok());
  EXPECT_EQ(out, Hex("c0 00 d0 00"));
}

}  // namespace
}  // namespace floe::mqtt
