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
#include "broker/blob.h"
#include "broker/registry.h"
#include "broker/session.h"
#include "cluster/cluster.h"
#include "log/batch.h"

namespace floe::broker {

using asio::awaitable;
using asio::ip::tcp;
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// The socket is accepted on a strand, so its executor serialises the connection.
using Strand = asio::any_io_executor;

class Connection;

std::string ErrorFrame(uint64_t request_id, wire::WireError code, std::string_view message,
                       std::string_view redirect = {}) {
  std::string f;
  wire::AppendFrame(&f, request_id, wire::Error{code, wire::IsRetriable(code), message, redirect});
  return f;
}

}  // namespace

class Node::Impl final : public cluster::Host {
 public:
  explicit Impl(NodeOptions options) : options_(std::move(options)), acceptor_(io_) {}

  // cluster::Host
  Status OpenStream(const std::string& name, int64_t valid_until_steady_ms) override;
  void SetValidUntil(const std::string& name, int64_t valid_until_steady_ms) override {
    if (auto e = registry_->Get(name)) e->SetValidUntil(valid_until_steady_ms);
  }
  void CloseStream(const std::string& name, const std::string& redirect) override;
  uint32_t SessionCount() override {
    std::lock_guard l(sessions_mu_);
    return static_cast<uint32_t>(sessions_.size());
  }
  uint64_t PublishedTotal() override { return published_.load(); }

  void Housekeep() override;
  // Writes session `id`'s record as `state` holds it when the writer takes it
  // (fenced by the stream's lease); lazily without `done`.
  void PersistSession(const std::string& stream, uint64_t id, std::shared_ptr<SessionState> state,
                      std::function<void(Status)> done);
  // Tells every connection serving `entry` to go to `redirect` and closes it.
  void Evict(const std::shared_ptr<StreamEntry>& entry, const std::string& redirect);
  // The shared state of session `id` on this node (created empty).
  std::shared_ptr<SessionState> SessionStateFor(uint64_t id) {
    std::lock_guard l(sessions_mu_);
    SweepExpired(&states_);
    auto& weak = states_[id];
    auto state = weak.lock();
    if (!state) weak = state = std::make_shared<SessionState>();
    return state;
  }
  // Drops entries whose object is gone, whenever the map doubled since the
  // last sweep (amortised O(1) per insert). Requires sessions_mu_.
  template <typename T>
  static void SweepExpired(std::unordered_map<uint64_t, std::weak_ptr<T>>* m) {
    if (m->size() < 1024 || (m->size() & (m->size() - 1)) != 0) return;  // at powers of two from 1024
    std::erase_if(*m, [](const auto& kv) { return kv.second.expired(); });
  }

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
    SweepExpired(&publish_locks_);
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
  std::unique_ptr<BankWriter> writer_;
  std::unique_ptr<cluster::Cluster> cluster_;
  asio::thread_pool blob_pool_{2};  // large-message file I/O, off the network threads
  std::string address_;  // advertised
  std::atomic<uint64_t> published_{0};  // messages acknowledged
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::signal_set> signals_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> inflight_bytes_{0};  // node-wide publish bytes awaiting ACK

  std::mutex sessions_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> sessions_;
  std::unordered_map<uint64_t, std::weak_ptr<std::mutex>> publish_locks_;
  std::unordered_map<uint64_t, std::weak_ptr<SessionState>> states_;
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
  // Any thread: if this connection serves `entry`, tell the client where the
  // stream went (NOT_OWNER, with the new owner's address if known) and close.
  void Evict(std::shared_ptr<StreamEntry> entry, std::string redirect) {
    asio::post(strand_, [self = shared_from_this(), entry = std::move(entry), redirect = std::move(redirect)] {
      if (self->stream_ != entry || self->closed_) return;
      self->LeaveStream(redirect);
    });
  }

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
  // The node no longer serves this connection's stream: say so, and close
  // once what is queued is written (ACKs that were not sent stay unsent).
  void LeaveStream(const std::string& redirect) {
    Enqueue(ErrorFrame(0, redirect.empty() ? wire::WireError::kUnavailable : wire::WireError::kNotOwner,
                       fmt::format("node {} no longer serves stream {}", node_->options_.node_id, stream_->name()),
                       redirect));
    asio::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_receive, ec);
    if (wait_timer_) wait_timer_->cancel();
    if (push_wake_) push_wake_->cancel();
    RequestClose();
  }
  // Answers a request for a stream this node does not serve: NOT_OWNER with
  // the owner's address, UNKNOWN_STREAM, or UNAVAILABLE while it has no owner.
  void Redirect(uint64_t req, const std::string& stream);
  // Records acknowledged publishes in the session's conveyance state.
  void NoteAcked(const wire::PublishAck& ack);
  // Persists the session record (lazily without `done`).
  void PersistSession(std::function<void(Status)> done);
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
  void OnPublishChunk(uint64_t req, std::span<const char> body);
  void OnFetchChunk(uint64_t req, std::span<const char> body);
  void SendChunkAck(uint64_t req, const wire::ChunkAck& ack);
  // The last chunk of a large message is durable: store its reference
  // record in the stream, then acknowledge.
  void CommitLarge(uint64_t req, uint64_t producer_seq, uint64_t total, std::string key, std::string headers);
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
  std::shared_ptr<SessionState> state_;
  bool goodbye_ = false;
  std::shared_ptr<asio::steady_timer> wait_timer_;  // a long poll's wait
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
  if (wait_timer_) wait_timer_->cancel();
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
      goodbye_ = true;  // the session ends: its record goes
      RequestClose();  // after the ACKs of what is in flight
      break;
    case FrameType::kSessionOpen:
      OnSessionOpen(h.request_id, body);
      break;
    case FrameType::kPublish:
      OnPublish(h.request_id, body);
      break;
    case FrameType::kPublishChunk:
      OnPublishChunk(h.request_id, body);
      break;
    case FrameType::kFetchChunk:
      OnFetchChunk(h.request_id, body);
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

void Connection::Redirect(uint64_t req, const std::string& stream) {
  auto config = node_->bank_->Get("streams/" + stream);
  if (!config) {
    if (config.error().IsNotFound())
      return Error(req, wire::WireError::kUnknownStream, fmt::format("no stream named '{}'", stream));
    return Error(req, wire::WireError::kUnavailable, "reading the bank: " + config.error().ToString());
  }
  auto owner = node_->cluster_->OwnerOf(stream);
  if (owner && owner->live && owner->node != node_->options_.node_id && !owner->address.empty()) {
    Enqueue(ErrorFrame(req, wire::WireError::kNotOwner,
                       fmt::format("stream {} is served by node {} at {}", stream, owner->node, owner->address),
                       owner->address));
    return;
  }
  node_->cluster_->Want(stream);
  Error(req, wire::WireError::kUnavailable, fmt::format("stream {} has no serving node right now; retry", stream));
}

void Connection::OnSessionOpen(uint64_t req, std::span<const char> body) {
  auto so = wire::DecodeBodyAs<wire::SessionOpen>(body);
  if (!so) return Error(req, wire::WireError::kMalformedFrame, so.error().message(), true);
  if (session_id_ != 0) return Error(req, wire::WireError::kInvalidArgument, "this connection already has a session");
  // A resumed session: its record says which stream it conveys to or from.
  std::optional<SessionRecord> prior;
  if (so->session_id != 0) {
    auto v = node_->bank_->Get(SessionKey(so->session_id));
    if (v) {
      auto r = DecodeSessionRecord(v->value);
      if (!r) return Error(req, wire::WireError::kInternal, r.error().ToString());
      prior = std::move(*r);
    } else if (!v.error().IsNotFound()) {
      return Error(req, wire::WireError::kUnavailable, "reading the session: " + v.error().ToString());
    }
  }
  const SessionRecord::Kind kind =
      so->role == wire::Role::kProducer ? SessionRecord::Kind::kProducer : SessionRecord::Kind::kConsumer;
  std::string stream_name(so->stream);
  if (stream_name.empty()) {
    if (!prior)
      return Error(req, wire::WireError::kInvalidArgument,
                   "SESSION_OPEN needs a stream, or the id of a session the bank knows");
    stream_name = prior->stream;
  }
  if (prior && (prior->stream != stream_name || prior->kind != kind))
    return Error(req, wire::WireError::kInvalidArgument,
                 fmt::format("session {:016x} is a {} session of stream {}", so->session_id,
                             SessionKindName(prior->kind), prior->stream));
  std::string consumer_name(so->consumer);
  if (kind == SessionRecord::Kind::kConsumer && consumer_name.empty() && prior) consumer_name = prior->consumer;
  if (kind == SessionRecord::Kind::kConsumer) {
    Status valid = wire::ValidateStreamName(consumer_name);
    if (!valid.ok()) return Error(req, wire::WireError::kInvalidName, "consumer " + std::string(valid.message()));
    if (prior && prior->consumer != consumer_name)
      return Error(req, wire::WireError::kInvalidArgument,
                   fmt::format("session {:016x} belongs to consumer {}", so->session_id, prior->consumer));
  }
  auto stream = node_->registry_->Get(stream_name);
  if (!stream || !stream->owned()) return Redirect(req, stream_name);
  session_id_ = so->session_id ? so->session_id : node_->NewSessionId();
  role_ = so->role;
  stream_ = stream;
  node_->ClaimSession(session_id_, shared_from_this());
  if (role_ == wire::Role::kProducer) publish_lock_ = node_->PublishLock(session_id_);
  wire::SessionOk ok;
  ok.session_id = session_id_;
  if (role_ == wire::Role::kProducer) {
    ok.highest_producer_seq = stream_->log().HighestProducerSeq(session_id_, &ok.highest_seq);
  } else {
    const uint64_t first = stream_->log().first_seq();
    uint64_t start = first;
    if (so->start_at == wire::StartAt::kSeq) start = std::max(so->start_value, first);
    if (so->start_at == wire::StartAt::kNew) start = stream_->log().frontier() + 1;
    if (so->start_at == wire::StartAt::kTime) {
      auto t = stream_->log().SeekTime(static_cast<int64_t>(so->start_value));
      if (t) start = std::max(*t, first);
    }
    consumer_ = stream_->GetOrCreateConsumer(consumer_name, start);
    std::lock_guard l(consumer_->mu);
    ok.ack_floor = consumer_->cursor.ack_floor();
    for (const auto& [seq, p] : consumer_->cursor.pending())
      if (p.session_id == session_id_) ok.pending.push_back({seq, p.delivery_count});
  }
  // Lock the session: this node holds it, one epoch higher. The bank's
  // checkpoint is corrected by the stream's own tail (the log knows the
  // highest producer seq it stored for this session).
  state_ = node_->SessionStateFor(session_id_);
  {
    std::lock_guard l(state_->mu);
    SessionRecord& rec = state_->record;
    if (rec.id == 0) {
      if (prior) rec = *prior;
      rec.id = session_id_;
      rec.kind = kind;
      rec.stream = stream_name;
      rec.consumer = kind == SessionRecord::Kind::kConsumer ? consumer_name : std::string();
    }
    rec.holder = node_->options_.node_id;
    ++rec.epoch;
    rec.updated_ms = NowMs();
    if (kind == SessionRecord::Kind::kProducer && ok.highest_producer_seq >= rec.last_producer_seq) {
      rec.last_producer_seq = ok.highest_producer_seq;
      rec.last_seq = ok.highest_seq;
    }
    state_->holder_conn = this;
    state_->group = consumer_;
    state_->ended = false;
    state_->chunk_busy = false;
    ok.epoch = rec.epoch;
    // A large message in transfer: resume at the bytes the bank says are
    // durable (the blob file may hold more, written but never acknowledged).
    if (rec.conveying_producer_seq != 0) {
      if (rec.conveying_producer_seq <= ok.highest_producer_seq) {
        rec.conveying_producer_seq = rec.conveying_total = rec.bytes_conveyed = 0;  // it was stored
      } else {
        const std::string path = node_->options_.data_dir + "/" +
                                 BlobPath(stream_name, session_id_, rec.conveying_producer_seq);
        auto size = TruncateBlob(path, rec.bytes_conveyed);
        if (size && *size < rec.bytes_conveyed) rec.bytes_conveyed = *size;
        ok.chunk_producer_seq = rec.conveying_producer_seq;
        ok.chunk_bytes = rec.bytes_conveyed;
      }
    }
  }
  // SESSION_OK only once the bank shows the session locked here.
  std::string f;
  wire::AppendFrame(&f, req, ok);
  PersistSession([self = shared_from_this(), f = std::move(f), req](Status s) mutable {
    if (s.ok()) return self->SendFrame(std::move(f));
    self->SendFrame(ErrorFrame(req, wire::WireError::kUnavailable, "locking the session in the bank: " + s.ToString()));
    self->CloseSoon();
  });
}

void Connection::PersistSession(std::function<void(Status)> done) {
  node_->PersistSession(stream_->name(), session_id_, state_, std::move(done));
}

}  // namespace

void Node::Impl::PersistSession(const std::string& stream, uint64_t id, std::shared_ptr<SessionState> state,
                                std::function<void(Status)> done) {
  // Progress (every PUBLISH_ACK, every delivery) only marks the record
  // dirty once per bank commit: one queued lazy write carries the latest.
  if (!done) {
    std::lock_guard l(state->mu);
    if (state->lazy_queued) return;
    state->lazy_queued = true;
  }
  writer_->Write(SessionKey(id), stream,
                        [state]() -> std::optional<std::string> {
                          std::lock_guard l(state->mu);
                          state->lazy_queued = false;  // what follows is written
                          if (state->ended) return std::nullopt;
                          SessionRecord rec = state->record;
                          if (state->group) {
                            std::lock_guard g(state->group->mu);
                            uint32_t pending = 0;
                            for (const auto& [seq, p] : state->group->cursor.pending())
                              if (p.session_id == rec.id) ++pending;
                            rec.pending = pending;
                          }
                          return EncodeSessionRecord(rec);
                        },
                        std::move(done));
}

void Node::Impl::Housekeep() {
  auto all = bank_->List(kSessionsPrefix);
  if (!all) return;
  const int64_t now = NowMs();
  for (const auto& kv : *all) {
    auto r = DecodeSessionRecord(kv.value);
    if (!r) continue;
    auto entry = registry_->Get(r->stream);
    if (!entry || !entry->owned()) continue;  // its owner looks after it
    // Every write of a session's record goes through its one SessionState,
    // so this cannot overwrite a connection's newer state.
    auto state = SessionStateFor(r->id);
    bool write = false;
    {
      std::lock_guard l(state->mu);
      if (state->holder_conn != nullptr) continue;  // served here now
      if (state->record.id == 0) state->record = *r;
      if (!state->record.holder.empty()) {
        // Held by a node that lost the stream (died, paused, gave it up):
        // the lock is void.
        state->record.holder.clear();
        state->record.updated_ms = now;
        write = true;
      } else if (now - state->record.updated_ms > options_.session_ttl_ms) {
        state->ended = true;  // closed long ago: the record goes
        write = true;
      }
    }
    if (write) PersistSession(r->stream, r->id, state, nullptr);
  }
}

namespace {

void Connection::NoteAcked(const wire::PublishAck& ack) {
  uint64_t count = 0, top_pseq = 0, top_seq = 0;
  for (const auto& r : ack.results) {
    if (r.code != wire::WireError::kOk) continue;
    ++count;
    if (r.producer_seq > top_pseq) {
      top_pseq = r.producer_seq;
      top_seq = r.seq;
    }
  }
  if (count == 0 || !state_) return;
  node_->published_ += count;
  {
    std::lock_guard l(state_->mu);
    SessionRecord& rec = state_->record;
    rec.messages += count;
    if (top_pseq > rec.last_producer_seq) {
      rec.last_producer_seq = top_pseq;
      rec.last_seq = top_seq;
    }
    rec.updated_ms = NowMs();
  }
  PersistSession(nullptr);
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
    uint64_t unused_size;
    std::string_view unused_headers;
    if (!log::ParseHeaders(m.headers, [](void*, std::string_view, std::string_view) {}, nullptr).ok() ||
        ParseLargeRef(m.headers, &unused_size, &unused_headers)) {
      r.code = wire::WireError::kInvalidArgument;  // malformed, or the reserved floe.large header first
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
    asio::post(self->strand_, [self, wait, f = std::move(f), bytes = wait->bytes] {
      // Fencing: a node that lost the stream (paused past its lease, or the
      // stream moved) must not acknowledge. The producer resends to the new
      // owner, which finds what was stored in the log's dedup index.
      if (self->stream_->owned()) {
        self->Enqueue(f);
        self->NoteAcked(wait->ack);
      } else if (!self->closed_ && !self->close_after_flush_) {
        self->LeaveStream("");
      }
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
    if (r.seq <= log.frontier()) {
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

void Connection::SendChunkAck(uint64_t req, const wire::ChunkAck& ack) {
  std::string f;
  wire::AppendFrame(&f, req, ack);
  Enqueue(f);
}

// A chunk of a large message: written to the message's blob file and made
// durable, then the bytes conveyed are committed to the session's bank
// record (fenced by the stream's lease), then acknowledged. Chunks of a
// session go one at a time.
void Connection::OnPublishChunk(uint64_t req, std::span<const char> body) {
  auto c = wire::DecodeBodyAs<wire::PublishChunk>(body);
  if (!c) return Error(req, wire::WireError::kMalformedFrame, c.error().message(), true);
  if (!stream_ || role_ != wire::Role::kProducer || !state_)
    return Error(req, wire::WireError::kNoSession, "PUBLISH_CHUNK needs a producer session");
  if (!stream_->owned()) return LeaveStream("");
  wire::ChunkAck ack{.producer_seq = c->producer_seq};
  if (c->producer_seq == 0 || c->total_size == 0) {
    ack.code = wire::WireError::kInvalidArgument;
    return SendChunkAck(req, ack);
  }
  if (c->total_size > node_->options_.max_large_message_bytes) {
    ack.code = wire::WireError::kMessageTooLarge;
    return SendChunkAck(req, ack);
  }
  if (!log::ParseHeaders(c->headers, [](void*, std::string_view, std::string_view) {}, nullptr).ok()) {
    ack.code = wire::WireError::kInvalidArgument;
    return SendChunkAck(req, ack);
  }
  // Stored before (a resend after the last ACK was lost)?
  log::Stream& log = stream_->log();
  if (c->producer_seq <= log.HighestProducerSeq(session_id_)) {
    auto found = log.LookupProducer(session_id_, c->producer_seq);
    using State = log::Stream::ProducerLookup::State;
    if (found.state == State::kCommitted) {
      ack.durable_bytes = c->total_size;
      ack.seq = found.seq;
      ack.duplicate = true;
    } else {
      ack.code = found.state == State::kInDoubt ? wire::WireError::kUnavailable : wire::WireError::kDuplicateTooOld;
    }
    return SendChunkAck(req, ack);
  }
  uint64_t write_at;
  std::string data;
  std::string old_blob;
  {
    std::lock_guard l(state_->mu);
    SessionRecord& rec = state_->record;
    if (state_->chunk_busy) {
      ack.code = wire::WireError::kTooManyInFlight;
      ack.durable_bytes = rec.bytes_conveyed;
      return SendChunkAck(req, ack);
    }
    if (rec.conveying_producer_seq != c->producer_seq) {
      if (c->producer_seq < rec.conveying_producer_seq) {
        ack.code = wire::WireError::kInvalidArgument;  // an older message than the one in transfer
        return SendChunkAck(req, ack);
      }
      // A new large message (any unfinished older one is abandoned).
      if (rec.conveying_producer_seq != 0) old_blob = BlobPath(stream_->name(), session_id_, rec.conveying_producer_seq);
      rec.conveying_producer_seq = c->producer_seq;
      rec.conveying_total = c->total_size;
      rec.bytes_conveyed = 0;
    }
    ack.durable_bytes = rec.bytes_conveyed;
    if (c->total_size != rec.conveying_total) {
      ack.code = wire::WireError::kInvalidArgument;  // the size changed mid-transfer
      return SendChunkAck(req, ack);
    }
    if (c->offset > rec.bytes_conveyed) {
      ack.code = wire::WireError::kOutOfRange;  // a gap: send from durable_bytes
      return SendChunkAck(req, ack);
    }
    // Bytes below what is durable were acknowledged before: skip them.
    const uint64_t skip = std::min<uint64_t>(rec.bytes_conveyed - c->offset, c->data.size());
    write_at = c->offset + skip;
    data.assign(c->data.substr(skip));
    state_->chunk_busy = true;
  }
  if (!old_blob.empty()) RemoveBlob(node_->options_.data_dir + "/" + old_blob);
  const uint64_t end = write_at + data.size();
  const uint64_t total = c->total_size;
  const uint64_t pseq = c->producer_seq;
  auto self = shared_from_this();
  auto done = [self, req, pseq, total, end, key = std::string(c->key), headers = std::string(c->headers)](
                  Status s) mutable {
    asio::post(self->strand_, [self, req, pseq, total, end, s, key = std::move(key),
                               headers = std::move(headers)]() mutable {
      wire::ChunkAck a{.producer_seq = pseq};
      {
        std::lock_guard l(self->state_->mu);
        if (!s.ok()) {
          self->state_->chunk_busy = false;
          a.durable_bytes = self->state_->record.bytes_conveyed;
        }
      }
      if (!s.ok()) {
        a.code = s.code() == ErrorCode::kIOError ? wire::WireError::kStorageFailed : wire::WireError::kUnavailable;
        if (!self->stream_->owned()) return self->LeaveStream("");
        return self->SendChunkAck(req, a);
      }
      if (end == total) return self->CommitLarge(req, pseq, total, std::move(key), std::move(headers));
      {
        std::lock_guard l(self->state_->mu);
        self->state_->chunk_busy = false;
      }
      if (!self->stream_->owned()) return self->LeaveStream("");  // fencing: no ACK
      a.durable_bytes = end;
      self->SendChunkAck(req, a);
    });
  };
  const std::string path = node_->options_.data_dir + "/" + BlobPath(stream_->name(), session_id_, pseq);
  auto state = state_;
  auto* node = node_;
  const std::string stream = stream_->name();
  const uint64_t session = session_id_;
  asio::post(node_->blob_pool_, [node, state, stream, session, path, write_at, end, data = std::move(data),
                                 done = std::move(done)]() mutable {
    if (!data.empty()) {
      Status s = WriteBlob(path, write_at, data);
      if (!s.ok()) return done(s);
    }
    // Durable: record the bytes conveyed in the bank before the ACK.
    {
      std::lock_guard l(state->mu);
      state->record.bytes_conveyed = std::max(state->record.bytes_conveyed, end);
      state->record.updated_ms = NowMs();
    }
    node->PersistSession(stream, session, state, std::move(done));
  });
}

void Connection::CommitLarge(uint64_t req, uint64_t producer_seq, uint64_t total, std::string key,
                             std::string headers) {
  auto ref_path = std::make_shared<std::string>(BlobPath(stream_->name(), session_id_, producer_seq));
  auto ref_headers = std::make_shared<std::string>(LargeRefHeaders(total, headers));
  auto ref_key = std::make_shared<std::string>(std::move(key));
  log::Message m{.payload = *ref_path, .key = *ref_key, .encoded_headers = *ref_headers,
                 .producer_id = session_id_, .producer_seq = producer_seq};
  auto self = shared_from_this();
  std::unique_lock session_lock(*publish_lock_);
  stream_->log().AppendAsync({&m, 1}, [self, req, producer_seq, total, ref_path, ref_headers, ref_key](
                                          const log::AppendResult& res) {
    asio::post(self->strand_, [self, req, producer_seq, total, status = res.status, hole = res.hole,
                               seq = res.first_seq] {
      wire::ChunkAck a{.producer_seq = producer_seq, .durable_bytes = total};
      {
        std::lock_guard l(self->state_->mu);
        self->state_->chunk_busy = false;
        SessionRecord& rec = self->state_->record;
        if (status.ok()) {
          rec.conveying_producer_seq = rec.conveying_total = rec.bytes_conveyed = 0;
          rec.messages += 1;
          if (producer_seq > rec.last_producer_seq) {
            rec.last_producer_seq = producer_seq;
            rec.last_seq = seq;
          }
        }
      }
      if (!self->stream_->owned()) return self->LeaveStream("");  // fencing: no ACK
      if (status.ok()) {
        a.seq = seq;
        self->node_->published_ += 1;
        self->PersistSession(nullptr);
      } else {
        a.code = hole ? wire::WireError::kStorageFailed : wire::ToWireError(status);  // resend the last chunk
      }
      self->SendChunkAck(req, a);
    });
  });
}

// Part of a large message, for any consumer of the stream.
void Connection::OnFetchChunk(uint64_t req, std::span<const char> body) {
  auto fc = wire::DecodeBodyAs<wire::FetchChunk>(body);
  if (!fc) return Error(req, wire::WireError::kMalformedFrame, fc.error().message(), true);
  if (!consumer_) return Error(req, wire::WireError::kNoSession, "FETCH_CHUNK needs a consumer session");
  if (!stream_->owned()) return LeaveStream("");
  auto r = stream_->log().Read({.from_seq = fc->seq, .max_messages = 1});
  uint64_t size = 0;
  std::string_view user_headers;
  if (!r || r->entries.empty() || r->entries[0].seq != fc->seq || r->entries[0].kind != log::Entry::Kind::kMessage ||
      !ParseLargeRef(r->entries[0].headers, &size, &user_headers))
    return Error(req, wire::WireError::kInvalidArgument, fmt::format("seq {} is not a large message", fc->seq));
  const std::string relative(r->entries[0].payload);
  if (!IsBlobPath(relative)) return Error(req, wire::WireError::kInternal, "bad large-message reference");
  if (fc->offset > size) return Error(req, wire::WireError::kOutOfRange, "offset past the message's end");
  const uint32_t max = std::min<uint32_t>(std::max<uint32_t>(fc->max_bytes, 1), node_->options_.max_frame_bytes / 2);
  const uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(max, size - fc->offset));
  auto self = shared_from_this();
  asio::post(node_->blob_pool_, [self, req, seq = fc->seq, offset = fc->offset, size, want,
                                 path = node_->options_.data_dir + "/" + relative] {
    auto data = ReadBlob(path, offset, want);
    std::string f;
    if (!data) f = ErrorFrame(req, wire::ToWireError(data.error()), data.error().ToString());
    else if (data->size() != want) f = ErrorFrame(req, wire::WireError::kInternal, "large message file is short");
    else wire::AppendFrame(&f, req, wire::Chunk{.seq = seq, .total_size = size, .offset = offset, .data = *data});
    self->SendFrame(std::move(f));
  });
}

size_t Connection::Deliver(uint64_t req, uint32_t max_messages, uint32_t max_bytes, std::string* frame) {
  if (!stream_->owned()) return 0;  // fencing: the caller leaves the stream
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
      const uint64_t first = log.first_seq();
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
  if (changed) node_->writer_->Persist(stream_->name(), consumer_, nullptr);
  size_t delivered = 0;
  uint64_t top = 0;
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].kind != log::Entry::Kind::kGap) ++delivered, top = std::max(top, entries[i].seq);
  if (delivered > 0 && state_) {
    {
      std::lock_guard l(state_->mu);
      state_->record.messages += delivered;
      state_->record.last_seq = std::max(state_->record.last_seq, top);
      state_->record.updated_ms = NowMs();
    }
    PersistSession(nullptr);
  }
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
      std::string_view user_headers;
      if (ParseLargeRef(e.headers, &x.large_size, &user_headers)) {
        x.kind = wire::Delivered::Kind::kLarge;  // the bytes come by FETCH_CHUNK
        x.headers = user_headers;
        x.payload = {};
      }
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
  wait_timer_ = timer;  // a close cancels it
  auto ex = strand_;
  stream_->AddFrontierWaiter([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
  co_await timer->async_wait(kNoThrow);
  if (wait_timer_ == timer) wait_timer_.reset();
}

awaitable<void> Connection::FetchLoop(uint64_t req, wire::Fetch fetch) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(fetch.wait_ms);
  const uint32_t max_messages = std::clamp<uint32_t>(fetch.max_messages, 1, 10000);
  const uint32_t max_bytes = std::clamp<uint32_t>(fetch.max_bytes, 1, node_->options_.max_frame_bytes / 2);
  while (true) {
    if (closed_ || close_after_flush_) co_return;
    if (!stream_->owned()) {
      LeaveStream("");
      co_return;
    }
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
  while (subscribed_ && !closed_ && !close_after_flush_ && !node_->stopping_) {
    if (!stream_->owned()) {
      LeaveStream("");
      co_return;
    }
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
  // Confirm only once persisted (fenced by the stream's lease): a confirmed
  // ACK is never redelivered.
  auto self = shared_from_this();
  node_->writer_->Persist(stream_->name(), consumer_, [self, req, ok](Status s) {
    std::string f;
    if (s.ok()) {
      wire::AppendFrame(&f, req, *ok);
      if (self->state_) {
        std::lock_guard l(self->state_->mu);
        self->state_->record.answers += ok->results.size();
      }
      if (self->state_) self->PersistSession(nullptr);
    } else {
      f = ErrorFrame(req, wire::WireError::kUnavailable, "persisting the answers failed: " + s.ToString());
    }
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
      // The creating node takes the stream's lease first, so no other node
      // opens it before it exists.
      const std::string name(c->name);
      if (reg.Get(name)) return Error(h.request_id, wire::WireError::kStreamExists, fmt::format("stream {} exists", name));
      auto valid_until = node_->cluster_->TakeNew(name);
      if (!valid_until) {
        if (node_->bank_->Get("streams/" + name))
          return Error(h.request_id, wire::WireError::kStreamExists, fmt::format("stream {} exists", name));
        return fail(valid_until.error());
      }
      auto r = reg.Create(name, c->config, node_->cluster_->Fence(name));
      if (!r) {
        node_->cluster_->Forget(name);
        if (r.error().code() == ErrorCode::kAlreadyExists)
          return Error(h.request_id, wire::WireError::kStreamExists, r.error().message());
        return fail(r.error());
      }
      (*r)->SetValidUntil(*valid_until);
      wire::AppendFrame(&f, h.request_id, wire::Ok{});
      break;
    }
    case FrameType::kStreamDelete: {
      auto d = wire::DecodeBodyAs<wire::StreamDelete>(body);
      if (!d) return Error(h.request_id, wire::WireError::kMalformedFrame, d.error().message(), true);
      const std::string name(d->name);
      auto entry = reg.Get(name);
      if (!entry || !entry->owned()) return Redirect(h.request_id, name);
      Status s = reg.Delete(name, node_->cluster_->Fence(name));
      if (!s.ok()) return fail(s);
      node_->Evict(entry, "");
      node_->cluster_->Forget(name);
      wire::AppendFrame(&f, h.request_id, wire::Ok{});
      break;
    }
    case FrameType::kStreamList: {
      auto l = wire::DecodeBodyAs<wire::StreamList>(body);
      if (!l) return Error(h.request_id, wire::WireError::kMalformedFrame, l.error().message(), true);
      // Every stream of the cluster, not only those this node serves.
      auto all = node_->bank_->List("streams/");
      if (!all) return fail(all.error());
      std::vector<std::string> names;
      for (const auto& kv : *all) names.push_back(kv.key.substr(std::string_view("streams/").size()));
      wire::StreamListOk ok;
      for (const auto& n : names) ok.names.push_back(n);
      wire::AppendFrame(&f, h.request_id, ok);
      break;
    }
    case FrameType::kStreamInfo: {
      auto i = wire::DecodeBodyAs<wire::StreamInfo>(body);
      if (!i) return Error(h.request_id, wire::WireError::kMalformedFrame, i.error().message(), true);
      auto s = reg.Get(std::string(i->name));
      if (!s || !s->owned()) return Redirect(h.request_id, std::string(i->name));
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
    node_->writer_->Persist(stream_->name(), consumer_, nullptr);
    stream_->WakeAll();  // others may take the released deliveries
  }
  // Release the session's lock (unless a newer connection of it holds it):
  // the record shows no holder, and its state stays for whoever resumes it.
  // After GOODBYE the record is deleted.
  if (state_) {
    bool mine;
    {
      std::lock_guard l(state_->mu);
      mine = state_->holder_conn == this;
      if (mine) {
        state_->holder_conn = nullptr;
        state_->record.holder.clear();
        state_->record.updated_ms = NowMs();
        state_->ended = goodbye_;
      }
    }
    if (mine) PersistSession(nullptr);
  }
  if (session_id_) node_->ReleaseSession(session_id_, this);
  node_->Forget(this);
}

}  // namespace

// --- Node::Impl --------------------------------------------------------------------

Status Node::Impl::OpenStream(const std::string& name, int64_t valid_until_steady_ms) {
  auto entry = registry_->Open(name);
  if (!entry) return entry.error();
  (*entry)->SetValidUntil(valid_until_steady_ms);
  fmt::print("floe: node {} serves stream {} (frontier {})\n", options_.node_id, name, (*entry)->log().frontier());
  std::fflush(stdout);
  return Status::OK();
}

void Node::Impl::CloseStream(const std::string& name, const std::string& redirect) {
  auto entry = registry_->Close(name);  // owned() is false from here on
  if (!entry) return;
  Evict(entry, redirect);
  entry->WakeAll();
  // The log closes (and its directory lock goes) when the last connection
  // lets go of the entry; wait a little for that, so the next owner can open
  // it at once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (entry.use_count() > 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  fmt::print("floe: node {} no longer serves stream {}{}\n", options_.node_id, name,
             entry.use_count() > 1 ? " (still closing)" : "");
  std::fflush(stdout);
}

void Node::Impl::Evict(const std::shared_ptr<StreamEntry>& entry, const std::string& redirect) {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard l(sessions_mu_);
    conns.assign(connections_.begin(), connections_.end());
  }
  for (auto& c : conns) c->Evict(entry, redirect);
}

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
  writer_ = std::make_unique<BankWriter>(bank_.get(), [this](const std::string& stream) -> std::optional<bank::Op> {
    if (!cluster_) return std::nullopt;
    return cluster_->Fence(stream);
  });

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
  // Join the cluster: heartbeat, then take this node's share of the streams
  // (opening them) before taking connections.
  address_ = options_.advertise.empty()
                 ? fmt::format("{}:{}", options_.listen.substr(0, colon), acceptor_.local_endpoint().port())
                 : options_.advertise;
  cluster_ = std::make_unique<cluster::Cluster>(
      bank_.get(), cluster::ClusterOptions{options_.node_id, address_, options_.lease_ms, options_.auto_balance},
      this);
  FLOE_RETURN_IF_ERROR(cluster_->Start());
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) threads_.emplace_back([this] { io_.run(); });
  return Status::OK();
}

void Node::Impl::Stop() {
  if (stopping_.exchange(true)) {
    Wait();
    return;
  }
  // No more takeovers or renewals; the leases are given up at the end.
  if (cluster_) cluster_->Stop(false);
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
  if (writer_) writer_->Stop();  // answers persisted and confirmed
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
  blob_pool_.join();
  threads_.clear();
  {
    std::lock_guard l(sessions_mu_);
    connections_.clear();
    sessions_.clear();
  }
  registry_->CloseAll();
  // Other nodes may take the streams at once.
  if (cluster_) cluster_->Stop(true);
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
Node::Stats Node::stats() const {
  Stats s;
  s.published = impl_->published_.load();
  if (impl_->writer_) {
    s.bank_commits = impl_->writer_->commits();
    s.bank_records = impl_->writer_->records();
  }
  if (impl_->cluster_) s.takeovers = impl_->cluster_->takeovers();
  return s;
}
void Node::Wait() { impl_->Wait(); }

void Node::HandleSignals() {
  impl_->signals_ = std::make_unique<asio::signal_set>(impl_->io_, SIGINT, SIGTERM);
  impl_->signals_->async_wait([this](const asio::error_code& ec, int) {
    if (ec) return;
    std::thread([this] { impl_->Stop(); }).detach();
  });
}

}  // namespace floe::broker
