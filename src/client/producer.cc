// Producer: batching, pipelining and idempotent resend over one connection at
// a time, resuming its session by id after any break.
//
// Threads and what each owns:
//   * Callers of Send/Flush (any threads): append messages to unacked_ and
//     ready_. When nothing else is in flight and linger_us is 0, the caller
//     sends its own message at once (one thread hop less for one-at-a-time
//     publishing); otherwise it wakes the sender thread.
//   * The sender thread: takes ready messages in producer-seq order, packs
//     them into PUBLISH frames (max_batch_messages / max_batch_bytes, never
//     above the node's frame limit), lingering up to linger_us for more.
//     Whoever sends holds the send token (sending_), so frames go out in
//     the order their messages were taken, and frame_/publish_ are its alone.
//   * The receiver thread: owns reading the socket and the connection's
//     lifecycle. It matches PUBLISH_ACK results to unacked messages, runs
//     the ack callbacks (outside the lock), and on any connection failure
//     reconnects (ConnectAny), reopens the session with the same id and
//     queues every unacknowledged message again, in producer-seq order.
// Every field below mu_ is guarded by it.
//
// Retry semantics: the node dedups by (session id, producer seq) and answers
// a resend of a stored message with its original seq (duplicate = true), so
// resending after a break never stores twice. A message NAKed with a
// retriable code is resent with the same producer seq after a backoff, for
// at most reconnect_give_up_ms; a non-retriable NAK completes it with an
// error. A retried message may land in the stream after later ones: stream
// order follows producer-seq order only while nothing is retried. If no
// usable connection is had for reconnect_give_up_ms, every unacked message
// fails with Unavailable and the producer is broken: Send and Flush return
// that status from then on. Flush otherwise returns OK once every message
// it waits for has completed; each message's own outcome goes to its
// callback.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "client/client.h"
#include "client/connection.h"

namespace floe::client {
namespace {

using Clock = std::chrono::steady_clock;
using internal::Connection;

// Fixed bytes of one message inside a PUBLISH body: producer seq and three
// blob lengths.
constexpr size_t kMessageOverhead = 8 + 4 + 4 + 4;
// A PUBLISH body starts with its u32 message count; the frame header's
// length field counts 12 header bytes besides the body.
constexpr size_t kPublishFixedBytes = 4 + (wire::kFrameHeaderSize - 4);

class ProducerImpl final : public Producer {
 public:
  explicit ProducerImpl(const ProducerOptions& options) : options_(options) {
    session_id_ = options.session_id;
    if (options_.max_inflight == 0) options_.max_inflight = 1;
    if (options_.max_batch_messages == 0) options_.max_batch_messages = 1;
  }

  ~ProducerImpl() override { Shutdown(/*graceful=*/false); }

  Status Start();
  Result<uint64_t> Send(std::string_view payload, AckCallback done, std::string_view key,
                        std::string_view headers) override;
  Status Flush() override;
  Status Close() override;
  uint64_t session_id() const override { return session_id_.load(); }
  uint64_t reconnects() const override { return reconnects_.load(); }
  uint64_t redirects() const override { return redirects_followed_.load(); }

 private:
  // A message not yet acknowledged: the copy that is resent after a break.
  struct Pending {
    std::string key;
    std::string headers;
    std::string payload;
    AckCallback done;
    size_t wire_bytes = 0;
    uint64_t inflight_rid = 0;          // request id of the PUBLISH carrying it; 0: not on the wire
    Clock::time_point retry_deadline{};  // set by the first retriable NAK
    int retries = 0;
  };
  struct Ready {
    uint64_t seq;
    size_t wire_bytes;
  };
  struct Completion {
    AckCallback done;
    PublishOutcome outcome;
  };
  using Completions = std::vector<Completion>;

  Status OpenSession(Connection& conn);
  void InstallConnection(std::unique_ptr<Connection> conn);

  // Sender side.
  void SenderLoop();
  bool ShouldLinger(Clock::time_point now) const;
  uint32_t LingerUs() const;
  static constexpr size_t kEagerBatch = 64;
  static constexpr uint32_t kAutoLingerUs = 50;
  void PromoteDueRetries(Clock::time_point now);
  void PushReady(uint64_t seq, size_t wire_bytes);
  void SendBatch(std::unique_lock<std::mutex>& lk, Completions* done);
  void TakeBatch(uint64_t rid, size_t frame_budget, Completions* done);

  // Receiver side.
  void ReceiverLoop();
  bool Reconnect();
  void DropConnection(const std::shared_ptr<Connection>& conn);
  void Dispatch(Connection& conn, const internal::Frame& frame);
  void HandleAck(uint64_t rid, const wire::PublishAck& ack);
  void HandleBatchError(uint64_t rid, const wire::Error& error);

  // Completion helpers (mu_ held); callbacks run later via RunCompletions.
  void Complete(std::map<uint64_t, Pending>::iterator it, PublishOutcome outcome, Completions* done);
  void Retry(std::map<uint64_t, Pending>::iterator it, const Status& why, Completions* done);
  void FailAll(const Status& why, Completions* done);
  void RunCompletions(Completions& done);

  void Shutdown(bool graceful);

  ProducerOptions options_;
  internal::Canceller cancel_;
  std::atomic<uint64_t> session_id_{0};
  std::atomic<uint64_t> reconnects_{0};
  // Owned by the thread that connects (Start, then the receiver).
  internal::Redirects redirects_;
  std::atomic<uint64_t> redirects_followed_{0};
  // Used by the one thread connecting: Start, then the receiver.
  size_t next_server_ = 0;
  internal::ReconnectPacer pacer_{options_};

  std::mutex mu_;
  std::condition_variable sender_cv_;  // the sender: work, a connection, the token, stop
  std::condition_variable space_cv_;   // Send: room under max_inflight; Flush; Close
  std::shared_ptr<Connection> conn_;   // null while reconnecting
  Connection* handshake_conn_ = nullptr;  // a connection in SESSION_OPEN, so Shutdown can wake it
  uint32_t max_frame_bytes_ = wire::kDefaultMaxFrameBytes;  // of the last node we spoke to
  Status broken_;                      // set when reconnecting gave up
  bool stopping_ = false;
  bool closed_ = false;
  bool receiver_exited_ = false;
  bool sending_ = false;               // the send token
  bool opened_once_ = false;
  uint64_t next_seq_ = 1;
  std::map<uint64_t, Pending> unacked_;  // by producer seq: resent in this order
  std::deque<Ready> ready_;              // to put on the wire, oldest first
  size_t ready_bytes_ = 0;
  Clock::time_point ready_since_{};      // when ready_ last became non-empty (linger)
  std::multimap<Clock::time_point, uint64_t> delayed_;  // retriable NAKs waiting out their backoff
  size_t completing_ = 0;                // completions taken but whose callbacks have not run
  int flushers_ = 0;                     // Flush callers: the sender does not linger

  // Owned by the holder of the send token.
  wire::Publish publish_;
  std::string frame_;

  std::thread sender_;
  std::thread receiver_;
};

// --- Connecting --------------------------------------------------------------

Status ProducerImpl::Start() {
  FLOE_RETURN_IF_ERROR(wire::ValidateStreamName(options_.stream));
  auto conn = internal::ConnectAny(options_, [this](Connection& c) { return OpenSession(c); }, &cancel_,
                                   &next_server_, -1, &redirects_);
  redirects_followed_ = redirects_.followed;
  if (!conn) return conn.error();
  InstallConnection(std::move(*conn));
  sender_ = std::thread([this] { SenderLoop(); });
  receiver_ = std::thread([this] { ReceiverLoop(); });
  return Status::OK();
}

// Runs on the connecting thread, on a connection no other thread sees yet.
Status ProducerImpl::OpenSession(Connection& conn) {
  const uint64_t asked = session_id_.load();
  {
    std::lock_guard lk(mu_);
    if (stopping_) return Status::Aborted("producer closed");
    handshake_conn_ = &conn;
  }
  wire::SessionOpen open{.session_id = asked, .role = wire::Role::kProducer, .stream = options_.stream};
  auto ok = conn.Call<wire::SessionOk>(open, internal::kRequestTimeoutMs);
  std::lock_guard lk(mu_);
  handshake_conn_ = nullptr;
  if (!ok) return ok.error();
  if (ok->session_id == 0) return Status::Internal("node opened session 0");
  // Resuming under another id would defeat dedup: a resend could be stored twice.
  if (asked != 0 && ok->session_id != asked)
    return Status::FailedPrecondition(
        fmt::format("asked to resume session {} but the node opened session {}", asked, ok->session_id));
  session_id_ = ok->session_id;
  // Continue after what the stream holds for this session (a resumed id), and
  // never reuse a seq the stream already holds.
  next_seq_ = std::max(next_seq_, ok->highest_producer_seq + 1);
  return Status::OK();
}

void ProducerImpl::InstallConnection(std::unique_ptr<Connection> conn) {
  pacer_.Connected();
  std::lock_guard lk(mu_);
  max_frame_bytes_ = conn->max_frame_bytes();
  conn_ = std::move(conn);
  if (opened_once_) ++reconnects_;
  opened_once_ = true;
  // Resend everything unacknowledged, in producer-seq order: the node acks
  // what it already holds as duplicates with the original seq.
  ready_.clear();
  ready_bytes_ = 0;
  delayed_.clear();
  for (auto& [seq, p] : unacked_) {
    p.inflight_rid = 0;
    PushReady(seq, p.wire_bytes);
  }
  sender_cv_.notify_one();
}

// --- Send, Flush, Close --------------------------------------------------------

Result<uint64_t> ProducerImpl::Send(std::string_view payload, AckCallback done, std::string_view key,
                                    std::string_view headers) {
  const size_t wire_bytes = kMessageOverhead + key.size() + headers.size() + payload.size();
  std::unique_lock lk(mu_);
  if (wire_bytes + kPublishFixedBytes > max_frame_bytes_)
    return Err(Status::InvalidArgument(
        fmt::format("message of {} bytes cannot fit the node's frame limit of {}", wire_bytes, max_frame_bytes_)));
  space_cv_.wait(lk, [&] { return unacked_.size() < options_.max_inflight || stopping_ || !broken_.ok(); });
  if (stopping_) return Err(Status::FailedPrecondition("producer closed"));
  if (!broken_.ok()) return Err(broken_);
  const uint64_t seq = next_seq_++;
  Pending& p = unacked_.emplace_hint(unacked_.end(), seq, Pending{})->second;
  p.key.assign(key);
  p.headers.assign(headers);
  p.payload.assign(payload);
  p.done = std::move(done);
  p.wire_bytes = wire_bytes;
  PushReady(seq, wire_bytes);
  if (options_.linger_us == 0 && unacked_.size() == 1 && !sending_ && conn_) {
    // Nothing else in flight: batching has nothing to gain, send now.
    Completions failed;
    SendBatch(lk, &failed);
    lk.unlock();
    RunCompletions(failed);
  } else if (ready_.size() == 1 || ready_.size() == kEagerBatch || ready_.size() >= options_.max_batch_messages) {
    // Wake the sender only when it has something new to decide: a first
    // message, or a batch full enough to go without lingering.
    sender_cv_.notify_one();
  }
  return seq;
}

Status ProducerImpl::Flush() {
  std::unique_lock lk(mu_);
  const uint64_t last = next_seq_ - 1;
  ++flushers_;
  sender_cv_.notify_one();
  space_cv_.wait(lk, [&] {
    const bool drained = (unacked_.empty() || unacked_.begin()->first > last) && completing_ == 0;
    return drained || stopping_ || !broken_.ok();
  });
  --flushers_;
  if (!broken_.ok()) return broken_;
  const bool drained = unacked_.empty() || unacked_.begin()->first > last;
  if (!drained) return Status::FailedPrecondition("producer closed before every message was acknowledged");
  return Status::OK();
}

Status ProducerImpl::Close() {
  Status s = Flush();
  Shutdown(/*graceful=*/true);
  return s;
}

// Stops both threads. Graceful: after the sender stopped, says GOODBYE and
// half-closes, giving the node a second to close its side (the receiver sees
// EOF and exits) before cutting the connection. Messages still unacked (only
// when not flushed first) fail with Aborted, their callbacks run here.
void ProducerImpl::Shutdown(bool graceful) {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard lk(mu_);
    if (closed_) return;
    closed_ = true;
    stopping_ = true;
    conn = conn_;
    if (handshake_conn_) handshake_conn_->Shutdown();
  }
  cancel_.Cancel();
  sender_cv_.notify_all();
  space_cv_.notify_all();
  if (sender_.joinable()) sender_.join();
  if (conn) {
    if (graceful && conn->Send(conn->NextRequestId(), wire::Goodbye{}).ok()) {
      conn->ShutdownWrite();
      std::unique_lock lk(mu_);
      space_cv_.wait_for(lk, std::chrono::seconds(1), [&] { return receiver_exited_; });
    }
    conn->Shutdown();
  }
  if (receiver_.joinable()) receiver_.join();
  Completions done;
  {
    std::lock_guard lk(mu_);
    conn_.reset();
    FailAll(Status::Aborted("producer closed before the node acknowledged the message"), &done);
  }
  RunCompletions(done);
}

// --- Sender ------------------------------------------------------------------

void ProducerImpl::PushReady(uint64_t seq, size_t wire_bytes) {
  if (ready_.empty()) ready_since_ = Clock::now();
  ready_.push_back({seq, wire_bytes});
  ready_bytes_ += wire_bytes;
}

uint32_t ProducerImpl::LingerUs() const {
  if (options_.linger_us > 0) return options_.linger_us;
  // With messages already in flight, a small batch waits a moment for more:
  // the ACKs it would race are not back yet, and fuller frames cost the node
  // (and this process) much less per message. With nothing in flight it goes
  // at once, so one-at-a-time latency is unchanged.
  const bool in_flight = unacked_.size() > ready_.size();
  return in_flight && ready_.size() < kEagerBatch ? kAutoLingerUs : 0;
}

bool ProducerImpl::ShouldLinger(Clock::time_point now) const {
  if (flushers_ > 0) return false;
  if (ready_.size() >= options_.max_batch_messages || ready_bytes_ >= options_.max_batch_bytes) return false;
  const uint32_t linger = LingerUs();
  return linger > 0 && now < ready_since_ + std::chrono::microseconds(linger);
}

void ProducerImpl::PromoteDueRetries(Clock::time_point now) {
  std::vector<Ready> due;
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    const uint64_t seq = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    auto it = unacked_.find(seq);
    if (it != unacked_.end() && it->second.inflight_rid == 0) due.push_back({seq, it->second.wire_bytes});
  }
  if (due.empty()) return;
  // Retries are older than anything new: they go first, in seq order.
  std::sort(due.begin(), due.end(), [](const Ready& a, const Ready& b) { return a.seq < b.seq; });
  if (ready_.empty()) ready_since_ = now;
  for (const Ready& r : due) ready_bytes_ += r.wire_bytes;
  ready_.insert(ready_.begin(), due.begin(), due.end());
}

void ProducerImpl::SenderLoop() {
  std::unique_lock lk(mu_);
  Completions done;
  while (!stopping_) {
    const auto now = Clock::now();
    PromoteDueRetries(now);
    if (!conn_ || sending_ || ready_.empty()) {
      if (delayed_.empty()) sender_cv_.wait(lk);
      else sender_cv_.wait_until(lk, delayed_.begin()->first);
      continue;
    }
    if (ShouldLinger(now)) {
      sender_cv_.wait_until(lk, ready_since_ + std::chrono::microseconds(LingerUs()));
      continue;
    }
    SendBatch(lk, &done);
    if (!done.empty()) {
      lk.unlock();
      RunCompletions(done);
      lk.lock();
    }
  }
}

// Moves messages from ready_ into publish_, marking them in flight under
// `rid`, producer seqs increasing. A message too big for this node's frame limit (it shrank across a
// reconnect) can never be sent: it fails.
void ProducerImpl::TakeBatch(uint64_t rid, size_t frame_budget, Completions* done) {
  const size_t budget = std::min(frame_budget, std::max(options_.max_batch_bytes, size_t{1}));
  size_t bytes = 0;
  publish_.messages.clear();
  while (!ready_.empty() && publish_.messages.size() < options_.max_batch_messages) {
    const Ready r = ready_.front();
    // The node refuses producer seqs that do not increase within a frame
    // (docs/protocol.md); retries with unequal backoffs can leave ready_ out
    // of order, so such a seq starts the next frame instead.
    if (!publish_.messages.empty() && r.seq <= publish_.messages.back().producer_seq) break;
    auto it = unacked_.find(r.seq);
    if (it != unacked_.end() && it->second.inflight_rid == 0 && r.wire_bytes > frame_budget) {
      ready_.pop_front();
      ready_bytes_ -= r.wire_bytes;
      Complete(it, {Status::InvalidArgument("message exceeds the node's frame limit"), r.seq}, done);
      continue;
    }
    if (it != unacked_.end() && it->second.inflight_rid == 0) {
      if (!publish_.messages.empty() && bytes + r.wire_bytes > budget) break;
      Pending& p = it->second;
      p.inflight_rid = rid;
      publish_.messages.push_back({r.seq, p.key, p.headers, p.payload});
      bytes += r.wire_bytes;
    }
    ready_.pop_front();  // sent now, or completed / already on the wire
    ready_bytes_ -= r.wire_bytes;
  }
}

// Precondition: mu_ held via lk, the token free, conn_ set. Encodes under
// the lock (the frame must not point into unacked_, which the receiver may
// change), writes without it.
void ProducerImpl::SendBatch(std::unique_lock<std::mutex>& lk, Completions* done) {
  std::shared_ptr<Connection> conn = conn_;
  const uint64_t rid = conn->NextRequestId();
  TakeBatch(rid, conn->max_frame_bytes() - kPublishFixedBytes, done);
  if (publish_.messages.empty()) return;
  sending_ = true;
  frame_.clear();
  wire::AppendFrame(&frame_, rid, publish_);
  lk.unlock();
  const Status s = conn->SendFrame(frame_);
  lk.lock();
  sending_ = false;
  if (!s.ok()) {
    // The receiver reconnects and queues these messages again.
    conn->Shutdown();
    if (conn_ == conn) conn_.reset();
  }
  sender_cv_.notify_one();  // the token is free again
}

// --- Receiver ------------------------------------------------------------------

void ProducerImpl::ReceiverLoop() {
  for (;;) {
    std::shared_ptr<Connection> conn;
    {
      std::lock_guard lk(mu_);
      if (stopping_ && !conn_) break;
      conn = conn_;
    }
    if (!conn) {
      if (!Reconnect()) break;
      continue;
    }
    auto frame = conn->ReadFrame();
    if (!frame) {
      DropConnection(conn);
      continue;
    }
    pacer_.Progressed();
    Dispatch(*conn, *frame);
  }
  std::lock_guard lk(mu_);
  receiver_exited_ = true;
  space_cv_.notify_all();
}

void ProducerImpl::DropConnection(const std::shared_ptr<Connection>& conn) {
  conn->Shutdown();
  std::lock_guard lk(mu_);
  if (conn_ == conn) conn_.reset();
}

// Gives up (false) when closing or when no server accepted us in time; then
// every unacked message fails and the producer is broken.
bool ProducerImpl::Reconnect() {
  if (!cancel_.SleepFor(pacer_.DelayMs())) return false;
  // Connections that keep dying at once count against the give-up time too.
  Result<std::unique_ptr<Connection>> conn =
      internal::NowMs() >= pacer_.GiveUpAtMs()
          ? Err(Status::Unavailable(fmt::format("connections kept breaking for {} ms; giving up",
                                                options_.reconnect_give_up_ms)))
          : internal::ConnectAny(options_, [this](Connection& c) { return OpenSession(c); }, &cancel_, &next_server_,
                                 pacer_.GiveUpAtMs(), &redirects_);
  redirects_followed_ = redirects_.followed;
  Completions done;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return false;
    if (!conn) {
      broken_ = conn.error();
      FailAll(broken_, &done);
      space_cv_.notify_all();
    }
  }
  if (!conn) {
    RunCompletions(done);
    return false;
  }
  InstallConnection(std::move(*conn));
  return true;
}

void ProducerImpl::Dispatch(Connection& conn, const internal::Frame& frame) {
  const wire::FrameHeader& h = frame.header;
  switch (h.type) {
    case wire::FrameType::kPublishAck: {
      auto ack = wire::DecodeBodyAs<wire::PublishAck>(frame.body);
      if (!ack) {
        conn.Shutdown();  // a node we cannot understand: start over
        return;
      }
      HandleAck(h.request_id, *ack);
      return;
    }
    case wire::FrameType::kError: {
      auto error = wire::DecodeBodyAs<wire::Error>(frame.body);
      // Request id 0: about the connection itself; the node closes it next.
      if (!error || h.request_id == 0) {
        if (error && !error->redirect.empty()) redirects_.hint = std::string(error->redirect);
        conn.Shutdown();
        return;
      }
      HandleBatchError(h.request_id, *error);
      return;
    }
    case wire::FrameType::kPing:
      (void)conn.Send(h.request_id, wire::Pong{});
      return;
    default:
      return;  // PONG, OK for GOODBYE, or a type a later version added
  }
}

void ProducerImpl::HandleAck(uint64_t rid, const wire::PublishAck& ack) {
  Completions done;
  {
    std::lock_guard lk(mu_);
    for (const wire::PublishResult& r : ack.results) {
      auto it = unacked_.find(r.producer_seq);
      // Acked already, or resent since: this answer is stale.
      if (it == unacked_.end() || it->second.inflight_rid != rid) continue;
      if (r.code == wire::WireError::kOk) {
        Complete(it, {Status::OK(), r.producer_seq, r.seq, r.duplicate}, &done);
      } else if (wire::IsRetriable(r.code)) {
        Retry(it, internal::ErrorToStatus(r.code, true, "node asked for a resend"), &done);
      } else {
        Complete(it, {internal::ErrorToStatus(r.code, false, "node refused the message"), r.producer_seq}, &done);
      }
    }
  }
  RunCompletions(done);
}

// An ERROR answering a whole PUBLISH: every message it carried shares it.
void ProducerImpl::HandleBatchError(uint64_t rid, const wire::Error& error) {
  const bool retriable = error.retriable || wire::IsRetriable(error.code);
  const Status why = internal::ErrorToStatus(error.code, retriable, error.message);
  Completions done;
  {
    std::lock_guard lk(mu_);
    for (auto it = unacked_.begin(); it != unacked_.end();) {
      auto next = std::next(it);
      if (it->second.inflight_rid == rid) {
        if (retriable) Retry(it, why, &done);
        else Complete(it, {why, it->first}, &done);
      }
      it = next;
    }
  }
  RunCompletions(done);
}

// --- Completions -----------------------------------------------------------------

void ProducerImpl::Complete(std::map<uint64_t, Pending>::iterator it, PublishOutcome outcome, Completions* done) {
  outcome.producer_seq = it->first;
  done->push_back({std::move(it->second.done), std::move(outcome)});
  unacked_.erase(it);
  ++completing_;
}

void ProducerImpl::Retry(std::map<uint64_t, Pending>::iterator it, const Status& why, Completions* done) {
  Pending& p = it->second;
  const auto now = Clock::now();
  p.inflight_rid = 0;
  if (p.retries == 0) p.retry_deadline = now + std::chrono::milliseconds(options_.reconnect_give_up_ms);
  if (now >= p.retry_deadline) {
    Complete(it, {Status::Unavailable(fmt::format("gave up resending after {} tries: {}", p.retries, why.message())),
                  it->first},
             done);
    return;
  }
  const int shift = std::min(p.retries, 20);
  const int64_t backoff = std::min<int64_t>(int64_t{std::max(options_.reconnect_min_backoff_ms, 1)} << shift,
                                            std::max(options_.reconnect_max_backoff_ms, 1));
  ++p.retries;
  delayed_.emplace(now + std::chrono::milliseconds(backoff), it->first);
  sender_cv_.notify_one();
}

void ProducerImpl::FailAll(const Status& why, Completions* done) {
  while (!unacked_.empty()) Complete(unacked_.begin(), {why, 0}, done);
  ready_.clear();
  ready_bytes_ = 0;
  delayed_.clear();
}

// Runs callbacks without the lock (they may call Send), then lets Flush and
// blocked senders see the room they made.
void ProducerImpl::RunCompletions(Completions& done) {
  if (done.empty()) return;
  for (Completion& c : done)
    if (c.done) c.done(c.outcome);
  std::lock_guard lk(mu_);
  completing_ -= done.size();
  done.clear();
  space_cv_.notify_all();
}

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Open(const ProducerOptions& options) {
  auto producer = std::make_unique<ProducerImpl>(options);
  FLOE_RETURN_ERR_IF_ERROR(producer->Start());
  return std::unique_ptr<Producer>(std::move(producer));
}

}  // namespace floe::client
