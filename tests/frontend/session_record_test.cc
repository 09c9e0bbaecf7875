// The MQTT session record's encoding (docs/mqtt.md "Sessions"): version 3
// round trips with every field, version 2 records (written before wills and
// QoS 2 state moved into the record) are still read, and damaged bytes are
// refused, never read past.
#include <gtest/gtest.h>

#include "base/codec.h"
#include "frontend/mqtt/session_record.h"

namespace floe::frontend::mqtt {
namespace {

SessionRecord Full() {
  SessionRecord r;
  r.client_id = "sensor-7";
  r.generation = 42;
  r.expiry_s = 3600;
  r.subscriptions.push_back({"a/+/c", {.max_qos = 2, .no_local = true}, 9, 1234});
  r.subscriptions.push_back({"$share/g/x/#", {.max_qos = 1, .retain_as_published = true}, 0, 5});
  r.node = "n2";
  r.left_at_ms = 1700000000000;
  r.will = SessionRecord::Will{"will/t", "hdr", std::string("bye\0x", 5), 1, true, 30, 77};
  r.qos2_in = {{7, 41}, {65535, 42}};
  r.qos2_out[{"", 1000}] = {3, true};
  r.qos2_out[{"", 1001}] = {4, false};
  r.qos2_out[{"sensors", 1000}] = {5, false};  // the same seq of another stream
  r.qos2_in_stream[65535] = "sensors";
  r.qos2_held = {{5, true}, {6, false}};
  return r;
}

TEST(SessionRecordTest, RoundTripsEveryField) {
  const SessionRecord r = Full();
  auto d = DecodeSessionRecord(EncodeSessionRecord(r));
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->client_id, r.client_id);
  EXPECT_EQ(d->generation, 42u);
  EXPECT_EQ(d->expiry_s, 3600u);
  ASSERT_EQ(d->subscriptions.size(), 2u);
  EXPECT_EQ(d->subscriptions[0].filter, "a/+/c");
  EXPECT_TRUE(d->subscriptions[0].options.no_local);
  EXPECT_EQ(d->subscriptions[0].identifier, 9u);
  EXPECT_TRUE(d->subscriptions[1].options.retain_as_published);
  EXPECT_EQ(d->node, "n2");
  EXPECT_EQ(d->left_at_ms, 1700000000000);
  ASSERT_TRUE(d->will);
  EXPECT_EQ(d->will->payload, std::string("bye\0x", 5));
  EXPECT_EQ(d->will->delay_s, 30u);
  EXPECT_EQ(d->will->producer_seq, 77u);
  EXPECT_TRUE(d->will->retain);
  EXPECT_EQ(d->qos2_in, r.qos2_in);
  EXPECT_EQ(d->qos2_in_stream, r.qos2_in_stream);
  ASSERT_EQ(d->qos2_out.size(), 3u);
  EXPECT_EQ((d->qos2_out[{"", 1000}].packet_id), 3);
  EXPECT_TRUE((d->qos2_out[{"", 1000}].released));
  EXPECT_FALSE((d->qos2_out[{"", 1001}].released));
  EXPECT_EQ((d->qos2_out[{"sensors", 1000}].packet_id), 5);
  EXPECT_EQ(d->qos2_held, r.qos2_held);
}

TEST(SessionRecordTest, ReadsVersion2) {
  // Version 2: client id, generation, expiry, subscriptions, nothing after.
  std::string v2 = EncodeSessionRecord(SessionRecord{.client_id = "old", .generation = 5, .expiry_s = 60,
                                                     .subscriptions = {{"t/#", {.max_qos = 1}, 0, 9}}});
  v2[0] = 2;
  v2.resize(v2.size() - (2 + 8 + 1 + 4 + 4 + 4));  // node "", left_at, no will, three empty maps
  auto d = DecodeSessionRecord(v2);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->client_id, "old");
  ASSERT_EQ(d->subscriptions.size(), 1u);
  EXPECT_EQ(d->subscriptions[0].filter, "t/#");
  EXPECT_FALSE(d->will);
  EXPECT_TRUE(d->qos2_in.empty());
}

TEST(SessionRecordTest, ReadsVersion3) {
  // Version 3: QoS 2 entries without their stream (the default MQTT stream's).
  std::string v3;
  Encoder e(&v3);
  e.U8(3);
  e.String("old");
  e.U64(5);
  e.U32(60);
  e.U32(0);       // no subscriptions
  e.String("n1");
  e.I64(0);
  e.U8(0);        // no will
  e.U32(1);       // qos2_in: id 7 -> producer seq 41
  e.U16(7);
  e.U64(41);
  e.U32(1);       // qos2_out: seq 1000 -> id 3, released
  e.U64(1000);
  e.U16(3);
  e.U8(1);
  e.U32(0);       // qos2_held
  auto d = DecodeSessionRecord(v3);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->qos2_in.at(7), 41u);
  EXPECT_TRUE(d->qos2_in_stream.empty());
  ASSERT_EQ(d->qos2_out.size(), 1u);
  EXPECT_EQ(d->qos2_out.begin()->first, (SessionRecord::DeliveryKey{"", 1000}));
  EXPECT_EQ(d->qos2_out.begin()->second.packet_id, 3);
  EXPECT_TRUE(d->qos2_out.begin()->second.released);
  // Written again, it is version 4 and reads back the same.
  auto again = DecodeSessionRecord(EncodeSessionRecord(*d));
  ASSERT_TRUE(again);
  EXPECT_EQ(EncodeSessionRecord(*again)[0], 4);
  EXPECT_EQ(again->qos2_out.begin()->first, (SessionRecord::DeliveryKey{"", 1000}));
}

TEST(SessionRecordTest, RefusesDamage) {
  const std::string good = EncodeSessionRecord(Full());
  for (size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(DecodeSessionRecord(good.substr(0, n))) << n;
  EXPECT_FALSE(DecodeSessionRecord(good + "x"));
  std::string v9 = good;
  v9[0] = 9;
  EXPECT_FALSE(DecodeSessionRecord(v9));
}

}  // namespace
}  // namespace floe::frontend::mqtt
