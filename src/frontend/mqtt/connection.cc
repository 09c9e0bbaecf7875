#include "frontend/mqtt/connection.h"

#include <random>

#include <fmt/format.h>

#include "base/codec.h"
#include "base/coding.h"
#include "log/batch.h"
#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::PacketType;
using codec::ReasonCode;
using codec::Version;

namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bytes queued for a client before delivery waits for its socket.
constexpr size_t kMaxOutbox = 1 << 20;
// A closing connection whose peer does not read is cut after this.
constexpr int kCloseGraceMs = 2000;

// Headers a stored MQTT message carries (docs/mqtt.md "Messages"); a user
// property whose name begins with "mqtt." is stored as "mqtt.user." + name.
constexpr std::string_view kTopic = "mqtt.topic";
constexpr std::string_view kQos = "mqtt.qos";
constexpr std::string_view kRetain = "mqtt.retain";
constexpr std::string_view kClient = "mqtt.client";  // the publisher's client hash (No Local)
constexpr std::string_view kPayloadFormat = "mqtt.payload-format";
constexpr std::string_view kContentType = "mqtt.content-type";
constexpr std::string_view kResponseTopic = "mqtt.response-topic";
constexpr std::string_view kCorrelation = "mqtt.correlation-data";
constexpr std::string_view kExpiresAt = "mqtt.expires-at-ms";  // wall clock, ms since the epoch
constexpr std::string_view kUserEscape = "mqtt.user.";

void PutHeader(std::string* out, std::string_view name, std::string_view value) {
  PutFixed16(out, static_cast<uint16_t>(name.size()));
  out->append(name);
  PutFixed32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex(uint64_t v) { return fmt::format("{:016x}", v); }

// A stored message, read back from its headers.
struct Stored {
  std::string_view topic;
  uint8_t qos = 0;
  bool retain = false;
  std::string_view client;
  codec::Properties properties;
  std::vector<std::string> user_names;  // unescaped names (views into these)
  int64_t expires_at_ms = 0;
};

Stored ParseStored(std::string_view headers, std::string_view stream) {
  struct Ctx {
    Stored* s;
  } ctx{};
  Stored s;
  s.topic = stream;  // a message without a topic (from the floe protocol) is on the stream's name
  ctx.s = &s;
  s.user_names.reserve(8);
  (void)log::ParseHeaders(
      headers,
      [](void* c, std::string_view name, std::string_view value) {
        Stored& s = *static_cast<Ctx*>(c)->s;
        if (name == kTopic) s.topic = value;
        else if (name == kQos) s.qos = value == "2" ? 2 : value == "1" ? 1 : 0;
        else if (name == kRetain) s.retain = value == "1";
        else if (name == kClient) s.client = value;
        else if (name == kPayloadFormat) s.properties.payload_format_indicator = value == "1" ? 1 : 0;
        else if (name == kContentType) s.properties.content_type = value;
        else if (name == kResponseTopic) s.properties.response_topic = value;
        else if (name == kCorrelation) s.properties.correlation_data = value;
        else if (name == kExpiresAt) s.expires_at_ms = std::strtoll(std::string(value).c_str(), nullptr, 10);
        else if (name.starts_with(kUserEscape)) s.properties.user_properties.push_back({name.substr(kUserEscape.size()), value});
        else if (!name.starts_with("mqtt.") && !name.starts_with("floe.")) s.properties.user_properties.push_back({name, value});
      },
      &ctx);
  return s;
}

// The reason a PUBACK / PUBREC carries for a core outcome.
ReasonCode ReasonOf(broker::Code c) {
  switch (c) {
    case broker::Code::kOk: return ReasonCode::kSuccess;
    case broker::Code::kMessageTooLarge: return ReasonCode::kPacketTooLarge;
    case broker::Code::kInvalidArgument: return ReasonCode::kPayloadFormatInvalid;
    case broker::Code::kTooManyInFlight: return ReasonCode::kQuotaExceeded;
    case broker::Code::kNotOwner: return ReasonCode::kUseAnotherServer;
    case broker::Code::kShuttingDown: return ReasonCode::kServerShuttingDown;
    case broker::Code::kUnavailable:
    case broker::Code::kStorageFailed:
    case broker::Code::kStreamReadOnly:
    case broker::Code::kNoSpace: return ReasonCode::kImplementationSpecificError;
    default: return ReasonCode::kUnspecifiedError;
  }
}

// The core session ids of a client identifier: its producer's (odd) and
// its consumer's of one generation (even), stable across nodes.
uint64_t ConsumerSessionId(std::string_view client_id, uint64_t generation) {
  const uint64_t h = ClientHash(fmt::format("{}\n{}", client_id, generation)) & ~uint64_t{1};
  return h == 0 ? 2 : h;
}

}  // namespace

uint64_t ClientHash(std::string_view client_id) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : std::string_view("floe.mqtt")) h = (h ^ c) * 0x100000001b3ull;
  h = (h ^ 0) * 0x100000001b3ull;
  for (unsigned char c : client_id) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  Encoder e(&out);
  e.U8(2);  // record version
  e.String(r.client_id);
  e.U64(r.generation);
  e.U32(r.expiry_s);
  e.U32(static_cast<uint32_t>(r.subscriptions.size()));
  for (const auto& s : r.subscriptions) {
    e.String(s.filter);
    e.U8(s.options.max_qos);
    e.U8(s.options.no_local);
    e.U8(s.options.retain_as_published);
    e.U8(static_cast<uint8_t>(s.options.retain_handling));
    e.U32(s.identifier);
    e.I64(s.since_us);
  }
  return out;
}

Result<SessionRecord> DecodeSessionRecord(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  SessionRecord r;
  if (d.U8() != 2) return Err(Status::Corruption("MQTT session record: unknown version"));
  r.client_id = std::string(d.String());
  r.generation = d.U64();
  r.expiry_s = d.U32();
  const uint32_t n = d.Count(17);
  for (uint32_t i = 0; i < n && d.ok(); ++i) {
    SessionRecord::Sub s;
    s.filter = std::string(d.String());
    s.options.max_qos = d.U8();
    s.options.no_local = d.U8() != 0;
    s.options.retain_as_published = d.U8() != 0;
    s.options.retain_handling = static_cast<codec::RetainHandling>(d.U8() % 3);
    s.identifier = d.U32();
    s.since_us = d.I64();
    r.subscriptions.push_back(std::move(s));
  }
  FLOE_RETURN_ERR_IF_ERROR(d.Finish());
  return r;
}

Connection::Connection(broker::Broker* broker, const MqttOptions* options, asio::ip::tcp::socket socket)
    : broker_(broker),
      options_(options),
      socket_(std::move(socket)),
      strand_(socket_.get_executor()),
      splitter_(options->max_packet_size),
      keep_alive_timer_(strand_),
      push_wake_(strand_) {}

void Connection::Start() {
  accepted_at_ = last_packet_ = std::chrono::steady_clock::now();
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->ReadLoop(); }, asio::detached);
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->KeepAliveLoop(); }, asio::detached);
}

void Connection::StopReading() {
  // Publishes in flight still get their answers; CloseSoon (after the
  // node's Flush) sends DISCONNECT 0x8B.
  asio::post(strand_, [self = shared_from_this()] { self->reading_ = false; });
}

void Connection::CloseSoon() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->broker_->stopping()) return self->Disconnect(ReasonCode::kServerShuttingDown, "the node is stopping");
    // A newer connection of this client identifier took the session over.
    self->taken_over_ = true;
    self->Disconnect(ReasonCode::kSessionTakenOver, "another connection took this session over");
  });
}

void Connection::Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) {
  auto self = shared_from_this();
  asio::post(strand_, [self, stream, redirect] {
    const bool mine = (self->producer_ && self->producer_->on_stream(stream)) ||
                      (self->consumer_ && self->consumer_->on_stream(stream));
    if (!mine || self->closed_) return;
    self->server_reference_ = redirect;
    self->Disconnect(ReasonCode::kUseAnotherServer, "this node no longer serves the MQTT stream");
  });
}

awaitable<void> Connection::ReadLoop() {
  std::vector<char> buf(64 * 1024);
  while (reading_ && !closed_) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf), kNoThrow);
    if (ec || closed_) {
      if (!closed_) FinishClose();  // the client went without DISCONNECT: its will is sent
      co_return;
    }
    last_packet_ = std::chrono::steady_clock::now();
    std::span<const char> in(buf.data(), n);
    while (!in.empty() && reading_ && !close_after_write_ && !closed_) {
      const codec::FrameResult fr = splitter_.Feed(&in);
      if (fr.kind == codec::FrameResult::kNeedMore) break;
      if (fr.kind == codec::FrameResult::kMalformed) {
        Disconnect(ReasonCode::kMalformedPacket, "malformed Remaining Length");
        co_return;
      }
      if (fr.kind == codec::FrameResult::kTooLarge) {
        Disconnect(ReasonCode::kPacketTooLarge,
                   fmt::format("packet of {} bytes over the Maximum Packet Size {}", fr.size, options_->max_packet_size));
        co_return;
      }
      auto packet = codec::DecodePacket(splitter_.packet(), {.version = version_,
                                                             .sender = codec::Sender::kClient,
                                                             .max_packet_size = options_->max_packet_size});
      if (!packet) {
        if (!connected_) {
          // CONNECT refused: answered in the client's version when it said one.
          if (packet.error().protocol_level == 4) version_ = Version::kV311;
          codec::Connack ack{.reason = packet.error().reason};
          if (version_ == Version::kV311 && !codec::ToConnectReturnCode(ack.reason))
            ack.reason = ReasonCode::kUnsupportedProtocolVersion;
          if (packet.error().protocol_level != 0 && packet.error().protocol_level != 4 &&
              packet.error().protocol_level != 5) {
            version_ = Version::kV311;  // an unknown level is answered in 3.1.1 [MQTT-3.1.2-2]
            ack.reason = ReasonCode::kUnsupportedProtocolVersion;
          }
          Send(ack);
          CloseAfterWrite();
        } else {
          Disconnect(packet.error().reason, packet.error().message);
        }
        co_return;
      }
      if (!co_await Handle(*packet)) co_return;
    }
  }
}

awaitable<bool> Connection::Handle(codec::Packet& packet) {
  const PacketType type = codec::TypeOf(packet);
  if (!connected_ && type != PacketType::kConnect) {
    CloseAfterWrite();  // the first packet must be CONNECT [MQTT-3.1.0-1]
    co_return false;
  }
  switch (type) {
    case PacketType::kConnect:
      if (connected_) {
        Disconnect(ReasonCode::kProtocolError, "a second CONNECT");  // [MQTT-3.1.0-2]
        co_return false;
      }
      co_return co_await OnConnect(std::get<codec::Connect>(packet));
    case PacketType::kPublish:
      co_return OnPublish(std::get<codec::Publish>(packet));
    case PacketType::kPuback:
      OnDeliveryAnswer(std::get<codec::Puback>(packet).packet_id, type, std::get<codec::Puback>(packet).reason);
      co_return true;
    case PacketType::kPubrec:
      OnDeliveryAnswer(std::get<codec::Pubrec>(packet).packet_id, type, std::get<codec::Pubrec>(packet).reason);
      co_return true;
    case PacketType::kPubcomp:
      OnDeliveryAnswer(std::get<codec::Pubcomp>(packet).packet_id, type, std::get<codec::Pubcomp>(packet).reason);
      co_return true;
    case PacketType::kPubrel:
      OnPubrel(std::get<codec::Pubrel>(packet));
      co_return true;
    case PacketType::kSubscribe:
      co_return co_await OnSubscribe(std::get<codec::Subscribe>(packet));
    case PacketType::kUnsubscribe:
      co_await OnUnsubscribe(std::get<codec::Unsubscribe>(packet));
      co_return true;
    case PacketType::kPingreq:
      Send(codec::Pingresp{});
      co_return true;
    case PacketType::kDisconnect: {
      const auto& d = std::get<codec::Disconnect>(packet);
      if (d.properties.session_expiry_interval) {
        if (record_.expiry_s == 0 && *d.properties.session_expiry_interval != 0) {
          Disconnect(ReasonCode::kProtocolError, "session expiry set at DISCONNECT after 0 at CONNECT");  // [MQTT-3.14.2-2]
          co_return false;
        }
        record_.expiry_s = *d.properties.session_expiry_interval;
      }
      // A normal disconnection discards the will [MQTT-3.14.4-3]; 0x04 keeps it.
      if (d.reason != ReasonCode::kDisconnectWithWillMessage) will_.reset();
      FinishClose();
      co_return false;
    }
    case PacketType::kAuth:
      Disconnect(ReasonCode::kBadAuthenticationMethod, "no authentication method is supported");
      co_return false;
    default:
      Disconnect(ReasonCode::kProtocolError, fmt::format("{} is not sent by a client", codec::PacketTypeName(type)));
      co_return false;
  }
}

awaitable<bool> Connection::OnConnect(const codec::Connect& c) {
  version_ = c.version;
  keep_alive_s_ = c.keep_alive;
  if (c.properties.receive_maximum) client_receive_maximum_ = *c.properties.receive_maximum;
  if (c.properties.maximum_packet_size) client_max_packet_ = *c.properties.maximum_packet_size;
  codec::Connack ack;
  std::string assigned;
  client_id_ = std::string(c.client_id);
  if (client_id_.empty()) {
    if (version_ == Version::kV311 && !c.clean_start) {
      ack.reason = ReasonCode::kClientIdentifierNotValid;  // [MQTT-3.1.3-8]
      Send(ack);
      CloseAfterWrite();
      co_return false;
    }
    std::random_device rd;
    client_id_ = assigned = fmt::format("floe-{:016x}", (uint64_t{rd()} << 32) | rd());
  }
  if (c.will && c.will->retain && version_ == Version::kV5) {
    ack.reason = ReasonCode::kRetainNotSupported;  // Retain Available is 0 [MQTT-3.2.2-13]
    Send(ack);
    CloseAfterWrite();
    co_return false;
  }
  if (c.will) {
    will_ = Will{std::string(c.will->topic), std::string(c.will->payload), c.will->qos, c.will->retain};
  }
  // 3.1.1: CleanSession 0 keeps the session for ever; MQTT 5: the Session
  // Expiry Interval says how long (0 by default: it ends with the connection).
  const uint32_t expiry = version_ == Version::kV311 ? (c.clean_start ? 0 : 0xFFFFFFFFu)
                                                     : c.properties.session_expiry_interval.value_or(0);
  // The MQTT stream: created on first use (an existing one is kept).
  auto created = co_await AwaitCore<broker::Outcome<void>>([&](auto done) {
    broker_->CreateStream(options_->stream,
                          StreamConfig{.ack_wait_ms = kMaxAckWaitMs, .max_deliveries = 0}, std::move(done));
  });
  if (closed_) co_return false;
  if (!created && created.error().code != broker::Code::kStreamExists &&
      created.error().code != broker::Code::kNotOwner) {
    ack.reason = ReasonCode::kServerUnavailable;
    if (version_ == Version::kV5) ack.properties.reason_string = created.error().message;
    Send(ack);
    CloseAfterWrite();
    co_return false;
  }
  const std::string key = "mqtt/" + Hex(ClientHash(client_id_));
  auto stored = co_await AwaitCore<broker::Outcome<std::optional<std::string>>>(
      [&](auto done) { broker_->ReadRecord(key, std::move(done)); });
  if (closed_) co_return false;
  if (!stored) {
    ack.reason = ReasonCode::kServerUnavailable;  // not knowing the session is not "no session"
    if (version_ == Version::kV5) ack.properties.reason_string = stored.error().message;
    Send(ack);
    CloseAfterWrite();
    co_return false;
  }
  bool session_present = false;
  // A new session's generation is never one used before for this client id
  // (an ended session's record is gone): its consumer starts empty.
  std::random_device rd;
  uint64_t generation = (static_cast<uint64_t>(WallMs()) << 12) | (rd() & 0xfff);
  if (*stored) {
    auto prior = DecodeSessionRecord(**stored);
    if (prior && prior->client_id == client_id_) {
      if (!c.clean_start) {
        record_ = std::move(*prior);
        session_present = true;
      } else {
        generation = std::max(generation, prior->generation + 1);  // a clean start: the old state discarded
      }
    }
  }
  if (!session_present) {
    record_ = SessionRecord{};
    record_.client_id = client_id_;
    record_.generation = generation;
  }
  record_.expiry_s = expiry;
  if (!co_await OpenCoreSessions(!session_present, &session_present)) co_return false;
  Status saved = co_await SaveRecord();
  if (closed_) co_return false;
  if (!saved.ok()) {
    const Status& s = saved;
    ack.reason = ReasonCode::kServerUnavailable;
    if (version_ == Version::kV5) ack.properties.reason_string = s.ToString();
    Send(ack);
    CloseAfterWrite();
    co_return false;
  }
  connected_ = true;
  ack.session_present = session_present;
  if (version_ == Version::kV5) {
    ack.properties.receive_maximum = options_->receive_maximum;
    ack.properties.maximum_packet_size = options_->max_packet_size;
    ack.properties.topic_alias_maximum = options_->topic_alias_maximum;
    ack.properties.retain_available = 0;
    ack.properties.shared_subscription_available = 0;
    if (!assigned.empty()) ack.properties.assigned_client_identifier = assigned_id_ = assigned;
  }
  Send(ack);
  keep_alive_timer_.cancel();  // from the CONNECT timeout to the keep alive
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->PushLoop(); }, asio::detached);
  co_return true;
}

awaitable<bool> Connection::OpenCoreSessions(bool fresh, bool* session_present) {
  const uint64_t h = ClientHash(client_id_);
  auto refuse = [&](const broker::Failure& f) {
    codec::Connack ack;
    if (f.code == broker::Code::kNotOwner && !f.redirect.empty() && version_ == Version::kV5) {
      ack.reason = ReasonCode::kUseAnotherServer;  // the node serving the MQTT stream
      ack.properties.server_reference = f.redirect;
    } else {
      ack.reason = ReasonCode::kServerUnavailable;
    }
    if (version_ == Version::kV5) ack.properties.reason_string = f.message;
    Send(ack);
    CloseAfterWrite();
  };
  auto self = shared_from_this();
  // The producer: one per client identifier, resumed across connections (its
  // producer seqs continue).
  auto p = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
    broker_->OpenSession(self, {.session_id = SessionId(h | 1), .role = Role::kProducer, .stream = options_->stream},
                         std::move(done));
  });
  if (p && closed_) p->session->Close();  // closed meanwhile (a takeover): FinishClose did not see it
  if (closed_) co_return false;
  if (!p) {
    refuse(p.error());
    co_return false;
  }
  producer_ = p->session;
  next_producer_seq_ = p->grant.highest_producer_seq.value() + 1;
  // The consumer: the session's durable consumer, named by its generation.
  auto c = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
    broker_->OpenSession(self,
                         {.session_id = SessionId(ConsumerSessionId(client_id_, record_.generation)),
                          .role = Role::kConsumer,
                          .stream = options_->stream,
                          .consumer = fmt::format("mqtt.{}.{}", Hex(h), record_.generation),
                          .start_at = StartAt::kNew},
                         std::move(done));
  });
  if (c && closed_) c->session->Close();
  if (closed_) co_return false;
  if (!c) {
    refuse(c.error());
    co_return false;
  }
  consumer_ = c->session;
  if (fresh) *session_present = false;
  co_return true;
}

awaitable<Status> Connection::SaveRecord() {
  auto r = co_await AwaitCore<broker::Outcome<void>>([&](auto done) {
    broker_->WriteRecord("mqtt/" + Hex(ClientHash(client_id_)), EncodeSessionRecord(record_), std::move(done));
  });
  co_return r ? Status::OK() : Status::Unavailable(r.error().message);
}

bool Connection::OnPublish(codec::Publish& p) {
  // Topic aliases [MQTT-3.3.2-7 ...]: a PUBLISH may set one, or use one.
  std::string topic(p.topic);
  if (p.properties.topic_alias) {
    const uint16_t alias = *p.properties.topic_alias;
    if (alias == 0 || alias > options_->topic_alias_maximum) {
      Disconnect(ReasonCode::kTopicAliasInvalid, fmt::format("topic alias {} outside 1..{}", alias,
                                                             options_->topic_alias_maximum));
      return false;
    }
    if (topic.empty()) {
      auto it = topic_aliases_.find(alias);
      if (it == topic_aliases_.end()) {
        Disconnect(ReasonCode::kProtocolError, fmt::format("topic alias {} was never set", alias));
        return false;
      }
      topic = it->second;
    } else {
      topic_aliases_[alias] = topic;
    }
  }
  if (topic.empty()) {
    Disconnect(ReasonCode::kProtocolError, "PUBLISH without a topic");
    return false;
  }
  if (p.retain && version_ == Version::kV5) {
    Disconnect(ReasonCode::kRetainNotSupported, "this node does not keep retained messages yet");  // [MQTT-3.3.1-14]
    return false;
  }
  if (p.qos == 2) {
    auto known = inbound_qos2_.find(p.packet_id);
    if (known != inbound_qos2_.end()) {
      // A resend: stored already (its PUBREC was lost) — answered again — or
      // still being written — answered when that resolves. Not stored twice.
      if (known->second) Send(codec::Pubrec{{p.packet_id, ReasonCode::kSuccess, {}}});
      return true;
    }
    inbound_qos2_[p.packet_id] = false;
  }
  if (p.qos > 0 && ++inbound_inflight_ > options_->receive_maximum) {
    Disconnect(ReasonCode::kReceiveMaximumExceeded,
               fmt::format("more than {} QoS 1 and 2 PUBLISHes unacknowledged", options_->receive_maximum));
    return false;
  }
  std::string headers;
  PutHeader(&headers, kTopic, topic);
  PutHeader(&headers, kQos, p.qos == 2 ? "2" : p.qos == 1 ? "1" : "0");
  if (p.retain) PutHeader(&headers, kRetain, "1");
  PutHeader(&headers, kClient, Hex(ClientHash(client_id_)));
  const codec::Properties& pr = p.properties;
  if (pr.payload_format_indicator) PutHeader(&headers, kPayloadFormat, *pr.payload_format_indicator ? "1" : "0");
  if (pr.content_type) PutHeader(&headers, kContentType, *pr.content_type);
  if (pr.response_topic) PutHeader(&headers, kResponseTopic, *pr.response_topic);
  if (pr.correlation_data) PutHeader(&headers, kCorrelation, *pr.correlation_data);
  if (pr.message_expiry_interval)
    PutHeader(&headers, kExpiresAt, std::to_string(WallMs() + int64_t{*pr.message_expiry_interval} * 1000));
  for (const auto& up : pr.user_properties) {
    if (up.name.starts_with("mqtt.") || up.name.starts_with("floe.")) PutHeader(&headers, std::string(kUserEscape) + std::string(up.name), up.value);
    else PutHeader(&headers, up.name, up.value);
  }
  const broker::PublishInput in{ProducerSeq(next_producer_seq_++), {}, headers, p.payload};
  const uint8_t qos = p.qos;
  const uint16_t id = p.packet_id;
  auto self = shared_from_this();
  producer_->Publish({&in, 1}, p.payload.size(), [self, qos, id](broker::PublishOutcome out) {
    const broker::Code code = out.fenced ? broker::Code::kNotOwner : out.results[0].code;
    asio::post(self->strand_, [self, qos, id, code] {
      // MQTT clients do not resend in producer-seq order (and never resend
      // QoS 0): a message not stored must not hold the later ones back.
      if (code != broker::Code::kOk && !self->closed_) self->producer_->ForgetUnstored();
      if (qos == 0 || self->closed_) return;
      --self->inbound_inflight_;
      const ReasonCode reason = ReasonOf(code);
      if (qos == 2) {
        if (codec::IsFailure(reason)) self->inbound_qos2_.erase(id);
        else self->inbound_qos2_[id] = true;
      }
      if (self->version_ == Version::kV311 && codec::IsFailure(reason)) {
        // 3.1.1 has no failure in PUBACK: closing is the only way to say the
        // message was not stored; the client resends it on reconnect.
        return self->CloseAfterWrite();
      }
      if (qos == 1) return self->Send(codec::Puback{{id, reason, {}}});
      self->Send(codec::Pubrec{{id, reason, {}}});
    });
  });
  return true;
}

void Connection::OnPubrel(const codec::Pubrel& p) {
  // A PUBREL for an id this connection does not know is a resend after a
  // reconnect (its PUBREC was sent, so the message is stored): completed.
  inbound_qos2_.erase(p.packet_id);
  Send(codec::Pubcomp{{p.packet_id, ReasonCode::kSuccess, {}}});
}

void Connection::OnDeliveryAnswer(uint16_t packet_id, PacketType type, ReasonCode reason) {
  auto it = outgoing_.find(packet_id);
  if (it == outgoing_.end()) return;  // unknown: nothing to answer [MQTT-4.3.3]
  Outgoing& o = it->second;
  if (type == PacketType::kPubrec) {
    if (o.qos != 2) return;
    if (codec::IsFailure(reason)) {
      // The client refused it: done as far as MQTT goes.
      Ack(o.seq);
    } else {
      o.released = true;
      Send(codec::Pubrel{{packet_id, ReasonCode::kSuccess, {}}});
      return;
    }
  } else if (type == PacketType::kPuback ? o.qos != 1 : (o.qos != 2 || !o.released)) {
    return;
  } else {
    Ack(o.seq);
  }
  packet_of_seq_.erase(o.seq);
  outgoing_.erase(it);
  WakePush();
}

awaitable<bool> Connection::OnSubscribe(const codec::Subscribe& s) {
  codec::Suback ack{.packet_id = s.packet_id};
  const SessionRecord before = record_;
  const int64_t now_us = WallMs() * 1000;
  const uint32_t identifier = s.properties.subscription_identifiers.empty() ? 0 : s.properties.subscription_identifiers[0];
  for (const codec::Subscription& sub : s.subscriptions) {
    if (codec::SplitSharedFilter(sub.filter) && version_ == Version::kV5) {
      ack.reasons.push_back(ReasonCode::kSharedSubscriptionsNotSupported);
      continue;
    }
    auto it = std::find_if(record_.subscriptions.begin(), record_.subscriptions.end(),
                           [&](const SessionRecord::Sub& x) { return x.filter == sub.filter; });
    SessionRecord::Sub entry{std::string(sub.filter), sub.options, identifier, now_us};
    if (it != record_.subscriptions.end()) {
      entry.since_us = it->since_us;  // replaces the existing one, which goes on [MQTT-3.8.4-3]
      *it = entry;
    } else {
      record_.subscriptions.push_back(entry);
    }
    ack.reasons.push_back(static_cast<ReasonCode>(sub.options.max_qos));
  }
  // Durable before SUBACK: a session resumed elsewhere has its subscriptions.
  if (Status st = co_await SaveRecord(); !st.ok()) {
    record_ = before;  // refused: not delivered for either
    for (auto& r : ack.reasons)
      if (!codec::IsFailure(r)) r = ReasonCode::kUnspecifiedError;
  }
  if (closed_) co_return false;
  Send(ack);
  WakePush();
  co_return true;
}

awaitable<void> Connection::OnUnsubscribe(const codec::Unsubscribe& u) {
  codec::Unsuback ack{.packet_id = u.packet_id};
  const SessionRecord before = record_;
  for (std::string_view f : u.filters) {
    auto it = std::find_if(record_.subscriptions.begin(), record_.subscriptions.end(),
                           [&](const SessionRecord::Sub& x) { return x.filter == f; });
    if (it == record_.subscriptions.end()) {
      ack.reasons.push_back(ReasonCode::kNoSubscriptionExisted);
    } else {
      record_.subscriptions.erase(it);
      ack.reasons.push_back(ReasonCode::kSuccess);
    }
  }
  if (Status st = co_await SaveRecord(); !st.ok()) {
    record_ = before;
    // 3.1.1 has no failure in UNSUBACK: closing says it did not happen.
    if (version_ == Version::kV311) co_return CloseAfterWrite();
    for (auto& r : ack.reasons) r = ReasonCode::kUnspecifiedError;
  }
  if (closed_) co_return;
  Send(ack);
}

void Connection::Ack(uint64_t seq) {
  if (!consumer_) return;
  const broker::AnswerInput a{StreamSeq(seq), AnswerKind::kAck, 0};
  consumer_->Answer({&a, 1}, [](broker::Outcome<std::vector<broker::Code>>) {});
}

void Connection::WakePush() {
  wake_ = true;
  push_wake_.cancel();
}

awaitable<void> Connection::PushLoop() {
  while (!closed_ && !close_after_write_) {
    if (!consumer_->serving()) {
      Disconnect(ReasonCode::kUseAnotherServer, "this node no longer serves the MQTT stream");
      co_return;
    }
    const size_t room = client_receive_maximum_ > outgoing_.size() ? client_receive_maximum_ - outgoing_.size() : 0;
    // A client that does not read (QoS 0 has no window) holds at most
    // kMaxOutbox bytes here: the loop waits for the socket.
    const bool writable = outbox_.size() + sending_.size() < kMaxOutbox;
    if (!record_.subscriptions.empty() && room > 0 && writable) {
      auto batch = consumer_->Deliver(static_cast<uint32_t>(std::min<size_t>(room, 256)), 1 << 20);
      if (!batch) {
        Disconnect(ReasonCode::kUseAnotherServer, batch.error().message);
        co_return;
      }
      if (!batch->entries.empty()) {
        std::vector<broker::AnswerInput> skip;  // matched no subscription, QoS 0, expired, or a gap
        const int64_t now_ms = WallMs();
        for (const broker::Delivered& e : batch->entries) {
          if (e.kind != broker::Delivered::Kind::kMessage) {
            if (e.kind == broker::Delivered::Kind::kLarge) skip.push_back({e.seq, AnswerKind::kAck, 0});
            continue;  // gaps need no answer; large messages are not carried over MQTT
          }
          Stored m = ParseStored(e.headers, options_->stream);
          if (m.expires_at_ms > 0 && m.expires_at_ms <= now_ms) {
            skip.push_back({e.seq, AnswerKind::kAck, 0});  // expired [MQTT-3.3.2-5]
            continue;
          }
          int qos = -1;
          std::vector<uint32_t> ids;
          bool retain = false;
          for (const auto& sub : record_.subscriptions) {
            if (e.timestamp_us < sub.since_us) continue;  // stored before the subscription was made
            if (!codec::TopicMatches(sub.filter, m.topic)) continue;
            if (sub.options.no_local && m.client == Hex(ClientHash(client_id_))) continue;  // [MQTT-3.8.3-3]
            qos = std::max<int>(qos, std::min<int>(sub.options.max_qos, m.qos));
            if (sub.identifier) ids.push_back(sub.identifier);
            retain = retain || (sub.options.retain_as_published && m.retain);
          }
          if (qos < 0) {
            skip.push_back({e.seq, AnswerKind::kAck, 0});
            continue;
          }
          codec::Publish out;
          out.topic = m.topic;
          out.qos = static_cast<uint8_t>(qos);
          out.retain = retain;
          out.payload = e.payload;
          if (version_ == Version::kV5) {
            out.properties = m.properties;
            out.properties.subscription_identifiers = ids;
            if (m.expires_at_ms > 0)
              out.properties.message_expiry_interval = static_cast<uint32_t>((m.expires_at_ms - now_ms + 999) / 1000);
          }
          if (qos > 0) {
            auto known = packet_of_seq_.find(e.seq.value());
            uint16_t id;
            if (known != packet_of_seq_.end()) {
              id = known->second;
            } else {
              do {
                id = next_packet_id_++;
                if (next_packet_id_ == 0) next_packet_id_ = 1;
              } while (id == 0 || outgoing_.count(id));
              packet_of_seq_[e.seq.value()] = id;
            }
            out.packet_id = id;
            out.dup = e.delivery_count > 1;  // a resend of an unanswered delivery [MQTT-3.3.1-1]
            outgoing_[id] = Outgoing{e.seq.value(), out.qos, false};
          } else {
            skip.push_back({e.seq, AnswerKind::kAck, 0});  // QoS 0: done once sent
          }
          Send(out);
        }
        if (!skip.empty()) consumer_->Answer(skip, [](broker::Outcome<std::vector<broker::Code>>) {});
        // Let the strand's other work (this client's packets) run between
        // batches: a long backlog does not hold the I/O thread.
        co_await asio::post(strand_, asio::use_awaitable);
        continue;
      }
    }
    if (wake_) {
      wake_ = false;
      continue;
    }
    if (!change_armed_) {
      change_armed_ = true;
      auto self = shared_from_this();
      consumer_->OnStreamChange([self] {
        asio::post(self->strand_, [self] {
          self->change_armed_ = false;
          self->WakePush();
        });
      });
    }
    push_wake_.expires_at(std::min(std::chrono::steady_clock::now() + std::chrono::seconds(1), consumer_->NextRedelivery()));
    co_await push_wake_.async_wait(kNoThrow);
    wake_ = false;
  }
}

awaitable<void> Connection::KeepAliveLoop() {
  using namespace std::chrono;
  while (!closed_) {
    const auto now = steady_clock::now();
    // Before CONNECT: from the accept, whatever trickles in.
    milliseconds limit = milliseconds(options_->connect_timeout_ms);
    auto since = accepted_at_;
    if (connected_) {
      if (keep_alive_s_ == 0) co_return;
      limit = milliseconds(int64_t{keep_alive_s_} * 1500);  // one and a half times [MQTT-3.1.2-22]
      since = last_packet_;
    }
    if (now - since >= limit) {
      if (connected_) Disconnect(ReasonCode::kKeepAliveTimeout, "nothing received within 1.5 × the keep alive");
      else FinishClose();
      co_return;
    }
    keep_alive_timer_.expires_at(since + limit);
    co_await keep_alive_timer_.async_wait(kNoThrow);
  }
}

void Connection::Send(const codec::Packet& packet) {
  if (closed_) return;
  std::string bytes;
  Status s = codec::EncodePacket(packet, {.version = version_, .sender = codec::Sender::kServer,
                                          .max_packet_size = client_max_packet_},
                                 &bytes);
  if (!s.ok()) {
    // Too large for the client: a PUBLISH is dropped as if sent [MQTT-3.1.2-25].
    if (codec::TypeOf(packet) == PacketType::kPublish) {
      const auto& p = std::get<codec::Publish>(packet);
      if (p.qos > 0) {
        auto it = outgoing_.find(p.packet_id);
        if (it != outgoing_.end()) {
          Ack(it->second.seq);
          packet_of_seq_.erase(it->second.seq);
          outgoing_.erase(it);
        }
      }
    }
    return;
  }
  Enqueue(std::move(bytes));
}

void Connection::Enqueue(std::string bytes) {
  outbox_.append(bytes);
  StartWrite();
}

void Connection::StartWrite() {
  if (writing_ || closed_) return;
  if (outbox_.empty()) {
    if (close_after_write_) FinishClose();
    return;
  }
  writing_ = true;
  sending_.swap(outbox_);
  outbox_.clear();
  auto self = shared_from_this();
  asio::async_write(socket_, asio::buffer(sending_), asio::bind_executor(strand_, [self](asio::error_code ec, size_t) {
                      self->writing_ = false;
                      self->sending_.clear();
                      if (ec) return self->FinishClose();
                      self->StartWrite();
                      if (self->outbox_.size() < kMaxOutbox) self->WakePush();
                    }));
}

void Connection::Disconnect(ReasonCode reason, std::string_view why) {
  if (closed_ || close_after_write_) return;
  if (version_ == Version::kV5 && connected_) {
    codec::Disconnect d{.reason = reason};
    d.properties.reason_string = why;
    if (!server_reference_.empty()) d.properties.server_reference = server_reference_;
    Send(d);
  } else if (version_ == Version::kV5 && !connected_) {
    // Before CONNACK a failure is a CONNACK [MQTT-4.13.1-1]; a timeout just closes.
  }
  CloseAfterWrite();
}

void Connection::CloseAfterWrite() {
  if (!close_after_write_) {
    auto self = shared_from_this();
    auto grace = std::make_shared<asio::steady_timer>(strand_, std::chrono::milliseconds(kCloseGraceMs));
    grace->async_wait([self, grace](const asio::error_code&) { self->FinishClose(); });
  }
  close_after_write_ = true;
  reading_ = false;
  StartWrite();
}

void Connection::FinishClose() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  keep_alive_timer_.cancel();
  push_wake_.cancel();
  if (connected_ && !taken_over_ && !broker_->stopping() && will_ && producer_) {
    // Not a normal DISCONNECT: the will is published [MQTT-3.1.2-8].
    std::string headers;
    PutHeader(&headers, kTopic, will_->topic);
    PutHeader(&headers, kQos, will_->qos == 2 ? "2" : will_->qos == 1 ? "1" : "0");
    PutHeader(&headers, kClient, Hex(ClientHash(client_id_)));
    const broker::PublishInput in{ProducerSeq(next_producer_seq_++), {}, headers, will_->payload};
    producer_->Publish({&in, 1}, will_->payload.size(), [](broker::PublishOutcome) {});
  }
  const bool ends = connected_ && !taken_over_ && record_.expiry_s == 0;
  if (ends) {
    // The session ends with the connection: its records go.
    if (producer_) producer_->EndAtClose();
    if (consumer_) consumer_->EndAtClose();
    broker_->WriteRecord("mqtt/" + Hex(ClientHash(client_id_)), std::nullopt, [](broker::Outcome<void>) {});
  }
  if (producer_) producer_->Close();
  if (consumer_) consumer_->Close();
  broker_->Detach(this);
}

}  // namespace floe::frontend::mqtt
