// CONNECT to CONNACK and the subscriptions: the MQTT session's record in
// the bank and its core sessions (docs/mqtt.md "Sessions").
#include <random>

#include <fmt/format.h>

#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"
#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::PacketType;
using codec::ReasonCode;
using codec::Version;

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
  client_key_ = Hex(ClientHash(client_id_));
  auto stored = co_await AwaitCore<broker::Outcome<std::optional<std::string>>>(
      [&](auto done) { broker_->ReadRecord(RecordKey(), std::move(done)); });
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
  if (!co_await OpenCoreSessions()) co_return false;
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

awaitable<bool> Connection::OpenCoreSessions() {
  const uint64_t h = ClientHash(client_id_);
  auto refuse = [&](const broker::Failure& f) {
    codec::Connack ack{.reason = ReasonCode::kServerUnavailable};
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
    // Another node serves the MQTT stream: the client goes there (relay.cc).
    if (p.error().code == broker::Code::kNotOwner) co_await MoveToOwner(p.error().message);
    else refuse(p.error());
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
                          .consumer = fmt::format("mqtt.{}.{}", client_key_, record_.generation),
                          .start_at = StartAt::kNew},
                         std::move(done));
  });
  if (c && closed_) c->session->Close();
  if (closed_) co_return false;
  if (!c) {
    if (c.error().code == broker::Code::kNotOwner) co_await MoveToOwner(c.error().message);
    else refuse(c.error());
    co_return false;
  }
  consumer_ = c->session;
  co_return true;
}

awaitable<Status> Connection::SaveRecord() {
  auto r = co_await AwaitCore<broker::Outcome<void>>([&](auto done) {
    broker_->WriteRecord(RecordKey(), EncodeSessionRecord(record_), std::move(done));
  });
  co_return r ? Status::OK() : Status::Unavailable(r.error().message);
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

}  // namespace floe::frontend::mqtt
