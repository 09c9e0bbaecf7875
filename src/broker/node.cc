#include "broker/node.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include "bank/bank.h"
#include "broker/registry.h"
#include "log/batch.h"

namespace floe::broker {

using asio::awaitable;
using asio::ip::tcp;
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// The socket is accepted on a strand, so its executor serialises the connection.
using Strand = asio::any_io_executor;

class Connection;

std::string ErrorFrame(uint64_t request_id, wire::WireError code, std::string_view message) {
  std::string f;
  wire::AppendFrame(&f, request_id, wire::Error{code, wire::IsRetriable(code), message});
  return f;
}

}  // namespace

class Node::Impl {
 public:
  explicit Impl(NodeOptions options) : options_(std::move(options)), acceptor_(io_) {}

  Status Init();
  void Stop();
  void Wait() {
    std::unique_lock l(stop_mu_);
    stop_cv_.wait(l, [&] { return stopped_; });
  }

  awaitable<void> AcceptLoop();
  uint64_t NewSessionId() {
    std::lock_guard l(sessions_mu_);
    uint64_t id;
    do id = rng_(); while (id == 0);
    return id;
  }
  // Makes `conn` the one connection serving session `id`; the previous one, if
  // any, is closed (the client reconnected).
  void ClaimSession(uint64_t id, const std::shared_ptr<Connection>& conn);
  void ReleaseSession(uint64_t id, const Connection* conn);
  // The lock every connection of session `id` holds while it checks for
  // duplicates and appends, so an old connection still finishing a PUBLISH
  // and the new one resending it cannot both store a message.
  std::shared_ptr<std::mutex> PublishLock(uint64_t id) {
    std::lock_guard l(sessions_mu_);
    auto& weak = publish_locks_[id];
    auto lock = weak.lock();
    if (!lock) weak = lock = std::make_shared<std::mutex>();
    return lock;
  }
  void Forget(const Connection* conn);

  const NodeOptions options_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::unique_ptr<bank::Bank> bank_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<CursorFlusher> flusher_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::signal_set> signals_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> inflight_bytes_{0};  // node-wide publish bytes awaiting ACK

  std::mutex sessions_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> sessions_;
  std::unordered_map<uint64_t, std::weak_ptr<std::mutex>> publish_locks_;
  std::set<std::shared_ptr<Connection>> connections_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;
};

namespace {

// One client connection. Everything but SendFrame runs on the connection's
// strand (the socket's executor). Frames to send queue in outbox_ and one
// writer coroutine drains it.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Node::Impl* node, tcp::socket socket)
      : node_(node),
        socket_(std::move(socket)),
        strand_(socket_.get_executor()),
        inflight_signal_(strand_) {
    inflight_signal_.expires_at(asio::steady_timer::time_point::max());
  }

  void Start() {
    auto self = shared_from_this();
    asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->ReadLoop(); }, asio::detached);
  }

  // Any thread.
  void SendFrame(std::string frame) {
    asio::post(strand_, [self = shared_from_this(), f = std::move(frame)] { self->Enqueue(f); });
  }
  // Any thread: finish what is queued, then close.
  void CloseSoon() {
    asio::post(strand_, [self = shared_from_this()] {
      asio::error_code ec;
      self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
      self->RequestClose();
    });
  }
  // Any thread: stop taking requests (node stopping).
  void StopReading() {
    asio::post(strand_, [self = shared_from_this()] {
      self->reading_ = false;
      asio::error_code ec;
      self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
    });
  }
  uint64_t inflight_bytes() const { return inflight_bytes_.load(); }

 private:
  struct PublishWait;  // a PUBLISH whose messages are still being resolved

  // Frames queue in outbox_ while a write is in flight; the write's
  // completion sends whatever queued meanwhile, in one write.
  void Enqueue(std::string_view frame) {
    if (closed_) return;
    outbox_.append(frame);
    if (!writing_) StartWrite();
  }
  void StartWrite();
  void OnWritten(const asio::error_code& ec);
  // Stop reading; close once everything queued is written.
  void RequestClose() {
    close_after_flush_ = true;
    reading_ = false;
    MaybeClose();
  }
  // Closes once nothing is being written and no PUBLISH awaits its ACK.
  void MaybeClose() {
    if (close_after_flush_ && !writing_ && inflight_bytes_ == 0) FinishClose();
  }
  void FinishClose();
  void Error(uint64_t request_id, wire::WireError code, std::string_view message, bool close = false) {
    Enqueue(ErrorFrame(request_id, code, message));
    if (close) {
      close_after_flush_ = true;
      reading_ = false;
    }
  }

  awaitable<void> ReadLoop();
  awaitable<void> Dispatch(const wire::FrameHeader& h, std::span<const char> body);
  void OnHello(uint64_t req, std::span<const char> body);
  void OnSessionOpen(uint64_t req, std::span<const char> body);
  void OnPublish(uint64_t req, std::span<const char> body);
  void OnAnswer(uint64_t req, std::span<const char> body);
  void OnAdmin(const wire::FrameHeader& h, std::span<const char> body);
  awaitable<void> FetchLoop(uint64_t req, wire::Fetch fetch);
  awaitable<void> PushLoop(uint64_t req);
  // Builds a DELIVERY frame of up to max_messages / max_bytes for this
  // consumer session; returns how many entries it holds.
  size_t Deliver(uint64_t req, uint32_t max_messages, uint32_t max_bytes, std::string* frame);
  void DeadLetter(uint64_t seq);
  awaitable<void> WaitForChange(std::chrono::steady_clock::time_point until);
  void Cleanup();

  Node::Impl* node_;
  tcp::socket socket_;
  Strand strand_;
  asio::steady_timer inflight_signal_;  // wakes ReadLoop blocked on backpressure
  std::string outbox_;   // frames waiting for the current write to finish
  std::string sending_;  // the bytes of the write in flight
  bool writing_ = false;
  bool hello_ = false;
  bool reading_ = true;
  bool closed_ = false;
  bool close_after_flush_ = false;
  std::atomic<uint64_t> inflight_bytes_{0};

  // The session, once opened.
  uint64_t session_id_ = 0;
  wire::Role role_ = wire::Role::kProducer;
  std::shared_ptr<std::mutex> publish_lock_;
  std::shared_ptr<StreamEntry> stream_;
  std::shared_ptr<ConsumerGroup> consumer_;
  // Push subscription.
  bool subscribed_ = false;
  uint64_t subscribe_req_ = 0;
  uint64_t credit_ = 0;
  std::shared_ptr<asio::steady_timer> push_wake_;
};

void Connection::StartWrite() {
  writing_ = true;
  sending_.clear();
  sending_.swap(outbox_);
  // The completion runs on the socket's executor, the connection's strand.
  asio::async_write(socket_, asio::buffer(sending_),
                    [self = shared_from_this()](const asio::error_code& ec, size_t) { self->OnWritten(ec); });
}

void Connection::OnWritten(const asio::error_code& ec) {
  writing_ = false;
  if (ec) return FinishClose();
  if (!outbox_.empty()) return StartWrite();
  MaybeClose();
}

void Connection::FinishClose() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  inflight_signal_.cancel();
  if (push_wake_) push_wake_->cancel();
  Cleanup();
}

awaitable<void> Connection::ReadLoop() {
  char header[wire::kFrameHeaderSize];
  std::string body;
  while (reading_ && !closed_) {
    // Backpressure: stop reading while too many publish bytes await ACKs.
    while ((inflight_bytes_ > node_->options_.max_connection_inflight_bytes ||
            node_->inflight_bytes_ > node_->options_.max_node_inflight_bytes) &&
           !closed_) {
      inflight_signal_.expires_after(std::chrono::milliseconds(50));
      co_await inflight_signal_.async_wait(kNoThrow);
    }
    auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(header), kNoThrow);
    if (ec) break;
    auto h = wire::DecodeFrameHeader({header, sizeof header}, node_->options_.max_frame_bytes);
    if (!h) {
      const bool too_large = h.error().code() == ErrorCode::kOutOfRange;
      Error(DecodeFixed64(header + 8), too_large ? wire::WireError::kFrameTooLarge : wire::WireError::kMalformedFrame,
            h.error().message(), true);
      break;
    }
    body.resize(h->body_size());
    auto [ec2, n2] = co_await asio::async_read(socket_, asio::buffer(body), kNoThrow);
    if (ec2) break;
    if (!hello_ && h->type != wire::FrameType::kHello) {
      Error(h->request_id, wire::WireError::kMalformedFrame, "the first frame must be HELLO", true);
      break;
    }
    co_await Dispatch(*h, body);
  }
  // The peer went away, we stopped reading, or a bad frame: close once what
  // is queued is written.
  if (!closed_) RequestClose();
}

awaitable<void> Connection::Dispatch(const wire::FrameHeader& h, std::span<const char> body) {
  using wire::FrameType;
  if (node_->stopping_ && h.type != FrameType::kGoodbye) {
    Error(h.request_id, wire::WireError::kShuttingDown, "node is shutting down");
    co_return;
  }
  switch (h.type) {
    case FrameType::kHello:
      OnHello(h.request_id, body);
      break;
    case FrameType::kPing: {
      if (auto p = wire::DecodeBodyAs<wire::Ping>(body); !p)
        co_return Error(h.request_id, wire::WireError::kMalformedFrame, p.error().message(), true);
      std::string f;
      wire::AppendFrame(&f, h.request_id, wire::Pong{});
      Enqueue(f);
      break;
    }
    case FrameType::kGoodbye:
      if (auto g = wire::DecodeBodyAs<wire::Goodbye>(body); !g)
        co_return Error(h.request_id, wire::WireError::kMalformedFrame, g.error().message(), true);
      RequestClose();  // after the ACKs of what is in flight
      break;
    case FrameType::kSessionOpen:
      OnSessionOpen(h.request_id, body);
      break;
    case FrameType::kPublish:
      OnPublish(h.request_id, body);
      break;
    case FrameType::kFetch: {
      auto f = wire::DecodeBodyAs<wire::Fetch>(body);
      if (!f) co_return Error(h.request_id, wire::WireError::kMalformedFrame, f.error().message(), true);
      if (!consumer_) co_return Error(h.request_id, wire::WireError::kNoSession, "FETCH needs a consumer session");
      auto self = shared_from_this();
      asio::co_spawn(strand_, [self, req = h.request_id, fetch = *f]() -> awaitable<void> {
        co_await self->FetchLoop(req, fetch);
      }, asio::detached);
      break;
    }
    case FrameType::kSubscribe: {
      auto s = wire::DecodeBodyAs<wire::Subscribe>(body);
      if (!s) co_return Error(h.request_id, wire::WireError::kMalformedFrame, s.error().message(), true);
      if (!consumer_) co_return Error(h.request_id, wire::WireError::kNoSession, "SUBSCRIBE needs a consumer session");
      if (subscribed_) co_return Error(h.request_id, wire::WireError::kInvalidArgument, "already subscribed");
      subscribed_ = true;
      subscribe_req_ = h.request_id;
      credit_ = s->credit;
      push_wake_ = std::make_shared<asio::steady_timer>(strand_);
      auto self = shared_from_this();
      asio::co_spawn(strand_, [self, req = h.request_id]() -> awaitable<void> { co_await self->PushLoop(req); },
                     asio::detached);
      break;
    }
    case FrameType::kCredit: {
      auto c = wire::DecodeBodyAs<wire::Credit>(body);
      if (!c) co_return Error(h.request_id, wire::WireError::kMalformedFrame, c.error().message(), true);
      credit_ += c->credit;
      if (push_wake_) push_wake_->cancel();
      break;
    }
    case FrameType::kAnswer:
      OnAnswer(h.request_id, body);
      break;
    case FrameType::kStreamCreate:
    case FrameType::kStreamDelete:
    case FrameType::kStreamList:
    case FrameType::kStreamInfo:
      OnAdmin(h, body);
      break;
    default:
      Error(h.request_id, wire::WireError::kUnknownType,
            fmt::format("frame type 0x{:02x} is not a request", static_cast<unsigned>(h.type)));
  }
}

void Connection::OnHello(uint64_t req, std::span<const char> body) {
  auto h = wire::DecodeBodyAs<wire::Hello>(body);
  if (!h) return Error(req, wire::WireError::kMalformedFrame, h.error().message(), true);
  const uint16_t lo = std::max(h->min_version, wire::kMinVersion);
  const uint16_t hi = std::min(h->max_version, wire::kMaxVersion);
  if (lo > hi) {
    return Error(req, wire::WireError::kUnsupportedVersion,
                 fmt::format("node speaks versions {}-{}, client {}-{}", wire::kMinVersion, wire::kMaxVersion,
                             h->min_version, h->max_version),
                 true);
  }
  hello_ = true;
  std::string f;
  wire::AppendFrame(&f, req,
                    wire::HelloOk{hi, node_->options_.max_frame_bytes, node_->options_.max_message_bytes,
                                  node_->options_.node_id});
  Enqueue(f);
}

void Connection::OnSessionOpen(uint64_t req, std::span<const char> body) {
  auto so = wire::DecodeBodyAs<wire::SessionOpen>(body);
  if (!so) return Error(req, wire::WireError::kMalformedFrame, so.error().message(), true);
  if (session_id_ != 0) return Error(req, wire::WireError::kInvalidArgument, "this connection already has a session");
  auto stream = node_->registry_->Get(std::string(so->stream));
  if (!stream) return Error(req, wire::WireError::kUnknownStream, fmt::format("no stream named '{}'", so->stream));
  if (so->role == wire::Role::kConsumer) {
    Status valid = wire::ValidateStreamName(so->consumer);
    if (!valid.ok()) return Error(req, wire::WireError::kInvalidName, "consumer " + std::string(valid.message()));
  }
  session_id_ = so->session_id ? so->session_id : node_->NewSessionId();
  role_ = so->role;
  stream_ = stream;
  node_->ClaimSession(session_id_, shared_from_this());
  if (role_ == wire::Role::kProducer) publish_lock_ = node_->PublishLock(session_id_);
  wire::SessionOk ok;
  ok.session_id = session_id_;
  ok.epoch = 1;
  if (role_ == wire::Role::kProducer) {
    ok.highest_producer_seq = stream_->log().HighestProducerSeq(session_id_, &ok.highest_seq);
  } else {
    const auto st = stream_->log().stats();
    uint64_t start = st.first_seq;
    if (so->start_at == wire::StartAt::kSeq) start = std::max(so->start_value, st.first_seq);
    if (so->start_at == wire::StartAt::kNew) start = st.frontier + 1;
    if (so->start_at == wire::StartAt::kTime) {
      auto t = stream_->log().SeekTime(static_cast<int64_t>(so->start_value));
      if (t) start = std::max(*t, st.first_seq);
    }
    consumer_ = stream_->GetOrCreateConsumer(std::string(so->consumer), start);
    std::lock_guard l(consumer_->mu);
    ok.ack_floor = consumer_->cursor.ack_floor();
    for (const auto& [seq, p] : consumer_->cursor.pending())
      if (p.session_id == session_id_) ok.pending.push_back({seq, p.delivery_count});
  }
  std::string f;
  wire::AppendFrame(&f, req, ok);
  Enqueue(f);
}

// A PUBLISH being resolved: its ack goes out when the last message resolves.
struct Connection::PublishWait {
  uint64_t request_id;
  uint64_t bytes;
  wire::PublishAck ack;
  std::atomic<size_t> remaining{0};
};

void Connection::OnPublish(uint64_t req, std::span<const char> body) {
  auto pub = wire::DecodeBodyAs<wire::Publish>(body);
  if (!pub) return Error(req, wire::WireError::kMalformedFrame, pub.error().message(), true);
  if (!stream_ || role_ != wire::Role::kProducer)
    return Error(req, wire::WireError::kNoSession, "PUBLISH needs a producer session");
  auto wait = std::make_shared<PublishWait>();
  wait->request_id = req;
  wait->bytes = body.size();
  wait->ack.results.resize(pub->messages.size());
  const uint32_t limit = std::min(stream_->config().max_message_bytes, node_->options_.max_message_bytes);
  std::vector<log::Message> fresh;
  std::vector<size_t> fresh_index;
  uint64_t last = 0;
  log::Stream& log = stream_->log();
  std::unique_lock session_lock(*publish_lock_);
  // Producer seqs above the highest the stream holds (or has in doubt) are
  // new: the common case needs no lookup per message.
  const uint64_t highest = log.HighestProducerSeq(session_id_);
  for (size_t i = 0; i < pub->messages.size(); ++i) {
    const wire::PublishMessage& m = pub->messages[i];
    wire::PublishResult& r = wait->ack.results[i];
    r.producer_seq = m.producer_seq;
    if (m.payload.size() + m.key.size() + m.headers.size() > limit) {
      r.code = wire::WireError::kMessageTooLarge;
      continue;
    }
    if (m.producer_seq == 0 || m.producer_seq <= last) {
      r.code = wire::WireError::kInvalidArgument;  // producer seqs start at 1 and increase within a frame
      continue;
    }
    if (!log::ParseHeaders(m.headers, [](void*, std::string_view, std::string_view) {}, nullptr).ok()) {
      r.code = wire::WireError::kInvalidArgument;
      continue;
    }
    last = m.producer_seq;
    auto found = m.producer_seq > highest ? log::Stream::ProducerLookup{}
                                          : log.LookupProducer(session_id_, m.producer_seq);
    switch (found.state) {
      case log::Stream::ProducerLookup::State::kCommitted:
        r.duplicate = true;
        r.seq = found.seq;
        break;
      case log::Stream::ProducerLookup::State::kInDoubt:
        // The first copy is being written; answer when it resolves.
        r.duplicate = true;
        r.seq = found.seq;
        ++wait->remaining;
        break;
      case log::Stream::ProducerLookup::State::kBelowWindow:
        r.code = wire::WireError::kDuplicateTooOld;
        break;
      case log::Stream::ProducerLookup::State::kNew:
        fresh.push_back({.payload = m.payload, .key = m.key, .encoded_headers = m.headers,
                         .producer_id = session_id_, .producer_seq = m.producer_seq});
        fresh_index.push_back(i);
        break;
    }
  }
  auto self = shared_from_this();
  auto finish = [self, wait](size_t n) {
    if (wait->remaining.fetch_sub(n) != n) return;
    std::string f;
    wire::AppendFrame(&f, wait->request_id, wait->ack);
    // The in-flight counts drop on the strand, after the ACK is queued: a
    // close that waits for them (GOODBYE, node stop) then cannot slip in
    // between and drop the ACK.
    asio::post(self->strand_, [self, f = std::move(f), bytes = wait->bytes] {
      self->Enqueue(f);
      self->inflight_bytes_ -= bytes;
      self->node_->inflight_bytes_ -= bytes;
      self->inflight_signal_.cancel();
      self->MaybeClose();  // a GOODBYE may be waiting for this ACK
    });
  };
  const size_t in_doubt = wait->remaining.load();
  wait->remaining += fresh.empty() ? 1 : fresh.size() + 1;  // +1: held until everything is registered
  inflight_bytes_ += wait->bytes;
  node_->inflight_bytes_ += wait->bytes;
  if (!fresh.empty()) {
    log.AppendAsync(fresh, [wait, fresh_index, finish](const log::AppendResult& res) {
      for (size_t k = 0; k < fresh_index.size(); ++k) {
        wire::PublishResult& r = wait->ack.results[fresh_index[k]];
        if (res.status.ok()) {
          r.seq = res.first_seq + k;
        } else {
          r.code = res.hole ? wire::WireError::kStorageFailed : wire::ToWireError(res.status);
        }
      }
      finish(fresh_index.size());
    });
  }
  session_lock.unlock();
  // Duplicates of in-doubt messages: wait for the frontier to pass them. If
  // the first copy failed (its seq became a hole), the producer is told to
  // resend: the dedup window forgot it, so the resend is stored.
  for (size_t i = 0; i < wait->ack.results.size() && in_doubt > 0; ++i) {
    wire::PublishResult& r = wait->ack.results[i];
    if (!r.duplicate || r.code != wire::WireError::kOk) continue;
    if (r.seq <= log.stats().frontier) {
      if (log.LookupProducer(session_id_, r.producer_seq).state != log::Stream::ProducerLookup::State::kCommitted)
        r.code = wire::WireError::kStorageFailed;
      finish(1);
      continue;
    }
    auto stream = stream_;
    auto check = std::make_shared<std::function<void()>>();
    *check = [stream, wait, i, finish, check, session = session_id_]() {
      wire::PublishResult& rr = wait->ack.results[i];
      auto st = stream->log().LookupProducer(session, rr.producer_seq);
      if (st.state == log::Stream::ProducerLookup::State::kInDoubt && st.seq == rr.seq) {
        stream->AddFrontierWaiter(*check);  // not yet: wait for the next move
        return;
      }
      if (st.state != log::Stream::ProducerLookup::State::kCommitted) rr.code = wire::WireError::kStorageFailed;
      else rr.seq = st.seq;
      *check = nullptr;  // break the cycle
      finish(1);
    };
    stream->AddFrontierWaiter(*check);
  }
  finish(1);
}

size_t Connection::Deliver(uint64_t req, uint32_t max_messages, uint32_t max_bytes, std::string* frame) {
  log::Stream& log = stream_->log();
  const wire::StreamConfig& config = stream_->config();
  std::vector<log::Entry> entries;
  std::vector<uint32_t> counts;
  bool changed = false;
  {
    std::lock_guard l(consumer_->mu);
    Cursor& cursor = consumer_->cursor;
    const int64_t now = NowMs();
    const int64_t deadline = now + config.ack_wait_ms;
    size_t bytes = 0;
    // Redeliveries first: NAKed, timed out, or released by a lost session.
    for (uint64_t seq : cursor.Due(now, max_messages)) {
      const PendingEntry* p = cursor.Find(seq);
      if (config.max_deliveries > 0 && p->delivery_count >= config.max_deliveries) {
        DeadLetter(seq);
        changed = true;
        continue;
      }
      auto r = log.Read({.from_seq = seq, .max_messages = 1});
      if (!r || r->entries.empty() || r->entries[0].seq != seq || r->entries[0].kind != log::Entry::Kind::kMessage) {
        cursor.Done(seq);  // gone (retention) or not a message: nothing to redeliver
        changed = true;
        continue;
      }
      bytes += r->entries[0].payload.size();
      cursor.Delivered(seq, session_id_, deadline);
      counts.push_back(cursor.Find(seq)->delivery_count);
      entries.push_back(std::move(r->entries[0]));
      changed = true;
    }
    // Then new messages, while the consumer has room for more pending.
    const size_t room = node_->options_.max_ack_pending > cursor.pending().size()
                            ? node_->options_.max_ack_pending - cursor.pending().size()
                            : 0;
    const size_t want = std::min<size_t>(max_messages - std::min<size_t>(entries.size(), max_messages), room);
    if (want > 0 && (entries.empty() || bytes < max_bytes)) {
      const uint64_t first = log.stats().first_seq;
      if (cursor.next_seq() < first) {
        cursor.Gap(cursor.next_seq(), first - cursor.next_seq());  // deleted by retention
        changed = true;
      }
      auto r = log.Read({.from_seq = cursor.next_seq(), .max_messages = want,
                         .max_bytes = entries.empty() ? max_bytes : max_bytes - bytes});
      if (r) {
        for (auto& e : r->entries) {
          if (e.kind == log::Entry::Kind::kGap) {
            cursor.Gap(e.seq, e.gap_count);
            counts.push_back(0);
          } else {
            cursor.Delivered(e.seq, session_id_, deadline);
            counts.push_back(1);
          }
          entries.push_back(std::move(e));
          changed = true;
        }
      }
    }
  }
  if (changed) node_->flusher_->Persist(stream_->name(), consumer_, nullptr);
  wire::Delivery d;
  d.entries.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const log::Entry& e = entries[i];
    wire::Delivered x;
    x.seq = e.seq;
    if (e.kind == log::Entry::Kind::kGap) {
      x.kind = wire::Delivered::Kind::kGap;
      x.gap_count = e.gap_count;
    } else {
      x.delivery_count = counts[i];
      x.timestamp_us = e.timestamp_us;
      x.key = e.key;
      x.headers = e.headers;
      x.payload = e.payload;
    }
    d.entries.push_back(x);
  }
  wire::AppendFrame(frame, req, d);
  return entries.size();
}

// Moves a message that reached max deliveries to the dead-letter stream (or
// drops it if there is none). Requires consumer_->mu.
void Connection::DeadLetter(uint64_t seq) {
  const std::string& dlq_name = stream_->config().dead_letter;
  auto dlq = dlq_name.empty() ? nullptr : node_->registry_->Get(dlq_name);
  if (dlq) {
    auto r = stream_->log().Read({.from_seq = seq, .max_messages = 1});
    if (r && !r->entries.empty() && r->entries[0].seq == seq && r->entries[0].kind == log::Entry::Kind::kMessage) {
      const log::Entry& e = r->entries[0];
      // Producer id: the source seq, so a retried move is stored once.
      log::Message m{.payload = e.payload, .key = e.key, .encoded_headers = e.headers,
                     .producer_id = 0, .producer_seq = seq};
      auto res = dlq->log().Append({&m, 1});
      if (!res.status.ok()) return;  // keep it pending; tried again at the next delivery
    }
  }
  consumer_->cursor.Done(seq);
}

awaitable<void> Connection::WaitForChange(std::chrono::steady_clock::time_point until) {
  auto timer = std::make_shared<asio::steady_timer>(strand_, until);
  auto ex = strand_;
  stream_->AddFrontierWaiter([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
  co_await timer->async_wait(kNoThrow);
}

awaitable<void> Connection::FetchLoop(uint64_t req, wire::Fetch fetch) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(fetch.wait_ms);
  const uint32_t max_messages = std::clamp<uint32_t>(fetch.max_messages, 1, 10000);
  const uint32_t max_bytes = std::clamp<uint32_t>(fetch.max_bytes, 1, node_->options_.max_frame_bytes / 2);
  while (true) {
    std::string frame;
    const size_t n = Deliver(req, max_messages, max_bytes, &frame);
    if (n > 0 || closed_ || std::chrono::steady_clock::now() >= until) {
      Enqueue(frame);
      co_return;
    }
    // Stopping: no empty answer (nothing "came in time" — time was cut
    // short); the connection closes and the client asks again elsewhere.
    if (node_->stopping_) co_return;
    // Wake at the frontier's next move, a pending deadline, or the end.
    int64_t next_deadline;
    {
      std::lock_guard l(consumer_->mu);
      next_deadline = consumer_->cursor.NextDeadline();
    }
    auto wake = until;
    if (next_deadline != INT64_MAX) {
      auto d = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, next_deadline - NowMs()));
      wake = std::min(wake, d);
    }
    co_await WaitForChange(wake);
  }
}

awaitable<void> Connection::PushLoop(uint64_t req) {
  while (subscribed_ && !closed_ && !node_->stopping_) {
    if (credit_ > 0) {
      std::string frame;
      const size_t n = Deliver(req, static_cast<uint32_t>(std::min<uint64_t>(credit_, 256)), 1 << 20, &frame);
      if (n > 0) {
        credit_ -= std::min<uint64_t>(credit_, n);
        Enqueue(frame);
        continue;
      }
    }
    int64_t next_deadline;
    {
      std::lock_guard l(consumer_->mu);
      next_deadline = consumer_->cursor.NextDeadline();
    }
    auto wake = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    if (next_deadline != INT64_MAX)
      wake = std::min(wake, std::chrono::steady_clock::now() +
                                std::chrono::milliseconds(std::max<int64_t>(0, next_deadline - NowMs())));
    push_wake_->expires_at(wake);
    auto timer = push_wake_;
    auto ex = strand_;
    stream_->AddFrontierWaiter([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
    co_await push_wake_->async_wait(kNoThrow);
  }
}

void Connection::OnAnswer(uint64_t req, std::span<const char> body) {
  auto a = wire::DecodeBodyAs<wire::Answer>(body);
  if (!a) return Error(req, wire::WireError::kMalformedFrame, a.error().message(), true);
  if (!consumer_) return Error(req, wire::WireError::kNoSession, "ANSWER needs a consumer session");
  auto ok = std::make_shared<wire::AnswerOk>();
  {
    std::lock_guard l(consumer_->mu);
    const int64_t now = NowMs();
    for (const auto& item : a->items) {
      Status s = consumer_->cursor.Apply(item, session_id_, now, stream_->config().ack_wait_ms);
      ok->results.push_back({item.seq, s.ok() ? wire::WireError::kOk : wire::WireError::kNotDelivered});
    }
  }
  // Confirm only once persisted: a confirmed ACK is never redelivered.
  auto self = shared_from_this();
  node_->flusher_->Persist(stream_->name(), consumer_, [self, req, ok](Status s) {
    std::string f;
    if (s.ok()) wire::AppendFrame(&f, req, *ok);
    else f = ErrorFrame(req, wire::WireError::kUnavailable, "persisting the answers failed: " + s.ToString());
    self->SendFrame(std::move(f));
  });
  // NAKed and released messages may be deliverable now.
  stream_->WakeAll();
}

void Connection::OnAdmin(const wire::FrameHeader& h, std::span<const char> body) {
  using wire::FrameType;
  Registry& reg = *node_->registry_;
  std::string f;
  auto fail = [&](const Status& s) {
    Error(h.request_id, s.code() == ErrorCode::kInvalidArgument ? wire::WireError::kInvalidArgument : wire::ToWireError(s),
          s.message());
  };
  switch (h.type) {
    case FrameType::kStreamCreate: {
      auto c = wire::DecodeBodyAs<wire::StreamCreate>(body);
      if (!c) return Error(h.request_id, wire::WireError::kMalformedFrame, c.error().message(), true);
      if (Status v = wire::ValidateStreamName(c->name); !v.ok())
        return Error(h.request_id, wire::WireError::kInvalidName, v.message());
      auto r = reg.Create(std::string(c->name), c->config);
      if (!r) return fail(r.error());
      wire::AppendFrame(&f, h.request_id, wire::Ok{});
      break;
    }
    case FrameType::kStreamDelete: {
      auto d = wire::DecodeBodyAs<wire::StreamDelete>(body);
      if (!d) return Error(h.request_id, wire::WireError::kMalformedFrame, d.error().message(), true);
      Status s = reg.Delete(std::string(d->name));
      if (!s.ok()) return fail(s);
      wire::AppendFrame(&f, h.request_id, wire::Ok{});
      break;
    }
    case FrameType::kStreamList: {
      auto l = wire::DecodeBodyAs<wire::StreamList>(body);
      if (!l) return Error(h.request_id, wire::WireError::kMalformedFrame, l.error().message(), true);
      std::vector<std::string> names = reg.List();
      wire::StreamListOk ok;
      for (const auto& n : names) ok.names.push_back(n);
      wire::AppendFrame(&f, h.request_id, ok);
      break;
    }
    case FrameType::kStreamInfo: {
      auto i = wire::DecodeBodyAs<wire::StreamInfo>(body);
      if (!i) return Error(h.request_id, wire::WireError::kMalformedFrame, i.error().message(), true);
      auto s = reg.Get(std::string(i->name));
      if (!s) return Error(h.request_id, wire::WireError::kUnknownStream, fmt::format("no stream named '{}'", i->name));
      auto st = s->log().stats();
      wire::StreamInfoOk ok;
      ok.name = s->name();
      ok.config = s->config();
      ok.first_seq = st.first_seq;
      ok.frontier = st.frontier;
      ok.bytes = st.bytes;
      auto groups = s->Consumers();
      for (auto& g : groups) {
        std::lock_guard l(g->mu);
        const Cursor& c = g->cursor;
        ok.consumers.push_back({g->name, c.ack_floor(), c.next_seq(), static_cast<uint32_t>(c.pending().size()),
                                st.frontier > c.ack_floor() ? st.frontier - c.ack_floor() : 0});
      }
      wire::AppendFrame(&f, h.request_id, ok);
      break;
    }
    default:
      return;
  }
  Enqueue(f);
}

void Connection::Cleanup() {
  subscribed_ = false;
  if (consumer_) {
    {
      std::lock_guard l(consumer_->mu);
      consumer_->cursor.Release(session_id_, NowMs());
    }
    node_->flusher_->Persist(stream_->name(), consumer_, nullptr);
    stream_->WakeAll();  // others may take the released deliveries
  }
  if (session_id_) node_->ReleaseSession(session_id_, this);
  node_->Forget(this);
}

}  // namespace

// --- Node::Impl --------------------------------------------------------------------

void Node::Impl::ClaimSession(uint64_t id, const std::shared_ptr<Connection>& conn) {
  std::shared_ptr<Connection> previous;
  {
    std::lock_guard l(sessions_mu_);
    auto& slot = sessions_[id];
    previous = slot.lock();
    slot = conn;
  }
  if (previous && previous != conn) previous->CloseSoon();
}

void Node::Impl::ReleaseSession(uint64_t id, const Connection* conn) {
  std::lock_guard l(sessions_mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    auto cur = it->second.lock();
    if (!cur || cur.get() == conn) sessions_.erase(it);
  }
}

void Node::Impl::Forget(const Connection* conn) {
  std::lock_guard l(sessions_mu_);
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == conn) {
      connections_.erase(it);
      break;
    }
  }
}

awaitable<void> Node::Impl::AcceptLoop() {
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted) break;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    size_t count;
    {
      std::lock_guard l(sessions_mu_);
      count = connections_.size();
    }
    if (count >= options_.max_connections) {
      // Say why, then close.
      std::string f = ErrorFrame(0, wire::WireError::kTooManyConnections,
                                 fmt::format("node has {} connections, the limit", count));
      asio::error_code wec;
      asio::write(socket, asio::buffer(f), wec);
      socket.close(wec);
      continue;
    }
    auto conn = std::make_shared<Connection>(this, std::move(socket));
    {
      std::lock_guard l(sessions_mu_);
      connections_.insert(conn);
    }
    conn->Start();
  }
}

Status Node::Impl::Init() {
  std::error_code fec;
  std::filesystem::create_directories(options_.data_dir + "/streams", fec);
  if (fec) return Status::IOError(fmt::format("creating {}: {}", options_.data_dir, fec.message()));
  auto bank = bank::OpenBank(options_.bank.empty() ? "sqlite:" + options_.data_dir + "/bank.db" : options_.bank);
  if (!bank) return bank.error();
  bank_ = std::move(*bank);
  registry_ = std::make_unique<Registry>(
      RegistryOptions{options_.data_dir, options_.direct_io, options_.max_message_bytes}, bank_.get());
  FLOE_RETURN_IF_ERROR(registry_->Load());
  flusher_ = std::make_unique<CursorFlusher>(bank_.get());

  const auto colon = options_.listen.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("--listen wants HOST:PORT, got " + options_.listen);
  asio::error_code ec;
  auto addr = asio::ip::make_address(options_.listen.substr(0, colon), ec);
  if (ec) return Status::InvalidArgument(fmt::format("--listen: bad address '{}'", options_.listen));
  const int port = std::atoi(options_.listen.c_str() + colon + 1);
  if (port < 0 || port > 65535) return Status::InvalidArgument("--listen: bad port");
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Unavailable(fmt::format("listen on {}: {}", options_.listen, ec.message()));
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) threads_.emplace_back([this] { io_.run(); });
  return Status::OK();
}

void Node::Impl::Stop() {
  if (stopping_.exchange(true)) {
    Wait();
    return;
  }
  asio::post(io_, [this] {
    asio::error_code ec;
    acceptor_.close(ec);
    if (signals_) signals_->cancel(ec);
  });
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard l(sessions_mu_);
    conns.assign(connections_.begin(), connections_.end());
  }
  for (auto& c : conns) c->StopReading();
  // In-flight publishes finish (written, synced, acknowledged) before we close.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (inflight_bytes_ > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  flusher_->Stop();  // answers persisted and confirmed
  for (auto& c : conns) c->CloseSoon();
  conns.clear();
  const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < close_deadline) {
    {
      std::lock_guard l(sessions_mu_);
      if (connections_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  {
    std::lock_guard l(sessions_mu_);
    connections_.clear();
    sessions_.clear();
  }
  registry_->CloseAll();
  // Notify under the lock: a waiter may destroy the node as soon as it wakes.
  std::lock_guard l(stop_mu_);
  stopped_ = true;
  stop_cv_.notify_all();
}

// --- Node ----------------------------------------------------------------------------

Result<std::unique_ptr<Node>> Node::Start(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  Status s = impl->Init();
  if (!s.ok()) return Err(s);
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() { Stop(); }
uint16_t Node::port() const { return impl_->acceptor_.local_endpoint().port(); }
void Node::Stop() { impl_->Stop(); }
void Node::Wait() { impl_->Wait(); }

void Node::HandleSignals() {
  impl_->signals_ = std::make_unique<asio::signal_set>(impl_->io_, SIGINT, SIGTERM);
  impl_->signals_->async_wait([this](const asio::error_code& ec, int) {
    if (ec) return;
    std::thread([this] { impl_->Stop(); }).detach();
  });
}

}  // namespace floe::broker
