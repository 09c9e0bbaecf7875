// The frame splitter: a packet's size is known from its first 2..5 bytes,
// checked against the maximum before memory is held for it; a stream fed one
// byte at a time yields the same packets as one fed whole; a Remaining Length
// over 4 bytes is malformed, a packet over the maximum is too large, and
// both are final.
#include "mqtt/frame.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mqtt/codec.h"
#include "test_util.h"

namespace floe::mqtt {
namespace {

using testing::AsSpan;
using testing::Hex;

TEST(SplitFrame, NeedMoreUntilTheHeaderIsWhole) {
  EXPECT_EQ(SplitFrame({}, 100).kind, FrameResult::kNeedMore);
  std::string b = Hex("30");
  EXPECT_EQ(SplitFrame(AsSpan(b), 100).kind, FrameResult::kNeedMore);
  b = Hex("30 80");
  FrameResult r = SplitFrame(AsSpan(b), 1000);
  EXPECT_EQ(r.kind, FrameResult::kNeedMore);
  EXPECT_EQ(r.size, 0u);  // the size is not known yet
}

TEST(SplitFrame, KnowsTheSizeBeforeTheBody) {
  std::string b = Hex("30 0a 00 03");
  FrameResult r = SplitFrame(AsSpan(b), 100);
  EXPECT_EQ(r.kind, FrameResult::kNeedMore);
  EXPECT_EQ(r.size, 12u);
  b = Hex("30 80 01");
  r = SplitFrame(AsSpan(b), 1000);
  EXPECT_EQ(r.kind, FrameResult::kNeedMore);
  EXPECT_EQ(r.size, 1u + 2 + 128);
}

TEST(SplitFrame, AWholePacketAndWhatFollows) {
  std::string b = Hex("c0 00 d0");  // PINGREQ, then the start of the next
  FrameResult r = SplitFrame(AsSpan(b), 100);
  EXPECT_EQ(r.kind, FrameResult::kPacket);
  EXPECT_EQ(r.size, 2u);
}

TEST(SplitFrame, RemainingLengthOverFourBytesIsMalformed) {
  std::string b = Hex("30 ff ff ff ff 01");
  EXPECT_EQ(SplitFrame(AsSpan(b), kMaxPacketSize).kind, FrameResult::kMalformed);
  b = Hex("30 ff ff ff ff");  // malformed as soon as the fourth byte says more
  EXPECT_EQ(SplitFrame(AsSpan(b), kMaxPacketSize).kind, FrameResult::kMalformed);
  b = Hex("30 80 00");  // not minimal
  EXPECT_EQ(SplitFrame(AsSpan(b), kMaxPacketSize).kind, FrameResult::kMalformed);
}

TEST(SplitFrame, TooLargeFromTheHeaderAlone) {
  // 268,435,455 bytes announced, 5 received: refused without waiting.
  std::string b = Hex("30 ff ff ff 7f");
  FrameResult r = SplitFrame(AsSpan(b), 1 << 20);
  EXPECT_EQ(r.kind, FrameResult::kTooLarge);
  EXPECT_EQ(r.size, kMaxPacketSize);
  b = Hex("30 0b");  // 13 bytes against a maximum of 12
  EXPECT_EQ(SplitFrame(AsSpan(b), 12).kind, FrameResult::kTooLarge);
  b = Hex("30 0a");  // exactly 12: allowed
  EXPECT_EQ(SplitFrame(AsSpan(b), 12).kind, FrameResult::kNeedMore);
  // The largest MQTT can frame passes the largest maximum.
  b = Hex("30 ff ff ff 7f");
  EXPECT_EQ(SplitFrame(AsSpan(b), kMaxPacketSize).kind, FrameResult::kNeedMore);
}

// A stream of packets of every header size; the splitter fed one byte at a
// time, then in chunks of every size, yields each packet exactly.
TEST(FrameSplitter, OneByteAtATimeYieldsEveryPacket) {
  std::vector<std::string> packets = {
      Hex("10 0d 00 04 'MQTT' 04 02 00 3c 00 01 'a'"),
      Hex("c0 00"),
      Hex("32 0a 00 03 'a/b' 00 0a 00 'hi'"),
  };
  // One with a two-byte Remaining Length (200 bytes of payload).
  {
    Publish p;
    p.topic = "t";
    std::string payload(200, 'x');
    p.payload = payload;
    packets.push_back(testing::Encode(p, Version::kV5, Sender::kClient));
    ASSERT_EQ(static_cast<uint8_t>(packets.back()[2]), 0x01);  // 0xcc 0x01
  }
  std::string stream;
  for (const std::string& p : packets) stream += p;

  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, stream.size()}) {
    FrameSplitter splitter(1 << 20);
    std::vector<std::string> got;
    for (size_t pos = 0; pos < stream.size(); pos += chunk) {
      std::span<const char> in(stream.data() + pos, std::min(chunk, stream.size() - pos));
      while (!in.empty()) {
        FrameResult r = splitter.Feed(&in);
        ASSERT_NE(r.kind, FrameResult::kMalformed);
        ASSERT_NE(r.kind, FrameResult::kTooLarge);
        if (r.kind == FrameResult::kPacket) {
          got.emplace_back(splitter.packet().data(), splitter.packet().size());
          EXPECT_EQ(r.size, got.back().size());
          // Each packet decodes (the CONNECT, then 5.0 packets).
          EXPECT_TRUE(DecodePacket(splitter.packet(), {}).has_value()) << testing::ToHex(got.back());
        }
      }
    }
    EXPECT_EQ(got, packets) << "chunk " << chunk;
  }
}

TEST(FrameSplitter, TooLargeBeforeAnyMemoryIsHeld) {
  FrameSplitter splitter(1000);
  std::string b = Hex("30 ff ff ff 7f 00 01");
  std::span<const char> in = AsSpan(b);
  FrameResult r{};
  while (!in.empty()) {
    r = splitter.Feed(&in);
    if (r.kind != FrameResult::kNeedMore) break;
  }
  EXPECT_EQ(r.kind, FrameResult::kTooLarge);
  EXPECT_EQ(r.size, kMaxPacketSize);
  EXPECT_EQ(in.size(), 2u);  // nothing after the header was consumed
  EXPECT_TRUE(splitter.packet().empty());
  // Final: more bytes change nothing.
  EXPECT_EQ(splitter.Feed(&in).kind, FrameResult::kTooLarge);
  EXPECT_EQ(in.size(), 2u);
}

TEST(FrameSplitter, MalformedLengthIsFinal) {
  FrameSplitter splitter(kMaxPacketSize);
  std::string b = Hex("30 80 80 80 80 01 c0 00");
  std::span<const char> in = AsSpan(b);
  FrameResult r{};
  for (int i = 0; i < 10 && r.kind == FrameResult::kNeedMore; ++i) r = splitter.Feed(&in);
  EXPECT_EQ(r.kind, FrameResult::kMalformed);
  EXPECT_EQ(splitter.Feed(&in).kind, FrameResult::kMalformed);
}

TEST(FrameSplitter, ReservesOnlyOnceTheSizeIsAllowed) {
  FrameSplitter splitter(64);
  std::string b = Hex("30 3e");  // 64 bytes: allowed
  std::span<const char> in = AsSpan(b);
  FrameResult r = splitter.Feed(&in);
  EXPECT_EQ(r.kind, FrameResult::kNeedMore);
  EXPECT_EQ(r.size, 64u);
}

}  // namespace
}  // namespace floe::mqtt
