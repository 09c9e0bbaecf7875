// floe wire protocol, versions 1 and 2: frames and the messages they carry.
// docs/protocol.md is the specification; this header follows it exactly.
//
// Every frame: a 16-byte header, then the body.
//   u32 length      bytes after this field (12 + body)
//   u8  type        FrameType
//   u8  flags       0
//   u16 reserved    0
//   u64 request_id  chosen by the client; replies (and pushed deliveries)
//                   carry the id of the request they answer
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "wire/codec.h"
#include "wire/errors.h"
#include "model/types.h"

namespace floe::wire {

// Protocol versions, pinned. A connection speaks the highest both sides know.
// Version 2 adds credentials to HELLO and the errors NOT_AUTHORIZED and
// AUTH_FAILED (docs/protocol.md "Handshake and versions").
enum class Version : uint16_t { kV1 = 1, kV2 = 2 };
inline constexpr uint16_t kMinVersion = 1;
inline constexpr uint16_t kMaxVersion = 2;
inline constexpr size_t kMaxHelloUserBytes = 64;
inline constexpr size_t kMaxHelloPasswordBytes = 1024;

inline constexpr uint32_t kHelloMagic = 0x454F4C46;  // "FLOE"
inline constexpr size_t kFrameHeaderSize = 16;
inline constexpr uint32_t kDefaultMaxFrameBytes = (16u << 20) + 65536;
inline constexpr uint32_t kDefaultMaxMessageBytes = 8u << 20;

enum class FrameType : uint8_t {
  kHello = 0x01,
  kHelloOk = 0x02,
  kPing = 0x03,
  kPong = 0x04,
  kGoodbye = 0x05,
  kError = 0x06,
  kOk = 0x07,
  kSessionOpen = 0x10,
  kSessionOk = 0x11,
  kPublish = 0x20,
  kPublishAck = 0x21,
  kPublishChunk = 0x22,
  kChunkAck = 0x23,
  kFetch = 0x30,
  kDelivery = 0x31,
  kSubscribe = 0x32,
  kCredit = 0x33,
  kAnswer = 0x34,
  kAnswerOk = 0x35,
  kFetchChunk = 0x36,
  kChunk = 0x37,
  kStreamCreate = 0x40,
  kStreamDelete = 0x41,
  kStreamList = 0x42,
  kStreamListOk = 0x43,
  kStreamInfo = 0x44,
  kStreamInfoOk = 0x45,
  kDeadLetter = 0x50,  // node to node
};
bool IsKnownFrameType(uint8_t type);
std::string_view FrameTypeName(FrameType t);

struct FrameHeader {
  uint32_t length = 0;  // bytes after the length field
  FrameType type = FrameType::kPing;
  uint8_t flags = 0;
  uint64_t request_id = 0;
  size_t body_size() const { return length - (kFrameHeaderSize - 4); }
};

// Checks a frame header: length within [12, max_frame_bytes], flags and
// reserved zero. An unknown type is not an error here (the server answers it
// with UNKNOWN_TYPE and carries on).
Result<FrameHeader> DecodeFrameHeader(std::span<const char> bytes, uint32_t max_frame_bytes);

// ---------------------------------------------------------------------------
// Messages. Each has kType, EncodeBody and DecodeBody. Views (string_view)
// point into the frame being decoded.

struct Hello {
  static constexpr FrameType kType = FrameType::kHello;
  uint16_t min_version = kMinVersion;
  uint16_t max_version = kMaxVersion;
  std::string_view client;
  // Version 2: the credentials, after `client`, present only when `user` is
  // not empty (so an anonymous HELLO is byte for byte a version 1 one, and
  // nodes of before accept it). A HELLO carrying them must allow version 2.
  std::string_view user;
  std::string_view password;
  void EncodeBody(Encoder& e) const;
  static Result<Hello> DecodeBody(Decoder& d);
};

struct HelloOk {
  static constexpr FrameType kType = FrameType::kHelloOk;
  uint16_t version = kMaxVersion;
  uint32_t max_frame_bytes = kDefaultMaxFrameBytes;
  uint32_t max_message_bytes = kDefaultMaxMessageBytes;
  std::string_view node;
  void EncodeBody(Encoder& e) const;
  static Result<HelloOk> DecodeBody(Decoder& d);
};

struct Empty {
  void EncodeBody(Encoder&) const {}
};
struct Ping : Empty { static constexpr FrameType kType = FrameType::kPing; static Result<Ping> DecodeBody(Decoder&) { return Ping{}; } };
struct Pong : Empty { static constexpr FrameType kType = FrameType::kPong; static Result<Pong> DecodeBody(Decoder&) { return Pong{}; } };
struct Goodbye : Empty { static constexpr FrameType kType = FrameType::kGoodbye; static Result<Goodbye> DecodeBody(Decoder&) { return Goodbye{}; } };
struct Ok : Empty { static constexpr FrameType kType = FrameType::kOk; static Result<Ok> DecodeBody(Decoder&) { return Ok{}; } };
struct StreamList : Empty { static constexpr FrameType kType = FrameType::kStreamList; static Result<StreamList> DecodeBody(Decoder&) { return StreamList{}; } };

struct Error {
  static constexpr FrameType kType = FrameType::kError;
  WireError code = WireError::kInternal;
  bool retriable = false;
  std::string_view message;
  std::string_view redirect;  // NOT_OWNER: "HOST:PORT" of the owner, if known
  void EncodeBody(Encoder& e) const;
  static Result<Error> DecodeBody(Decoder& d);
};

using floe::Role;
using floe::StartAt;  // where a durable consumer starts when SESSION_OPEN creates it

struct SessionOpen {
  static constexpr FrameType kType = FrameType::kSessionOpen;
  uint64_t session_id = 0;  // 0: a new session; the node picks the id
  Role role = Role::kProducer;
  std::string_view stream;
  std::string_view consumer;  // consumers: the durable consumer's name
  StartAt start_at = StartAt::kFirst;  // consumers: used only when the consumer is new
  uint64_t start_value = 0;
  void EncodeBody(Encoder& e) const;
  static Result<SessionOpen> DecodeBody(Decoder& d);
};

struct PendingDelivery {
  uint64_t seq = 0;
  uint32_t delivery_count = 0;
};

struct SessionOk {
  static constexpr FrameType kType = FrameType::kSessionOk;
  uint64_t session_id = 0;
  uint64_t epoch = 0;
  // Producer: the highest producer seq the stream holds for this session and
  // the stream seq it got.
  uint64_t highest_producer_seq = 0;
  uint64_t highest_seq = 0;
  // Consumer: every seq at or below ack_floor is answered; deliveries pending.
  uint64_t ack_floor = 0;
  std::vector<PendingDelivery> pending;
  // Producer: the large message in transfer (PUBLISH_CHUNK), if any: its
  // producer seq and how many of its bytes are durable (resume there).
  uint64_t chunk_producer_seq = 0;
  uint64_t chunk_bytes = 0;
  void EncodeBody(Encoder& e) const;
  static Result<SessionOk> DecodeBody(Decoder& d);
};

struct PublishMessage {
  uint64_t producer_seq = 0;
  std::string_view key;
  std::string_view headers;  // encoded as in docs/format.md
  std::string_view payload;
};

struct Publish {
  static constexpr FrameType kType = FrameType::kPublish;
  std::vector<PublishMessage> messages;
  void EncodeBody(Encoder& e) const;
  static Result<Publish> DecodeBody(Decoder& d);
};

struct PublishResult {
  uint64_t producer_seq = 0;
  WireError code = WireError::kOk;
  bool duplicate = false;  // already stored: seq is the original
  uint64_t seq = 0;        // with code OK: the stream seq
};

struct PublishAck {
  static constexpr FrameType kType = FrameType::kPublishAck;
  std::vector<PublishResult> results;
  void EncodeBody(Encoder& e) const;
  static Result<PublishAck> DecodeBody(Decoder& d);
};

// Node to node: a message that reached max_deliveries on `source_stream`,
// for the dead-letter stream `stream` this node serves. Answered by a
// PUBLISH_ACK of one result (producer_seq = source_seq), or an ERROR.
struct DeadLetter {
  static constexpr FrameType kType = FrameType::kDeadLetter;
  std::string_view stream;
  std::string_view source_stream;
  std::string_view consumer;
  uint64_t source_seq = 0;
  std::string_view key;
  std::string_view headers;
  std::string_view payload;
  void EncodeBody(Encoder& e) const;
  static Result<DeadLetter> DecodeBody(Decoder& d);
};

// One piece of a large message (bigger than a frame). Chunks of one message
// come in order; each is durable, and the bytes conveyed recorded in the
// bank, before its CHUNK_ACK. The last one (offset + data = total_size)
// stores the message in the stream.
struct PublishChunk {
  static constexpr FrameType kType = FrameType::kPublishChunk;
  uint64_t producer_seq = 0;
  uint64_t total_size = 0;
  uint64_t offset = 0;
  std::string_view key;      // read with the first chunk
  std::string_view headers;  // read with the first chunk
  std::string_view data;
  void EncodeBody(Encoder& e) const;
  static Result<PublishChunk> DecodeBody(Decoder& d);
};

struct ChunkAck {
  static constexpr FrameType kType = FrameType::kChunkAck;
  uint64_t producer_seq = 0;
  WireError code = WireError::kOk;
  uint64_t durable_bytes = 0;  // bytes of the message durable: send from here on
  uint64_t seq = 0;            // once the whole message is stored: its stream seq
  bool duplicate = false;      // the message was stored before
  void EncodeBody(Encoder& e) const;
  static Result<ChunkAck> DecodeBody(Decoder& d);
};

// Reads part of a large message (a DELIVERY entry of kind LARGE).
struct FetchChunk {
  static constexpr FrameType kType = FrameType::kFetchChunk;
  uint64_t seq = 0;
  uint64_t offset = 0;
  uint32_t max_bytes = 0;
  void EncodeBody(Encoder& e) const;
  static Result<FetchChunk> DecodeBody(Decoder& d);
};

struct Chunk {
  static constexpr FrameType kType = FrameType::kChunk;
  uint64_t seq = 0;
  uint64_t total_size = 0;
  uint64_t offset = 0;
  std::string_view data;
  void EncodeBody(Encoder& e) const;
  static Result<Chunk> DecodeBody(Decoder& d);
};

struct Fetch {
  static constexpr FrameType kType = FrameType::kFetch;
  uint32_t max_messages = 100;
  uint32_t max_bytes = 1 << 20;
  uint32_t wait_ms = 0;
  void EncodeBody(Encoder& e) const;
  static Result<Fetch> DecodeBody(Decoder& d);
};

struct Subscribe {
  static constexpr FrameType kType = FrameType::kSubscribe;
  uint32_t credit = 0;
  void EncodeBody(Encoder& e) const;
  static Result<Subscribe> DecodeBody(Decoder& d);
};

struct Credit {
  static constexpr FrameType kType = FrameType::kCredit;
  uint32_t credit = 0;
  void EncodeBody(Encoder& e) const;
  static Result<Credit> DecodeBody(Decoder& d);
};

struct Delivered {
  // kLarge: a message stored in chunks; its payload is not in the DELIVERY
  // (read it with FETCH_CHUNK), large_size says how big it is.
  enum class Kind : uint8_t { kMessage = 1, kGap = 2, kLarge = 3 };
  Kind kind = Kind::kMessage;
  uint64_t seq = 0;
  uint64_t gap_count = 0;        // gaps: seqs [seq, seq+gap_count) are holes
  uint32_t delivery_count = 0;   // messages: 1 on first delivery
  int64_t timestamp_us = 0;
  std::string_view key;
  std::string_view headers;
  std::string_view payload;
  uint64_t large_size = 0;       // kLarge
};

struct Delivery {
  static constexpr FrameType kType = FrameType::kDelivery;
  std::vector<Delivered> entries;
  void EncodeBody(Encoder& e) const;
  static Result<Delivery> DecodeBody(Decoder& d);
};

using floe::AnswerItem;
using floe::AnswerKind;

struct Answer {
  static constexpr FrameType kType = FrameType::kAnswer;
  std::vector<AnswerItem> items;
  void EncodeBody(Encoder& e) const;
  static Result<Answer> DecodeBody(Decoder& d);
};

struct AnswerResult {
  uint64_t seq = 0;
  WireError code = WireError::kOk;
};

// Sent once the answers are persisted in the cursor.
struct AnswerOk {
  static constexpr FrameType kType = FrameType::kAnswerOk;
  std::vector<AnswerResult> results;
  void EncodeBody(Encoder& e) const;
  static Result<AnswerOk> DecodeBody(Decoder& d);
};

using floe::StreamConfig;
using floe::SyncMode;

struct StreamCreate {
  static constexpr FrameType kType = FrameType::kStreamCreate;
  std::string_view name;
  StreamConfig config;
  void EncodeBody(Encoder& e) const;
  static Result<StreamCreate> DecodeBody(Decoder& d);
};

struct StreamDelete {
  static constexpr FrameType kType = FrameType::kStreamDelete;
  std::string_view name;
  void EncodeBody(Encoder& e) const;
  static Result<StreamDelete> DecodeBody(Decoder& d);
};

struct StreamListOk {
  static constexpr FrameType kType = FrameType::kStreamListOk;
  std::vector<std::string_view> names;
  void EncodeBody(Encoder& e) const;
  static Result<StreamListOk> DecodeBody(Decoder& d);
};

struct StreamInfo {
  static constexpr FrameType kType = FrameType::kStreamInfo;
  std::string_view name;
  void EncodeBody(Encoder& e) const;
  static Result<StreamInfo> DecodeBody(Decoder& d);
};

struct ConsumerInfo {
  std::string_view name;
  uint64_t ack_floor = 0;
  uint64_t next_seq = 0;
  uint32_t pending = 0;
  uint64_t lag = 0;  // visible seqs above the ack floor not yet answered
};

struct StreamInfoOk {
  static constexpr FrameType kType = FrameType::kStreamInfoOk;
  std::string_view name;
  StreamConfig config;
  uint64_t first_seq = 0;
  uint64_t frontier = 0;
  uint64_t bytes = 0;
  std::vector<ConsumerInfo> consumers;
  void EncodeBody(Encoder& e) const;
  static Result<StreamInfoOk> DecodeBody(Decoder& d);
};

// Appends a whole frame (header and body) for `msg` to out.
template <typename M>
void AppendFrame(std::string* out, uint64_t request_id, const M& msg) {
  const size_t start = out->size();
  out->resize(start + kFrameHeaderSize);
  Encoder e(out);
  msg.EncodeBody(e);
  char* h = out->data() + start;
  EncodeFixed32(h, static_cast<uint32_t>(out->size() - start - 4));
  h[4] = static_cast<char>(M::kType);
  h[5] = 0;
  EncodeFixed16(h + 6, 0);
  EncodeFixed64(h + 8, request_id);
}

// Decodes a body of the given message type: InvalidArgument if malformed or
// not fully consumed.
template <typename M>
Result<M> DecodeBodyAs(std::span<const char> body) {
  Decoder d(body);
  auto m = M::DecodeBody(d);
  if (!m) return m;
  Status s = d.Finish();
  if (!s.ok()) return Err(s);
  return m;
}

// Stream names: 1-128 bytes of [A-Za-z0-9._-], not starting with '.'.
using floe::ValidateStreamName;

}  // namespace floe::wire
