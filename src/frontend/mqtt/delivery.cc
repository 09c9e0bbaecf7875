// Delivery to an MQTT client: what the session's durable consumer gives,
// filtered by its subscriptions, within the client's Receive Maximum; and
// the client's answers, which acknowledge seqs in the cursor
// (docs/mqtt.md "QoS").
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"
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
      MoveOn("this node no longer serves the MQTT stream");
      co_return;
    }
    const size_t room = client_receive_maximum_ > outgoing_.size() ? client_receive_maximum_ - outgoing_.size() : 0;
    // A client that does not read (QoS 0 has no window) holds at most
    // kMaxOutbox bytes here: the loop waits for the socket.
    const bool writable = outbox_.size() + sending_.size() < kMaxOutbox;
    if (!record_.subscriptions.empty() && room > 0 && writable) {
      auto batch = consumer_->Deliver(static_cast<uint32_t>(std::min<size_t>(room, 256)), 1 << 20);
      if (!batch) {
        MoveOn(batch.error().message);
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

}  // namespace floe::frontend::mqtt
