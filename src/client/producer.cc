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
//   * The session link's receiver thread (session_link.h): reads the
//     socket, reconnects and reopens the session with the same id after any
//     break. Through the SessionRole hooks it matches PUBLISH_ACK results to
//     unacked messages, runs the ack callbacks (outside the lock), and on
//     each new connection queues every unacknowledged message again, in
//     producer-seq order.
// The mutex link_ shares (link_.mu(), mu() here) guards the fields marked
// GUARDED_BY and the link's connection state.
//
// Retry semantics: the node dedups by (session id, producer seq) and answers
// a resend of a stored message with its original seq (duplicate = true), so
// resending after a break never stores twice. A message NAKed with a
// retriable code (STORAGE_FAILED, UNAVAILABLE, DISK_FULL, …) is resent with
// the same producer seq after a backoff, for at most reconnect_give_up_ms; a
// non-retriable NAK completes it with an error.
// Order (docs/protocol.md, "Order"): the stream stores a session's messages
// in producer-seq order. While a retriable NAK's backoff runs, nothing is
// sent; then every unacknowledged message not on the wire goes out again in
// producer-seq order, the NAKed one first. Later messages that were already
// on the wire are refused by the node (STORAGE_FAILED) and join the resend,
// so none lands before the one that failed. If no
// usable connection is had for reconnect_give_up_ms, every unacked message
// fails with Unavailable and the producer is broken: Send and Flush return
// that status from then on. Flush otherwise returns OK once every message
// it waits for has completed; each message's own outcome goes to its
// callback.
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "base/mutex.h"
#include "client/client.h"
#include "client/connection.h"
#include "client/session_link.h"

namespace floe::client {
namespace {

using internal::Connection;
using internal::SteadyClock;

// Fixed bytes of one message inside a PUBLISH body: producer seq and three
// blob lengths.
constexpr size_t kMessageOverhead = 8 + 4 + 4 + 4;
// A PUBLISH body starts with its u32 message count; the frame header's
// length field counts 12 header bytes besides the body.
constexpr size_t kPublishFixedBytes = 4 + (wire::kFrameHeaderSize - 4);

class ProducerImpl final : public Producer, private internal::SessionRole {
 public:
  explicit ProducerImpl(const ProducerOptions& options) : options_(options) {
    if (options_.max_inflight == 0) options_.max_inflight = 1;
    if (options_.max_batch_messages == 0) options_.max_batch_messages = 1;
  }

  ~ProducerImpl() override { Shutdown(/*graceful=*/false); }

  Status Start();
  Result<uint64_t> Send(std::string_view payload, AckCallback done, std::string_view key,
                        std::string_view headers) override EXCLUDES(mu());
  Status Flush() override EXCLUDES(mu());
  Status Close() override EXCLUDES(mu());
  uint64_t session_id() const override { return link_.session_id(); }
  uint64_t reconnects() const override { return link_.reconnects(); }
  uint64_t redirects() const override { return link_.redirects(); }

 private:
  // A message not yet acknowledged: the copy that is resent after a break.
  struct Pending {
    std::string key;
    std::string headers;
    std::string payload;
    AckCallback done;
    size_t wire_bytes = 0;
    uint64_t inflight_rid = 0;          // request id of the PUBLISH carrying it; 0: not on the wire
    SteadyClock::time_point retry_deadline{};  // set by the first retriable NAK
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

  // SessionRole, called by link_ (see session_link.h for threads and locks).
  wire::SessionOpen SessionRequest(uint64_t session_id) override;
  void SessionOpened(const wire::SessionOk& ok) override REQUIRES(mu());
  std::string Connected(Connection& conn) override REQUIRES(mu());
  void Disconnected() override REQUIRES(mu()) {}
  void GaveUp(const Status& why) override EXCLUDES(mu());
  void HandleFrame(Connection& conn, const internal::Frame& frame) override EXCLUDES(mu());

  // Sender side.
  void SenderLoop() EXCLUDES(mu());
  bool ShouldLinger(SteadyClock::time_point now) const REQUIRES(mu());
  uint32_t LingerUs() const REQUIRES(mu());
  static constexpr size_t kEagerBatch = 64;
  static constexpr uint32_t kAutoLingerUs = 50;
  void PromoteDueRetries(SteadyClock::time_point now) REQUIRES(mu());
  void PushReady(uint64_t seq, size_t wire_bytes) REQUIRES(mu());
  void SendBatch(Completions* done) REQUIRES(mu());
  void TakeBatch(uint64_t rid, size_t frame_budget, Completions* done) REQUIRES(mu());

  // Receiver side.
  void HandleAck(uint64_t rid, const wire::PublishAck& ack) EXCLUDES(mu());
  void HandleBatchError(uint64_t rid, const wire::Error& error) EXCLUDES(mu());

  // Completion helpers; callbacks run later via RunCompletions.
  void Complete(std::map<uint64_t, Pending>::iterator it, PublishOutcome outcome, Completions* done) REQUIRES(mu());
  void Retry(std::map<uint64_t, Pending>::iterator it, const Status& why, Completions* done) REQUIRES(mu());
  void FailAll(const Status& why, Completions* done) REQUIRES(mu());
  void RunCompletions(Completions& done) EXCLUDES(mu());

  void Shutdown(bool graceful) EXCLUDES(mu());

  // The mutex the link shares, under the one name the analysis knows it by
  // (session_link.h).
  Mutex& mu() const RETURN_CAPABILITY(link_.mu()) { return link_.mu(); }

  ProducerOptions options_;  // fixed after the constructor

  Mutex link_mu_;  // storage only: always named mu()
  // The connection, its session and the receiver thread; guarded by mu() as
  // session_link.h says.
  internal::SessionLink link_{options_, options_.session_id, link_mu_, this, "producer"};
  CondVar sender_cv_;  // the sender: work, a connection, the token, stop
  CondVar space_cv_;   // Send: room under max_inflight; Flush; Close
  uint32_t max_frame_bytes_ GUARDED_BY(mu()) = wire::kDefaultMaxFrameBytes;  // of the last node we spoke to
  bool sending_ GUARDED_BY(mu()) = false;  // the send token
  uint64_t next_seq_ GUARDED_BY(mu()) = 1;
  std::map<uint64_t, Pending> unacked_ GUARDED_BY(mu());  // by producer seq: resent in this order
  std::deque<Ready> ready_ GUARDED_BY(mu());              // to put on the wire, oldest first
  size_t ready_bytes_ GUARDED_BY(mu()) = 0;
  SteadyClock::time_point ready_since_ GUARDED_BY(mu()){};  // when ready_ last became non-empty (linger)
  // A retriable NAK came: send nothing before hold_until_, then requeue every
  // unacked message not on the wire, in producer-seq order (file comment).
  bool resend_ GUARDED_BY(mu()) = false;
  SteadyClock::time_point hold_until_ GUARDED_BY(mu()){};
  size_t completing_ GUARDED_BY(mu()) = 0;  // completions taken but whose callbacks have not run
  int flushers_ GUARDED_BY(mu()) = 0;       // Flush callers: the sender does not linger

  // Owned by the holder of the send token (sending_, taken and given back
  // under mu()): no lock guards them, so no GUARDED_BY.
  wire::Publish publish_;
  std::string frame_;

  std::thread sender_;
};

// --- Connecting --------------------------------------------------------------

Status ProducerImpl::Start() {
  FLOE_RETURN_IF_ERROR(wire::ValidateStreamName(options_.stream));
  FLOE_RETURN_IF_ERROR(link_.Start());
  sender_ = std::thread([this] { SenderLoop(); });
  return Status::OK();
}

wire::SessionOpen ProducerImpl::SessionRequest(uint64_t session_id) {
  return {.session_id = session_id, .role = wire::Role::kProducer, .stream = options_.stream};
}

void ProducerImpl::SessionOpened(const wire::SessionOk& ok) {
  // Continue after what the stream holds for this session (a resumed id), and
  // never reuse a seq the stream already holds.
  next_seq_ = std::max(next_seq_, ok.highest_producer_seq + 1);
}

std::string ProducerImpl::Connected(Connection& conn) {
  max_frame_bytes_ = conn.max_frame_bytes();
  // Resend everything unacknowledged, in producer-seq order: the node acks
  // what it already holds as duplicates with the original seq.
  ready_.clear();
  ready_bytes_ = 0;
  resend_ = false;
  for (auto& [seq, p] : unacked_) {
    p.inflight_rid = 0;
    PushReady(seq, p.wire_bytes);
  }
  sender_cv_.Signal();
  return {};
}

// Every unacked message fails, and the producer is broken: Send and Flush
// return link_.broken() from now on.
void ProducerImpl::GaveUp(const Status& why) {
  Completions done;
  {
    MutexLock lk(&mu());
    FailAll(why, &done);
    space_cv_.SignalAll();
  }
  RunCompletions(done);
}

// --- Send, Flush, Close --------------------------------------------------------

Result<uint64_t> ProducerImpl::Send(std::string_view payload, AckCallback done, std::string_view key,
                                    std::string_view headers) {
  const size_t wire_bytes = kMessageOverhead + key.size() + headers.size() + payload.size();
  Completions failed;
  uint64_t seq;
  {
    MutexLock lk(&mu());
    if (wire_bytes + kPublishFixedBytes > max_frame_bytes_)
      return Err(Status::InvalidArgument(
          fmt::format("message of {} bytes cannot fit the node's frame limit of {}", wire_bytes, max_frame_bytes_)));
    while (unacked_.size() >= options_.max_inflight && !link_.stopping() && link_.broken().ok()) space_cv_.Wait(&mu());
    if (link_.stopping()) return Err(Status::FailedPrecondition("producer closed"));
    if (!link_.broken().ok()) return Err(link_.broken());
    seq = next_seq_++;
    Pending& p = unacked_.emplace_hint(unacked_.end(), seq, Pending{})->second;
    p.key.assign(key);
    p.headers.assign(headers);
    p.payload.assign(payload);
    p.done = std::move(done);
    p.wire_bytes = wire_bytes;
    PushReady(seq, wire_bytes);
    if (options_.linger_us == 0 && unacked_.size() == 1 && !sending_ && !resend_ && link_.conn()) {
      // Nothing else in flight: batching has nothing to gain, send now.
      SendBatch(&failed);
    } else if (ready_.size() == 1 || ready_.size() == kEagerBatch || ready_.size() >= options_.max_batch_messages) {
      // Wake the sender only when it has something new to decide: a first
      // message, or a batch full enough to go without lingering.
      sender_cv_.Signal();
    }
  }
  RunCompletions(failed);  // messages the eager send found too big for the node
  return seq;
}

Status ProducerImpl::Flush() {
  MutexLock lk(&mu());
  const uint64_t last = next_seq_ - 1;
  ++flushers_;
  sender_cv_.Signal();
  for (;;) {
    const bool drained = (unacked_.empty() || unacked_.begin()->first > last) && completing_ == 0;
    if (drained || link_.stopping() || !link_.broken().ok()) break;
    space_cv_.Wait(&mu());
  }
  --flushers_;
  if (!link_.broken().ok()) return link_.broken();
  const bool drained = unacked_.empty() || unacked_.begin()->first > last;
  if (!drained) return Status::FailedPrecondition("producer closed before every message was acknowledged");
  return Status::OK();
}

Status ProducerImpl::Close() {
  Status s = Flush();
  Shutdown(/*graceful=*/true);
  return s;
}

// Stops the sender, then the link. Graceful: after the sender stopped, says
// GOODBYE and half-closes, giving the node a second to close its side before
// cutting the connection (SessionLink::FinishStop). Messages still unacked
// (only when not flushed first) fail with Aborted, their callbacks run here.
void ProducerImpl::Shutdown(bool graceful) {
  if (!link_.BeginStop()) return;
  sender_cv_.SignalAll();
  space_cv_.SignalAll();
  if (sender_.joinable()) sender_.join();
  link_.FinishStop(graceful);
  Completions done;
  {
    MutexLock lk(&mu());
    FailAll(Status::Aborted("producer closed before the node acknowledged the message"), &done);
  }
  RunCompletions(done);
}

// --- Sender ------------------------------------------------------------------

void ProducerImpl::PushReady(uint64_t seq, size_t wire_bytes) {
  if (ready_.empty()) ready_since_ = SteadyClock::now();
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

bool ProducerImpl::ShouldLinger(SteadyClock::time_point now) const {
  if (flushers_ > 0) return false;
  if (ready_.size() >= options_.max_batch_messages || ready_bytes_ >= options_.max_batch_bytes) return false;
  const uint32_t linger = LingerUs();
  return linger > 0 && now < ready_since_ + std::chrono::microseconds(linger);
}

// The backoff is over: every unacked message not on the wire is ready again,
// in producer-seq order (the retried ones are the oldest: they go first).
void ProducerImpl::PromoteDueRetries(SteadyClock::time_point now) {
  if (!resend_ || now < hold_until_) return;
  resend_ = false;
  ready_.clear();
  ready_bytes_ = 0;
  for (auto& [seq, p] : unacked_)
    if (p.inflight_rid == 0) PushReady(seq, p.wire_bytes);
  ready_since_ = now;
}

void ProducerImpl::SenderLoop() {
  mu().Lock();
  Completions done;
  while (!link_.stopping()) {
    const auto now = SteadyClock::now();
    PromoteDueRetries(now);
    if (!link_.conn() || sending_ || ready_.empty() || resend_) {
      if (!resend_) sender_cv_.Wait(&mu());
      else (void)sender_cv_.WaitUntil(&mu(), hold_until_);
      continue;
    }
    if (ShouldLinger(now)) {
      (void)sender_cv_.WaitUntil(&mu(), ready_since_ + std::chrono::microseconds(LingerUs()));
      continue;
    }
    SendBatch(&done);
    if (!done.empty()) {
      mu().Unlock();
      RunCompletions(done);
      mu().Lock();
    }
  }
  mu().Unlock();
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

// Precondition: mu() held, the token free, link_.conn() set. Encodes under
// the lock (the frame must not point into unacked_, which the receiver may
// change), writes without it, holding the token; returns with mu() held.
void ProducerImpl::SendBatch(Completions* done) {
  std::shared_ptr<Connection> conn = link_.conn();
  const uint64_t rid = conn->NextRequestId();
  TakeBatch(rid, conn->max_frame_bytes() - kPublishFixedBytes, done);
  if (publish_.messages.empty()) return;
  sending_ = true;
  frame_.clear();
  wire::AppendFrame(&frame_, rid, publish_);
  mu().Unlock();
  const Status s = conn->SendFrame(frame_);
  mu().Lock();
  sending_ = false;
  if (!s.ok()) {
    // The receiver reconnects and queues these messages again.
    link_.Cut(conn);
  }
  sender_cv_.Signal();  // the token is free again
}

// --- Receiver ------------------------------------------------------------------

// PING and connection-level ERRORs are the link's.
void ProducerImpl::HandleFrame(Connection& conn, const internal::Frame& frame) {
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
      if (!error) {
        conn.Shutdown();
        return;
      }
      HandleBatchError(h.request_id, *error);
      return;
    }
    default:
      return;  // PONG, OK for GOODBYE, or a type a later version added
  }
}

void ProducerImpl::HandleAck(uint64_t rid, const wire::PublishAck& ack) {
  Completions done;
  {
    MutexLock lk(&mu());
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
    MutexLock lk(&mu());
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
  const auto now = SteadyClock::now();
  p.inflight_rid = 0;
  if (p.retries == 0) p.retry_deadline = now + std::chrono::milliseconds(options_.reconnect_give_up_ms);
  if (now >= p.retry_deadline) {
    Complete(it, {Status::Unavailable(fmt::format("gave up resending after {} tries: {}", p.retries, why.message())),
                  it->first},
             done);
    // The node holds this session's later messages back until the one given
    // up on is stored: reopen the session, which starts its order afresh
    // (docs/protocol.md "Order"); the rest is resent on the new connection.
    if (const auto& conn = link_.conn()) {
      link_.MarkPlannedReset();
      link_.Cut(conn);
    }
    return;
  }
  const int shift = std::min(p.retries, 20);
  const int64_t backoff = std::min<int64_t>(int64_t{std::max(options_.reconnect_min_backoff_ms, 1)} << shift,
                                            std::max(options_.reconnect_max_backoff_ms, 1));
  ++p.retries;
  hold_until_ = std::max(resend_ ? hold_until_ : now, now + std::chrono::milliseconds(backoff));
  resend_ = true;
  sender_cv_.Signal();
}

void ProducerImpl::FailAll(const Status& why, Completions* done) {
  while (!unacked_.empty()) Complete(unacked_.begin(), {why, 0}, done);
  ready_.clear();
  ready_bytes_ = 0;
  resend_ = false;
}

// Runs callbacks without the lock (they may call Send), then lets Flush and
// blocked senders see the room they made.
void ProducerImpl::RunCompletions(Completions& done) {
  if (done.empty()) return;
  for (Completion& c : done)
    if (c.done) c.done(c.outcome);
  MutexLock lk(&mu());
  completing_ -= done.size();
  done.clear();
  space_cv_.SignalAll();
}

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Open(const ProducerOptions& options) {
  auto producer = std::make_unique<ProducerImpl>(options);
  FLOE_RETURN_ERR_IF_ERROR(producer->Start());
  return std::unique_ptr<Producer>(std::move(producer));
}

}  // namespace floe::client
