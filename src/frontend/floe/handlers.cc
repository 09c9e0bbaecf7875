// The floe protocol's requests: each decodes its frame, calls the broker
// core, and answers with a frame (docs/protocol.md). Runs on the
// connection's strand; core callbacks post back to it.
#include <optional>

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include "frontend/floe/connection.h"
#include "frontend/floe/error_map.h"
#include "frontend/floe/log_limiter.h"

namespace floe::frontend {

using asio::awaitable;

namespace {
// Refused logins, across the node's connections: at most one line a second.
LogLimiter login_log(std::chrono::seconds(1));
}  // namespace

#define FLOE_DECODE_OR_CLOSE(var, Type, req, body)                                 \
  auto var = wire::DecodeBodyAs<Type>(body);                                       \
  if (!var) return Error(req, wire::WireError::kMalformedFrame, var.error().message(), true)

awaitable<void> Connection::OnHello(uint64_t req, std::span<const char> body) {
  auto h = wire::DecodeBodyAs<wire::Hello>(body);
  if (!h) co_return Error(req, wire::WireError::kMalformedFrame, h.error().message(), true);
  const uint16_t lo = std::max(h->min_version, wire::kMinVersion);
  const uint16_t hi = std::min(h->max_version, wire::kMaxVersion);
  if (lo > hi) {
    co_return Error(req, wire::WireError::kUnsupportedVersion,
                    fmt::format("node speaks versions {}-{}, client {}-{}", wire::kMinVersion, wire::kMaxVersion,
                                h->min_version, h->max_version),
                    true);
  }
  if (limits_->auth && !hello_) {
    // One login per connection: a second HELLO does not change the user.
    if (h->user.empty()) {
      login_log.Print("auth.login_refused", [&] {
        return fmt::format("node {}: refused a login from {}: no credentials", limits_->node_id, peer_address_);
      });
      co_return Error(req, wire::WireError::kAuthFailed,
                      fmt::format("node {} requires a user: HELLO version 2 with a user and password", limits_->node_id),
                      true);
    }
    auto self = shared_from_this();
    auto login = co_await AwaitCore<auth::LoginResult>([&](auto done) {
      limits_->auth->Authenticate(std::string(h->user), std::string(h->password), peer_address_, std::move(done));
    });
    if (closed_) co_return;
    if (!login.user) {
      login_log.Print("auth.login_refused", [&] {
        return fmt::format("node {}: refused a login from {} as {}: {}", limits_->node_id, peer_address_,
                           h->user, login.message);
      });
      co_return Error(req, wire::WireError::kAuthFailed, login.message, true);
    }
    user_ = login.user->name;
  }
  hello_ = true;
  Reply(req, wire::HelloOk{hi, limits_->max_frame_bytes, limits_->max_message_bytes, limits_->node_id});
}

std::shared_ptr<const auth::User> Connection::CurrentUser() const {
  return limits_->auth ? limits_->auth->Find(user_) : nullptr;
}

bool Connection::Permitted(uint64_t req, auth::Action action, std::string_view stream) {
  if (!limits_->auth) return true;
  const auto user = limits_->auth->Find(user_);
  if (!user) {
    Error(req, wire::WireError::kAuthFailed, fmt::format("user {} no longer exists", user_), true);
    return false;
  }
  if (auth::Allowed(*user, action, stream)) return true;
  // The same words whether or not the stream exists.
  Error(req, wire::WireError::kNotAuthorized,
        fmt::format("user {} may not {} stream {}", user_,
                    action == auth::Action::kPublish   ? "publish to"
                    : action == auth::Action::kConsume ? "consume from"
                                                       : "administer",
                    stream));
  return false;
}

awaitable<void> Connection::OnSessionOpen(uint64_t req, std::span<const char> body) {
  auto so = wire::DecodeBodyAs<wire::SessionOpen>(body);
  if (!so) co_return Error(req, wire::WireError::kMalformedFrame, so.error().message(), true);
  if (session_) co_return Error(req, wire::WireError::kInvalidArgument, "this connection already has a session");
  // Before the core looks the stream up: a refusal says nothing of whether it exists.
  if (!Permitted(req, so->role == wire::Role::kProducer ? auth::Action::kPublish : auth::Action::kConsume, so->stream))
    co_return;
  broker::SessionRequest r{.session_id = SessionId(so->session_id), .role = so->role, .stream = std::string(so->stream),
                           .consumer = std::string(so->consumer), .start_at = so->start_at,
                           .start_value = so->start_value};
  // The core reads and writes the bank on its own pool; the I/O thread
  // serves other connections meanwhile.
  auto self = shared_from_this();
  auto opened = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>(
      [&](auto done) { broker_->OpenSession(self, std::move(r), std::move(done)); });
  if (!opened) co_return Fail(req, opened.error());
  session_ = std::move(opened->session);
  if (closed_) co_return session_->Close();  // the client went away meanwhile
  if (!session_->serving()) {
    // The stream moved while the core opened the session: an eviction that
    // came meanwhile found no session here to evict.
    Fail(req, {broker::Code::kNotOwner, fmt::format("node {} no longer serves stream {}", limits_->node_id,
                                                     session_->stream_name()), {}});
    co_return RequestClose();
  }
  const broker::SessionGrant& g = opened->grant;
  wire::SessionOk ok{.session_id = g.session_id.value(), .epoch = g.epoch.value(),
                     .highest_producer_seq = g.highest_producer_seq.value(), .highest_seq = g.highest_seq.value(),
                     .ack_floor = g.ack_floor.value(), .chunk_producer_seq = g.chunk_producer_seq.value(),
                     .chunk_bytes = g.chunk_bytes.value()};
  for (const auto& p : g.pending) ok.pending.push_back({p.seq.value(), p.delivery_count});
  Reply(req, ok);
}

void Connection::OnPublish(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(pub, wire::Publish, req, body);
  if (!session_ || session_->role() != wire::Role::kProducer)
    return Error(req, wire::WireError::kNoSession, "PUBLISH needs a producer session");
  if (!Permitted(req, auth::Action::kPublish, session_->stream_name())) return;
  std::vector<broker::PublishInput> in;
  in.reserve(pub->messages.size());
  for (const auto& m : pub->messages) in.push_back({ProducerSeq(m.producer_seq), m.key, m.headers, m.payload});
  const uint64_t bytes = body.size();
  inflight_bytes_ += bytes;
  auto self = shared_from_this();
  session_->Publish(in, bytes, [self, req, bytes](broker::PublishOutcome out) {
    wire::PublishAck ack;
    ack.results.reserve(out.results.size());
    for (const auto& r : out.results)
      ack.results.push_back({r.producer_seq.value(), ToWire(r.code), r.duplicate, r.seq.value()});
    std::string f;
    wire::AppendFrame(&f, req, ack);
    // The in-flight count drops on the strand, after the ACK is queued: a
    // close that waits for it (GOODBYE, node stop) cannot slip in between
    // and drop the ACK.
    asio::post(self->strand_, [self, fenced = out.fenced, f = std::move(f), bytes] {
      if (!fenced && self->session_->serving()) {
        self->Enqueue(f);
      } else if (!self->closed_ && !self->close_after_flush_) {
        self->LeaveStream("");  // fencing: the producer resends to the new owner
      }
      self->inflight_bytes_ -= bytes;
      self->inflight_signal_.cancel();
      self->MaybeClose();  // a GOODBYE may be waiting for this ACK
    });
  });
}

void Connection::OnPublishChunk(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(c, wire::PublishChunk, req, body);
  if (!session_ || session_->role() != wire::Role::kProducer)
    return Error(req, wire::WireError::kNoSession, "PUBLISH_CHUNK needs a producer session");
  if (!Permitted(req, auth::Action::kPublish, session_->stream_name())) return;
  broker::ChunkInput in{ProducerSeq(c->producer_seq), ByteOffset(c->total_size), ByteOffset(c->offset), c->key, c->headers,
                        c->data};
  auto self = shared_from_this();
  session_->PublishChunk(in, [self, req](broker::ChunkResult r) {
    asio::post(self->strand_, [self, req, r] {
      if (r.fenced) return self->LeaveStream("");  // no ACK
      self->Reply(req, wire::ChunkAck{.producer_seq = r.producer_seq.value(), .code = ToWire(r.code),
                                      .durable_bytes = r.durable_bytes.value(), .seq = r.seq.value(),
                                      .duplicate = r.duplicate});
    });
  });
}

void Connection::OnFetchChunk(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(fc, wire::FetchChunk, req, body);
  if (!session_ || session_->role() != wire::Role::kConsumer)
    return Error(req, wire::WireError::kNoSession, "FETCH_CHUNK needs a consumer session");
  if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) return;
  // The core bounds the read (BrokerOptions::max_read_bytes, half a frame).
  auto self = shared_from_this();
  session_->FetchChunk(StreamSeq(fc->seq), ByteOffset(fc->offset), fc->max_bytes, [self, req](broker::Outcome<broker::ChunkData> c) {
    asio::post(self->strand_, [self, req, c = std::move(c)] {
      if (!c && c.error().code == broker::Code::kNotOwner) return self->LeaveStream(c.error().redirect);
      if (!c) return self->Fail(req, c.error());
      self->Reply(req, wire::Chunk{.seq = c->seq.value(), .total_size = c->total_size.value(), .offset = c->offset.value(),
                                   .data = c->data});
    });
  });
}

void Connection::OnAnswer(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(a, wire::Answer, req, body);
  if (!session_ || session_->role() != wire::Role::kConsumer)
    return Error(req, wire::WireError::kNoSession, "ANSWER needs a consumer session");
  if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) return;
  std::vector<broker::AnswerInput> items;
  items.reserve(a->items.size());
  for (const auto& i : a->items) items.push_back({StreamSeq(i.seq), i.kind, i.delay_ms});
  auto self = shared_from_this();
  session_->Answer(items, [self, req, items = a->items](broker::Outcome<std::vector<broker::Code>> codes) {
    std::string f;
    if (codes) {
      wire::AnswerOk ok;
      ok.results.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) ok.results.push_back({items[i].seq, ToWire((*codes)[i])});
      wire::AppendFrame(&f, req, ok);
    } else {
      f = ErrorFrame(req, codes.error());
    }
    self->SendFrame(std::move(f));
  });
}

void Connection::OnFetch(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(f, wire::Fetch, req, body);
  if (!session_ || session_->role() != wire::Role::kConsumer)
    return Error(req, wire::WireError::kNoSession, "FETCH needs a consumer session");
  if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) return;
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self, req, fetch = *f]() -> awaitable<void> { co_await self->FetchLoop(req, fetch); },
                 asio::detached);
}

void Connection::OnSubscribe(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(s, wire::Subscribe, req, body);
  if (!session_ || session_->role() != wire::Role::kConsumer)
    return Error(req, wire::WireError::kNoSession, "SUBSCRIBE needs a consumer session");
  if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) return;
  if (subscribed_) return Error(req, wire::WireError::kInvalidArgument, "already subscribed");
  subscribed_ = true;
  credit_ = s->credit;
  push_wake_ = std::make_shared<asio::steady_timer>(strand_);
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self, req]() -> awaitable<void> { co_await self->PushLoop(req); }, asio::detached);
}

void Connection::OnCredit(uint64_t req, std::span<const char> body) {
  FLOE_DECODE_OR_CLOSE(c, wire::Credit, req, body);
  credit_ += c->credit;
  if (push_wake_) push_wake_->cancel();
}

awaitable<void> Connection::OnAdmin(const wire::FrameHeader& h, std::span<const char> body) {
  using wire::FrameType;
  const uint64_t req = h.request_id;
  // The core answers on its bank pool; the request is awaited, so requests
  // stay in order and the reply is queued before a later GOODBYE closes.
  switch (h.type) {
    case FrameType::kStreamCreate: {
      auto c = wire::DecodeBodyAs<wire::StreamCreate>(body);
      if (!c) co_return Error(req, wire::WireError::kMalformedFrame, c.error().message(), true);
      if (!Permitted(req, auth::Action::kAdmin, c->name)) co_return;
      auto r = co_await AwaitCore<broker::Outcome<void>>(
          [&](auto done) { broker_->CreateStream(std::string(c->name), c->config, std::move(done)); });
      co_return r ? Reply(req, wire::Ok{}) : Fail(req, r.error());
    }
    case FrameType::kStreamDelete: {
      auto d = wire::DecodeBodyAs<wire::StreamDelete>(body);
      if (!d) co_return Error(req, wire::WireError::kMalformedFrame, d.error().message(), true);
      if (!Permitted(req, auth::Action::kAdmin, d->name)) co_return;
      auto r = co_await AwaitCore<broker::Outcome<void>>(
          [&](auto done) { broker_->DeleteStream(std::string(d->name), std::move(done)); });
      co_return r ? Reply(req, wire::Ok{}) : Fail(req, r.error());
    }
    case FrameType::kStreamList: {
      auto l = wire::DecodeBodyAs<wire::StreamList>(body);
      if (!l) co_return Error(req, wire::WireError::kMalformedFrame, l.error().message(), true);
      auto names = co_await AwaitCore<broker::Outcome<std::vector<std::string>>>(
          [&](auto done) { broker_->ListStreams(std::move(done)); });
      if (!names) co_return Fail(req, names.error());
      wire::StreamListOk ok;
      // With users on: only the streams the user has some permission on.
      const auto user = CurrentUser();
      if (limits_->auth && !user)
        co_return Error(req, wire::WireError::kAuthFailed, fmt::format("user {} no longer exists", user_), true);
      for (const auto& n : *names)
        if (!user || auth::MaySee(*user, n)) ok.names.push_back(n);
      co_return Reply(req, ok);
    }
    case FrameType::kStreamInfo: {
      auto i = wire::DecodeBodyAs<wire::StreamInfo>(body);
      if (!i) co_return Error(req, wire::WireError::kMalformedFrame, i.error().message(), true);
      if (limits_->auth) {
        const auto user = CurrentUser();
        if (!user)
          co_return Error(req, wire::WireError::kAuthFailed, fmt::format("user {} no longer exists", user_), true);
        if (!auth::MaySee(*user, i->name))
          co_return Error(req, wire::WireError::kNotAuthorized,
                          fmt::format("user {} has no permission on stream {}", user_, i->name));
      }
      auto s = co_await AwaitCore<broker::Outcome<broker::StreamStatus>>(
          [&](auto done) { broker_->DescribeStream(std::string(i->name), std::move(done)); });
      if (!s) co_return Fail(req, s.error());
      wire::StreamInfoOk ok;
      ok.name = s->name;
      ok.config = s->config;
      ok.first_seq = s->first_seq.value();
      ok.frontier = s->frontier.value();
      ok.bytes = s->bytes;
      for (const auto& c : s->consumers)
        ok.consumers.push_back({c.name, c.ack_floor.value(), c.next_seq.value(), c.pending, c.lag});
      co_return Reply(req, ok);
    }
    case FrameType::kDeadLetter: {
      auto m = wire::DecodeBodyAs<wire::DeadLetter>(body);
      if (!m) co_return Error(req, wire::WireError::kMalformedFrame, m.error().message(), true);
      if (!Permitted(req, auth::Action::kAdmin, m->stream)) co_return;  // the nodes' own user may
      broker::DeadLetterMove move{.stream = std::string(m->stream), .source_stream = std::string(m->source_stream),
                                  .consumer = std::string(m->consumer), .source_seq = StreamSeq(m->source_seq),
                                  .key = std::string(m->key), .headers = std::string(m->headers),
                                  .payload = std::string(m->payload)};
      auto r = co_await AwaitCore<broker::Outcome<broker::DeadLetterStored>>(
          [&](auto done) { broker_->AppendDeadLetter(std::move(move), std::move(done)); });
      if (!r) co_return Fail(req, r.error());
      wire::PublishAck ack;
      ack.results.push_back({.producer_seq = m->source_seq, .code = wire::WireError::kOk,
                             .duplicate = r->duplicate, .seq = r->seq.value()});
      co_return Reply(req, ack);
    }
    default:
      co_return;
  }
}

}  // namespace floe::frontend
