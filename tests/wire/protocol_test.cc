// The wire protocol, version 1 (docs/protocol.md). Every message type
// round-trips through AppendFrame / DecodeFrameHeader / DecodeBodyAs with
// every field compared, including empty and maximal lists; the header and a
// few bodies are checked byte for byte against the document; every decoder
// error path the document names is rejected; names, error codes and their
// retry rules are pinned.
#include "wire/protocol.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "wire/codec.h"
#include "wire/errors.h"

namespace floe::wire {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
constexpr uint16_t kU16Max = std::numeric_limits<uint16_t>::max();

std::span<const char> AsSpan(const std::string& s) { return {s.data(), s.size()}; }

// "0c000000 03" -> the bytes; spaces are ignored.
std::string Hex(std::string_view hex) {
  std::string out;
  int hi = -1;
  for (char c : hex) {
    if (c == ' ') continue;
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) ADD_FAILURE() << "bad hex digit " << c;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) ADD_FAILURE() << "odd number of hex digits";
  return out;
}

std::string ToHex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

template <typename M>
std::string BodyOf(const M& msg) {
  std::string body;
  Encoder e(&body);
  msg.EncodeBody(e);
  return body;
}

// Encodes msg as a frame into *frame (which must outlive the result: decoded
// views point into it), checks the header, and decodes the body.
template <typename M>
Result<M> RoundTrip(const M& msg, uint64_t request_id, std::string* frame,
                    uint32_t max_frame_bytes = kDefaultMaxFrameBytes) {
  frame->clear();
  AppendFrame(frame, request_id, msg);
  EXPECT_GE(frame->size(), kFrameHeaderSize);
  auto h = DecodeFrameHeader(AsSpan(*frame), max_frame_bytes);
  if (!h) {
    ADD_FAILURE() << "header of " << FrameTypeName(M::kType) << ": " << h.error().ToString();
    return Err(h.error());
  }
  EXPECT_EQ(h->length, frame->size() - 4);
  EXPECT_EQ(static_cast<int>(h->type), static_cast<int>(M::kType));
  EXPECT_EQ(h->flags, 0);
  EXPECT_EQ(h->request_id, request_id);
  EXPECT_EQ(h->body_size(), frame->size() - kFrameHeaderSize);
  EXPECT_EQ(BodyOf(msg), frame->substr(kFrameHeaderSize)) << "AppendFrame's body differs from EncodeBody's";
  return DecodeBodyAs<M>(AsSpan(*frame).subspan(kFrameHeaderSize, h->body_size()));
}

// --- Field-by-field comparisons ----------------------------------------------

void ExpectSame(const Hello& want, const Hello& got) {
  EXPECT_EQ(want.min_version, got.min_version);
  EXPECT_EQ(want.max_version, got.max_version);
  EXPECT_EQ(want.client, got.client);
  EXPECT_EQ(want.user, got.user);
  EXPECT_EQ(want.password, got.password);
}
void ExpectSame(const HelloOk& want, const HelloOk& got) {
  EXPECT_EQ(want.version, got.version);
  EXPECT_EQ(want.max_frame_bytes, got.max_frame_bytes);
  EXPECT_EQ(want.max_message_bytes, got.max_message_bytes);
  EXPECT_EQ(want.node, got.node);
}
void ExpectSame(const Error& want, const Error& got) {
  EXPECT_EQ(static_cast<int>(want.code), static_cast<int>(got.code));
  EXPECT_EQ(want.retriable, got.retriable);
  EXPECT_EQ(want.message, got.message);
  EXPECT_EQ(want.redirect, got.redirect);
}
void ExpectSame(const SessionOpen& want, const SessionOpen& got) {
  EXPECT_EQ(want.session_id, got.session_id);
  EXPECT_EQ(static_cast<int>(want.role), static_cast<int>(got.role));
  EXPECT_EQ(want.stream, got.stream);
  EXPECT_EQ(want.consumer, got.consumer);
  EXPECT_EQ(static_cast<int>(want.start_at), static_cast<int>(got.start_at));
  EXPECT_EQ(want.start_value, got.start_value);
}
void ExpectSame(const SessionOk& want, const SessionOk& got) {
  EXPECT_EQ(want.session_id, got.session_id);
  EXPECT_EQ(want.epoch, got.epoch);
  EXPECT_EQ(want.highest_producer_seq, got.highest_producer_seq);
  EXPECT_EQ(want.highest_seq, got.highest_seq);
  EXPECT_EQ(want.ack_floor, got.ack_floor);
  ASSERT_EQ(want.pending.size(), got.pending.size());
  for (size_t i = 0; i < want.pending.size(); ++i) {
    EXPECT_EQ(want.pending[i].seq, got.pending[i].seq) << i;
    EXPECT_EQ(want.pending[i].delivery_count, got.pending[i].delivery_count) << i;
  }
  EXPECT_EQ(want.chunk_producer_seq, got.chunk_producer_seq);
  EXPECT_EQ(want.chunk_bytes, got.chunk_bytes);
}
void ExpectSame(const PublishChunk& want, const PublishChunk& got) {
  EXPECT_EQ(want.producer_seq, got.producer_seq);
  EXPECT_EQ(want.total_size, got.total_size);
  EXPECT_EQ(want.offset, got.offset);
  EXPECT_EQ(want.key, got.key);
  EXPECT_EQ(want.headers, got.headers);
  EXPECT_EQ(want.data, got.data);
}
void ExpectSame(const ChunkAck& want, const ChunkAck& got) {
  EXPECT_EQ(want.producer_seq, got.producer_seq);
  EXPECT_EQ(static_cast<int>(want.code), static_cast<int>(got.code));
  EXPECT_EQ(want.durable_bytes, got.durable_bytes);
  EXPECT_EQ(want.seq, got.seq);
  EXPECT_EQ(want.duplicate, got.duplicate);
}
void ExpectSame(const FetchChunk& want, const FetchChunk& got) {
  EXPECT_EQ(want.seq, got.seq);
  EXPECT_EQ(want.offset, got.offset);
  EXPECT_EQ(want.max_bytes, got.max_bytes);
}
void ExpectSame(const Chunk& want, const Chunk& got) {
  EXPECT_EQ(want.seq, got.seq);
  EXPECT_EQ(want.total_size, got.total_size);
  EXPECT_EQ(want.offset, got.offset);
  EXPECT_EQ(want.data, got.data);
}
void ExpectSame(const Publish& want, const Publish& got) {
  ASSERT_EQ(want.messages.size(), got.messages.size());
  for (size_t i = 0; i < want.messages.size(); ++i) {
    EXPECT_EQ(want.messages[i].producer_seq, got.messages[i].producer_seq) << i;
    EXPECT_EQ(want.messages[i].key, got.messages[i].key) << i;
    EXPECT_EQ(want.messages[i].headers, got.messages[i].headers) << i;
    EXPECT_EQ(want.messages[i].payload, got.messages[i].payload) << i;
  }
}
void ExpectSame(const PublishAck& want, const PublishAck& got) {
  ASSERT_EQ(want.results.size(), got.results.size());
  for (size_t i = 0; i < want.results.size(); ++i) {
    EXPECT_EQ(want.results[i].producer_seq, got.results[i].producer_seq) << i;
    EXPECT_EQ(static_cast<int>(want.results[i].code), static_cast<int>(got.results[i].code)) << i;
    EXPECT_EQ(want.results[i].duplicate, got.results[i].duplicate) << i;
    EXPECT_EQ(want.results[i].seq, got.results[i].seq) << i;
  }
}
void ExpectSame(const Fetch& want, const Fetch& got) {
  EXPECT_EQ(want.max_messages, got.max_messages);
  EXPECT_EQ(want.max_bytes, got.max_bytes);
  EXPECT_EQ(want.wait_ms, got.wait_ms);
}
void ExpectSame(const Subscribe& want, const Subscribe& got) { EXPECT_EQ(want.credit, got.credit); }
void ExpectSame(const Credit& want, const Credit& got) { EXPECT_EQ(want.credit, got.credit); }
void ExpectSame(const Delivery& want, const Delivery& got) {
  ASSERT_EQ(want.entries.size(), got.entries.size());
  for (size_t i = 0; i < want.entries.size(); ++i) {
    const Delivered& w = want.entries[i];
    const Delivered& g = got.entries[i];
    EXPECT_EQ(static_cast<int>(w.kind), static_cast<int>(g.kind)) << i;
    EXPECT_EQ(w.seq, g.seq) << i;
    if (w.kind == Delivered::Kind::kGap) {
      EXPECT_EQ(w.gap_count, g.gap_count) << i;
      continue;
    }
    EXPECT_EQ(w.delivery_count, g.delivery_count) << i;
    EXPECT_EQ(w.timestamp_us, g.timestamp_us) << i;
    EXPECT_EQ(w.key, g.key) << i;
    EXPECT_EQ(w.headers, g.headers) << i;
    EXPECT_EQ(w.payload, g.payload) << i;
    EXPECT_EQ(w.large_size, g.large_size) << i;
  }
}
void ExpectSame(const Answer& want, const Answer& got) {
  ASSERT_EQ(want.items.size(), got.items.size());
  for (size_t i = 0; i < want.items.size(); ++i) {
    EXPECT_EQ(want.items[i].seq, got.items[i].seq) << i;
    EXPECT_EQ(static_cast<int>(want.items[i].kind), static_cast<int>(got.items[i].kind)) << i;
    EXPECT_EQ(want.items[i].delay_ms, got.items[i].delay_ms) << i;
  }
}
void ExpectSame(const AnswerOk& want, const AnswerOk& got) {
  ASSERT_EQ(want.results.size(), got.results.size());
  for (size_t i = 0; i < want.results.size(); ++i) {
    EXPECT_EQ(want.results[i].seq, got.results[i].seq) << i;
    EXPECT_EQ(static_cast<int>(want.results[i].code), static_cast<int>(got.results[i].code)) << i;
  }
}
void ExpectSame(const StreamConfig& want, const StreamConfig& got) {
  EXPECT_EQ(want.retention_bytes, got.retention_bytes);
  EXPECT_EQ(want.retention_age_ms, got.retention_age_ms);
  EXPECT_EQ(want.max_message_bytes, got.max_message_bytes);
  EXPECT_EQ(static_cast<int>(want.sync), static_cast<int>(got.sync));
  EXPECT_EQ(want.ack_wait_ms, got.ack_wait_ms);
  EXPECT_EQ(want.max_deliveries, got.max_deliveries);
  EXPECT_EQ(want.dead_letter, got.dead_letter);
  EXPECT_EQ(want.mqtt_topics, got.mqtt_topics);
}
void ExpectSame(const StreamCreate& want, const StreamCreate& got) {
  EXPECT_EQ(want.name, got.name);
  ExpectSame(want.config, got.config);
}
void ExpectSame(const StreamDelete& want, const StreamDelete& got) { EXPECT_EQ(want.name, got.name); }
void ExpectSame(const StreamInfo& want, const StreamInfo& got) { EXPECT_EQ(want.name, got.name); }
void ExpectSame(const StreamListOk& want, const StreamListOk& got) {
  ASSERT_EQ(want.names.size(), got.names.size());
  for (size_t i = 0; i < want.names.size(); ++i) EXPECT_EQ(want.names[i], got.names[i]) << i;
}
void ExpectSame(const StreamInfoOk& want, const StreamInfoOk& got) {
  EXPECT_EQ(want.name, got.name);
  ExpectSame(want.config, got.config);
  EXPECT_EQ(want.first_seq, got.first_seq);
  EXPECT_EQ(want.frontier, got.frontier);
  EXPECT_EQ(want.bytes, got.bytes);
  ASSERT_EQ(want.consumers.size(), got.consumers.size());
  for (size_t i = 0; i < want.consumers.size(); ++i) {
    EXPECT_EQ(want.consumers[i].name, got.consumers[i].name) << i;
    EXPECT_EQ(want.consumers[i].ack_floor, got.consumers[i].ack_floor) << i;
    EXPECT_EQ(want.consumers[i].next_seq, got.consumers[i].next_seq) << i;
    EXPECT_EQ(want.consumers[i].pending, got.consumers[i].pending) << i;
    EXPECT_EQ(want.consumers[i].lag, got.consumers[i].lag) << i;
  }
}

// Round-trips msg and compares every field.
template <typename M>
void ExpectRoundTrip(const M& msg, uint64_t request_id = 42) {
  std::string frame;
  auto got = RoundTrip(msg, request_id, &frame);
  ASSERT_TRUE(got) << FrameTypeName(M::kType) << ": " << got.error().ToString();
  ExpectSame(msg, *got);
}

// --- Sample messages: every field set to something other than its default ----

// Bytes every text and blob should survive: NUL, high bytes, a newline.
const std::string kOddBytes("a\0b\xff\x80\n", 6);

StreamConfig SampleConfig() {
  StreamConfig c;
  c.retention_bytes = 1;
  c.retention_age_ms = 2;
  c.max_message_bytes = 3;
  c.sync = SyncMode::kNone;
  c.ack_wait_ms = 4;
  c.max_deliveries = 5;
  c.dead_letter = "d";
  return c;
}

StreamConfig MaxConfig() {
  StreamConfig c;
  c.retention_bytes = kU64Max;
  c.retention_age_ms = kU64Max - 1;
  c.max_message_bytes = kU32Max;
  c.sync = SyncMode::kFdatasync;
  c.ack_wait_ms = kU32Max - 1;
  c.max_deliveries = kU32Max - 2;
  c.dead_letter = std::string(128, 'z');
  return c;
}

// --- Frame header --------------------------------------------------------------

TEST(FrameHeaderTest, GoldenBytesOfAPing) {
  std::string frame;
  AppendFrame(&frame, 0x0102030405060708ull, Ping{});
  // u32 length 12, u8 type 0x03, u8 flags 0, u16 reserved 0, u64 request id.
  EXPECT_EQ(ToHex(frame), "0c000000" "03" "00" "0000" "0807060504030201");
}

TEST(FrameHeaderTest, GoldenBytesOfAHello) {
  std::string frame;
  AppendFrame(&frame, 1, Hello{.min_version = 1, .max_version = 1, .client = "cli"});
  EXPECT_EQ(ToHex(frame),
            "19000000" "01" "00" "0000" "0100000000000000"  // length 25 = 12 + 13
            "464c4f45"                                     // magic 0x454F4C46: "FLOE" on the wire
            "0100" "0100"                                  // min, max version
            "0300" "636c69");                              // "cli"
  EXPECT_EQ(frame.substr(16, 4), "FLOE");
}

TEST(FrameHeaderTest, DecodesEveryField) {
  const std::string bytes = Hex("20000000 45 00 0000 efcdab8967452301");
  auto h = DecodeFrameHeader(AsSpan(bytes), kDefaultMaxFrameBytes);
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->length, 0x20u);
  EXPECT_EQ(h->type, FrameType::kStreamInfoOk);
  EXPECT_EQ(h->flags, 0);
  EXPECT_EQ(h->request_id, 0x0123456789abcdefull);
  EXPECT_EQ(h->body_size(), 0x20u - 12);
}

TEST(FrameHeaderTest, ReadsOnlyTheFirstSixteenBytes) {
  std::string bytes = Hex("0c000000 03 00 0000 0100000000000000");
  bytes += "garbage after the header is the next frame's business";
  auto h = DecodeFrameHeader(AsSpan(bytes), kDefaultMaxFrameBytes);
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->body_size(), 0u);
}

TEST(FrameHeaderTest, TruncatedHeaderIsRejected) {
  const std::string full = Hex("0c000000 03 00 0000 0100000000000000");
  for (size_t n = 0; n < kFrameHeaderSize; ++n) {
    auto h = DecodeFrameHeader(AsSpan(full).first(n), kDefaultMaxFrameBytes);
    ASSERT_FALSE(h) << n;
    EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument) << n;
  }
}

TEST(FrameHeaderTest, LengthBelowTwelveIsMalformed) {
  for (uint32_t length : {0u, 1u, 4u, 11u}) {
    std::string bytes(16, '\0');
    EncodeFixed32(bytes.data(), length);
    bytes[4] = 0x03;
    auto h = DecodeFrameHeader(AsSpan(bytes), kDefaultMaxFrameBytes);
    ASSERT_FALSE(h) << length;
    // The node answers MALFORMED_FRAME for InvalidArgument (node.cc).
    EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument) << length;
  }
  std::string twelve = Hex("0c000000 03 00 0000 0000000000000000");
  EXPECT_TRUE(DecodeFrameHeader(AsSpan(twelve), kDefaultMaxFrameBytes));
}

TEST(FrameHeaderTest, LengthAboveTheLimitIsTooLarge) {
  const uint32_t limit = 1000;
  for (uint32_t length : {limit + 1, limit * 2, kU32Max}) {
    std::string bytes(16, '\0');
    EncodeFixed32(bytes.data(), length);
    bytes[4] = 0x20;
    auto h = DecodeFrameHeader(AsSpan(bytes), limit);
    ASSERT_FALSE(h) << length;
    // OutOfRange is what the node turns into FRAME_TOO_LARGE (node.cc).
    EXPECT_EQ(h.error().code(), ErrorCode::kOutOfRange) << length;
  }
  std::string at_limit(16, '\0');
  EncodeFixed32(at_limit.data(), limit);
  at_limit[4] = 0x20;
  auto h = DecodeFrameHeader(AsSpan(at_limit), limit);
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->length, limit);
}

TEST(FrameHeaderTest, DefaultLimitIsSixteenMiBPlusSixtyFourKiB) {
  EXPECT_EQ(kDefaultMaxFrameBytes, 16u * 1024 * 1024 + 64 * 1024);
  EXPECT_EQ(kFrameHeaderSize, 16u);
  EXPECT_EQ(kHelloMagic, 0x454F4C46u);
}

TEST(FrameHeaderTest, NonZeroFlagsOrReservedAreMalformed) {
  for (int byte = 5; byte <= 7; ++byte) {
    for (unsigned char v : {0x01, 0x80, 0xff}) {
      std::string bytes = Hex("0c000000 03 00 0000 0100000000000000");
      bytes[byte] = static_cast<char>(v);
      auto h = DecodeFrameHeader(AsSpan(bytes), kDefaultMaxFrameBytes);
      ASSERT_FALSE(h) << "byte " << byte << " = " << int(v);
      EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument) << "byte " << byte;
    }
  }
}

TEST(FrameHeaderTest, UnknownTypeIsNotAHeaderError) {
  // The node answers UNKNOWN_TYPE and keeps the connection: the header must
  // still decode, so the body can be skipped.
  for (uint8_t type : {0x00, 0x08, 0x12, 0x46, 0xff}) {
    std::string bytes = Hex("0e000000 00 00 0000 0900000000000000");
    bytes[4] = static_cast<char>(type);
    auto h = DecodeFrameHeader(AsSpan(bytes), kDefaultMaxFrameBytes);
    ASSERT_TRUE(h) << int(type);
    EXPECT_EQ(static_cast<uint8_t>(h->type), type);
    EXPECT_EQ(h->body_size(), 2u);
    EXPECT_FALSE(IsKnownFrameType(type)) << int(type);
  }
}

TEST(FrameTypeTest, NumbersAndNamesArePinned) {
  struct Row {
    uint8_t number;
    FrameType type;
    std::string_view name;
  };
  const Row rows[] = {
      {0x01, FrameType::kHello, "HELLO"},
      {0x02, FrameType::kHelloOk, "HELLO_OK"},
      {0x03, FrameType::kPing, "PING"},
      {0x04, FrameType::kPong, "PONG"},
      {0x05, FrameType::kGoodbye, "GOODBYE"},
      {0x06, FrameType::kError, "ERROR"},
      {0x07, FrameType::kOk, "OK"},
      {0x10, FrameType::kSessionOpen, "SESSION_OPEN"},
      {0x11, FrameType::kSessionOk, "SESSION_OK"},
      {0x20, FrameType::kPublish, "PUBLISH"},
      {0x21, FrameType::kPublishAck, "PUBLISH_ACK"},
      {0x22, FrameType::kPublishChunk, "PUBLISH_CHUNK"},
      {0x23, FrameType::kChunkAck, "CHUNK_ACK"},
      {0x30, FrameType::kFetch, "FETCH"},
      {0x31, FrameType::kDelivery, "DELIVERY"},
      {0x32, FrameType::kSubscribe, "SUBSCRIBE"},
      {0x33, FrameType::kCredit, "CREDIT"},
      {0x34, FrameType::kAnswer, "ANSWER"},
      {0x35, FrameType::kAnswerOk, "ANSWER_OK"},
      {0x36, FrameType::kFetchChunk, "FETCH_CHUNK"},
      {0x37, FrameType::kChunk, "CHUNK"},
      {0x40, FrameType::kStreamCreate, "STREAM_CREATE"},
      {0x41, FrameType::kStreamDelete, "STREAM_DELETE"},
      {0x42, FrameType::kStreamList, "STREAM_LIST"},
      {0x43, FrameType::kStreamListOk, "STREAM_LIST_OK"},
      {0x44, FrameType::kStreamInfo, "STREAM_INFO"},
      {0x45, FrameType::kStreamInfoOk, "STREAM_INFO_OK"},
      {0x50, FrameType::kDeadLetter, "DEAD_LETTER"},
  };
  bool known[256] = {};
  for (const Row& r : rows) {
    EXPECT_EQ(static_cast<uint8_t>(r.type), r.number) << r.name;
    EXPECT_EQ(FrameTypeName(r.type), r.name);
    EXPECT_TRUE(IsKnownFrameType(r.number)) << r.name;
    known[r.number] = true;
  }
  for (int t = 0; t < 256; ++t) {
    EXPECT_EQ(IsKnownFrameType(static_cast<uint8_t>(t)), known[t]) << "type " << t;
    if (!known[t]) {
      EXPECT_EQ(FrameTypeName(static_cast<FrameType>(t)), "UNKNOWN") << t;
    }
  }
  // Each message struct carries its type.
  EXPECT_EQ(Hello::kType, FrameType::kHello);
  EXPECT_EQ(HelloOk::kType, FrameType::kHelloOk);
  EXPECT_EQ(Ping::kType, FrameType::kPing);
  EXPECT_EQ(Pong::kType, FrameType::kPong);
  EXPECT_EQ(Goodbye::kType, FrameType::kGoodbye);
  EXPECT_EQ(Error::kType, FrameType::kError);
  EXPECT_EQ(Ok::kType, FrameType::kOk);
  EXPECT_EQ(SessionOpen::kType, FrameType::kSessionOpen);
  EXPECT_EQ(SessionOk::kType, FrameType::kSessionOk);
  EXPECT_EQ(Publish::kType, FrameType::kPublish);
  EXPECT_EQ(PublishAck::kType, FrameType::kPublishAck);
  EXPECT_EQ(Fetch::kType, FrameType::kFetch);
  EXPECT_EQ(Delivery::kType, FrameType::kDelivery);
  EXPECT_EQ(Subscribe::kType, FrameType::kSubscribe);
  EXPECT_EQ(Credit::kType, FrameType::kCredit);
  EXPECT_EQ(Answer::kType, FrameType::kAnswer);
  EXPECT_EQ(AnswerOk::kType, FrameType::kAnswerOk);
  EXPECT_EQ(StreamCreate::kType, FrameType::kStreamCreate);
  EXPECT_EQ(StreamDelete::kType, FrameType::kStreamDelete);
  EXPECT_EQ(StreamList::kType, FrameType::kStreamList);
  EXPECT_EQ(StreamListOk::kType, FrameType::kStreamListOk);
  EXPECT_EQ(StreamInfo::kType, FrameType::kStreamInfo);
  EXPECT_EQ(StreamInfoOk::kType, FrameType::kStreamInfoOk);
}

// What a connection offers and accepts, as the code sends it: the client's
// HELLO is a default Hello (client/connection.cc), and the node's HELLO
// handler answers the highest version in both ranges, clamped to
// [kMinVersion, kMaxVersion]; HelloOk's default is that highest version. Pinned as
// bytes on the wire: moving either constant changes them (and
// docs/protocol.md, "Handshake and versions", must say so).
TEST(VersionTest, TheClientsHelloOffersVersionsOneToTwo) {
  std::string frame;
  AppendFrame(&frame, 1, Hello{.client = "cli"});  // versions as the client leaves them
  EXPECT_EQ(ToHex(frame),
            "19000000" "01" "00" "0000" "0100000000000000"  // HELLO, length 25, request 1
            "464c4f45"                                     // the magic, "FLOE"
            "0100" "0200"                                  // min_version 1, max_version 2
            "0300" "636c69");
  auto h = DecodeBodyAs<Hello>(AsSpan(frame).subspan(kFrameHeaderSize));
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->min_version, 1);
  EXPECT_EQ(h->max_version, 2);
  EXPECT_TRUE(h->user.empty());
}

// Version 2's credentials follow the client name, only when a user is given:
// an anonymous HELLO keeps version 1's layout (nodes of before accept it).
TEST(VersionTest, AHelloWithCredentialsAppendsUserAndPassword) {
  std::string frame;
  AppendFrame(&frame, 1, Hello{.client = "c", .user = "ann", .password = "pw"});
  EXPECT_EQ(ToHex(frame),
            "20000000" "01" "00" "0000" "0100000000000000"  // HELLO, length 32
            "464c4f45" "0100" "0200" "0100" "63"
            "0300" "616e6e"                                // user "ann"
            "0200" "7077");                                // password "pw"
}

TEST(VersionTest, CredentialsInAVersionOneHelloAreMalformed) {
  std::string frame;
  AppendFrame(&frame, 1, Hello{.min_version = 1, .max_version = 1, .client = "c", .user = "ann", .password = "pw"});
  EXPECT_FALSE(DecodeBodyAs<Hello>(AsSpan(frame).subspan(kFrameHeaderSize)));
}

TEST(VersionTest, AnOversizedOrEmptyHelloUserIsMalformed) {
  const std::string long_user(kMaxHelloUserBytes + 1, 'u');
  const std::string long_password(kMaxHelloPasswordBytes + 1, 'p');
  for (auto [user, password] : {std::pair<std::string_view, std::string_view>{long_user, "pw"},
                                {"ann", long_password}}) {
    std::string frame;
    AppendFrame(&frame, 1, Hello{.client = "c", .user = user, .password = password});
    EXPECT_FALSE(DecodeBodyAs<Hello>(AsSpan(frame).subspan(kFrameHeaderSize))) << user.size();
  }
  // An empty user with trailing strings: a user field present but empty.
  std::string body;
  Encoder e(&body);
  e.U32(kHelloMagic);
  e.U16(1);
  e.U16(2);
  e.String("c");
  e.String("");
  e.String("pw");
  EXPECT_FALSE(DecodeBodyAs<Hello>(AsSpan(body)));
}

TEST(VersionTest, HelloOkAnswersTheHighestVersionByDefault) {
  EXPECT_EQ(ToHex(BodyOf(HelloOk{.max_frame_bytes = 0, .max_message_bytes = 0, .node = ""})),
            "0200" "00000000" "00000000" "0000");
}

// Every version a node or client speaks is named in wire::Version (the one
// enum docs/protocol.md refers to), and version 1 is this document.
TEST(VersionTest, TheVersionsSpokenAreTheNamedOnes) {
  EXPECT_EQ(kMinVersion, static_cast<uint16_t>(Version::kV1));
  EXPECT_EQ(kMaxVersion, static_cast<uint16_t>(Version::kV2));  // a kV3 moves this
  EXPECT_EQ(static_cast<uint16_t>(Version::kV1), 1);
  EXPECT_EQ(static_cast<uint16_t>(Version::kV2), 2);
}

// --- Round trips, one per message type -------------------------------------------

TEST(RoundTripTest, Hello) {
  ExpectRoundTrip(Hello{});
  ExpectRoundTrip(Hello{.min_version = 1, .max_version = 7, .client = "floe-cli/1.0"});
  ExpectRoundTrip(Hello{.min_version = 0, .max_version = kU16Max, .client = kOddBytes}, kU64Max);
  ExpectRoundTrip(Hello{.min_version = 2, .max_version = 2, .client = "c", .user = "ann", .password = kOddBytes});
}

TEST(RoundTripTest, HelloOk) {
  ExpectRoundTrip(HelloOk{});
  ExpectRoundTrip(HelloOk{.version = 1, .max_frame_bytes = 1, .max_message_bytes = 2, .node = "node-7"});
  ExpectRoundTrip(HelloOk{.version = kU16Max, .max_frame_bytes = kU32Max, .max_message_bytes = kU32Max,
                          .node = kOddBytes});
}

template <typename M>
void ExpectEmptyRoundTrip() {
  std::string frame;
  auto got = RoundTrip(M{}, 9, &frame);
  ASSERT_TRUE(got) << FrameTypeName(M::kType) << ": " << got.error().ToString();
  EXPECT_EQ(frame.size(), kFrameHeaderSize) << FrameTypeName(M::kType) << " has an empty body";
}

TEST(RoundTripTest, EmptyBodies) {
  ExpectEmptyRoundTrip<Ping>();
  ExpectEmptyRoundTrip<Pong>();
  ExpectEmptyRoundTrip<Goodbye>();
  ExpectEmptyRoundTrip<Ok>();
  ExpectEmptyRoundTrip<StreamList>();
}

TEST(RoundTripTest, Error) {
  ExpectRoundTrip(Error{});
  ExpectRoundTrip(Error{.code = WireError::kStorageFailed, .retriable = true, .message = "disk full"});
  ExpectRoundTrip(Error{.code = WireError::kOk, .retriable = false, .message = ""});
  ExpectRoundTrip(Error{.code = WireError::kDuplicateTooOld, .retriable = false, .message = kOddBytes});
}

TEST(RoundTripTest, SessionOpen) {
  ExpectRoundTrip(SessionOpen{});
  ExpectRoundTrip(SessionOpen{.session_id = 0, .role = Role::kProducer, .stream = "orders"});
  for (StartAt start : {StartAt::kFirst, StartAt::kSeq, StartAt::kTime, StartAt::kNew}) {
    ExpectRoundTrip(SessionOpen{.session_id = kU64Max,
                                .role = Role::kConsumer,
                                .stream = "orders",
                                .consumer = "billing",
                                .start_at = start,
                                .start_value = 0x1122334455667788ull});
  }
}

TEST(RoundTripTest, SessionOk) {
  ExpectRoundTrip(SessionOk{});  // no pending deliveries
  SessionOk s{.session_id = 1, .epoch = 2, .highest_producer_seq = 3, .highest_seq = 4, .ack_floor = 5};
  s.pending = {{6, 1}, {9, 2}, {kU64Max, kU32Max}};
  ExpectRoundTrip(s);
}

TEST(RoundTripTest, Publish) {
  Publish one;
  one.messages = {{.producer_seq = 1, .key = "", .headers = "", .payload = ""}};
  ExpectRoundTrip(one);
  Publish many;
  const std::string big(100000, 'x');
  many.messages = {{.producer_seq = 1, .key = "k", .headers = "h", .payload = "p"},
                   {.producer_seq = 2, .key = kOddBytes, .headers = kOddBytes, .payload = kOddBytes},
                   {.producer_seq = kU64Max, .key = "", .headers = "", .payload = big}};
  ExpectRoundTrip(many);
}

TEST(RoundTripTest, PublishAck) {
  ExpectRoundTrip(PublishAck{});
  PublishAck a;
  a.results = {{.producer_seq = 1, .code = WireError::kOk, .duplicate = false, .seq = 100},
               {.producer_seq = 2, .code = WireError::kOk, .duplicate = true, .seq = 50},
               {.producer_seq = 3, .code = WireError::kStorageFailed, .duplicate = false, .seq = 0},
               {.producer_seq = kU64Max, .code = WireError::kDuplicateTooOld, .duplicate = false, .seq = kU64Max}};
  ExpectRoundTrip(a);
}

TEST(RoundTripTest, Fetch) {
  ExpectRoundTrip(Fetch{});
  ExpectRoundTrip(Fetch{.max_messages = 0, .max_bytes = 0, .wait_ms = 0});
  ExpectRoundTrip(Fetch{.max_messages = kU32Max, .max_bytes = kU32Max - 1, .wait_ms = kU32Max - 2});
}

TEST(RoundTripTest, SubscribeAndCredit) {
  ExpectRoundTrip(Subscribe{});
  ExpectRoundTrip(Subscribe{.credit = kU32Max});
  ExpectRoundTrip(Credit{});
  ExpectRoundTrip(Credit{.credit = 12345});
}

TEST(RoundTripTest, Delivery) {
  ExpectRoundTrip(Delivery{});  // an empty DELIVERY: a FETCH that timed out
  Delivery d;
  d.entries = {
      {.kind = Delivered::Kind::kMessage, .seq = 1, .delivery_count = 1, .timestamp_us = 1700000000000000,
       .key = "k", .headers = "h", .payload = "payload"},
      {.kind = Delivered::Kind::kGap, .seq = 2, .gap_count = 3},
      {.kind = Delivered::Kind::kMessage, .seq = 5, .delivery_count = kU32Max, .timestamp_us = -1,
       .key = kOddBytes, .headers = "", .payload = kOddBytes},
      {.kind = Delivered::Kind::kGap, .seq = kU64Max - 1, .gap_count = 1},
      {.kind = Delivered::Kind::kMessage, .seq = kU64Max, .delivery_count = 0,
       .timestamp_us = std::numeric_limits<int64_t>::min(), .key = "", .headers = "", .payload = ""},
      {.kind = Delivered::Kind::kLarge, .seq = 9, .delivery_count = 2, .timestamp_us = 5, .key = "k",
       .headers = kOddBytes, .large_size = 1ull << 40},
  };
  ExpectRoundTrip(d);
}

TEST(RoundTripTest, LargeMessageFrames) {
  ExpectRoundTrip(PublishChunk{});
  ExpectRoundTrip(PublishChunk{.producer_seq = 3, .total_size = 10, .offset = 4, .key = kOddBytes,
                               .headers = "h", .data = "456789"});
  ExpectRoundTrip(ChunkAck{});
  ExpectRoundTrip(ChunkAck{.producer_seq = kU64Max, .code = WireError::kOutOfRange, .durable_bytes = 7,
                           .seq = kU64Max, .duplicate = true});
  ExpectRoundTrip(FetchChunk{.seq = 1, .offset = kU64Max, .max_bytes = kU32Max});
  ExpectRoundTrip(Chunk{.seq = 2, .total_size = 5, .offset = 1, .data = kOddBytes.substr(0, 4)});
  SessionOk ok{.session_id = 1, .chunk_producer_seq = 8, .chunk_bytes = 1ull << 33};
  ExpectRoundTrip(ok);
}

TEST(DecodeTest, ChunksCannotExtendPastTheirMessage) {
  for (auto [total, offset, data] : {std::tuple<uint64_t, uint64_t, std::string>{10, 8, "abc"},
                                     {10, 11, ""},
                                     {0, 0, "x"}}) {
    std::string body = BodyOf(PublishChunk{.producer_seq = 1, .total_size = total, .offset = offset, .data = data});
    EXPECT_FALSE(DecodeBodyAs<PublishChunk>(std::span<const char>(body)).has_value()) << total << " " << offset;
    body = BodyOf(Chunk{.seq = 1, .total_size = total, .offset = offset, .data = data});
    EXPECT_FALSE(DecodeBodyAs<Chunk>(std::span<const char>(body)).has_value()) << total << " " << offset;
  }
  std::string ok = BodyOf(PublishChunk{.producer_seq = 1, .total_size = 10, .offset = 7, .data = "abc"});
  EXPECT_TRUE(DecodeBodyAs<PublishChunk>(std::span<const char>(ok)).has_value());
}

TEST(GoldenTest, LargeMessageFrames) {
  EXPECT_EQ(ToHex(BodyOf(ChunkAck{.producer_seq = 1, .code = WireError::kOk, .durable_bytes = 2, .seq = 3,
                                  .duplicate = true})),
            "0100000000000000" "0000" "0200000000000000" "0300000000000000" "01");
  EXPECT_EQ(ToHex(BodyOf(FetchChunk{.seq = 1, .offset = 2, .max_bytes = 3})),
            "0100000000000000" "0200000000000000" "03000000");
  // A LARGE delivery entry: kind 3, no payload, the size last.
  Delivery d;
  d.entries = {{.kind = Delivered::Kind::kLarge, .seq = 1, .delivery_count = 1, .timestamp_us = 0, .key = "",
                .headers = "", .large_size = 5}};
  EXPECT_EQ(ToHex(BodyOf(d)), "01000000" "03" "0100000000000000" "01000000" "0000000000000000" "00000000"
                              "00000000" "0500000000000000");
}

TEST(RoundTripTest, Answer) {
  ExpectRoundTrip(Answer{});
  Answer a;
  a.items = {{.seq = 1, .kind = AnswerKind::kAck, .delay_ms = 0},
             {.seq = 2, .kind = AnswerKind::kNak, .delay_ms = 1500},
             {.seq = 3, .kind = AnswerKind::kInProgress, .delay_ms = 0},
             {.seq = kU64Max, .kind = AnswerKind::kTerminate, .delay_ms = kU32Max}};
  ExpectRoundTrip(a);
}

TEST(RoundTripTest, AnswerOk) {
  ExpectRoundTrip(AnswerOk{});
  AnswerOk a;
  a.results = {{.seq = 1, .code = WireError::kOk}, {.seq = kU64Max, .code = WireError::kNotDelivered}};
  ExpectRoundTrip(a);
}

TEST(RoundTripTest, StreamCreate) {
  ExpectRoundTrip(StreamCreate{.name = "orders"});  // default config
  ExpectRoundTrip(StreamCreate{.name = "a", .config = SampleConfig()});
  ExpectRoundTrip(StreamCreate{.name = std::string_view(kOddBytes), .config = MaxConfig()});
  // The MQTT topic filters follow the config; without them the bytes are
  // those of before.
  StreamConfig bound = SampleConfig();
  bound.mqtt_topics = {"sensors/#", "alerts/+"};
  ExpectRoundTrip(StreamCreate{.name = "sensors", .config = bound});
  std::string with, without;
  Encoder ew(&with), eo(&without);
  StreamCreate{.name = "a", .config = bound}.EncodeBody(ew);
  StreamCreate{.name = "a", .config = SampleConfig()}.EncodeBody(eo);
  EXPECT_EQ(with.substr(0, without.size()), without);
  EXPECT_GT(with.size(), without.size());
}

TEST(RoundTripTest, StreamDeleteAndInfo) {
  ExpectRoundTrip(StreamDelete{});
  ExpectRoundTrip(StreamDelete{.name = "orders"});
  ExpectRoundTrip(StreamInfo{});
  ExpectRoundTrip(StreamInfo{.name = "orders.eu-west_1"});
}

TEST(RoundTripTest, StreamListOk) {
  ExpectRoundTrip(StreamListOk{});
  StreamListOk l;
  l.names = {"a", "", "orders", std::string_view(kOddBytes)};
  ExpectRoundTrip(l);
}

TEST(RoundTripTest, StreamInfoOk) {
  ExpectRoundTrip(StreamInfoOk{.name = "s"});  // no consumers
  StreamInfoOk s{.name = "orders", .config = SampleConfig(), .first_seq = 10, .frontier = 20, .bytes = 30};
  s.consumers = {{.name = "a", .ack_floor = 11, .next_seq = 15, .pending = 2, .lag = 9},
                 {.name = "", .ack_floor = 0, .next_seq = 0, .pending = 0, .lag = 0},
                 {.name = "max", .ack_floor = kU64Max, .next_seq = kU64Max, .pending = kU32Max, .lag = kU64Max}};
  ExpectRoundTrip(s);
  s.config = MaxConfig();
  ExpectRoundTrip(s);
}

TEST(RoundTripTest, FramesConcatenateAndSplitByLength) {
  // A stream of frames is split by the length prefix alone.
  std::string wire;
  AppendFrame(&wire, 1, Hello{.client = "c"});
  AppendFrame(&wire, 2, Ping{});
  Answer a;
  a.items = {{.seq = 7, .kind = AnswerKind::kNak, .delay_ms = 3}};
  AppendFrame(&wire, 3, a);
  std::span<const char> rest = AsSpan(wire);
  std::vector<std::pair<FrameType, uint64_t>> seen;
  while (!rest.empty()) {
    auto h = DecodeFrameHeader(rest, kDefaultMaxFrameBytes);
    ASSERT_TRUE(h) << h.error().ToString();
    seen.emplace_back(h->type, h->request_id);
    rest = rest.subspan(4 + h->length);
  }
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(FrameType::kHello, uint64_t{1}));
  EXPECT_EQ(seen[1], std::make_pair(FrameType::kPing, uint64_t{2}));
  EXPECT_EQ(seen[2], std::make_pair(FrameType::kAnswer, uint64_t{3}));
}

// --- Maximal sizes ----------------------------------------------------------------

TEST(MaximalTest, StringsOfTheLongestLength) {
  const std::string longest(kU16Max, 's');
  ExpectRoundTrip(Hello{.client = longest});
  ExpectRoundTrip(Error{.code = WireError::kInternal, .message = longest});
  StreamListOk l;
  l.names = {longest, longest};
  ExpectRoundTrip(l);
}

TEST(MaximalTest, LongerStringsAreCutAt65535Bytes) {
  // codec.h: strings are at most 65535 bytes; longer ones are cut (never a
  // length that wraps around and corrupts the frame).
  const std::string too_long(kU16Max + 10, 't');
  std::string frame;
  auto got = RoundTrip(Error{.code = WireError::kInternal, .message = too_long}, 1, &frame);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->message.size(), kU16Max);
  EXPECT_EQ(got->message, std::string_view(too_long).substr(0, kU16Max));
}

TEST(MaximalTest, FrameOfExactlyTheLimitDecodesAndOneMoreByteDoesNot) {
  // One DELIVERY whose frame length is exactly the node's default limit.
  Delivery d;
  std::string payload;
  d.entries = {{.kind = Delivered::Kind::kMessage, .seq = 1, .delivery_count = 1, .timestamp_us = 2,
                .key = "k", .headers = ""}};
  // length = 12 + u32 count + (u8 + u64 + u32 + i64 + 3 blob lengths + key).
  const size_t overhead = 12 + 4 + (1 + 8 + 4 + 8 + 12 + 1);
  payload.assign(kDefaultMaxFrameBytes - overhead, 'p');
  d.entries[0].payload = payload;
  std::string frame;
  auto got = RoundTrip(d, 77, &frame);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(frame.size() - 4, kDefaultMaxFrameBytes);
  ExpectSame(d, *got);

  payload.push_back('p');
  d.entries[0].payload = payload;
  frame.clear();
  AppendFrame(&frame, 77, d);
  auto h = DecodeFrameHeader(AsSpan(frame), kDefaultMaxFrameBytes);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code(), ErrorCode::kOutOfRange);
}

TEST(MaximalTest, ListsAsLongAsAFrameCanHold) {
  const size_t room = kDefaultMaxFrameBytes - 12 - 4;  // body after the count
  {
    PublishAck a;
    a.results.resize(room / 19);
    for (size_t i = 0; i < a.results.size(); ++i) {
      a.results[i] = {.producer_seq = i + 1, .code = i % 3 ? WireError::kOk : WireError::kStorageFailed,
                      .duplicate = i % 2 == 0, .seq = kU64Max - i};
    }
    ExpectRoundTrip(a);
  }
  {
    AnswerOk a;
    a.results.resize(room / 10);
    for (size_t i = 0; i < a.results.size(); ++i) a.results[i] = {.seq = i, .code = WireError::kNotDelivered};
    ExpectRoundTrip(a);
  }
  {
    Answer a;
    a.items.resize(room / 13);
    for (size_t i = 0; i < a.items.size(); ++i) {
      a.items[i] = {.seq = i, .kind = static_cast<AnswerKind>(1 + i % 4), .delay_ms = static_cast<uint32_t>(i)};
    }
    ExpectRoundTrip(a);
  }
  {
    SessionOk s{.session_id = 1};
    s.pending.resize((room - 56) / 12);
    for (size_t i = 0; i < s.pending.size(); ++i) s.pending[i] = {.seq = i * 2, .delivery_count = uint32_t(i)};
    ExpectRoundTrip(s);
  }
  {
    Delivery d;  // all gaps: the smallest entry
    d.entries.resize(room / 17);
    for (size_t i = 0; i < d.entries.size(); ++i)
      d.entries[i] = {.kind = Delivered::Kind::kGap, .seq = i * 10, .gap_count = 10};
    ExpectRoundTrip(d);
  }
  {
    StreamListOk l;  // all empty names: the smallest entry
    l.names.resize(room / 2);
    ExpectRoundTrip(l);
  }
  {
    Publish p;  // all empty messages
    p.messages.resize(room / 20);
    for (size_t i = 0; i < p.messages.size(); ++i) p.messages[i].producer_seq = i + 1;
    ExpectRoundTrip(p);
  }
  {
    StreamInfoOk s{.name = "s"};
    s.consumers.resize(10000);
    for (size_t i = 0; i < s.consumers.size(); ++i) s.consumers[i] = {.name = "c", .lag = i};
    ExpectRoundTrip(s);
  }
}

// --- Golden bodies (docs/protocol.md "Frame types") ----------------------------------

TEST(GoldenTest, HelloOk) {
  HelloOk h{.version = 1, .max_frame_bytes = kDefaultMaxFrameBytes, .max_message_bytes = 8u << 20, .node = "n1"};
  EXPECT_EQ(ToHex(BodyOf(h)), "0100" "00000101" "00008000" "0200" "6e31");
}

TEST(GoldenTest, Error) {
  Error e{.code = WireError::kStorageFailed, .retriable = true, .message = "x"};
  EXPECT_EQ(ToHex(BodyOf(e)), "0d00" "01" "0100" "78" "0000");
  std::string frame;
  AppendFrame(&frame, 5, e);
  EXPECT_EQ(ToHex(frame), "14000000" "06" "00" "0000" "0500000000000000" "0d00" "01" "0100" "78" "0000");
  // NOT_OWNER carries the owner's address.
  Error r{.code = WireError::kNotOwner, .retriable = true, .message = "m", .redirect = "h:1"};
  EXPECT_EQ(ToHex(BodyOf(r)), "0b00" "01" "0100" "6d" "0300" "683a31");
  const std::string body = BodyOf(r);
  auto back = DecodeBodyAs<Error>(std::span<const char>(body));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->redirect, "h:1");
}

TEST(GoldenTest, SessionOpen) {
  SessionOpen s{.session_id = 0x10, .role = Role::kConsumer, .stream = "s", .consumer = "c",
                .start_at = StartAt::kSeq, .start_value = 42};
  EXPECT_EQ(ToHex(BodyOf(s)), "1000000000000000" "02" "0100" "73" "0100" "63" "01" "2a00000000000000");
  // Producer is role 1; kTime and kNew are start_at 2 and 3.
  s.role = Role::kProducer;
  s.start_at = StartAt::kTime;
  EXPECT_EQ(ToHex(BodyOf(s)).substr(16, 2), "01");
  EXPECT_EQ(ToHex(BodyOf(s)).substr(30, 2), "02");
  s.start_at = StartAt::kNew;
  EXPECT_EQ(ToHex(BodyOf(s)).substr(30, 2), "03");
}

TEST(GoldenTest, SessionOk) {
  SessionOk s{.session_id = 7, .epoch = 2, .highest_producer_seq = 3, .highest_seq = 4, .ack_floor = 5};
  s.pending = {{6, 1}};
  EXPECT_EQ(ToHex(BodyOf(s)),
            "0700000000000000" "0200000000000000" "0300000000000000" "0400000000000000" "0500000000000000"
            "0000000000000000" "0000000000000000" "01000000" "0600000000000000" "01000000");
}

TEST(GoldenTest, Publish) {
  Publish p;
  p.messages = {{.producer_seq = 1, .key = "k", .headers = "", .payload = "hi"}};
  EXPECT_EQ(ToHex(BodyOf(p)), "01000000" "0100000000000000" "01000000" "6b" "00000000" "02000000" "6869");
}

TEST(GoldenTest, PublishAck) {
  PublishAck a;
  a.results = {{.producer_seq = 1, .code = WireError::kOk, .duplicate = true, .seq = 9},
               {.producer_seq = 2, .code = WireError::kStorageFailed, .duplicate = false, .seq = 0}};
  EXPECT_EQ(ToHex(BodyOf(a)), "02000000"
                              "0100000000000000" "0000" "01" "0900000000000000"
                              "0200000000000000" "0d00" "00" "0000000000000000");
}

TEST(GoldenTest, FetchSubscribeCredit) {
  EXPECT_EQ(ToHex(BodyOf(Fetch{.max_messages = 10, .max_bytes = 1024, .wait_ms = 500})),
            "0a000000" "00040000" "f4010000");
  EXPECT_EQ(ToHex(BodyOf(Subscribe{.credit = 7})), "07000000");
  EXPECT_EQ(ToHex(BodyOf(Credit{.credit = 0x01020304})), "04030201");
}

TEST(GoldenTest, DeliveryOfAMessageAndAGap) {
  Delivery d;
  d.entries = {{.kind = Delivered::Kind::kMessage, .seq = 5, .delivery_count = 2, .timestamp_us = -1,
                .key = "", .headers = "", .payload = "p"},
               {.kind = Delivered::Kind::kGap, .seq = 6, .gap_count = 3}};
  EXPECT_EQ(ToHex(BodyOf(d)), "02000000"
                              "01" "0500000000000000" "02000000" "ffffffffffffffff" "00000000" "00000000"
                              "01000000" "70"
                              "02" "0600000000000000" "0300000000000000");
}

TEST(GoldenTest, AnswerAndAnswerOk) {
  Answer a;
  a.items = {{.seq = 5, .kind = AnswerKind::kNak, .delay_ms = 1000},
             {.seq = 6, .kind = AnswerKind::kAck},
             {.seq = 7, .kind = AnswerKind::kInProgress},
             {.seq = 8, .kind = AnswerKind::kTerminate}};
  EXPECT_EQ(ToHex(BodyOf(a)), "04000000"
                              "0500000000000000" "02" "e8030000"
                              "0600000000000000" "01" "00000000"
                              "0700000000000000" "03" "00000000"
                              "0800000000000000" "04" "00000000");
  AnswerOk ok;
  ok.results = {{.seq = 5, .code = WireError::kNotDelivered}};
  EXPECT_EQ(ToHex(BodyOf(ok)), "01000000" "0500000000000000" "1500");
}

TEST(GoldenTest, StreamCreateWithConfig) {
  StreamCreate c{.name = "s", .config = SampleConfig()};
  EXPECT_EQ(ToHex(BodyOf(c)), "0100" "73"
                              "0100000000000000"  // retention_bytes
                              "0200000000000000"  // retention_age_ms
                              "03000000"          // max_message_bytes
                              "01"                // sync: none
                              "04000000"          // ack_wait_ms
                              "05000000"          // max_deliveries
                              "0100" "64");       // dead_letter "d"
  c.config.sync = SyncMode::kFdatasync;
  EXPECT_EQ(ToHex(BodyOf(c)).substr(6 + 32 + 8, 2), "00");
}

TEST(GoldenTest, AdminBodies) {
  EXPECT_EQ(ToHex(BodyOf(StreamDelete{.name = "ab"})), "0200" "6162");
  EXPECT_EQ(ToHex(BodyOf(StreamInfo{.name = "ab"})), "0200" "6162");
  StreamListOk l;
  l.names = {"a", "bc"};
  EXPECT_EQ(ToHex(BodyOf(l)), "02000000" "0100" "61" "0200" "6263");
  StreamInfoOk s{.name = "s", .config = SampleConfig(), .first_seq = 1, .frontier = 2, .bytes = 3};
  s.consumers = {{.name = "c", .ack_floor = 4, .next_seq = 5, .pending = 6, .lag = 7}};
  EXPECT_EQ(ToHex(BodyOf(s)), "0100" "73"
                              "0100000000000000" "0200000000000000" "03000000" "01" "04000000" "05000000" "0100" "64"
                              "0100000000000000" "0200000000000000" "0300000000000000"
                              "01000000" "0100" "63" "0400000000000000" "0500000000000000" "06000000"
                              "0700000000000000");
}

TEST(GoldenTest, DecodesHandWrittenBytes) {
  // The decoder reads the document's layout, not just its own encoder's.
  const std::string body = Hex("01000000 0500000000000000 02 e8030000");
  auto a = DecodeBodyAs<Answer>(AsSpan(body));
  ASSERT_TRUE(a) << a.error().ToString();
  ASSERT_EQ(a->items.size(), 1u);
  EXPECT_EQ(a->items[0].seq, 5u);
  EXPECT_EQ(a->items[0].kind, AnswerKind::kNak);
  EXPECT_EQ(a->items[0].delay_ms, 1000u);

  const std::string hello = Hex("464c4f45 0100 0300 0200 6869");
  auto h = DecodeBodyAs<Hello>(AsSpan(hello));
  ASSERT_TRUE(h) << h.error().ToString();
  EXPECT_EQ(h->min_version, 1);
  EXPECT_EQ(h->max_version, 3);
  EXPECT_EQ(h->client, "hi");
}

// --- Decoder error paths ------------------------------------------------------------

// One sample of each message type with a non-empty body, and how to decode it.
struct Case {
  std::string name;
  std::string body;
  std::function<Status(std::span<const char>)> decode;
};

template <typename M>
Case MakeCase(const M& msg) {
  return Case{std::string(FrameTypeName(M::kType)), BodyOf(msg), [](std::span<const char> b) {
                auto r = DecodeBodyAs<M>(b);
                return r ? Status::OK() : r.error();
              }};
}

std::vector<Case> AllCases() {
  SessionOk session_ok{.session_id = 1, .epoch = 2, .ack_floor = 3};
  session_ok.pending = {{4, 1}, {5, 2}};
  Publish publish;
  publish.messages = {{.producer_seq = 1, .key = "k", .headers = "h", .payload = "p"},
                      {.producer_seq = 2, .key = "", .headers = "", .payload = "xyz"}};
  PublishAck ack;
  ack.results = {{.producer_seq = 1, .seq = 2}, {.producer_seq = 3, .duplicate = true, .seq = 4}};
  Delivery delivery;
  delivery.entries = {{.kind = Delivered::Kind::kMessage, .seq = 1, .delivery_count = 1, .key = "k",
                       .headers = "h", .payload = "p"},
                      {.kind = Delivered::Kind::kGap, .seq = 2, .gap_count = 2}};
  Answer answer;
  answer.items = {{.seq = 1, .kind = AnswerKind::kAck}, {.seq = 2, .kind = AnswerKind::kNak, .delay_ms = 5}};
  AnswerOk answer_ok;
  answer_ok.results = {{.seq = 1}, {.seq = 2, .code = WireError::kNotDelivered}};
  StreamListOk list;
  list.names = {"a", "bc"};
  StreamInfoOk info{.name = "s", .config = SampleConfig(), .first_seq = 1, .frontier = 2, .bytes = 3};
  info.consumers = {{.name = "c", .ack_floor = 1, .next_seq = 2, .pending = 3, .lag = 4}};
  return {
      MakeCase(Hello{.client = "c"}),
      MakeCase(HelloOk{.node = "n"}),
      MakeCase(Error{.code = WireError::kInternal, .message = "m"}),
      MakeCase(SessionOpen{.session_id = 1, .role = Role::kConsumer, .stream = "s", .consumer = "c"}),
      MakeCase(session_ok),
      MakeCase(publish),
      MakeCase(ack),
      MakeCase(Fetch{.max_messages = 1, .max_bytes = 2, .wait_ms = 3}),
      MakeCase(delivery),
      MakeCase(Subscribe{.credit = 1}),
      MakeCase(Credit{.credit = 1}),
      MakeCase(answer),
      MakeCase(answer_ok),
      MakeCase(StreamCreate{.name = "s", .config = SampleConfig()}),
      MakeCase(StreamDelete{.name = "s"}),
      MakeCase(list),
      MakeCase(StreamInfo{.name = "s"}),
      MakeCase(info),
  };
}

TEST(DecodeErrorTest, EverySampleDecodes) {
  for (const Case& c : AllCases()) {
    Status s = c.decode(AsSpan(c.body));
    EXPECT_TRUE(s.ok()) << c.name << ": " << s.ToString();
  }
}

TEST(DecodeErrorTest, EveryTruncationOfEveryMessageIsRejected) {
  // A field running past the end of the body: every proper prefix of a valid
  // body fails, whichever field it cuts.
  for (const Case& c : AllCases()) {
    ASSERT_FALSE(c.body.empty()) << c.name;
    for (size_t n = 0; n < c.body.size(); ++n) {
      Status s = c.decode(AsSpan(c.body).first(n));
      ASSERT_FALSE(s.ok()) << c.name << " cut to " << n << " of " << c.body.size() << " bytes";
      EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << c.name << " cut to " << n;
    }
  }
}

TEST(DecodeErrorTest, TrailingBytesAreRejected) {
  for (const Case& c : AllCases()) {
    for (std::string_view extra : {std::string_view("\0", 1), std::string_view("junk")}) {
      std::string body = c.body + std::string(extra);
      Status s = c.decode(AsSpan(body));
      ASSERT_FALSE(s.ok()) << c.name << " + " << extra.size() << " bytes";
      EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << c.name;
      // STREAM_CREATE and STREAM_INFO_OK may end with the MQTT topic filters
      // (docs/protocol.md): there extra bytes begin that list, cut short. A
      // version 2 HELLO reads what follows the client name as credentials:
      // these few bytes are a truncated user name there.
      const bool more_follow = c.name == "STREAM_CREATE" || c.name == "STREAM_INFO_OK" || c.name == "HELLO";
      if (!more_follow)
        EXPECT_NE(s.message().find("trailing"), std::string_view::npos) << c.name << ": " << s.ToString();
    }
  }
}

TEST(DecodeErrorTest, EmptyMessagesRejectAnyBody) {
  const std::string one("\0", 1);
  EXPECT_FALSE(DecodeBodyAs<Ping>(AsSpan(one)));
  EXPECT_FALSE(DecodeBodyAs<Pong>(AsSpan(one)));
  EXPECT_FALSE(DecodeBodyAs<Goodbye>(AsSpan(one)));
  EXPECT_FALSE(DecodeBodyAs<Ok>(AsSpan(one)));
  EXPECT_FALSE(DecodeBodyAs<StreamList>(AsSpan(one)));
}

TEST(DecodeErrorTest, BlobAndStringLengthsPastTheEnd) {
  // A length prefix that promises more than the body holds.
  const std::string string_body = Hex("0500 616263");  // "abc" claimed as 5 bytes
  EXPECT_FALSE(DecodeBodyAs<StreamDelete>(AsSpan(string_body)));
  const std::string blob_body = Hex("01000000 0100000000000000 ffffffff 6b 00000000 00000000");
  EXPECT_FALSE(DecodeBodyAs<Publish>(AsSpan(blob_body)));
}

// Bodies of a list type: u32 count, then `items` bytes of valid-looking items.
std::string CountedBody(std::string_view prefix, uint32_t count, size_t items) {
  std::string b(prefix);
  PutFixed32(&b, count);
  b.append(items, '\0');
  return b;
}

TEST(DecodeErrorTest, CountsThatCannotFitAreRejected) {
  // Each list's smallest item: the decoder must refuse a count the rest of the
  // body cannot hold, before it reserves memory for it.
  struct ListCase {
    std::string name;
    std::string prefix;  // the fields before the count
    size_t min_item;
    std::function<Status(std::span<const char>)> decode;
  };
  auto decoder = [](auto tag) {
    using M = decltype(tag);
    return [](std::span<const char> b) {
      auto r = DecodeBodyAs<M>(b);
      return r ? Status::OK() : r.error();
    };
  };
  std::string info_prefix = BodyOf(StreamInfo{.name = "s"});
  {
    Encoder e(&info_prefix);
    EncodeStreamConfigFields(e, StreamConfig{});
    e.U64(1);
    e.U64(2);
    e.U64(3);
  }
  const std::vector<ListCase> cases = {
      {"SESSION_OK", std::string(56, '\0'), 12, decoder(SessionOk{})},
      {"PUBLISH", "", 20, decoder(Publish{})},
      {"PUBLISH_ACK", "", 19, decoder(PublishAck{})},
      {"DELIVERY", "", 17, decoder(Delivery{})},
      {"ANSWER", "", 13, decoder(Answer{})},
      {"ANSWER_OK", "", 10, decoder(AnswerOk{})},
      {"STREAM_LIST_OK", "", 2, decoder(StreamListOk{})},
      {"STREAM_INFO_OK", info_prefix, 30, decoder(StreamInfoOk{})},
  };
  for (const ListCase& c : cases) {
    for (uint32_t count : {kU32Max, 0x10000000u, 1000u}) {
      Status s = c.decode(AsSpan(CountedBody(c.prefix, count, c.min_item)));
      ASSERT_FALSE(s.ok()) << c.name << " count " << count;
      EXPECT_NE(s.message().find("cannot fit"), std::string_view::npos) << c.name << ": " << s.ToString();
    }
    // Three items' worth of bytes minus one cannot hold three items.
    Status s = c.decode(AsSpan(CountedBody(c.prefix, 3, 3 * c.min_item - 1)));
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_NE(s.message().find("cannot fit"), std::string_view::npos) << c.name << ": " << s.ToString();
    // A count of 0 with no items is fine, except for PUBLISH (below).
    if (c.name != "PUBLISH") {
      Status empty = c.decode(AsSpan(CountedBody(c.prefix, 0, 0)));
      EXPECT_TRUE(empty.ok()) << c.name << ": " << empty.ToString();
    }
  }
}

TEST(DecodeErrorTest, PublishOfNoMessagesIsRejected) {
  // "A PUBLISH carries one or more messages".
  const std::string body = Hex("00000000");
  auto p = DecodeBodyAs<Publish>(AsSpan(body));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), ErrorCode::kInvalidArgument);
}

TEST(DecodeErrorTest, BadHelloMagic) {
  for (uint32_t magic : {0u, 0x464C4F45u /* bytes "EOLF" */, kHelloMagic + 1, kU32Max}) {
    std::string body;
    Encoder e(&body);
    e.U32(magic);
    e.U16(1);
    e.U16(1);
    e.String("c");
    auto h = DecodeBodyAs<Hello>(AsSpan(body));
    ASSERT_FALSE(h) << std::hex << magic;
    EXPECT_EQ(h.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(h.error().message().find("magic"), std::string_view::npos) << h.error().ToString();
  }
}

std::string SessionOpenBody(uint8_t role, uint8_t start_at) {
  std::string body;
  Encoder e(&body);
  e.U64(0);
  e.U8(role);
  e.String("s");
  e.String("c");
  e.U8(start_at);
  e.U64(0);
  return body;
}

TEST(DecodeErrorTest, UnknownRole) {
  for (int role = 0; role < 256; ++role) {
    auto s = DecodeBodyAs<SessionOpen>(AsSpan(SessionOpenBody(static_cast<uint8_t>(role), 0)));
    if (role == 1 || role == 2) {
      ASSERT_TRUE(s) << role << ": " << s.error().ToString();
      EXPECT_EQ(static_cast<int>(s->role), role);
    } else {
      ASSERT_FALSE(s) << "role " << role;
      EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(DecodeErrorTest, UnknownStartAt) {
  for (int start = 0; start < 256; ++start) {
    auto s = DecodeBodyAs<SessionOpen>(AsSpan(SessionOpenBody(2, static_cast<uint8_t>(start))));
    if (start <= 3) {
      ASSERT_TRUE(s) << start << ": " << s.error().ToString();
      EXPECT_EQ(static_cast<int>(s->start_at), start);
    } else {
      ASSERT_FALSE(s) << "start_at " << start;
      EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(DecodeErrorTest, UnknownDeliveryKind) {
  for (int kind = 0; kind < 256; ++kind) {
    // Bytes of a message entry; for a gap the tail is more than it needs.
    std::string body;
    Encoder e(&body);
    e.U32(1);
    e.U8(static_cast<uint8_t>(kind));
    e.U64(9);
    if (kind == 2) {
      e.U64(4);
    } else {
      e.U32(1);
      e.I64(0);
      e.Blob("");
      e.Blob("");
      e.Blob("p");
    }
    auto d = DecodeBodyAs<Delivery>(AsSpan(body));
    if (kind == 1 || kind == 2) {
      ASSERT_TRUE(d) << kind << ": " << d.error().ToString();
      ASSERT_EQ(d->entries.size(), 1u);
      EXPECT_EQ(static_cast<int>(d->entries[0].kind), kind);
    } else {
      ASSERT_FALSE(d) << "kind " << kind;
      EXPECT_EQ(d.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(DecodeErrorTest, UnknownDeliveryKindAfterAGoodEntry) {
  std::string body;
  Encoder e(&body);
  e.U32(2);
  e.U8(2);
  e.U64(1);
  e.U64(1);
  e.U8(7);  // unknown
  e.U64(2);
  e.U64(1);
  auto d = DecodeBodyAs<Delivery>(AsSpan(body));
  EXPECT_FALSE(d);
}

TEST(DecodeErrorTest, UnknownAnswerKind) {
  for (int kind = 0; kind < 256; ++kind) {
    std::string body;
    Encoder e(&body);
    e.U32(1);
    e.U64(3);
    e.U8(static_cast<uint8_t>(kind));
    e.U32(0);
    auto a = DecodeBodyAs<Answer>(AsSpan(body));
    if (kind >= 1 && kind <= 4) {
      ASSERT_TRUE(a) << kind << ": " << a.error().ToString();
      EXPECT_EQ(static_cast<int>(a->items[0].kind), kind);
    } else {
      ASSERT_FALSE(a) << "kind " << kind;
      EXPECT_EQ(a.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(DecodeErrorTest, UnknownSyncMode) {
  for (int sync = 0; sync < 256; ++sync) {
    StreamConfig config = SampleConfig();
    std::string create = BodyOf(StreamCreate{.name = "s", .config = config});
    // name (2 + 1), retention (16), max_message_bytes (4), then sync.
    create[3 + 16 + 4] = static_cast<char>(sync);
    auto c = DecodeBodyAs<StreamCreate>(AsSpan(create));
    StreamInfoOk info_msg{.name = "s", .config = config};
    std::string info = BodyOf(info_msg);
    info[3 + 16 + 4] = static_cast<char>(sync);
    auto i = DecodeBodyAs<StreamInfoOk>(AsSpan(info));
    if (sync <= 1) {
      ASSERT_TRUE(c) << sync << ": " << c.error().ToString();
      EXPECT_EQ(static_cast<int>(c->config.sync), sync);
      ASSERT_TRUE(i) << sync << ": " << i.error().ToString();
      EXPECT_EQ(static_cast<int>(i->config.sync), sync);
    } else {
      ASSERT_FALSE(c) << "sync " << sync;
      EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
      ASSERT_FALSE(i) << "sync " << sync;
    }
  }
}

TEST(DecodeErrorTest, DecoderFailureSticks) {
  // After the first failure every read is zero or empty, and Finish reports
  // the first failure, not a later one.
  const std::string bytes = Hex("0100");
  Decoder d(AsSpan(bytes));
  EXPECT_EQ(d.U32(), 0u);  // needs 4, has 2
  EXPECT_FALSE(d.ok());
  EXPECT_EQ(d.U8(), 0);    // one byte is there, but the decoder has failed
  EXPECT_EQ(d.U16(), 0);
  EXPECT_EQ(d.String(), "");
  EXPECT_EQ(d.Blob(), "");
  EXPECT_EQ(d.Count(1), 0u);
  Status s = d.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("truncated"), std::string_view::npos) << s.ToString();
}

TEST(CodecTest, PrimitivesAreLittleEndian) {
  std::string out;
  Encoder e(&out);
  e.U8(0x01);
  e.U16(0x0203);
  e.U32(0x04050607);
  e.U64(0x08090a0b0c0d0e0full);
  e.I64(-2);
  e.String("ab");
  e.Blob(std::string_view("\0c", 2));
  EXPECT_EQ(ToHex(out), "01" "0302" "07060504" "0f0e0d0c0b0a0908" "feffffffffffffff" "0200" "6162" "02000000" "0063");
  Decoder d(AsSpan(out));
  EXPECT_EQ(d.U8(), 0x01);
  EXPECT_EQ(d.U16(), 0x0203);
  EXPECT_EQ(d.U32(), 0x04050607u);
  EXPECT_EQ(d.U64(), 0x08090a0b0c0d0e0full);
  EXPECT_EQ(d.I64(), -2);
  EXPECT_EQ(d.String(), "ab");
  EXPECT_EQ(d.Blob(), std::string_view("\0c", 2));
  EXPECT_EQ(d.remaining(), 0u);
  EXPECT_TRUE(d.Finish().ok());
}

// --- Names -----------------------------------------------------------------------

TEST(StreamNameTest, AcceptsTheDocumentedAlphabet) {
  EXPECT_TRUE(ValidateStreamName("a").ok());
  EXPECT_TRUE(ValidateStreamName("orders").ok());
  EXPECT_TRUE(ValidateStreamName("Orders.EU-west_1").ok());
  EXPECT_TRUE(ValidateStreamName("_").ok());
  EXPECT_TRUE(ValidateStreamName("-").ok());
  EXPECT_TRUE(ValidateStreamName("0").ok());
  EXPECT_TRUE(ValidateStreamName("a.").ok());
  EXPECT_TRUE(ValidateStreamName("a..b").ok());
  EXPECT_TRUE(ValidateStreamName("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-").ok());
}

TEST(StreamNameTest, LengthIsOneTo128Bytes) {
  EXPECT_EQ(ValidateStreamName("").code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(ValidateStreamName(std::string(127, 'n')).ok());
  EXPECT_TRUE(ValidateStreamName(std::string(128, 'n')).ok());
  EXPECT_EQ(ValidateStreamName(std::string(129, 'n')).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ValidateStreamName(std::string(65536, 'n')).code(), ErrorCode::kInvalidArgument);
}

TEST(StreamNameTest, MustNotStartWithADot) {
  EXPECT_EQ(ValidateStreamName(".").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ValidateStreamName(".hidden").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ValidateStreamName("..").code(), ErrorCode::kInvalidArgument);
}

TEST(StreamNameTest, EveryByteOutsideTheAlphabetIsRejectedAnywhere) {
  for (int c = 0; c < 256; ++c) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                         c == '_' || c == '-';
    const char ch = static_cast<char>(c);
    for (std::string name : {std::string("x") + ch, std::string("x") + ch + "y", std::string(1, ch)}) {
      Status s = ValidateStreamName(name);
      const bool expect_ok = allowed && !(name[0] == '.');
      EXPECT_EQ(s.ok(), expect_ok) << "byte " << c << " in a name of " << name.size() << " bytes";
      if (!s.ok()) {
        EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << c;
      }
    }
  }
}

// --- Error codes ---------------------------------------------------------------------

struct CodeRow {
  uint16_t number;
  WireError code;
  std::string_view name;
  bool retriable;
};

// The table of docs/protocol.md "Error codes".
const CodeRow kCodes[] = {
    {0, WireError::kOk, "OK", false},
    {1, WireError::kMalformedFrame, "MALFORMED_FRAME", false},
    {2, WireError::kUnsupportedVersion, "UNSUPPORTED_VERSION", false},
    {3, WireError::kUnknownType, "UNKNOWN_TYPE", false},
    {4, WireError::kFrameTooLarge, "FRAME_TOO_LARGE", false},
    {5, WireError::kMessageTooLarge, "MESSAGE_TOO_LARGE", false},
    {6, WireError::kUnknownStream, "UNKNOWN_STREAM", false},
    {7, WireError::kStreamExists, "STREAM_EXISTS", false},
    {8, WireError::kInvalidArgument, "INVALID_ARGUMENT", false},
    {9, WireError::kNoSession, "NO_SESSION", false},
    {10, WireError::kSessionBusy, "SESSION_BUSY", true},
    {11, WireError::kNotOwner, "NOT_OWNER", true},
    {12, WireError::kUnavailable, "UNAVAILABLE", true},
    {13, WireError::kStorageFailed, "STORAGE_FAILED", true},
    {14, WireError::kStreamReadOnly, "STREAM_READ_ONLY", false},
    {15, WireError::kTooManyConnections, "TOO_MANY_CONNECTIONS", true},
    {16, WireError::kTooManyInFlight, "TOO_MANY_IN_FLIGHT", true},
    {17, WireError::kShuttingDown, "SHUTTING_DOWN", true},
    {18, WireError::kInternal, "INTERNAL", false},
    {19, WireError::kUnknownConsumer, "UNKNOWN_CONSUMER", false},
    {20, WireError::kInvalidName, "INVALID_NAME", false},
    {21, WireError::kNotDelivered, "NOT_DELIVERED", false},
    {22, WireError::kOutOfRange, "OUT_OF_RANGE", false},
    {23, WireError::kDuplicateTooOld, "DUPLICATE_TOO_OLD", false},
    {24, WireError::kDiskFull, "DISK_FULL", true},
    {25, WireError::kNotAuthorized, "NOT_AUTHORIZED", false},
    {26, WireError::kAuthFailed, "AUTH_FAILED", false},
};

TEST(WireErrorTest, NumbersNamesAndRetriabilityMatchTheDocument) {
  for (const CodeRow& r : kCodes) {
    EXPECT_EQ(static_cast<uint16_t>(r.code), r.number) << r.name;
    EXPECT_EQ(WireErrorName(r.code), r.name) << r.number;
    EXPECT_EQ(WireErrorName(static_cast<WireError>(r.number)), r.name) << r.number;
    EXPECT_EQ(IsRetriable(r.code), r.retriable) << r.name;
  }
}

TEST(WireErrorTest, NamesAreDistinct) {
  std::set<std::string_view> names;
  for (const CodeRow& r : kCodes) EXPECT_TRUE(names.insert(WireErrorName(r.code)).second) << r.name;
}

TEST(WireErrorTest, UnknownCodesHaveAFallbackNameAndAreNotRetriable) {
  for (uint16_t n : {uint16_t{27}, uint16_t{100}, uint16_t{1000}, kU16Max}) {
    EXPECT_EQ(WireErrorName(static_cast<WireError>(n)), "UNKNOWN_ERROR") << n;
    EXPECT_FALSE(IsRetriable(static_cast<WireError>(n))) << n;
  }
}

TEST(WireErrorTest, EveryErrorCodeAnswersTheFrameCodeItNames) {
  // An ERROR frame carries the code, and its retriable flag as sent.
  for (const CodeRow& r : kCodes) {
    ExpectRoundTrip(Error{.code = r.code, .retriable = IsRetriable(r.code), .message = r.name});
  }
}

}  // namespace
}  // namespace floe::wire
