// Consumer: pull (FETCH) and push (SUBSCRIBE + CREDIT) with ACK/NAK, over one
// connection at a time, resuming its session by id after any break.
//
// Threads and what each owns:
//   * The caller (one thread at a time, per client.h; the push handler may
//     call Ack/Nak/… too): sends requests and waits for the reply routed to
//     it by request id (Request). It never reads the socket.
//   * The session link's receiver thread (session_link.h): the socket's
//     only reader; it answers PING, and on any connection failure reconnects,
//     reopens the session with the same id. Through the SessionRole hooks it
//     hands replies to waiters by request id, decodes pushed DELIVERY frames
//     (those carrying the SUBSCRIBE's request id) into deliveries_, and
//     subscribes again on each new connection if a subscription is on.
//   * The delivery thread: runs the push handler for each queued message and
//     gives credit back (CREDIT) in batches of half the subscription's
//     credit. It is separate from the receiver so a handler may call Ack and
//     wait for ANSWER_OK, which the receiver must read; this is the
//     "consumer's receive thread" client.h refers to. The queue is bounded by
//     the credit granted.
// The mutex link_ shares (link_.mu(), mu() here) guards the fields marked
// GUARDED_BY and the link's connection state.
//
// Retries: a FETCH or an ANSWER that fails retriably (ERROR or per-answer
// UNAVAILABLE — say a bank commit failed —, DISK_FULL, a lost connection, a
// timeout) is sent again after a backoff doubling from
// reconnect_min_backoff_ms to reconnect_max_backoff_ms, until
// reconnect_give_up_ms pass; only then does the call fail with the last
// error. Answers are idempotent on the node (an ACK of an answered seq is
// OK), so resending a whole ANSWER is safe.
//
// After a break: a FETCH or an answer whose reply was lost is sent once more
// on the new connection. Answers are idempotent on the node, so that is
// safe. A lost FETCH reply leaves its messages pending for the old
// connection; the node releases a closed connection's pending deliveries
// and redelivers them (docs/protocol.md, Sessions): nothing is lost, some
// messages come again with a higher delivery count. If reconnecting gives
// up, every call returns that Unavailable status from then on.
//
// Stop() ends a subscription by cutting the connection (the protocol has no
// unsubscribe; the node's subscription and its leftover credit die with the
// connection) and resuming the session at once on a new one. Deliveries
// queued but not yet handled are dropped; the node releases them with the
// closed connection and delivers them again.
#include <algorithm>
#include <type_traits>
#include <chrono>
#include <deque>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "base/mutex.h"
#include "client/client.h"
#include "client/connection.h"
#include "client/session_link.h"

namespace floe::client {
namespace {

using internal::Connection;
using internal::SteadyClock;
using Handler = std::function<void(const ReceivedMessage&)>;

// Answers per ANSWER frame (13 bytes each): far below any frame limit.
constexpr size_t kMaxAnswersPerFrame = 65536;

std::vector<ReceivedMessage> ToMessages(const wire::Delivery& d) {
  std::vector<ReceivedMessage> out;
  out.reserve(d.entries.size());
  for (const wire::Delivered& e : d.entries) {
    ReceivedMessage m;
    m.seq = e.seq;
    m.gap = e.kind == wire::Delivered::Kind::kGap;
    m.gap_count = e.gap_count;
    m.delivery_count = e.delivery_count;
    m.timestamp_us = e.timestamp_us;
    m.key.assign(e.key);
    m.headers.assign(e.headers);
    m.payload.assign(e.payload);
    if (e.kind == wire::Delivered::Kind::kLarge) m.large_size = e.large_size;
    out.push_back(std::move(m));
  }
  return out;
}

class ConsumerImpl final : public Consumer, private internal::SessionRole {
 public:
  explicit ConsumerImpl(const ConsumerOptions& options) : options_(options) {}
  ~ConsumerImpl() override { Shutdown(/*graceful=*/false); }

  Status Start() EXCLUDES(mu());
  Result<std::vector<ReceivedMessage>> Fetch(uint32_t max_messages, uint32_t max_bytes, uint32_t wait_ms) override
      EXCLUDES(mu());
  Status Ack(std::span<const uint64_t> seqs) override EXCLUDES(mu());
  Result<std::string> ReadLarge(uint64_t seq, uint64_t offset, uint32_t max_bytes) override EXCLUDES(mu());
  Status Nak(uint64_t seq, uint32_t delay_ms) override EXCLUDES(mu());
  Status InProgress(uint64_t seq) override EXCLUDES(mu());
  Status Terminate(uint64_t seq) override EXCLUDES(mu());
  Status Subscribe(uint32_t credit, Handler handler) override EXCLUDES(mu());
  void Stop() override EXCLUDES(mu());
  Status Close() override EXCLUDES(mu());
  uint64_t session_id() const override { return link_.session_id(); }
  uint64_t reconnects() const override { return link_.reconnects(); }
  uint64_t redirects() const override { return link_.redirects(); }

 private:
  // A caller waiting for the reply to one request: on the caller's stack,
  // its fields written and read with mu() held (a struct's fields cannot
  // name the consumer's mutex, so they carry no GUARDED_BY).
  struct Waiter {
    bool done = false;
    bool lost = false;  // the connection broke first
    wire::FrameType type = wire::FrameType::kError;
    std::string body;
  };
  // Pushed messages from one DELIVERY frame.
  struct Batch {
    uint64_t conn_gen;  // credit is owed to the connection they came on
    std::vector<ReceivedMessage> messages;
  };

  // SessionRole, called by link_ (see session_link.h for threads and locks).
  wire::SessionOpen SessionRequest(uint64_t session_id) override;
  void SessionOpened(const wire::SessionOk&) override REQUIRES(mu()) {}
  std::string Connected(Connection& conn) override REQUIRES(mu());
  void Disconnected() override REQUIRES(mu());
  void GaveUp(const Status& why) override EXCLUDES(mu());
  void HandleFrame(Connection& conn, const internal::Frame& frame) override EXCLUDES(mu());

  template <typename M>
  Result<std::string> Request(const M& msg, wire::FrameType reply_type, int timeout_ms) EXCLUDES(mu());
  // Runs `call` (returning Status or Result<T>) until it succeeds, fails for
  // good, or the retry budget is spent (file comment).
  template <typename Call>
  std::invoke_result_t<Call> Retrying(Call call) EXCLUDES(mu());
  Status Answer(std::vector<wire::AnswerItem> items) EXCLUDES(mu());
  Status AnswerChunk(std::span<const wire::AnswerItem> items) EXCLUDES(mu());

  // Receiver side.
  void FailWaiters() REQUIRES(mu());
  void HandleSubscriptionFrame(Connection& conn, const internal::Frame& frame) EXCLUDES(mu());

  // Delivery side.
  void DeliveryLoop() EXCLUDES(mu());
  // Lets go of mu() around the CREDIT write; returns with it held.
  void GiveCredit(uint64_t conn_gen) REQUIRES(mu());

  void Shutdown(bool graceful) EXCLUDES(mu());

  // The mutex the link shares, under the one name the analysis knows it by
  // (session_link.h).
  Mutex& mu() const RETURN_CAPABILITY(link_.mu()) { return link_.mu(); }

  const ConsumerOptions options_;

  Mutex link_mu_;  // storage only: always named mu()
  // The connection, its session and the receiver thread; guarded by mu() as
  // session_link.h says.
  internal::SessionLink link_{options_, options_.session_id, link_mu_, this, "consumer"};
  CondVar cv_;           // waiters, handler idle
  CondVar delivery_cv_;  // the delivery thread: queue, stop
  std::unordered_map<uint64_t, Waiter*> waiters_ GUARDED_BY(mu());  // by request id, all on link_.conn()

  // The subscription. States: off (subscribed_ false); on and live on
  // link_.conn() (sub_request_id_ != 0); on and waiting for a connection (0). Subscribe
  // turns it on; Stop, Close or a non-retriable ERROR turn it off; the
  // receiver renews it on each new connection.
  bool subscribed_ GUARDED_BY(mu()) = false;
  uint32_t credit_ GUARDED_BY(mu()) = 0;
  std::shared_ptr<const Handler> handler_ GUARDED_BY(mu());
  uint64_t sub_request_id_ GUARDED_BY(mu()) = 0;
  uint32_t credit_owed_ GUARDED_BY(mu()) = 0;  // handled on link_.conn() but not yet given back
  Status sub_error_ GUARDED_BY(mu());          // why the node ended the last subscription
  std::deque<Batch> deliveries_ GUARDED_BY(mu());
  bool handler_running_ GUARDED_BY(mu()) = false;
  std::thread::id delivery_thread_id_ GUARDED_BY(mu());

  // Started by Start, joined by Shutdown (the owner's thread).
  std::thread delivery_;
};

// --- Connecting --------------------------------------------------------------

Status ConsumerImpl::Start() {
  FLOE_RETURN_IF_ERROR(wire::ValidateStreamName(options_.stream));
  if (options_.consumer.empty()) return Status::InvalidArgument("a durable consumer name is required");
  FLOE_RETURN_IF_ERROR(link_.Start());
  delivery_ = std::thread([this] { DeliveryLoop(); });
  MutexLock lk(&mu());
  delivery_thread_id_ = delivery_.get_id();
  return Status::OK();
}

wire::SessionOpen ConsumerImpl::SessionRequest(uint64_t session_id) {
  // start_at matters only when the node creates the durable consumer; an
  // existing one (every resume) keeps its cursor.
  return {.session_id = session_id,
          .role = wire::Role::kConsumer,
          .stream = options_.stream,
          .consumer = options_.consumer,
          .start_at = options_.start_at,
          .start_value = options_.start_value};
}

// Renews the subscription on a new connection. The link sends the SUBSCRIBE
// after the lock is released; deliveries for it can only be read by the
// receiver, which is this thread or not yet started.
std::string ConsumerImpl::Connected(Connection& conn) {
  credit_owed_ = 0;
  std::string frame;
  if (subscribed_) {
    sub_request_id_ = conn.NextRequestId();
    wire::AppendFrame(&frame, sub_request_id_, wire::Subscribe{.credit = credit_});
  }
  return frame;
}

// Every request in flight was on the dropped connection: its waiters learn
// it is lost (and resend once), and the subscription waits for the next one.
void ConsumerImpl::Disconnected() {
  FailWaiters();
  sub_request_id_ = 0;
  credit_owed_ = 0;
}

// The consumer is broken: every call fails with link_.broken() from now on.
void ConsumerImpl::GaveUp(const Status& why) {
  MutexLock lk(&mu());
  subscribed_ = false;
  sub_error_ = why;
  deliveries_.clear();
  cv_.SignalAll();
}

void ConsumerImpl::FailWaiters() {
  for (auto& [id, w] : waiters_) {
    w->lost = true;
    w->done = true;
  }
  waiters_.clear();
  cv_.SignalAll();
}

// --- Requests ------------------------------------------------------------------

// Sends `msg` and waits for its reply; returns the reply's body. Sent at most
// twice: once more if the connection broke before the reply came (see the
// file comment for why that is safe). A reply that takes longer than
// timeout_ms cuts the connection: the node is not answering.
template <typename M>
Result<std::string> ConsumerImpl::Request(const M& msg, wire::FrameType reply_type, int timeout_ms) {
  for (int attempt = 0;; ++attempt) {
    Waiter w;
    std::shared_ptr<Connection> conn;
    uint64_t id;
    {
      MutexLock lk(&mu());
      FLOE_RETURN_ERR_IF_ERROR(link_.WaitForConnection());
      conn = link_.conn();
      id = conn->NextRequestId();
      waiters_[id] = &w;
    }
    // A failed send leaves the waiter registered: the receiver, woken by the
    // shutdown, marks it lost once it dropped this connection, so the resend
    // goes to the next one.
    if (!conn->Send(id, msg).ok()) conn->Shutdown();
    bool timed_out = false;
    {
      MutexLock lk(&mu());
      const auto deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
      while (!w.done && cv_.WaitUntil(&mu(), deadline)) {}
      // w.done is tested once more: a reply that came with the deadline wins.
      if (!w.done) {
        waiters_.erase(id);
        timed_out = true;
      }
    }
    if (timed_out) {
      conn->Shutdown();
      return Err(Status::TimedOut(fmt::format("no reply from {} within {} ms", conn->server(), timeout_ms)));
    }
    if (w.lost) {
      if (attempt == 0) continue;
      return Err(Status::Unavailable("connection lost twice while waiting for the reply"));
    }
    if (w.type == wire::FrameType::kError) return Err(internal::ErrorFrameToStatus(w.body));
    if (w.type != reply_type)
      return Err(Status::Internal(fmt::format("node answered {} with {}", wire::FrameTypeName(M::kType),
                                              wire::FrameTypeName(w.type))));
    return std::move(w.body);
  }
}

namespace {
const Status& StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r ? Status::OK() : r.error();
}
}  // namespace

template <typename Call>
std::invoke_result_t<Call> ConsumerImpl::Retrying(Call call) {
  const auto give_up = SteadyClock::now() + std::chrono::milliseconds(std::max(options_.reconnect_give_up_ms, 0));
  for (int attempt = 0;; ++attempt) {
    auto result = call();
    const Status s = StatusOf(result);
    if (s.ok() || !internal::IsRetriableStatus(s)) return result;
    const int64_t backoff = std::min<int64_t>(int64_t{std::max(options_.reconnect_min_backoff_ms, 1)}
                                                  << std::min(attempt, 20),
                                              std::max(options_.reconnect_max_backoff_ms, 1));
    const auto until = SteadyClock::now() + std::chrono::milliseconds(backoff);
    if (until >= give_up) return result;
    MutexLock lk(&mu());
    // Stopped or given up on: the failure is final.
    if (link_.stopping() || !link_.broken().ok()) return result;
    while (!link_.stopping() && cv_.WaitUntil(&mu(), until)) {}
    if (link_.stopping()) return result;
  }
}

Result<std::vector<ReceivedMessage>> ConsumerImpl::Fetch(uint32_t max_messages, uint32_t max_bytes,
                                                         uint32_t wait_ms) {
  const wire::Fetch req{.max_messages = max_messages, .max_bytes = max_bytes, .wait_ms = wait_ms};
  const int timeout = static_cast<int>(std::min<int64_t>(int64_t{internal::kRequestTimeoutMs} + wait_ms, INT32_MAX));
  auto body = Retrying([&] { return Request(req, wire::FrameType::kDelivery, timeout); });
  if (!body) return Err(body.error());
  auto delivery = wire::DecodeBodyAs<wire::Delivery>(*body);
  if (!delivery) return Err(Status::Internal(fmt::format("bad DELIVERY from node: {}", delivery.error().message())));
  return ToMessages(*delivery);
}

Result<std::string> ConsumerImpl::ReadLarge(uint64_t seq, uint64_t offset, uint32_t max_bytes) {
  const wire::FetchChunk req{.seq = seq, .offset = offset, .max_bytes = max_bytes};
  for (int attempt = 0;; ++attempt) {
    auto body = Request(req, wire::FrameType::kChunk, internal::kRequestTimeoutMs);
    // The stream moving to another node is retried there.
    if (!body && internal::IsRetriableStatus(body.error()) && attempt < 3) continue;
    if (!body) return Err(body.error());
    auto chunk = wire::DecodeBodyAs<wire::Chunk>(*body);
    if (!chunk) return Err(Status::Internal(fmt::format("bad CHUNK from node: {}", chunk.error().message())));
    if (chunk->seq != seq || chunk->offset != offset)
      return Err(Status::Internal("CHUNK answers another seq or offset"));
    return std::string(chunk->data);
  }
}

Status ConsumerImpl::Ack(std::span<const uint64_t> seqs) {
  std::vector<wire::AnswerItem> items;
  items.reserve(seqs.size());
  for (uint64_t seq : seqs) items.push_back({.seq = seq, .kind = wire::AnswerKind::kAck});
  return Answer(std::move(items));
}

Status ConsumerImpl::Nak(uint64_t seq, uint32_t delay_ms) {
  return Answer({{.seq = seq, .kind = wire::AnswerKind::kNak, .delay_ms = delay_ms}});
}

Status ConsumerImpl::InProgress(uint64_t seq) { return Answer({{.seq = seq, .kind = wire::AnswerKind::kInProgress}}); }

Status ConsumerImpl::Terminate(uint64_t seq) { return Answer({{.seq = seq, .kind = wire::AnswerKind::kTerminate}}); }

Status ConsumerImpl::Answer(std::vector<wire::AnswerItem> items) {
  std::span<const wire::AnswerItem> rest(items);
  while (!rest.empty()) {
    const size_t n = std::min(rest.size(), kMaxAnswersPerFrame);
    FLOE_RETURN_IF_ERROR(Retrying([&] { return AnswerChunk(rest.first(n)); }));
    rest = rest.subspan(n);
  }
  return Status::OK();
}

// One ANSWER frame. Per-item failures (NOT_DELIVERED for a seq not pending
// for this consumer, OUT_OF_RANGE, …) become one Status naming every failed
// seq; its code is the first failure's.
Status ConsumerImpl::AnswerChunk(std::span<const wire::AnswerItem> items) {
  wire::Answer req;
  req.items.assign(items.begin(), items.end());
  auto body = Request(req, wire::FrameType::kAnswerOk, internal::kRequestTimeoutMs);
  if (!body) return body.error();
  auto ok = wire::DecodeBodyAs<wire::AnswerOk>(*body);
  if (!ok) return Status::Internal(fmt::format("bad ANSWER_OK from node: {}", ok.error().message()));
  Status first;
  std::string failed;
  size_t count = 0;
  for (const wire::AnswerResult& r : ok->results) {
    if (r.code == wire::WireError::kOk) continue;
    if (first.ok()) first = internal::ErrorToStatus(r.code, wire::IsRetriable(r.code), "");
    if (++count <= 10) failed += fmt::format("{}seq {}: {}", failed.empty() ? "" : ", ", r.seq, wire::WireErrorName(r.code));
  }
  if (first.ok()) return Status::OK();
  if (count > 10) failed += fmt::format(" and {} more", count - 10);
  return Status(first.code(), fmt::format("{} of {} answers refused: {}", count, items.size(), failed));
}

// --- Push ----------------------------------------------------------------------

Status ConsumerImpl::Subscribe(uint32_t credit, Handler handler) {
  if (credit == 0) return Status::InvalidArgument("subscribe needs a credit of at least 1");
  if (!handler) return Status::InvalidArgument("subscribe needs a handler");
  std::shared_ptr<Connection> conn;
  uint64_t id;
  {
    MutexLock lk(&mu());
    if (subscribed_) return Status::FailedPrecondition("already subscribed: Stop() first");
    FLOE_RETURN_IF_ERROR(link_.WaitForConnection());
    handler_ = std::make_shared<const Handler>(std::move(handler));
    credit_ = credit;
    credit_owed_ = 0;
    sub_error_ = Status::OK();
    subscribed_ = true;
    conn = link_.conn();
    id = sub_request_id_ = conn->NextRequestId();
  }
  // If this fails, the receiver sees the broken connection and subscribes
  // again on the next one.
  if (!conn->Send(id, wire::Subscribe{.credit = credit}).ok()) conn->Shutdown();
  return Status::OK();
}

void ConsumerImpl::Stop() {
  std::shared_ptr<Connection> live;
  {
    MutexLock lk(&mu());
    if (!subscribed_) return;
    subscribed_ = false;
    deliveries_.clear();
    if (sub_request_id_ != 0) live = link_.conn();
    sub_request_id_ = 0;
    // After Stop returns the handler is not running and will not run again,
    // unless Stop was called from the handler itself.
    if (std::this_thread::get_id() != delivery_thread_id_)
      while (handler_running_) cv_.Wait(&mu());
    if (live != link_.conn()) live.reset();  // it broke meanwhile; its successor has no subscription
    if (live) link_.MarkPlannedReset();
  }
  if (live) live->Shutdown();
}

// Runs the handler for each queued message, with the lock released.
void ConsumerImpl::DeliveryLoop() {
  MutexLock lk(&mu());
  for (;;) {
    while (!link_.stopping() && deliveries_.empty()) delivery_cv_.Wait(&mu());
    if (link_.stopping()) return;
    Batch batch = std::move(deliveries_.front());
    deliveries_.pop_front();
    for (const ReceivedMessage& m : batch.messages) {
      if (!subscribed_ || link_.stopping()) break;  // Stop dropped the rest
      // Pushed on a connection that has since closed: the node released
      // those deliveries and sends them again on the new one, so handling
      // the stale copy would hand the handler the message twice.
      if (batch.conn_gen != link_.conn_gen()) break;
      std::shared_ptr<const Handler> handler = handler_;
      handler_running_ = true;
      mu().Unlock();
      (*handler)(m);
      mu().Lock();
      handler_running_ = false;
      cv_.SignalAll();
      GiveCredit(batch.conn_gen);
    }
  }
}

// One credit per handled entry (message or gap), given back once half the
// subscription's credit is owed: the node never waits on a credit we hold
// back, since at most credit/2 is ever owed.
void ConsumerImpl::GiveCredit(uint64_t conn_gen) {
  if (!subscribed_ || sub_request_id_ == 0 || conn_gen != link_.conn_gen() || !link_.conn()) return;
  if (++credit_owed_ < std::max<uint32_t>(1, credit_ / 2)) return;
  const uint32_t n = credit_owed_;
  credit_owed_ = 0;
  std::shared_ptr<Connection> conn = link_.conn();
  const uint64_t id = sub_request_id_;
  mu().Unlock();
  if (!conn->Send(id, wire::Credit{.credit = n}).ok()) conn->Shutdown();
  mu().Lock();
}

// --- Receiver ------------------------------------------------------------------

// A reply to a waiter, or a frame of the subscription. PING and
// connection-level ERRORs are the link's.
void ConsumerImpl::HandleFrame(Connection& conn, const internal::Frame& frame) {
  const wire::FrameHeader& h = frame.header;
  {
    MutexLock lk(&mu());
    if (auto it = waiters_.find(h.request_id); it != waiters_.end()) {
      Waiter* w = it->second;
      w->type = h.type;
      w->body.assign(frame.body.data(), frame.body.size());
      w->done = true;
      waiters_.erase(it);
      cv_.SignalAll();
      return;
    }
    if (sub_request_id_ == 0 || h.request_id != sub_request_id_) return;  // a request we gave up on: dropped
  }
  HandleSubscriptionFrame(conn, frame);
}

// DELIVERY: queue for the handler. ERROR: a retriable one (the node is busy
// or moving the stream) is retried on a fresh connection; any other ends the
// subscription, and Close reports it. OK (a node may confirm
// the SUBSCRIBE): nothing to do.
void ConsumerImpl::HandleSubscriptionFrame(Connection& conn, const internal::Frame& frame) {
  const wire::FrameHeader& h = frame.header;
  if (h.type == wire::FrameType::kDelivery) {
    auto delivery = wire::DecodeBodyAs<wire::Delivery>(frame.body);
    if (!delivery) {
      conn.Shutdown();
      return;
    }
    std::vector<ReceivedMessage> messages = ToMessages(*delivery);
    MutexLock lk(&mu());
    if (!subscribed_ || h.request_id != sub_request_id_) return;
    deliveries_.push_back({link_.conn_gen(), std::move(messages)});
    delivery_cv_.Signal();
    return;
  }
  if (h.type != wire::FrameType::kError) return;
  const Status why = internal::ErrorFrameToStatus(frame.body);
  if (internal::IsRetriableStatus(why)) {
    link_.Redirect(conn, internal::RedirectOf(frame.body));  // the reconnect pacer spaces out repeated refusals
    return;
  }
  MutexLock lk(&mu());
  if (h.request_id != sub_request_id_) return;
  subscribed_ = false;
  sub_request_id_ = 0;
  sub_error_ = why;
  deliveries_.clear();
}

// --- Close -----------------------------------------------------------------------

Status ConsumerImpl::Close() {
  if (std::this_thread::get_id() == delivery_.get_id())
    return Status::FailedPrecondition("Close from the push handler: call Stop() there, Close() elsewhere");
  Shutdown(/*graceful=*/true);
  MutexLock lk(&mu());
  if (!link_.broken().ok()) return link_.broken();
  return sub_error_;
}

// Stops the delivery thread, then the link. Graceful: says GOODBYE and
// half-closes, giving the node a second to close its side before cutting the
// connection (SessionLink::FinishStop). A caller waiting for a reply (the
// handler, in Ack) fails with FailedPrecondition.
void ConsumerImpl::Shutdown(bool graceful) {
  if (!link_.BeginStop()) return;
  {
    MutexLock lk(&mu());
    subscribed_ = false;
    deliveries_.clear();
    FailWaiters();
  }
  delivery_cv_.SignalAll();
  if (delivery_.joinable()) delivery_.join();
  link_.FinishStop(graceful);
}

}  // namespace

Result<std::unique_ptr<Consumer>> Consumer::Open(const ConsumerOptions& options) {
  auto consumer = std::make_unique<ConsumerImpl>(options);
  FLOE_RETURN_ERR_IF_ERROR(consumer->Start());
  return std::unique_ptr<Consumer>(std::move(consumer));
}

}  // namespace floe::client
