// PUBLISH from a client into the MQTT stream (docs/mqtt.md "QoS"): topic
// aliases, the Receive Maximum, PUBACK / PUBREC once durable, and the
// inbound QoS 2 state that makes a resend after any reconnect — to this node
// or another — stored once; and the session record's coalesced writes.
#include <fmt/format.h>

#include "frontend/mqtt/connection.h"
#include "base/logging.h"
#include "frontend/mqtt/internal.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using codec::ReasonCode;
using codec::Version;

std::string Connection::RouteKey(std::string_view topic) const {
  const auto view = bindings_->view();
  const std::string& stream = RouteTopic(view->bindings, topic, options_->stream);
  return stream == options_->stream ? std::string() : stream;
}

broker::Session* Connection::ProducerFor(const std::string& key) {
  if (key.empty()) return producer_.get();
  auto it = bound_producers_.find(key);
  return it == bound_producers_.end() ? nullptr : it->second.session.get();
}

uint64_t& Connection::NextSeqFor(const std::string& key) {
  if (key.empty()) return next_producer_seq_;
  return bound_producers_[key].next_seq;
}

awaitable<bool> Connection::OpenBoundProducer(const std::string& key, std::string* why) {
  auto self = shared_from_this();
  // Its own core session (a producer's seqs are per stream), named by the
  // client identifier and the stream, resumed across connections.
  auto p = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
    broker_->OpenSession(self,
                         {.session_id = SessionId(ClientHash(client_id_ + "\n" + key) | 1),
                          .role = Role::kProducer,
                          .stream = key},
                         std::move(done));
  });
  if (p && closed_) p->session->Close();
  if (closed_) co_return false;
  if (!p) {
    *why = fmt::format("stream {} (bound to this topic) cannot take it here: {}", key, p.error().message);
    co_return false;
  }
  uint64_t next = p->grant.highest_producer_seq.value() + 1;
  // Above every seq an earlier connection reserved for a QoS 2 message of
  // this stream.
  for (const auto& [id, stream] : record_.qos2_in_stream)
    if (stream == key) next = std::max(next, record_.qos2_in[id] + 1);
  bound_producers_[key] = BoundProducer{p->session, next};
  co_return true;
}

awaitable<bool> Connection::OnPublish(codec::Publish& p) {
  // Topic aliases [MQTT-3.3.2-7 ...]: a PUBLISH may set one, or use one.
  std::string topic(p.topic);
  if (p.properties.topic_alias) {
    const uint16_t alias = *p.properties.topic_alias;
    if (alias == 0 || alias > options_->topic_alias_maximum) {
      Disconnect(ReasonCode::kTopicAliasInvalid, fmt::format("topic alias {} outside 1..{}", alias,
                                                             options_->topic_alias_maximum));
      co_return false;
    }
    if (topic.empty()) {
      auto it = topic_aliases_.find(alias);
      if (it == topic_aliases_.end()) {
        Disconnect(ReasonCode::kProtocolError, fmt::format("topic alias {} was never set", alias));
        co_return false;
      }
      topic = it->second;
    } else {
      topic_aliases_[alias] = topic;
    }
  }
  if (topic.empty()) {
    Disconnect(ReasonCode::kProtocolError, "PUBLISH without a topic");
    co_return false;
  }
  if (!MayPublish(topic)) {
    // Nothing stored. QoS 0 has no answer; 3.1.1 has no failure code (closing says it).
    if (p.qos == 0) co_return true;
    if (version_ == Version::kV311) {
      CloseAfterWrite();
      co_return false;
    }
    if (p.qos == 1) Send(codec::Puback{{p.packet_id, ReasonCode::kNotAuthorized, {}}});
    else Send(codec::Pubrec{{p.packet_id, ReasonCode::kNotAuthorized, {}}});
    co_return true;
  }
  bool resend = false;
  if (p.qos == 2) {
    auto known = inbound_qos2_.find(p.packet_id);
    if (known != inbound_qos2_.end()) {
      switch (known->second) {
        case Inbound::kStored:  // its PUBREC was lost: answered again, not stored again
          Send(codec::Pubrec{{p.packet_id, ReasonCode::kSuccess, {}}});
          co_return true;
        case Inbound::kMapping:
        case Inbound::kStoring:
        case Inbound::kReleasing:
          co_return true;  // answered when that resolves
        case Inbound::kResumed:
          // Mapped to a producer seq by an earlier connection: whether or not
          // that one stored it, storing it with the same seq stores it once.
          resend = true;
          break;
      }
    }
  }
  if (p.qos > 0 && ++inbound_inflight_ > options_->receive_maximum) {
    Disconnect(ReasonCode::kReceiveMaximumExceeded,
               fmt::format("more than {} QoS 1 and 2 PUBLISHes unacknowledged", options_->receive_maximum));
    co_return false;
  }
  // The stream: the bound one whose filter matches best, or the default.
  // A QoS 2 resend goes where its first attempt went (the record says),
  // whatever the bindings say now: its producer seq is that stream's.
  std::string key;
  if (resend) {
    auto s = record_.qos2_in_stream.find(p.packet_id);
    if (s != record_.qos2_in_stream.end()) key = s->second;
  } else {
    key = RouteKey(topic);
  }
  if (!key.empty() && !bound_producers_.count(key)) {
    FlushPublishes();  // stored after what came before it
    std::string why;
    const bool opened = co_await OpenBoundProducer(key, &why);
    if (closed_) co_return false;
    if (!opened) {
      // Not stored: said so, never stored elsewhere (its subscribers read
      // the bound stream for it).
      logging::Warn("mqtt.publish_failed", fmt::format("PUBLISH on {} not stored: {}", topic, why),
                    {{"client", client_id_}, {"topic", topic}});
      if (p.qos == 0) co_return true;
      --inbound_inflight_;
      if (version_ == Version::kV311) {
        CloseAfterWrite();
        co_return false;
      }
      if (p.qos == 1) Send(codec::Puback{{p.packet_id, ReasonCode::kUnspecifiedError, {}}});
      else Send(codec::Pubrec{{p.packet_id, ReasonCode::kUnspecifiedError, {}}});
      co_return true;
    }
  }
  std::string headers = EncodeMessageHeaders(
      {.topic = topic, .qos = p.qos, .retain = p.retain, .client = client_key_, .properties = &p.properties});
  const uint16_t id = p.packet_id;
  if (p.qos == 2) {
    FlushPublishes();  // stored after what came before it
    if (resend) {
      inbound_qos2_[id] = Inbound::kStoring;
      StoreQos2(key, id, record_.qos2_in[id], BeginRetain(p.retain, topic, headers, p.payload), std::move(headers),
                std::string(p.payload));
      co_return true;
    }
    // The packet id's producer seq is durable before the message is stored:
    // a resend after the node dies finds it (record_.qos2_in).
    const uint64_t pseq = NextSeqFor(key)++;
    record_.qos2_in[id] = pseq;
    if (!key.empty()) record_.qos2_in_stream[id] = key;
    inbound_qos2_[id] = Inbound::kMapping;
    auto self = shared_from_this();
    Persist([self, key, id, pseq, retain = p.retain, topic, headers = std::move(headers),
             payload = std::string(p.payload)](bool ok) mutable {
      if (self->closed_) return;
      if (ok) {
        self->inbound_qos2_[id] = Inbound::kStoring;
        auto r = self->BeginRetain(retain, topic, headers, payload);
        return self->StoreQos2(key, id, pseq, std::move(r), std::move(headers), std::move(payload));
      }
      self->inbound_qos2_.erase(id);
      self->record_.qos2_in.erase(id);
      self->record_.qos2_in_stream.erase(id);
      --self->inbound_inflight_;
      if (self->version_ == Version::kV311) return self->CloseAfterWrite();
      self->Send(codec::Pubrec{{id, ReasonCode::kImplementationSpecificError, {}}});
    });
    co_return true;
  }
  StoreAndAnswer(key, p.qos, id, std::move(topic), p.retain, std::move(headers), p.payload);
  co_return true;
}

// After the stream's outcome: with RETAIN and stored, the topic's retained
// record (retained.h) is committed before `then` runs, so a PUBACKed
// retained message survives kill -9; `then` gets the code to answer with.
void Connection::AfterStore(broker::PublishOutcome out, std::shared_ptr<RetainRequest> retain,
                            std::function<void(broker::Code stored, broker::Code answer)> then) {
  const broker::Code code = out.fenced ? broker::Code::kNotOwner : out.results[0].code;
  if (!retain) return then(code, code);
  if (code != broker::Code::kOk) {
    retained_->Abandon();
    return then(code, code);
  }
  retained_->Commit(std::move(retain->topic), out.results[0].seq.value(), std::move(retain->headers),
                    std::move(retain->payload), [then = std::move(then)](broker::Outcome<void> r) {
                      // Stored, not retained: a failure all the same (the
                      // client sends it again); a hash collision is 0x83.
                      then(broker::Code::kOk, r ? broker::Code::kOk
                                                : r.error().code == broker::Code::kInvalidArgument
                                                      ? broker::Code::kStorageFailed
                                                      : r.error().code);
                    });
}

std::shared_ptr<Connection::RetainRequest> Connection::BeginRetain(bool retain, const std::string& topic,
                                                                   const std::string& headers,
                                                                   std::string_view payload) {
  if (!retain) return nullptr;
  retained_->Begin();
  return std::make_shared<RetainRequest>(RetainRequest{topic, headers, std::string(payload)});
}

void Connection::StoreAndAnswer(const std::string& key, uint8_t qos, uint16_t id, std::string topic, bool retain,
                                std::string headers, std::string_view payload) {
  if (key != batch_key_) FlushPublishes();  // one batch, one stream
  batch_key_ = key;
  if (!retain) {
    // Gathered: the PUBLISHes of one read go to the core as one request
    // (one append, one completion), in the order they came.
    batch_bytes_ += headers.size() + payload.size();
    batch_.push_back({NextSeqFor(key)++, qos, id, std::move(headers), std::string(payload)});
    if (batch_bytes_ >= kMaxBatchBytes) FlushPublishes();
    return;
  }
  FlushPublishes();  // stored after what came before it
  auto self = shared_from_this();
  broker::Session* producer = ProducerFor(key);
  if (!producer) return AnswerStored(key, qos, id, broker::Code::kNotOwner, broker::Code::kNotOwner);  // evicted
  const broker::PublishInput in{ProducerSeq(NextSeqFor(key)++), {}, headers, payload};
  auto r = BeginRetain(retain, topic, headers, payload);
  producer->Publish({&in, 1}, payload.size(), [self, key, qos, id, r](broker::PublishOutcome out) {
    self->AfterStore(std::move(out), r, [self, key, qos, id](broker::Code stored, broker::Code code) {
      asio::post(self->strand_, [self, key, qos, id, stored, code] { self->AnswerStored(key, qos, id, stored, code); });
    });
  });
}

void Connection::FlushPublishes() {
  if (batch_.empty()) return;
  auto batch = std::make_shared<std::vector<Pending>>(std::exchange(batch_, {}));
  const uint64_t bytes = std::exchange(batch_bytes_, 0);
  std::vector<broker::PublishInput> in;
  in.reserve(batch->size());
  for (const Pending& m : *batch) in.push_back({ProducerSeq(m.producer_seq), {}, m.headers, m.payload});
  auto self = shared_from_this();
  const std::string key = batch_key_;
  broker::Session* producer = ProducerFor(key);
  if (!producer) {  // its bound stream left this node meanwhile
    for (const Pending& m : *batch) AnswerStored(key, m.qos, m.packet_id, broker::Code::kNotOwner, broker::Code::kNotOwner);
    return;
  }
  producer->Publish(in, bytes, [self, key, batch](broker::PublishOutcome out) {
    asio::post(self->strand_, [self, key, batch, out = std::move(out)] {
      for (size_t i = 0; i < batch->size(); ++i) {
        const broker::Code code = out.fenced ? broker::Code::kNotOwner : out.results[i].code;
        self->AnswerStored(key, (*batch)[i].qos, (*batch)[i].packet_id, code, code);
      }
    });
  });
}

void Connection::AnswerStored(const std::string& key, uint8_t qos, uint16_t id, broker::Code stored,
                              broker::Code code) {
  // MQTT clients do not resend in producer-seq order (and never resend
  // QoS 0): a message not stored must not hold the later ones back.
  if (stored != broker::Code::kOk && !closed_)
    if (broker::Session* producer = ProducerFor(key)) producer->ForgetUnstored();
  if (qos == 0 || closed_) return;
  --inbound_inflight_;
  if (auto d = DisconnectFor(code)) return Disconnect(*d, "the message was not stored");
  const ReasonCode reason = ReasonOf(code);
  if (version_ == Version::kV311 && codec::IsFailure(reason)) {
    // 3.1.1 has no failure in PUBACK: closing is the only way to say the
    // message was not stored; the client resends it on reconnect.
    return CloseAfterWrite();
  }
  Send(codec::Puback{{id, reason, {}}});
}

void Connection::StoreQos2(const std::string& key, uint16_t id, uint64_t pseq, std::shared_ptr<RetainRequest> retain, std::string headers,
                           std::string payload) {
  auto self = shared_from_this();
  auto held = std::make_shared<std::pair<std::string, std::string>>(std::move(headers), std::move(payload));
  const broker::PublishInput in{ProducerSeq(pseq), {}, held->first, held->second};
  broker::Session* producer = ProducerFor(key);
  if (!producer) {
    --inbound_inflight_;
    inbound_qos2_.erase(id);  // the mapping stays in the record: a resend after a reconnect stores it once
    inbound_qos2_[id] = Inbound::kResumed;
    return Disconnect(ReasonCode::kUseAnotherServer, "the message's stream is not served here now");
  }
  producer->Publish({&in, 1}, held->second.size(), [self, key, id, held, retain](broker::PublishOutcome out) {
    // A duplicate (stored by an earlier connection) is kOk too.
    self->AfterStore(std::move(out), retain, [self, key, id](broker::Code, broker::Code code) {
    asio::post(self->strand_, [self, key, id, code] {
      if (self->closed_) return;
      --self->inbound_inflight_;
      const ReasonCode reason = ReasonOf(code);
      if (code != broker::Code::kOk) {
        if (broker::Session* producer = self->ProducerFor(key)) producer->ForgetUnstored();
        self->inbound_qos2_.erase(id);
        self->record_.qos2_in.erase(id);  // a resend is a new message: a new seq
        self->record_.qos2_in_stream.erase(id);
        if (auto d = DisconnectFor(code)) return self->Disconnect(*d, "the message was not stored");
        if (self->version_ == Version::kV311) return self->CloseAfterWrite();
      } else {
        self->inbound_qos2_[id] = Inbound::kStored;
      }
      self->Send(codec::Pubrec{{id, reason, {}}});
    });
    });
  });
}

void Connection::OnPubrel(const codec::Pubrel& p) {
  const uint16_t id = p.packet_id;
  auto it = inbound_qos2_.find(id);
  if (it != inbound_qos2_.end() && it->second != Inbound::kStored && it->second != Inbound::kResumed) {
    return;  // not PUBRECed yet (or already releasing): nothing to release now
  }
  if (it != inbound_qos2_.end()) inbound_qos2_.erase(it);
  record_.qos2_in_stream.erase(id);
  if (record_.qos2_in.erase(id) == 0) {
    // Not known: a resend whose release is durable already (its PUBCOMP was
    // lost). Completed.
    Send(codec::Pubcomp{{id, ReasonCode::kSuccess, {}}});
    return;
  }
  // PUBCOMP only once the record no longer holds the id: after PUBCOMP the
  // client may use it for a new message, which must not pass for a resend.
  inbound_qos2_[id] = Inbound::kReleasing;
  auto self = shared_from_this();
  Persist([self, id](bool ok) {
    if (self->closed_) return;
    self->inbound_qos2_.erase(id);
    if (!ok) return self->Disconnect(ReasonCode::kUnspecifiedError, "the session record could not be written");
    self->Send(codec::Pubcomp{{id, ReasonCode::kSuccess, {}}});
  });
}

void Connection::Persist(std::function<void(bool ok)> after) {
  if (taken_over_) {
    if (after) after(false);
    return;
  }
  persist_next_.push_back(after ? std::move(after) : [](bool) {});
  if (!persisting_) StartPersist();
}

void Connection::StartPersist() {
  persisting_ = true;
  auto waiting = std::make_shared<std::vector<std::function<void(bool)>>>(std::move(persist_next_));
  persist_next_.clear();
  auto self = shared_from_this();
  broker_->WriteRecord(RecordKey(), EncodeSessionRecord(record_), [self, waiting](broker::Outcome<void> r) {
    asio::post(self->strand_, [self, waiting, ok = r.has_value()] {
      self->persisting_ = false;
      for (auto& f : *waiting) f(ok);
      if (!self->persist_next_.empty() && !self->taken_over_) self->StartPersist();
      else
        for (auto& f : std::exchange(self->persist_next_, {})) f(false);
    });
  });
}

awaitable<Status> Connection::SaveRecord() {
  const bool ok = co_await AwaitCore<bool>([&](auto done) { Persist(std::move(done)); });
  co_return ok ? Status::OK() : Status::Unavailable("the session record could not be written to the bank");
}

}  // namespace floe::frontend::mqtt
