// Delivery to an MQTT client: what the session's durable consumer gives,
// filtered by its subscriptions, within the client's Receive Maximum; and
// the client's answers, which acknowledge seqs in the cursor
// (docs/mqtt.md "QoS"); retained messages sent after a SUBSCRIBE, which are
// not in the cursor (docs/mqtt.md "Retained messages").
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"
#include "frontend/mqtt/shared.h"
#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::PacketType;
using codec::ReasonCode;
using codec::Version;

void Connection::OnDeliveryAnswer(uint16_t packet_id, PacketType type, ReasonCode reason) {
  auto it = outgoing_.find(packet_id);
  if (it == outgoing_.end()) return;  // unknown: nothing to answer [MQTT-4.3.3]
  Outgoing& o = it->second;
  if (type == PacketType::kPubrec) {
    if (o.qos != 2) return;
    if (codec::IsFailure(reason)) {
      // The client refused it: done as far as MQTT goes (a shared one is
      // not offered to another member [MQTT-4.8.2-6]).
      Done(o);
    } else if (o.shared || o.retained) {
      // Received: a group is answered now (PUBREL / PUBCOMP are ours);
      // PUBREL goes once the record says so, to be resent after a reconnect.
      Done(o);
      o.group.reset();
      o.released = true;
      record_.qos2_held[packet_id] = true;
      auto self = shared_from_this();
      Persist([self, packet_id](bool ok) {
        if (!ok) return self->Disconnect(ReasonCode::kUnspecifiedError, "the session record could not be written");
        self->Send(codec::Pubrel{{packet_id, ReasonCode::kSuccess, {}}});
      });
      return;
    } else {
      o.released = true;
      // PUBREL only once the record says so: after a reconnect PUBREL is
      // resent, never the PUBLISH, which a client that delivers on PUBREL
      // (and forgot the id then) would take for a new message.
      auto rec = record_.qos2_out.find({o.stream, o.seq});
      if (rec == record_.qos2_out.end()) {
        Send(codec::Pubrel{{packet_id, ReasonCode::kSuccess, {}}});
        return;
      }
      rec->second.released = true;
      auto self = shared_from_this();
      Persist([self, packet_id](bool ok) {
        if (!ok) return self->Disconnect(ReasonCode::kUnspecifiedError, "the session record could not be written");
        self->Send(codec::Pubrel{{packet_id, ReasonCode::kSuccess, {}}});
      });
      return;
    }
  } else if (type == PacketType::kPuback ? o.qos != 1 : (o.qos != 2 || !o.released)) {
    return;
  } else {
    Done(o);
  }
  Forget(packet_id);
  SendShared();
  WakePush();
}

void Connection::Done(Outgoing& o) {
  if (o.retained) return;  // sent on SUBSCRIBE: in no cursor
  if (!o.shared) {
    broker::Session* consumer = ConsumerOf(o.stream);
    const SessionRecord::DeliveryKey key{o.stream, o.seq};
    if (!consumer || !record_.qos2_out.count(key)) return Ack(o.stream, o.seq);
    // Outbound QoS 2: the record keeps the packet id until the ACK is
    // durable. Were it dropped first and the ACK lost with the node, the
    // message would go out again under a new id: a second delivery.
    const broker::AnswerInput a{StreamSeq(o.seq), AnswerKind::kAck, 0};
    auto self = shared_from_this();
    consumer->Answer({&a, 1}, [self, key](broker::Outcome<std::vector<broker::Code>> r) {
      if (!r) return;  // not durable: the entry stays, and PUBREL is resent after a reconnect
      asio::post(self->strand_, [self, key] {
        auto e = self->record_.qos2_out.find(key);
        if (e == self->record_.qos2_out.end()) return;
        self->qos2_ids_.erase(e->second.packet_id);
        self->record_.qos2_out.erase(e);
      });
    });
    return;
  }
  if (o.group) o.group->Answered(this, o.seq);
  o.group.reset();
}

void Connection::Forget(uint16_t packet_id) {
  auto it = outgoing_.find(packet_id);
  if (it == outgoing_.end()) return;
  if ((it->second.shared || it->second.retained) && record_.qos2_held.erase(packet_id)) qos2_ids_.erase(packet_id);
  if (!it->second.shared && !it->second.retained) {
    // A QoS 2 entry of the record goes once its ACK is durable (Done).
    packet_of_seq_.erase({it->second.stream, it->second.seq});
  }
  outgoing_.erase(it);
}

broker::Session* Connection::ConsumerOf(const std::string& key) {
  if (key.empty()) return consumer_.get();
  auto it = bound_consumers_.find(key);
  return it == bound_consumers_.end() ? nullptr : it->second.session.get();
}

void Connection::Ack(const std::string& key, uint64_t seq) {
  if (!ConsumerOf(key)) return;
  // The PUBACKs of one read are answered in each cursor as one request (one
  // persist, one wake of the stream's readers).
  auto& acks = acks_[key];
  acks.push_back({StreamSeq(seq), AnswerKind::kAck, 0});
  if (!in_read_ || acks.size() >= 256) FlushAcks();
}

void Connection::FlushAcks() {
  for (auto& [key, acks] : acks_) {
    broker::Session* consumer = ConsumerOf(key);
    if (!acks.empty() && consumer) consumer->Answer(acks, [](broker::Outcome<std::vector<broker::Code>>) {});
    acks.clear();
  }
}

uint16_t Connection::NextPacketId() {
  uint16_t id;
  do {
    id = next_packet_id_++;
    if (next_packet_id_ == 0) next_packet_id_ = 1;
  } while (id == 0 || outgoing_.count(id) || qos2_ids_.count(id));
  return id;
}

bool Connection::SendRetained() {
  const int64_t now_ms = WallMs();
  while (!retained_out_.empty() && !closed_ && !close_after_write_) {
    RetainedOut& r = retained_out_.front();
    if (outbox_.size() + sending_.size() >= kMaxOutbox) return false;
    if (r.qos > 0 && outgoing_.size() >= client_receive_maximum_) return false;
    const Stored m = ParseStored(r.record->headers, options_->stream);
    if (m.expires_at_ms > 0 && m.expires_at_ms <= now_ms) {
      retained_out_.pop_front();  // expired: not sent [MQTT-3.3.2-5]
      continue;
    }
    codec::Publish out;
    out.topic = r.record->topic;
    out.qos = r.qos;
    out.retain = true;  // sent because of a new subscription [MQTT-3.3.1-8]
    out.payload = r.record->payload;
    if (version_ == Version::kV5) {
      out.properties = m.properties;
      if (r.identifier) out.properties.subscription_identifiers = {r.identifier};
      if (m.expires_at_ms > 0)
        out.properties.message_expiry_interval = static_cast<uint32_t>((m.expires_at_ms - now_ms + 999) / 1000);
    }
    if (out.qos > 0) {
      out.packet_id = NextPacketId();
      outgoing_[out.packet_id] = Outgoing{.seq = 0, .qos = out.qos, .released = false, .retained = true};
    }
    if (out.qos == 2) SendHeldQos2(out, r.record);
    else Send(out);
    retained_out_.pop_front();
  }
  return retained_out_.empty();
}

void Connection::SendHeldQos2(const codec::Publish& out, std::shared_ptr<const void> keep) {
  // Its packet id is durable before the PUBLISH goes: after a reconnect the
  // id is not given to another message while the client may hold it, and
  // PUBREL is resent once PUBREC came.
  record_.qos2_held[out.packet_id] = false;
  qos2_ids_.insert(out.packet_id);
  auto self = shared_from_this();
  Persist([self, out, keep = std::move(keep)](bool ok) {
    if (!ok) return self->Disconnect(ReasonCode::kUnspecifiedError, "the session record could not be written");
    self->Send(out);
  });
}

void Connection::WakePush() {
  wake_ = true;
  push_wake_.cancel();
}

bool IsShared(std::string_view filter) {
  return filter.starts_with("$share/") && codec::SplitSharedFilter(filter).has_value();
}

// One batch of `consumer` (the stream of `key`), filtered by the
// subscriptions, at most `room` QoS 1/2 deliveries.
awaitable<int> Connection::DeliverBatch(std::string key, std::shared_ptr<broker::Session> consumer, size_t room) {
  {
    {
      auto batch = consumer->Deliver(static_cast<uint32_t>(std::min<size_t>(room, 256)), 1 << 20);
      if (!batch) {
        if (key.empty()) {
          MoveOn(batch.error().message);
          co_return -1;
        }
        // A bound stream no longer served here: its consumer closes, and
        // is opened again when it can be.
        consumer->Close();
        bound_consumers_.erase(key);
        bound_retry_ = true;
        co_return 0;
      }
      if (batch->entries.empty()) co_return 0;
      {
        std::vector<codec::Packet> outs;
        bool record_changed = false;  // a QoS 2 delivery got its packet id: durable before it is sent
        std::vector<broker::AnswerInput> skip;  // matched no subscription, QoS 0, expired, or a gap
        const int64_t now_ms = WallMs();
        for (const broker::Delivered& e : batch->entries) {
          if (e.kind != broker::Delivered::Kind::kMessage) {
            if (e.kind == broker::Delivered::Kind::kLarge) skip.push_back({e.seq, AnswerKind::kAck, 0});
            continue;  // gaps need no answer; large messages are not carried over MQTT
          }
          Stored m = ParseStored(e.headers, StreamOf(key));
          // Expired: not sent [MQTT-3.3.2-5] — unless a QoS 2 PUBLISH of it
          // went out already: the client holds its packet id and the
          // exchange is finished as it began (5.0 4.3.3).
          if (m.expires_at_ms > 0 && m.expires_at_ms <= now_ms && !record_.qos2_out.count({key, e.seq.value()})) {
            skip.push_back({e.seq, AnswerKind::kAck, 0});
            continue;
          }
          int qos = -1;
          std::vector<uint32_t> ids;
          bool retain = false;
          for (const auto& sub : record_.subscriptions) {
            if (e.timestamp_us < sub.since_us) continue;  // stored before the subscription was made
            if (IsShared(sub.filter)) continue;            // its group delivers it
            if (!codec::TopicMatches(sub.filter, m.topic)) continue;
            if (sub.options.no_local && m.client == client_key_) continue;  // [MQTT-3.8.3-3]
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
              out.properties.message_expiry_interval =
                  static_cast<uint32_t>(std::max<int64_t>(1, (m.expires_at_ms - now_ms + 999) / 1000));
          }
          if (qos > 0) {
            const SessionRecord::DeliveryKey dk{key, e.seq.value()};
            auto known = packet_of_seq_.find(dk);
            uint16_t id;
            if (known != packet_of_seq_.end()) {
              id = known->second;
            } else if (auto kept = record_.qos2_out.find(dk); kept != record_.qos2_out.end()) {
              id = kept->second.packet_id;  // the id the client holds
              packet_of_seq_[dk] = id;
            } else {
              id = NextPacketId();
              packet_of_seq_[dk] = id;
            }
            out.packet_id = id;
            out.dup = e.delivery_count > 1;  // a resend of an unanswered delivery [MQTT-3.3.1-1]
            outgoing_[id] = Outgoing{.seq = e.seq.value(), .qos = out.qos, .stream = key};
            if (out.qos == 2) {
              auto [rec, fresh] = record_.qos2_out.try_emplace(dk, SessionRecord::Out{id, false});
              if (fresh) {
                qos2_ids_.insert(id);
                record_changed = true;
              } else if (rec->second.released) {
                // PUBREC came before the reconnect: PUBREL is what is resent [MQTT-4.4.0-1].
                outgoing_[id].released = true;
                outs.push_back(codec::Pubrel{{id, ReasonCode::kSuccess, {}}});
                continue;
              }
            }
          } else {
            skip.push_back({e.seq, AnswerKind::kAck, 0});  // QoS 0: done once sent
          }
          outs.push_back(std::move(out));
        }
        if (!skip.empty()) consumer->Answer(skip, [](broker::Outcome<std::vector<broker::Code>>) {});
        if (record_changed) {
          // A QoS 2 PUBLISH goes out only once its packet id is durable: a
          // resend after any reconnect uses the same id, which the client
          // recognises (exactly once).
          const bool ok = co_await AwaitCore<bool>([&](auto done) { Persist(std::move(done)); });
          if (closed_) co_return -1;
          if (!ok) {
            Disconnect(ReasonCode::kUnspecifiedError, "the session record could not be written to the bank");
            co_return -1;
          }
        }
        for (const codec::Packet& out : outs) Send(out);
        co_return static_cast<int>(batch->entries.size());
      }
    }
  }
}

awaitable<void> Connection::PushLoop() {
  while (!closed_ && !close_after_write_) {
    SendShared();
    if (!consumer_->serving()) {
      MoveOn("this node no longer serves the MQTT stream");
      co_return;
    }
    // Retained messages of a new subscription go first; the consumer's
    // deliveries wait until they are all sent.
    if (!SendRetained()) {
      if (wake_) {
        wake_ = false;
        continue;
      }
      push_wake_.expires_at(std::chrono::steady_clock::now() + std::chrono::seconds(1));
      co_await push_wake_.async_wait(kNoThrow);
      wake_ = false;
      continue;
    }
    const size_t room = client_receive_maximum_ > outgoing_.size() ? client_receive_maximum_ - outgoing_.size() : 0;
    // A client that does not read (QoS 0 has no window) holds at most
    // kMaxOutbox bytes here: the loop waits for the socket.
    const bool writable = outbox_.size() + sending_.size() < kMaxOutbox;
    const bool plain = std::any_of(record_.subscriptions.begin(), record_.subscriptions.end(),
                                   [](const SessionRecord::Sub& sub) { return !IsShared(sub.filter); });
    if (bindings_->view()->version != bindings_version_ ||
        (bound_retry_ && std::chrono::steady_clock::now() >= bound_retry_at_)) {
      // A stream was bound or deleted (or one could not be opened): read
      // what the subscriptions can match now, and rejoin the groups.
      co_await OpenBoundConsumers();
      if (closed_) co_return;
      JoinSharedGroups();
    }
    if (plain && room > 0 && writable) {
      // The default stream first, then each bound one; they share the room.
      std::vector<std::pair<std::string, std::shared_ptr<broker::Session>>> readers{{"", consumer_}};
      for (const auto& [name, c] : bound_consumers_) readers.emplace_back(name, c.session);
      bool any = false;
      for (auto& [key, reader] : readers) {
        const size_t left = client_receive_maximum_ > outgoing_.size() ? client_receive_maximum_ - outgoing_.size() : 0;
        if (left == 0 || closed_ || close_after_write_) break;
        if (!key.empty() && !bound_consumers_.count(key)) continue;  // evicted meanwhile
        const int n = co_await DeliverBatch(key, reader, left);
        if (n < 0) co_return;
        any = any || n > 0;
      }
      if (any) {
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
    auto until = std::min(std::chrono::steady_clock::now() + std::chrono::seconds(1), consumer_->NextRedelivery());
    for (auto& [name, c] : bound_consumers_) {
      until = std::min(until, c.session->NextRedelivery());
      if (c.change_armed) continue;
      c.change_armed = true;
      auto self = shared_from_this();
      c.session->OnStreamChange([self, name = name] {
        asio::post(self->strand_, [self, name] {
          if (auto it = self->bound_consumers_.find(name); it != self->bound_consumers_.end()) it->second.change_armed = false;
          self->WakePush();
        });
      });
    }
    push_wake_.expires_at(until);
    co_await push_wake_.async_wait(kNoThrow);
    wake_ = false;
  }
}

}  // namespace floe::frontend::mqtt
