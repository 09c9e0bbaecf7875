#include "wire/protocol.h"

#include <fmt/format.h>

namespace floe::wire {

bool IsKnownFrameType(uint8_t t) {
  switch (static_cast<FrameType>(t)) {
    case FrameType::kHello: case FrameType::kHelloOk: case FrameType::kPing: case FrameType::kPong:
    case FrameType::kGoodbye: case FrameType::kError: case FrameType::kOk: case FrameType::kSessionOpen:
    case FrameType::kSessionOk: case FrameType::kPublish: case FrameType::kPublishAck: case FrameType::kFetch:
    case FrameType::kDelivery: case FrameType::kSubscribe: case FrameType::kCredit: case FrameType::kAnswer:
    case FrameType::kAnswerOk: case FrameType::kStreamCreate: case FrameType::kStreamDelete:
    case FrameType::kStreamList: case FrameType::kStreamListOk: case FrameType::kStreamInfo:
    case FrameType::kStreamInfoOk: case FrameType::kPublishChunk: case FrameType::kChunkAck:
    case FrameType::kFetchChunk: case FrameType::kChunk: case FrameType::kDeadLetter:
      return true;
  }
  return false;
}

std::string_view FrameTypeName(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kHelloOk: return "HELLO_OK";
    case FrameType::kPing: return "PING";
    case FrameType::kPong: return "PONG";
    case FrameType::kGoodbye: return "GOODBYE";
    case FrameType::kError: return "ERROR";
    case FrameType::kOk: return "OK";
    case FrameType::kSessionOpen: return "SESSION_OPEN";
    case FrameType::kSessionOk: return "SESSION_OK";
    case FrameType::kPublish: return "PUBLISH";
    case FrameType::kPublishAck: return "PUBLISH_ACK";
    case FrameType::kFetch: return "FETCH";
    case FrameType::kDelivery: return "DELIVERY";
    case FrameType::kSubscribe: return "SUBSCRIBE";
    case FrameType::kCredit: return "CREDIT";
    case FrameType::kAnswer: return "ANSWER";
    case FrameType::kAnswerOk: return "ANSWER_OK";
    case FrameType::kStreamCreate: return "STREAM_CREATE";
    case FrameType::kStreamDelete: return "STREAM_DELETE";
    case FrameType::kStreamList: return "STREAM_LIST";
    case FrameType::kStreamListOk: return "STREAM_LIST_OK";
    case FrameType::kStreamInfo: return "STREAM_INFO";
    case FrameType::kStreamInfoOk: return "STREAM_INFO_OK";
    case FrameType::kPublishChunk: return "PUBLISH_CHUNK";
    case FrameType::kChunkAck: return "CHUNK_ACK";
    case FrameType::kFetchChunk: return "FETCH_CHUNK";
    case FrameType::kChunk: return "CHUNK";
    case FrameType::kDeadLetter: return "DEAD_LETTER";
  }
  return "UNKNOWN";
}

Result<FrameHeader> DecodeFrameHeader(std::span<const char> bytes, uint32_t max_frame_bytes) {
  if (bytes.size() < kFrameHeaderSize) return Err(Status::InvalidArgument("frame header truncated"));
  FrameHeader h;
  h.length = DecodeFixed32(bytes.data());
  if (h.length < kFrameHeaderSize - 4)
    return Err(Status::InvalidArgument(fmt::format("frame length {} below the header's 12 bytes", h.length)));
  if (h.length > max_frame_bytes)
    return Err(Status::OutOfRange(fmt::format("frame of {} bytes exceeds the limit of {}", h.length, max_frame_bytes)));
  h.type = static_cast<FrameType>(static_cast<uint8_t>(bytes[4]));
  h.flags = static_cast<uint8_t>(bytes[5]);
  if (h.flags != 0 || DecodeFixed16(bytes.data() + 6) != 0)
    return Err(Status::InvalidArgument("frame flags and reserved bytes must be 0"));
  h.request_id = DecodeFixed64(bytes.data() + 8);
  return h;
}

// --- Hello -----------------------------------------------------------------

void Hello::EncodeBody(Encoder& e) const {
  e.U32(kHelloMagic);
  e.U16(min_version);
  e.U16(max_version);
  e.String(client);
  if (!user.empty()) {
    e.String(user);
    e.String(password);
  }
}
Result<Hello> Hello::DecodeBody(Decoder& d) {
  if (d.U32() != kHelloMagic && d.ok()) d.Fail("bad hello magic");
  Hello h;
  h.min_version = d.U16();
  h.max_version = d.U16();
  h.client = d.String();
  if (d.ok() && d.remaining() > 0) {
    if (h.max_version < static_cast<uint16_t>(Version::kV2)) d.Fail("credentials in a HELLO of version 1");
    h.user = d.String();
    h.password = d.String();
    if (d.ok() && (h.user.empty() || h.user.size() > kMaxHelloUserBytes))
      d.Fail(fmt::format("HELLO user name of {} bytes (1-{})", h.user.size(), kMaxHelloUserBytes));
    if (d.ok() && h.password.size() > kMaxHelloPasswordBytes)
      d.Fail(fmt::format("HELLO password of {} bytes (at most {})", h.password.size(), kMaxHelloPasswordBytes));
  }
  return h;
}

void HelloOk::EncodeBody(Encoder& e) const {
  e.U16(version);
  e.U32(max_frame_bytes);
  e.U32(max_message_bytes);
  e.String(node);
}
Result<HelloOk> HelloOk::DecodeBody(Decoder& d) {
  HelloOk h;
  h.version = d.U16();
  h.max_frame_bytes = d.U32();
  h.max_message_bytes = d.U32();
  h.node = d.String();
  return h;
}

void Error::EncodeBody(Encoder& e) const {
  e.U16(static_cast<uint16_t>(code));
  e.U8(retriable ? 1 : 0);
  e.String(message);
  e.String(redirect);
}
Result<Error> Error::DecodeBody(Decoder& d) {
  Error x;
  x.code = static_cast<WireError>(d.U16());
  x.retriable = d.U8() != 0;
  x.message = d.String();
  x.redirect = d.String();
  return x;
}

// --- Sessions ----------------------------------------------------------------

void SessionOpen::EncodeBody(Encoder& e) const {
  e.U64(session_id);
  e.U8(static_cast<uint8_t>(role));
  e.String(stream);
  e.String(consumer);
  e.U8(static_cast<uint8_t>(start_at));
  e.U64(start_value);
}
Result<SessionOpen> SessionOpen::DecodeBody(Decoder& d) {
  SessionOpen s;
  s.session_id = d.U64();
  const uint8_t role = d.U8();
  if (d.ok() && role != 1 && role != 2) d.Fail("unknown session role");
  s.role = static_cast<Role>(role);
  s.stream = d.String();
  s.consumer = d.String();
  const uint8_t start = d.U8();
  if (d.ok() && start > 3) d.Fail("unknown consumer start");
  s.start_at = static_cast<StartAt>(start);
  s.start_value = d.U64();
  return s;
}

void SessionOk::EncodeBody(Encoder& e) const {
  e.U64(session_id);
  e.U64(epoch);
  e.U64(highest_producer_seq);
  e.U64(highest_seq);
  e.U64(ack_floor);
  e.U64(chunk_producer_seq);
  e.U64(chunk_bytes);
  e.U32(static_cast<uint32_t>(pending.size()));
  for (const auto& p : pending) {
    e.U64(p.seq);
    e.U32(p.delivery_count);
  }
}
Result<SessionOk> SessionOk::DecodeBody(Decoder& d) {
  SessionOk s;
  s.session_id = d.U64();
  s.epoch = d.U64();
  s.highest_producer_seq = d.U64();
  s.highest_seq = d.U64();
  s.ack_floor = d.U64();
  s.chunk_producer_seq = d.U64();
  s.chunk_bytes = d.U64();
  const uint32_t n = d.Count(12);
  s.pending.resize(n);
  for (auto& p : s.pending) {
    p.seq = d.U64();
    p.delivery_count = d.U32();
  }
  return s;
}

// --- Large messages ------------------------------------------------------------

void PublishChunk::EncodeBody(Encoder& e) const {
  e.U64(producer_seq);
  e.U64(total_size);
  e.U64(offset);
  e.Blob(key);
  e.Blob(headers);
  e.Blob(data);
}
Result<PublishChunk> PublishChunk::DecodeBody(Decoder& d) {
  PublishChunk c;
  c.producer_seq = d.U64();
  c.total_size = d.U64();
  c.offset = d.U64();
  c.key = d.Blob();
  c.headers = d.Blob();
  c.data = d.Blob();
  if (d.ok() && (c.offset > c.total_size || c.data.size() > c.total_size - c.offset))
    d.Fail("chunk extends past the message's total size");
  return c;
}

void DeadLetter::EncodeBody(Encoder& e) const {
  e.String(stream);
  e.String(source_stream);
  e.String(consumer);
  e.U64(source_seq);
  e.Blob(key);
  e.Blob(headers);
  e.Blob(payload);
}
Result<DeadLetter> DeadLetter::DecodeBody(Decoder& d) {
  DeadLetter m;
  m.stream = d.String();
  m.source_stream = d.String();
  m.consumer = d.String();
  m.source_seq = d.U64();
  m.key = d.Blob();
  m.headers = d.Blob();
  m.payload = d.Blob();
  return m;
}

void ChunkAck::EncodeBody(Encoder& e) const {
  e.U64(producer_seq);
  e.U16(static_cast<uint16_t>(code));
  e.U64(durable_bytes);
  e.U64(seq);
  e.U8(duplicate ? 1 : 0);
}
Result<ChunkAck> ChunkAck::DecodeBody(Decoder& d) {
  ChunkAck a;
  a.producer_seq = d.U64();
  a.code = static_cast<WireError>(d.U16());
  a.durable_bytes = d.U64();
  a.seq = d.U64();
  a.duplicate = d.U8() != 0;
  return a;
}

void FetchChunk::EncodeBody(Encoder& e) const {
  e.U64(seq);
  e.U64(offset);
  e.U32(max_bytes);
}
Result<FetchChunk> FetchChunk::DecodeBody(Decoder& d) {
  FetchChunk f;
  f.seq = d.U64();
  f.offset = d.U64();
  f.max_bytes = d.U32();
  return f;
}

void Chunk::EncodeBody(Encoder& e) const {
  e.U64(seq);
  e.U64(total_size);
  e.U64(offset);
  e.Blob(data);
}
Result<Chunk> Chunk::DecodeBody(Decoder& d) {
  Chunk c;
  c.seq = d.U64();
  c.total_size = d.U64();
  c.offset = d.U64();
  c.data = d.Blob();
  if (d.ok() && (c.offset > c.total_size || c.data.size() > c.total_size - c.offset))
    d.Fail("chunk extends past the message's total size");
  return c;
}

// --- Publish -----------------------------------------------------------------

void Publish::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(messages.size()));
  for (const auto& m : messages) {
    e.U64(m.producer_seq);
    e.Blob(m.key);
    e.Blob(m.headers);
    e.Blob(m.payload);
  }
}
Result<Publish> Publish::DecodeBody(Decoder& d) {
  Publish p;
  const uint32_t n = d.Count(20);
  p.messages.resize(n);
  for (auto& m : p.messages) {
    m.producer_seq = d.U64();
    m.key = d.Blob();
    m.headers = d.Blob();
    m.payload = d.Blob();
  }
  if (d.ok() && n == 0) d.Fail("publish of no messages");
  return p;
}

void PublishAck::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(results.size()));
  for (const auto& r : results) {
    e.U64(r.producer_seq);
    e.U16(static_cast<uint16_t>(r.code));
    e.U8(r.duplicate ? 1 : 0);
    e.U64(r.seq);
  }
}
Result<PublishAck> PublishAck::DecodeBody(Decoder& d) {
  PublishAck a;
  const uint32_t n = d.Count(19);
  a.results.resize(n);
  for (auto& r : a.results) {
    r.producer_seq = d.U64();
    r.code = static_cast<WireError>(d.U16());
    r.duplicate = d.U8() != 0;
    r.seq = d.U64();
  }
  return a;
}

// --- Consuming ---------------------------------------------------------------

void Fetch::EncodeBody(Encoder& e) const {
  e.U32(max_messages);
  e.U32(max_bytes);
  e.U32(wait_ms);
}
Result<Fetch> Fetch::DecodeBody(Decoder& d) {
  Fetch f;
  f.max_messages = d.U32();
  f.max_bytes = d.U32();
  f.wait_ms = d.U32();
  return f;
}

void Subscribe::EncodeBody(Encoder& e) const { e.U32(credit); }
Result<Subscribe> Subscribe::DecodeBody(Decoder& d) { return Subscribe{.credit = d.U32()}; }
void Credit::EncodeBody(Encoder& e) const { e.U32(credit); }
Result<Credit> Credit::DecodeBody(Decoder& d) { return Credit{.credit = d.U32()}; }

void Delivery::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(entries.size()));
  for (const auto& x : entries) {
    e.U8(static_cast<uint8_t>(x.kind));
    e.U64(x.seq);
    if (x.kind == Delivered::Kind::kGap) {
      e.U64(x.gap_count);
      continue;
    }
    e.U32(x.delivery_count);
    e.I64(x.timestamp_us);
    e.Blob(x.key);
    e.Blob(x.headers);
    if (x.kind == Delivered::Kind::kLarge) e.U64(x.large_size);
    else e.Blob(x.payload);
  }
}
Result<Delivery> Delivery::DecodeBody(Decoder& d) {
  Delivery v;
  const uint32_t n = d.Count(17);
  v.entries.resize(n);
  for (auto& x : v.entries) {
    const uint8_t kind = d.U8();
    x.seq = d.U64();
    if (kind == static_cast<uint8_t>(Delivered::Kind::kGap)) {
      x.kind = Delivered::Kind::kGap;
      x.gap_count = d.U64();
      continue;
    }
    if (kind != static_cast<uint8_t>(Delivered::Kind::kMessage) &&
        kind != static_cast<uint8_t>(Delivered::Kind::kLarge)) {
      d.Fail("unknown delivery kind");
      break;
    }
    x.kind = static_cast<Delivered::Kind>(kind);
    x.delivery_count = d.U32();
    x.timestamp_us = d.I64();
    x.key = d.Blob();
    x.headers = d.Blob();
    if (x.kind == Delivered::Kind::kLarge) x.large_size = d.U64();
    else x.payload = d.Blob();
  }
  return v;
}

void Answer::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(items.size()));
  for (const auto& a : items) {
    e.U64(a.seq);
    e.U8(static_cast<uint8_t>(a.kind));
    e.U32(a.delay_ms);
  }
}
Result<Answer> Answer::DecodeBody(Decoder& d) {
  Answer a;
  const uint32_t n = d.Count(13);
  a.items.resize(n);
  for (auto& x : a.items) {
    x.seq = d.U64();
    const uint8_t kind = d.U8();
    if (d.ok() && (kind < 1 || kind > 4)) d.Fail("unknown answer kind");
    x.kind = static_cast<AnswerKind>(kind);
    x.delay_ms = d.U32();
  }
  return a;
}

void AnswerOk::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(results.size()));
  for (const auto& r : results) {
    e.U64(r.seq);
    e.U16(static_cast<uint16_t>(r.code));
  }
}
Result<AnswerOk> AnswerOk::DecodeBody(Decoder& d) {
  AnswerOk a;
  const uint32_t n = d.Count(10);
  a.results.resize(n);
  for (auto& r : a.results) {
    r.seq = d.U64();
    r.code = static_cast<WireError>(d.U16());
  }
  return a;
}

// --- Admin -------------------------------------------------------------------


// The MQTT topic filters follow the config (docs/protocol.md): present only
// when there are some, so a frame without them is the same bytes as before.
static void EncodeMqttTopics(Encoder& e, const StreamConfig& c) {
  if (c.mqtt_topics.empty()) return;
  e.U32(static_cast<uint32_t>(c.mqtt_topics.size()));
  for (const auto& t : c.mqtt_topics) e.String(t);
}
static void DecodeMqttTopics(Decoder& d, StreamConfig* c) {
  if (d.remaining() == 0) return;
  const uint32_t n = d.Count(2);
  for (uint32_t i = 0; i < n && d.ok(); ++i) c->mqtt_topics.emplace_back(d.String());
}

void StreamCreate::EncodeBody(Encoder& e) const {
  e.String(name);
  EncodeStreamConfigFields(e, config);
  EncodeMqttTopics(e, config);
}
Result<StreamCreate> StreamCreate::DecodeBody(Decoder& d) {
  StreamCreate c;
  c.name = d.String();
  c.config = DecodeStreamConfigFields(d);
  DecodeMqttTopics(d, &c.config);
  return c;
}

void StreamDelete::EncodeBody(Encoder& e) const { e.String(name); }
Result<StreamDelete> StreamDelete::DecodeBody(Decoder& d) { return StreamDelete{.name = d.String()}; }
void StreamInfo::EncodeBody(Encoder& e) const { e.String(name); }
Result<StreamInfo> StreamInfo::DecodeBody(Decoder& d) { return StreamInfo{.name = d.String()}; }

void StreamListOk::EncodeBody(Encoder& e) const {
  e.U32(static_cast<uint32_t>(names.size()));
  for (auto n : names) e.String(n);
}
Result<StreamListOk> StreamListOk::DecodeBody(Decoder& d) {
  StreamListOk l;
  const uint32_t n = d.Count(2);
  l.names.resize(n);
  for (auto& x : l.names) x = d.String();
  return l;
}

void StreamInfoOk::EncodeBody(Encoder& e) const {
  e.String(name);
  EncodeStreamConfigFields(e, config);
  e.U64(first_seq);
  e.U64(frontier);
  e.U64(bytes);
  e.U32(static_cast<uint32_t>(consumers.size()));
  for (const auto& c : consumers) {
    e.String(c.name);
    e.U64(c.ack_floor);
    e.U64(c.next_seq);
    e.U32(c.pending);
    e.U64(c.lag);
  }
  EncodeMqttTopics(e, config);
}
Result<StreamInfoOk> StreamInfoOk::DecodeBody(Decoder& d) {
  StreamInfoOk s;
  s.name = d.String();
  s.config = DecodeStreamConfigFields(d);
  s.first_seq = d.U64();
  s.frontier = d.U64();
  s.bytes = d.U64();
  const uint32_t n = d.Count(30);
  s.consumers.resize(n);
  for (auto& c : s.consumers) {
    c.name = d.String();
    c.ack_floor = d.U64();
    c.next_seq = d.U64();
    c.pending = d.U32();
    c.lag = d.U64();
  }
  DecodeMqttTopics(d, &s.config);
  return s;
}


}  // namespace floe::wire
