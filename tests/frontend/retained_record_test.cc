// The MQTT retained record's encoding (docs/mqtt.md "Retained messages"):
// round trips, the bytes of version 1, and every way a record can be bad.
#include <gtest/gtest.h>

#include <string>

#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"
#include "frontend/mqtt/retained.h"

namespace floe::frontend::mqtt {
namespace {

RetainedRecord Sample() {
  return {.seq = 42,
          .topic = "plant/7/temp",
          .headers = EncodeMessageHeaders({.topic = "plant/7/temp", .qos = 2, .retain = true, .client = "c"}),
          .payload = std::string("21.5\0C", 6)};
}

TEST(RetainedRecord, RoundTrip) {
  const RetainedRecord r = Sample();
  auto back = DecodeRetainedRecord(EncodeRetainedRecord(r));
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->seq, 42u);
  EXPECT_EQ(back->topic, r.topic);
  EXPECT_EQ(back->headers, r.headers);
  EXPECT_EQ(back->payload, r.payload);
  EXPECT_EQ(DescribeRetained(*back).qos, 2);
  EXPECT_EQ(DescribeRetained(*back).expires_at_ms, 0);
}

TEST(RetainedRecord, LargestTopicAndPayloadKept) {
  RetainedRecord r = Sample();
  r.topic = std::string(65535, 't');  // the longest topic name [MQTT-4.7.3-3]
  r.payload = std::string(1 << 20, 'p');
  auto back = DecodeRetainedRecord(EncodeRetainedRecord(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->topic.size(), 65535u);
  EXPECT_EQ(back->payload.size(), size_t{1} << 20);
}

TEST(RetainedRecord, VersionOneBytes) {
  const RetainedRecord r{.seq = 0x0102, .topic = "a/b", .headers = "H", .payload = "xy"};
  const std::string want = std::string("\x01", 1)                      // version
                           + std::string("\x02\x01\0\0\0\0\0\0", 8)      // seq, little-endian
                           + std::string("\x03\0", 2) + "a/b"           // topic: u16 length
                           + std::string("\x01\0\0\0", 4) + "H"         // headers: u32 length
                           + std::string("\x02\0\0\0", 4) + "xy";       // payload: u32 length
  EXPECT_EQ(EncodeRetainedRecord(r), want);
}

TEST(RetainedRecord, BadRecordsAreCorruption) {
  const std::string good = EncodeRetainedRecord(Sample());
  ASSERT_TRUE(DecodeRetainedRecord(good));
  auto corrupt = [](const std::string& bytes) {
    auto r = DecodeRetainedRecord(bytes);
    return !r && r.error().code() == ErrorCode::kCorruption;
  };
  EXPECT_TRUE(corrupt(""));
  std::string v2 = good;
  v2[0] = 2;
  EXPECT_TRUE(corrupt(v2));                                  // unknown version
  for (size_t n = 0; n < good.size(); ++n) EXPECT_TRUE(corrupt(good.substr(0, n))) << n;  // cut anywhere
  EXPECT_TRUE(corrupt(good + "x"));                          // trailing bytes
  RetainedRecord r = Sample();
  r.seq = 0;
  EXPECT_TRUE(corrupt(EncodeRetainedRecord(r)));
  r = Sample();
  r.topic.clear();
  EXPECT_TRUE(corrupt(EncodeRetainedRecord(r)));
  r = Sample();
  r.payload.clear();  // an empty retained payload is a delete, never a record
  EXPECT_TRUE(corrupt(EncodeRetainedRecord(r)));
}

TEST(RetainedRecord, KeysAreSixteenHexUnderTheirOwnPrefix) {
  const std::string k = RetainedKey("a/b");
  ASSERT_EQ(k.size(), kRetainedPrefix.size() + 16);
  EXPECT_EQ(k.substr(0, kRetainedPrefix.size()), "mqtt-retained/");
  EXPECT_EQ(k.find_first_not_of("0123456789abcdef", kRetainedPrefix.size()), std::string::npos);
  EXPECT_NE(RetainedKey("a/b"), RetainedKey("a/c"));
  EXPECT_EQ(RetainedKey("a/b"), RetainedKey("a/b"));
  // Not the session records' key space ("mqtt/<client hash>").
  EXPECT_NE(RetainedTopicHash("x"), ClientHash("x"));
}

}  // namespace
}  // namespace floe::frontend::mqtt
