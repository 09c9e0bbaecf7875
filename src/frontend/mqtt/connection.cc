#include "frontend/mqtt/connection.h"

#include <fmt/format.h>

#include "frontend/mqtt/internal.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::PacketType;
using codec::ReasonCode;
using codec::Version;

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

void Connection::Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string&) {
  // (The redirect is the new owner's floe-protocol address: MoveOn looks up
  // its MQTT one for the Server Reference.)
  auto self = shared_from_this();
  asio::post(strand_, [self, stream] {
    const bool mine = (self->producer_ && self->producer_->on_stream(stream)) ||
                      (self->consumer_ && self->consumer_->on_stream(stream));
    if (!mine || self->closed_) return;
    self->MoveOn("this node no longer serves the MQTT stream");
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
    if (!preamble_checked_ && !TakeRelayPreamble(&in)) co_return;
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
      unread_ = &in;  // a CONNECT relayed elsewhere takes what follows it
      const bool go_on = co_await Handle(*packet);
      unread_ = nullptr;
      if (!go_on) co_return;
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
  const std::string headers = EncodeMessageHeaders(
      {.topic = topic, .qos = p.qos, .retain = p.retain, .client = client_key_, .properties = &p.properties});
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
    Send(d);
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
    const std::string headers =
        EncodeMessageHeaders({.topic = will_->topic, .qos = will_->qos, .retain = false, .client = client_key_});
    const broker::PublishInput in{ProducerSeq(next_producer_seq_++), {}, headers, will_->payload};
    producer_->Publish({&in, 1}, will_->payload.size(), [](broker::PublishOutcome) {});
  }
  const bool ends = connected_ && !taken_over_ && record_.expiry_s == 0;
  if (ends) {
    // The session ends with the connection: its records go.
    if (producer_) producer_->EndAtClose();
    if (consumer_) consumer_->EndAtClose();
    broker_->WriteRecord(RecordKey(), std::nullopt, [](broker::Outcome<void>) {});
  }
  if (producer_) producer_->Close();
  if (consumer_) consumer_->Close();
  broker_->Detach(this);
}

}  // namespace floe::frontend::mqtt
