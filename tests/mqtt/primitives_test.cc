// MQTT's data representations (MQTT 5.0 section 1.5): Variable Byte Integers
// at every size boundary of Table 1-1, refused when over 4 bytes or not
// minimal [MQTT-1.5.5-1]; UTF-8 strings refused when ill-formed, surrogate
// or U+0000 [MQTT-1.5.4-1, -2], U+FEFF kept [MQTT-1.5.4-3]; the Disallowed
// code points recognised; big-endian integers; the Reader's sticky failure.
#include "mqtt/primitives.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mqtt/properties.h"
#include "test_util.h"

namespace floe::mqtt {
namespace {

using testing::AsSpan;
using testing::Hex;

TEST(VariableByteInteger, TableOneOneBoundariesRoundTrip) {
  struct Case {
    uint32_t value;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {0, Hex("00")},
      {127, Hex("7f")},
      {128, Hex("80 01")},
      {16'383, Hex("ff 7f")},
      {16'384, Hex("80 80 01")},
      {2'097'151, Hex("ff ff 7f")},
      {2'097'152, Hex("80 80 80 01")},
      {268'435'455, Hex("ff ff ff 7f")},
  };
  for (const Case& c : cases) {
    std::string out;
    PutVariableByteInteger(&out, c.value);
    EXPECT_EQ(out, c.bytes) << c.value;
    EXPECT_EQ(VariableByteIntegerSize(c.value), c.bytes.size());
    VbiResult r = DecodeVariableByteInteger(AsSpan(c.bytes));
    ASSERT_EQ(r.status, VbiStatus::kOk) << c.value;
    EXPECT_EQ(r.value, c.value);
    EXPECT_EQ(r.size, c.bytes.size());
    // Every proper prefix needs more.
    for (size_t n = 0; n < c.bytes.size(); ++n) {
      EXPECT_EQ(DecodeVariableByteInteger({c.bytes.data(), n}).status, VbiStatus::kNeedMore) << c.value << " " << n;
    }
  }
}

TEST(VariableByteInteger, TrailingBytesAreNotPartOfIt) {
  std::string b = Hex("05 ff ff");
  VbiResult r = DecodeVariableByteInteger(AsSpan(b));
  ASSERT_EQ(r.status, VbiStatus::kOk);
  EXPECT_EQ(r.value, 5u);
  EXPECT_EQ(r.size, 1u);
}

TEST(VariableByteInteger, FiveBytesAreMalformed) {
  for (const char* hex : {"80 80 80 80 01", "ff ff ff ff 7f", "ff ff ff ff"}) {
    std::string b = Hex(hex);
    EXPECT_EQ(DecodeVariableByteInteger(AsSpan(b)).status, VbiStatus::kMalformed) << hex;
  }
}

TEST(VariableByteInteger, NonMinimalEncodingsAreMalformed) {
  // 0 in two, three and four bytes; 127 in two; 128 in three.
  for (const char* hex : {"80 00", "80 80 00", "80 80 80 00", "ff 00", "80 81 00"}) {
    std::string b = Hex(hex);
    EXPECT_EQ(DecodeVariableByteInteger(AsSpan(b)).status, VbiStatus::kMalformed) << hex;
  }
}

TEST(Utf8, WellFormedStringsPass) {
  EXPECT_TRUE(IsValidUtf8String(""));
  EXPECT_TRUE(IsValidUtf8String("sensors/room 1"));
  // The specification's example (Figure 1-2): 'A' then U+2A6D4.
  EXPECT_TRUE(IsValidUtf8String(Hex("41 f0 aa 9b 94")));
  EXPECT_TRUE(IsValidUtf8String(Hex("c2 80")));        // U+0080
  EXPECT_TRUE(IsValidUtf8String(Hex("ed 9f bf")));     // U+D7FF, just below the surrogates
  EXPECT_TRUE(IsValidUtf8String(Hex("ee 80 80")));     // U+E000, just above
  EXPECT_TRUE(IsValidUtf8String(Hex("f4 8f bf bf")));  // U+10FFFF
  // A byte order mark is a character like any other [MQTT-1.5.4-3].
  EXPECT_TRUE(IsValidUtf8String(Hex("ef bb bf 'a'")));
}

TEST(Utf8, IllFormedSurrogateAndNullAreRefused) {
  struct Case {
    const char* hex;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {"00", "U+0000"},
           {"'a' 00 'b'", "U+0000"},
           {"c0 80", "overlong U+0000"},
           {"c1 bf", "overlong"},
           {"e0 80 80", "overlong three-byte"},
           {"f0 80 80 80", "overlong four-byte"},
           {"ed a0 80", "surrogate U+D800"},
           {"ed bf bf", "surrogate U+DFFF"},
           {"f4 90 80 80", "above U+10FFFF"},
           {"f5 80 80 80", "lead byte F5"},
           {"ff", "byte FF"},
           {"80", "stray continuation"},
           {"e2 82", "truncated"},
           {"f0 9f 98", "truncated four-byte"},
           {"c3 28", "bad continuation"},
           {"e2 28 a1", "bad continuation in three-byte"},
       }) {
    EXPECT_FALSE(IsValidUtf8String(Hex(c.hex))) << c.why;
  }
  EXPECT_NE(Utf8Error(Hex("ed a0 80")).find("surrogate"), std::string_view::npos);
  EXPECT_NE(Utf8Error(Hex("00")).find("U+0000"), std::string_view::npos);
}

TEST(Utf8, DisallowedCodePointsAreRecognised) {
  for (const char* hex : {"01", "1f", "7f", "c2 80", "c2 9f", "ef b7 90", "ef b7 af", "ef bf be", "ef bf bf",
                          "f0 9f bf be", "f4 8f bf bf"}) {
    EXPECT_TRUE(HasDisallowedCodePoint(Hex(hex))) << hex;
    EXPECT_TRUE(IsValidUtf8String(Hex(hex))) << hex << ": disallowed is still well-formed";
  }
  for (const char* hex : {"20", "'a/b c'", "c2 a0", "ef bb bf", "ef b7 8f", "ef b7 b0", "f0 9f 98 80"}) {
    EXPECT_FALSE(HasDisallowedCodePoint(Hex(hex))) << hex;
  }
}

TEST(Reader, BigEndianIntegersStringsAndBinary) {
  std::string b = Hex("01 02 03 04 05 06 07 00 03 'a/b' 00 02 ff 00 'x'");
  Reader r(AsSpan(b));
  EXPECT_EQ(r.U8(), 0x01);
  EXPECT_EQ(r.U16(), 0x0203);
  EXPECT_EQ(r.U32(), 0x04050607u);
  EXPECT_EQ(r.Utf8("topic"), "a/b");
  EXPECT_EQ(r.Binary(), Hex("ff 00"));  // binary data may hold anything
  EXPECT_EQ(r.Rest(), "x");
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.empty());
}

TEST(Reader, FirstFailureSticks) {
  std::string b = Hex("00 05 'ab'");
  Reader r(AsSpan(b));
  EXPECT_EQ(r.Utf8("topic"), "");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("topic"), std::string::npos);
  EXPECT_EQ(r.U8(), 0);
  EXPECT_EQ(r.U32(), 0u);
  EXPECT_TRUE(r.empty());
}

TEST(Reader, Utf8FieldRefusesNull) {
  std::string b = Hex("00 03 'a' 00 'b'");
  Reader r(AsSpan(b));
  r.Utf8("client identifier");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("client identifier"), std::string::npos);
}

TEST(Writer, BigEndianAndLengthPrefixed) {
  std::string out;
  PutU16(&out, 0x0A0B);
  PutU32(&out, 0x01020304);
  PutLengthPrefixed(&out, "MQTT");
  EXPECT_EQ(out, Hex("0a 0b 01 02 03 04 00 04 'MQTT'"));
}

TEST(PropertyTable, EveryIdentifierOnceInOrderWithItsScopes) {
  auto all = AllProperties();
  ASSERT_EQ(all.size(), 27u);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].id, all[i].id);
  for (const PropertyInfo& p : all) {
    EXPECT_EQ(FindProperty(static_cast<uint8_t>(p.id)), &p);
    EXPECT_NE(p.scopes, 0);
  }
  EXPECT_EQ(FindProperty(0x00), nullptr);
  EXPECT_EQ(FindProperty(0x04), nullptr);
  EXPECT_EQ(FindProperty(0x2B), nullptr);
  // A few rows of Table 2-4.
  const PropertyInfo* alias = FindProperty(0x23);
  ASSERT_NE(alias, nullptr);
  EXPECT_EQ(alias->type, PropertyType::kTwoByteInteger);
  EXPECT_TRUE(alias->AllowedIn(PropertyScope::kPublish));
  EXPECT_FALSE(alias->AllowedIn(PropertyScope::kWill));
  const PropertyInfo* delay = FindProperty(0x18);
  EXPECT_TRUE(delay->AllowedIn(PropertyScope::kWill));
  EXPECT_FALSE(delay->AllowedIn(PropertyScope::kPublish));
  const PropertyInfo* sub_id = FindProperty(0x0B);
  EXPECT_EQ(sub_id->type, PropertyType::kVariableByteInteger);
  EXPECT_TRUE(sub_id->MayRepeat(PropertyScope::kPublish));
  EXPECT_FALSE(sub_id->MayRepeat(PropertyScope::kSubscribe));
  const PropertyInfo* user = FindProperty(0x26);
  for (PropertyScope s : {PropertyScope::kWill, PropertyScope::kConnect, PropertyScope::kConnack,
                          PropertyScope::kPublish, PropertyScope::kPuback, PropertyScope::kPubrec,
                          PropertyScope::kPubrel, PropertyScope::kPubcomp, PropertyScope::kSubscribe,
                          PropertyScope::kSuback, PropertyScope::kUnsubscribe, PropertyScope::kUnsuback,
                          PropertyScope::kDisconnect, PropertyScope::kAuth}) {
    EXPECT_TRUE(user->AllowedIn(s));
    EXPECT_TRUE(user->MayRepeat(s));
  }
  const PropertyInfo* reason = FindProperty(0x1F);
  EXPECT_FALSE(reason->AllowedIn(PropertyScope::kPublish));
  EXPECT_FALSE(reason->AllowedIn(PropertyScope::kConnect));
  EXPECT_TRUE(reason->AllowedIn(PropertyScope::kAuth));
}

TEST(ReasonCodes, NamesAndThreeOneOneMapping) {
  EXPECT_EQ(ReasonCodeName(ReasonCode::kMalformedPacket), "Malformed Packet");
  EXPECT_EQ(ReasonCodeName(ReasonCode::kPacketTooLarge), "Packet too large");
  EXPECT_EQ(ReasonCodeName(static_cast<ReasonCode>(0x03)), "unknown reason code");
  EXPECT_TRUE(IsFailure(ReasonCode::kUnspecifiedError));
  EXPECT_FALSE(IsFailure(ReasonCode::kNoMatchingSubscribers));
  for (uint8_t code = 0; code <= 5; ++code) {
    auto r = FromConnectReturnCode(code);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(static_cast<uint8_t>(*ToConnectReturnCode(*r)), code);
  }
  EXPECT_FALSE(FromConnectReturnCode(6).has_value());
  EXPECT_FALSE(ToConnectReturnCode(ReasonCode::kMalformedPacket).has_value());
  EXPECT_EQ(ToConnectReturnCode(ReasonCode::kUseAnotherServer), ConnectReturnCode::kServerUnavailable);
  EXPECT_TRUE(IsReasonCodeAllowed(PacketType::kDisconnect, ReasonCode::kSessionTakenOver, Version::kV5));
  EXPECT_FALSE(IsReasonCodeAllowed(PacketType::kConnack, ReasonCode::kSessionTakenOver, Version::kV5));
  EXPECT_FALSE(IsReasonCodeAllowed(PacketType::kPuback, ReasonCode::kQuotaExceeded, Version::kV311));
  EXPECT_TRUE(IsReasonCodeAllowed(PacketType::kSuback, ReasonCode::kUnspecifiedError, Version::kV311));
  EXPECT_FALSE(IsReasonCodeAllowed(PacketType::kSuback, ReasonCode::kNotAuthorized, Version::kV311));
}

}  // namespace
}  // namespace floe::mqtt
