// CONNECT to CONNACK and the subscriptions: the MQTT session's record in
// the bank and its core sessions (docs/mqtt.md "Sessions").
#include <cstdio>
#include <random>

#include <fmt/format.h>

#include "frontend/mqtt/connection.h"
#include "base/logging.h"
#include "frontend/mqtt/internal.h"
#include "frontend/mqtt/keeper.h"
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
  if (!co_await Login(c)) co_return false;
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
  if (c.properties.authentication_method) {
    ack.reason = ReasonCode::kBadAuthenticationMethod;  // no enhanced authentication method is supported (5.0 4.12)
    ack.properties.reason_string = "no authentication method is supported";
    Send(ack);
    CloseAfterWrite();
    co_return false;
  }
  client_key_ = Hex(ClientHash(client_id_));
  if (c.will) {
    const uint32_t delay = c.will->properties.will_delay_interval.value_or(0);
    will_ = SessionRecord::Will{
        .topic = std::string(c.will->topic),
        .headers = EncodeMessageHeaders({.topic = c.will->topic, .qos = c.will->qos, .retain = c.will->retain,
                                         .client = client_key_,
                                         .properties = version_ == Version::kV5 ? &c.will->properties : nullptr}),
        .payload = std::string(c.will->payload),
        .qos = c.will->qos,
        .retain = c.will->retain,
        .delay_s = version_ == Version::kV5 ? delay : 0};
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
    RefuseConnect(ReasonCode::kServerUnavailable, created.error().message);
    co_return false;
  }
  // This node's keeper leaves the client's record alone from here on (what
  // it was doing with it is done). Then the producer: locking it here fences
  // the connection that held the session before (on any node) and tells one
  // of this node to close; once that one let go (its last record write
  // done), the record read next is the last one.
  co_await AwaitCore<bool>([&](auto done) {
    keeper_->Claim(client_key_, this, [done = std::move(done)]() mutable { done(true); });
  });
  claimed_ = true;
  if (closed_) co_return false;
  if (!co_await OpenProducer()) co_return false;
  co_await AwaitCore<bool>([&](auto done) {
    keeper_->WaitAlone(client_key_, this, [done = std::move(done)]() mutable { done(true); });
  });
  if (closed_) co_return false;
  auto stored = co_await AwaitCore<broker::Outcome<std::optional<std::string>>>(
      [&](auto done) { broker_->ReadRecord(RecordKey(), std::move(done)); });
  if (closed_) co_return false;
  if (!stored) {
    RefuseConnect(ReasonCode::kServerUnavailable, stored.error().message);  // not knowing the session is not "no session"
    co_return false;
  }
  bool session_present = false;
  // A new session's generation is never one used before for this client id
  // (an ended session's record is gone): its consumer starts empty.
  std::random_device rd;
  uint64_t generation = (static_cast<uint64_t>(WallMs()) << 12) | (rd() & 0xfff);
  // The earlier connection's will, if it is due now: its delay has passed
  // or its session has ended [MQTT-3.1.2-8], or it had no delay and this
  // connection takes it over (or its node died) [MQTT-3.1.4-3]. One with a
  // delay still running is cancelled: this connection came in time.
  std::optional<SessionRecord> will_of;
  if (*stored) {
    auto prior = DecodeSessionRecord(**stored);
    if (prior && prior->client_id == client_id_) {
      const int64_t now = WallMs();
      const bool held = !prior->node.empty();
      const int64_t left = held ? now : prior->left_at_ms;
      const bool forever = prior->expiry_s == 0xFFFFFFFFu;
      const int64_t ends = forever ? INT64_MAX : left + int64_t{prior->expiry_s} * 1000;
      const bool expired = !held && now >= ends;  // the keeper had not reached it yet
      // Clean Start ends the earlier session, so its will is due too.
      if (prior->will && (prior->will->producer_seq != 0 || c.clean_start ||  // being published: finish it
                          now >= std::min(ends, left + int64_t{prior->will->delay_s} * 1000)))
        will_of = *prior;
      if (!c.clean_start && !expired) {
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
  record_.node = options_->node_id;
  record_.left_at_ms = 0;
  record_.will = will_;
  if (!co_await OpenConsumer()) co_return false;
  // The bound streams the subscriptions can read, from the node's view of
  // the bindings (read once before the first CONNECT is answered).
  co_await AwaitCore<bool>([&](auto done) { bindings_->WhenLoaded([done = std::move(done)]() mutable { done(true); }); });
  if (closed_) co_return false;
  co_await OpenBoundConsumers();
  if (closed_) co_return false;
  if (will_of && !co_await PublishPriorWill(std::move(*will_of))) {
    RefuseConnect(ReasonCode::kServerUnavailable, "the earlier connection's will could not be recorded");
    co_return false;
  }
  Status saved = co_await SaveRecord();
  if (closed_) co_return false;
  if (!saved.ok()) {
    RefuseConnect(ReasonCode::kServerUnavailable, saved.ToString());
    co_return false;
  }
  connected_ = true;
  ack.session_present = session_present;
  if (version_ == Version::kV5) {
    ack.properties.receive_maximum = options_->receive_maximum;
    ack.properties.maximum_packet_size = options_->max_packet_size;
    ack.properties.topic_alias_maximum = options_->topic_alias_maximum;
    ack.properties.retain_available = 1;
    ack.properties.shared_subscription_available = 1;
    if (!assigned.empty()) ack.properties.assigned_client_identifier = assigned_id_ = assigned;
  }
  Send(ack);
  for (uint16_t id : std::exchange(pubrel_again_, {})) Send(codec::Pubrel{{id, ReasonCode::kSuccess, {}}});
  JoinSharedGroups();
  keep_alive_timer_.cancel();  // from the CONNECT timeout to the keep alive
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->PushLoop(); }, asio::detached);
  co_return true;
}

void Connection::RefuseConnect(ReasonCode reason, std::string_view why) {
  codec::Connack ack{.reason = reason};
  if (version_ == Version::kV5) ack.properties.reason_string = why;
  Send(ack);
  CloseAfterWrite();
}

awaitable<bool> Connection::PublishPriorWill(SessionRecord prior) {
  SessionRecord::Will& w = *prior.will;
  if (w.producer_seq == 0) {
    // As the keeper does: the seq is durable before the append, and the
    // record still says a connection held the session, so whoever reads it
    // next (a CONNECT, a keeper) publishes the will with the same seq.
    w.producer_seq = next_producer_seq_++;
    prior.node = options_->node_id;
    auto written = co_await AwaitCore<broker::Outcome<void>>(
        [&](auto done) { broker_->WriteRecord(RecordKey(), EncodeSessionRecord(prior), std::move(done)); });
    if (!written || closed_) co_return false;
  } else {
    next_producer_seq_ = std::max(next_producer_seq_, w.producer_seq + 1);
  }
  const broker::PublishInput in{ProducerSeq(w.producer_seq), {}, w.headers, w.payload};
  auto retain = BeginRetain(w.retain, w.topic, w.headers, w.payload);  // Will Retain [MQTT-3.1.2-15]
  auto self = shared_from_this();
  const auto outcome = co_await AwaitCore<std::pair<broker::Code, broker::Code>>([&](auto done) {
    producer_->Publish({&in, 1}, w.payload.size(), [self, retain, done = std::move(done)](broker::PublishOutcome out) mutable {
      self->AfterStore(std::move(out), retain, [done = std::move(done)](broker::Code stored, broker::Code answer) mutable {
        done(std::pair<broker::Code, broker::Code>(stored, answer));
      });
    });
  });
  if (outcome.first != broker::Code::kOk) {
    if (!closed_) producer_->ForgetUnstored();
    logging::Error("mqtt.will_failed",
                   fmt::format("the earlier connection's will was not stored: {}", broker::CodeName(outcome.first)),
                   {{"client", client_id_}});
  }
  co_return !closed_;
}

awaitable<bool> Connection::OpenProducer() {
  const uint64_t h = ClientHash(client_id_);
  auto refuse = [&](const broker::Failure& f) { RefuseConnect(ReasonCode::kServerUnavailable, f.message); };
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
  co_return true;
}

awaitable<bool> Connection::OpenConsumer() {
  auto refuse = [&](const broker::Failure& f) { RefuseConnect(ReasonCode::kServerUnavailable, f.message); };
  auto self = shared_from_this();
  // Producer seqs go on above every one stored, and every one an earlier
  // connection or the keeper reserved (a QoS 2 mapping, a will being sent).
  for (const auto& [id, pseq] : record_.qos2_in) {
    // (A bound stream's are its producer's: OpenBoundProducer.)
    if (!record_.qos2_in_stream.count(id)) next_producer_seq_ = std::max(next_producer_seq_, pseq + 1);
    inbound_qos2_[id] = Inbound::kResumed;
  }
  if (record_.will && record_.will->producer_seq)
    next_producer_seq_ = std::max(next_producer_seq_, record_.will->producer_seq + 1);
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
  // Outbound QoS 2 still unanswered keeps its packet id (and is resent as
  // PUBREL once PUBREC came); what the cursor has answered is done.
  // (A bound stream's entries keep their ids out of use here and are
  // pruned when its consumer opens: OpenBoundConsumers.)
  for (auto it = record_.qos2_out.begin(); it != record_.qos2_out.end();) {
    if (it->first.first.empty() && it->first.second <= c->grant.ack_floor.value()) {
      it = record_.qos2_out.erase(it);
      continue;
    }
    packet_of_seq_[it->first] = it->second.packet_id;
    qos2_ids_.insert(it->second.packet_id);
    ++it;
  }
  // QoS 2 deliveries of no cursor: a released one gets its PUBREL again; an
  // unreleased one's id stays out of use on this connection (the client may
  // hold it) and is not resent (its group gave it to another member; a
  // retained message goes again at the next SUBSCRIBE).
  for (auto it = record_.qos2_held.begin(); it != record_.qos2_held.end();) {
    qos2_ids_.insert(it->first);
    if (!it->second) {
      it = record_.qos2_held.erase(it);
      continue;
    }
    outgoing_[it->first] = Outgoing{.seq = 0, .qos = 2, .released = true, .retained = true};
    pubrel_again_.push_back(it->first);
    ++it;
  }
  co_return true;
}

awaitable<void> Connection::OpenBoundConsumers() {
  const auto view = bindings_->view();
  bindings_version_ = view->version;
  bound_retry_ = false;
  std::vector<std::string_view> filters;
  for (const auto& sub : record_.subscriptions)
    if (!IsShared(sub.filter)) filters.push_back(sub.filter);
  auto self = shared_from_this();
  for (const std::string& stream : StreamsFor(view->bindings, filters)) {
    if (stream == options_->stream || bound_consumers_.count(stream)) continue;
    // A new consumer starts at the oldest subscription that can match the
    // stream: what was stored there since it was made is its to deliver
    // (the offline queue of a stream bound after the subscription too).
    int64_t since_us = INT64_MAX;
    for (const auto& sub : record_.subscriptions) {
      if (IsShared(sub.filter)) continue;
      for (const auto& b : view->bindings)
        if (b.stream == stream && codec::FiltersOverlap(sub.filter, b.filter)) since_us = std::min(since_us, sub.since_us);
    }
    auto c = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
      broker_->OpenSession(self,
                           {.session_id = SessionId(ConsumerSessionId(client_id_ + "\n" + stream, record_.generation)),
                            .role = Role::kConsumer,
                            .stream = stream,
                            .consumer = fmt::format("mqtt.{}.{}", client_key_, record_.generation),
                            .start_at = StartAt::kTime,
                            .start_value = static_cast<uint64_t>(std::max<int64_t>(since_us, 0))},
                           std::move(done));
    });
    if (c && closed_) c->session->Close();
    if (closed_) co_return;
    if (!c) {
      // Not served here (another node has it), or being opened: tried
      // again with the next pass of the push loop.
      logging::Warn("mqtt.bound_stream_unread",
                    fmt::format("bound stream {} not read for now: {}", stream, c.error().message),
                    {{"client", client_id_}, {"stream", stream}});
      bound_retry_ = true;
      bound_retry_at_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      continue;
    }
    // Its QoS 2 entries the cursor has answered are done.
    for (auto it = record_.qos2_out.begin(); it != record_.qos2_out.end();) {
      if (it->first.first == stream && it->first.second <= c->grant.ack_floor.value()) {
        qos2_ids_.erase(it->second.packet_id);
        packet_of_seq_.erase(it->first);
        it = record_.qos2_out.erase(it);
        continue;
      }
      ++it;
    }
    bound_consumers_[stream] = BoundConsumer{c->session};
  }
}

awaitable<bool> Connection::OnSubscribe(const codec::Subscribe& s) {
  codec::Suback ack{.packet_id = s.packet_id};
  const auto before = record_.subscriptions;  // undone alone: QoS 2 state moves on meanwhile
  const int64_t now_us = WallMs() * 1000;
  const uint32_t identifier = s.properties.subscription_identifiers.empty() ? 0 : s.properties.subscription_identifiers[0];
  std::vector<SessionRecord::Sub> made;  // for the retained messages, once SUBACKed
  std::vector<bool> fresh;
  for (const codec::Subscription& sub : s.subscriptions) {
    if (!MaySubscribe(sub.filter)) {  // not subscribed; the others go on
      ack.reasons.push_back(version_ == Version::kV5 ? ReasonCode::kNotAuthorized : ReasonCode::kUnspecifiedError);
      continue;
    }
    auto it = std::find_if(record_.subscriptions.begin(), record_.subscriptions.end(),
                           [&](const SessionRecord::Sub& x) { return x.filter == sub.filter; });
    SessionRecord::Sub entry{std::string(sub.filter), sub.options, identifier, now_us};
    fresh.push_back(it == record_.subscriptions.end());
    if (it != record_.subscriptions.end()) {
      entry.since_us = it->since_us;  // replaces the existing one, which goes on [MQTT-3.8.4-3]
      *it = entry;
    } else {
      record_.subscriptions.push_back(entry);
    }
    made.push_back(entry);
    ack.reasons.push_back(static_cast<ReasonCode>(sub.options.max_qos));
  }
  // Durable before SUBACK: a session resumed elsewhere has its subscriptions.
  if (Status st = co_await SaveRecord(); !st.ok()) {
    record_.subscriptions = before;  // refused: not delivered for either
    for (auto& r : ack.reasons)
      if (!codec::IsFailure(r)) r = ReasonCode::kUnspecifiedError;
    made.clear();
  }
  if (closed_) co_return false;
  // The bound streams a new filter can read: their consumers start at the
  // subscription's time, so nothing stored since then is missed.
  if (!made.empty()) co_await OpenBoundConsumers();
  if (closed_) co_return false;
  Send(ack);
  JoinSharedGroups();
  if (!made.empty()) co_await QueueRetained(made, fresh);
  if (closed_) co_return false;
  WakePush();
  co_return true;
}

awaitable<void> Connection::QueueRetained(const std::vector<SessionRecord::Sub>& subs, const std::vector<bool>& fresh) {
  // Retain Handling: 0 sends them at every SUBSCRIBE [MQTT-3.3.1-9], 1 only
  // for a subscription that did not exist [MQTT-3.3.1-10], 2 never
  // [MQTT-3.3.1-11]. (A 3.1.1 subscription is 0.) A shared subscription
  // gets none (5.0 4.8.2).
  std::vector<std::string> filters;
  std::vector<const SessionRecord::Sub*> asked;
  for (size_t i = 0; i < subs.size(); ++i) {
    const codec::RetainHandling h = subs[i].options.retain_handling;
    if (h == codec::RetainHandling::kDoNotSend) continue;
    if (h == codec::RetainHandling::kSendIfNewSubscription && !fresh[i]) continue;
    if (IsShared(subs[i].filter)) continue;
    filters.push_back(subs[i].filter);
    asked.push_back(&subs[i]);
  }
  if (filters.empty()) co_return;
  auto found = co_await AwaitCore<broker::Outcome<std::vector<RetainedMatch>>>(
      [&](auto done) { FindRetained(broker_, filters, std::move(done)); });
  if (!found) {
    // The subscription is made; its retained messages could not be read.
    // MQTT has no word for that after a SUBACK: they are not sent.
    logging::Warn("mqtt.retained_failed", fmt::format("retained messages not sent: {}", found.error().message),
                  {{"client", client_id_}});
    co_return;
  }
  for (RetainedMatch& m : *found) {
    const SessionRecord::Sub& sub = *asked[m.filter];
    const uint8_t qos = std::min<uint8_t>(sub.options.max_qos, ParseStored(m.record->headers, options_->stream).qos);
    retained_out_.push_back({std::move(m.record), qos, sub.identifier});
  }
}

awaitable<void> Connection::OnUnsubscribe(const codec::Unsubscribe& u) {
  codec::Unsuback ack{.packet_id = u.packet_id};
  const auto before = record_.subscriptions;  // undone alone: QoS 2 state moves on meanwhile
  for (std::string_view f : u.filters) {
    auto it = std::find_if(record_.subscriptions.begin(), record_.subscriptions.end(),
                           [&](const SessionRecord::Sub& x) { return x.filter == f; });
    if (it == record_.subscriptions.end()) {
      ack.reasons.push_back(ReasonCode::kNoSubscriptionExisted);
    } else {
      if (IsShared(it->filter)) LeaveSharedGroups(it->filter);
      record_.subscriptions.erase(it);
      ack.reasons.push_back(ReasonCode::kSuccess);
    }
  }
  if (Status st = co_await SaveRecord(); !st.ok()) {
    record_.subscriptions = before;
    JoinSharedGroups();  // the shared ones left above are back
    // 3.1.1 has no failure in UNSUBACK: closing says it did not happen.
    if (version_ == Version::kV311) co_return CloseAfterWrite();
    for (auto& r : ack.reasons) r = ReasonCode::kUnspecifiedError;
  }
  if (closed_) co_return;
  Send(ack);
}

}  // namespace floe::frontend::mqtt
