#include "frontend/mqtt/connection.h"

#include <fmt/format.h>

#include "frontend/mqtt/internal.h"
#include "frontend/mqtt/keeper.h"
#include "frontend/mqtt/shared.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::PacketType;
using codec::ReasonCode;
using codec::Version;

Connection::Connection(broker::Broker* broker, const MqttOptions* options, const NodeServices& services,
                       asio::ip::tcp::socket socket)
    : broker_(broker),
      options_(options),
      keeper_(services.keeper),
      shared_groups_(services.shared),
      retained_(services.retained),
      bindings_(services.bindings),
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
    if (self->closed_) return;
    // A bound stream gone from this node (deleted, moved): its sessions
    // close; the client stays (the default stream is what it is served by).
    for (auto it = self->bound_producers_.begin(); it != self->bound_producers_.end();) {
      if (!it->second.session->on_stream(stream)) { ++it; continue; }
      it->second.session->Close();
      it = self->bound_producers_.erase(it);
    }
    for (auto it = self->bound_consumers_.begin(); it != self->bound_consumers_.end();) {
      if (!it->second.session->on_stream(stream)) { ++it; continue; }
      self->acks_.erase(it->first);
      it->second.session->Close();
      it = self->bound_consumers_.erase(it);
      self->bound_retry_ = true;
    }
    const bool mine = (self->producer_ && self->producer_->on_stream(stream)) ||
                      (self->consumer_ && self->consumer_->on_stream(stream));
    if (!mine) return;
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
    in_read_ = true;
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
          const bool unknown_level = packet.error().protocol_level != 0 && packet.error().protocol_level != 4 &&
                                     packet.error().protocol_level != 5;
          if (unknown_level) {
            version_ = Version::kV311;  // an unknown level is answered in 3.1.1 [MQTT-3.1.2-2]
            ack.reason = ReasonCode::kUnsupportedProtocolVersion;
          }
          // A 3.1.1 CONNECT refused for a reason with no return code (a
          // malformed one) is closed without a CONNACK (3.1.1 [MQTT-3.2.2-6]).
          if (version_ != Version::kV311 || codec::ToConnectReturnCode(ack.reason)) Send(ack);
          CloseAfterWrite();
        } else {
          Disconnect(packet.error().reason, packet.error().message);
        }
        co_return;
      }
      unread_ = &in;  // a CONNECT relayed elsewhere takes what follows it
      // Gathered PUBLISHes go to the core before anything else is handled.
      if (codec::TypeOf(*packet) != PacketType::kPublish) FlushPublishes();
      const bool go_on = co_await Handle(*packet);
      unread_ = nullptr;
      if (!go_on) {
        FlushPublishes();
        in_read_ = false;
        FlushAcks();
        co_return;
      }
    }
    FlushPublishes();  // the end of what this read brought
    in_read_ = false;
    FlushAcks();
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
      co_return co_await OnPublish(std::get<codec::Publish>(packet));
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
          Disconnect(ReasonCode::kProtocolError, "session expiry set at DISCONNECT after 0 at CONNECT");  // 5.0 3.14.2.2.2
          co_return false;
        }
        record_.expiry_s = *d.properties.session_expiry_interval;
      }
      // Reason 0x00 discards the will [MQTT-3.14.4-3]; any other (0x04
      // Disconnect with Will Message, an error) keeps it.
      if (d.reason == ReasonCode::kSuccess) record_.will.reset();
      FinishClose();
      co_return false;
    }
    case PacketType::kAuth:
      // CONNECT named no Authentication Method (one that does is refused):
      // an AUTH is a Protocol Error (5.0 4.12).
      Disconnect(ReasonCode::kProtocolError, "AUTH without an authentication method in CONNECT");
      co_return false;
    default:
      Disconnect(ReasonCode::kProtocolError, fmt::format("{} is not sent by a client", codec::PacketTypeName(type)));
      co_return false;
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
  if (closed_ || close_after_write_) return;  // nothing follows a DISCONNECT or a refusing CONNACK
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
          Done(it->second);
          Forget(p.packet_id);
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
  if (producer_) FlushPublishes();  // what the client sent before it went is stored
  in_read_ = false;
  FlushAcks();  // before the consumer's close releases what they answer
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  keep_alive_timer_.cancel();
  push_wake_.cancel();
  LeaveSharedGroups("");  // what they handed us goes to other members
  const bool leaves = connected_ && !taken_over_;
  if (leaves && record_.expiry_s == 0 && !record_.will) {
    // The session ends with the connection and leaves no will: its records go.
    if (producer_) producer_->EndAtClose();
    if (consumer_) consumer_->EndAtClose();
    // Let go once the record is gone: a quick reconnect must not read it.
    auto self = shared_from_this();
    const bool claimed = claimed_;
    broker_->WriteRecord(RecordKey(), std::nullopt, [self, claimed](broker::Outcome<void>) {
      if (claimed) self->keeper_->Release(self->client_key_, self.get(), false);
    });
  } else if (leaves) {
    // It stays for its Session Expiry Interval, or its will is to be sent
    // (not a normal DISCONNECT [MQTT-3.1.2-8], maybe after a Will Delay):
    // the record says it was left, and the keeper carries out what is due
    // (also after this node dies: then another node's keeper does).
    record_.node.clear();
    record_.left_at_ms = WallMs();
    auto self = shared_from_this();
    Persist([self](bool) { self->keeper_->Release(self->client_key_, self.get(), true); });
  } else if (claimed_) {
    // Taken over: the newer connection reads the record once ours is let go,
    // so a write of ours still under way finishes first.
    if (!persisting_) {
      keeper_->Release(client_key_, this, false);
    } else {
      auto self = shared_from_this();
      persist_next_.push_back([self](bool) { self->keeper_->Release(self->client_key_, self.get(), false); });
    }
  }
  if (producer_) producer_->Close();
  if (consumer_) consumer_->Close();
  for (auto& [name, p] : bound_producers_) {
    if (leaves && record_.expiry_s == 0 && !record_.will) p.session->EndAtClose();
    p.session->Close();
  }
  for (auto& [name, c] : bound_consumers_) {
    if (leaves && record_.expiry_s == 0 && !record_.will) c.session->EndAtClose();
    c.session->Close();
  }
  broker_->Detach(this);
}

}  // namespace floe::frontend::mqtt
