// The connection's I/O: framing, the write queue, backpressure, dispatch by
// frame type, and the close state machine (connection.h).
#include "frontend/floe/connection.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include "frontend/floe/error_map.h"
#include "frontend/floe/log_limiter.h"

namespace floe::frontend {

using asio::awaitable;
using asio::ip::tcp;
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// A timed-out connection's last frames (its ERROR, ACKs in flight) get this
// long to drain before the socket is closed regardless.
constexpr auto kCloseGrace = std::chrono::milliseconds(1000);
// Closes for silence, across the node's connections: one line per 10 s.
LogLimiter timeout_log(std::chrono::seconds(10));
}  // namespace

Connection::Connection(broker::Broker* broker, const ListenerLimits* limits, tcp::socket socket)
    : broker_(broker),
      limits_(limits),
      socket_(std::move(socket)),
      strand_(socket_.get_executor()),
      inflight_signal_(strand_),
      watchdog_(strand_),
      accepted_at_(std::chrono::steady_clock::now()),
      quiet_since_(accepted_at_) {
  asio::error_code ec;
  const auto peer = socket_.remote_endpoint(ec);
  peer_address_ = ec ? std::string("?") : peer.address().to_string();
  inflight_signal_.expires_at(asio::steady_timer::time_point::max());
}

void Connection::Start() {
  auto self = shared_from_this();
  asio::co_spawn(
      strand_,
      [self]() -> awaitable<void> {
        self->ArmWatchdog();
        co_await self->ReadLoop();
      },
      asio::detached);
}

// --- Timeouts ----------------------------------------------------------------

void Connection::ArmWatchdog() {
  using std::chrono::milliseconds;
  const auto now = std::chrono::steady_clock::now();
  const milliseconds frame(limits_->frame_timeout_ms);
  const milliseconds idle(limits_->idle_timeout_ms);
  // The state changes between expiries without re-arming (HELLO arrives, a
  // frame begins), so look again at least every quarter of the frame
  // timeout: a timeout fires within 1.25 times its setting.
  auto at = now + std::max(frame / 4, milliseconds(10));
  if (timed_out_) {
    at = close_by_;
  } else if (!hello_) {
    at = std::min(at, accepted_at_ + milliseconds(limits_->handshake_timeout_ms));
  } else if (awaiting_bytes_) {
    at = std::min(at, quiet_since_ + (mid_frame_ ? frame : pinged_ ? idle : idle / 2));
  }
  watchdog_.expires_at(std::max(at, now));
  watchdog_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (!ec) self->OnWatchdog();
  });
}

void Connection::OnWatchdog() {
  if (closed_) return;
  using std::chrono::milliseconds;
  const auto now = std::chrono::steady_clock::now();
  if (timed_out_) {
    if (now >= close_by_) return FinishClose();
  } else if (!hello_) {
    if (now >= accepted_at_ + milliseconds(limits_->handshake_timeout_ms))
      return TimeOut(fmt::format("no HELLO within {} ms of connecting", limits_->handshake_timeout_ms));
  } else if (awaiting_bytes_) {
    const auto quiet = now - quiet_since_;
    if (mid_frame_ && quiet >= milliseconds(limits_->frame_timeout_ms))
      return TimeOut(fmt::format("a frame stalled: no byte of it for {} ms", limits_->frame_timeout_ms));
    if (!mid_frame_ && quiet >= milliseconds(limits_->idle_timeout_ms))
      return TimeOut(fmt::format("silent for {} ms, PING unanswered", limits_->idle_timeout_ms));
    if (!mid_frame_ && !pinged_ && quiet >= milliseconds(limits_->idle_timeout_ms / 2)) {
      // Keep-alive: any frame the client sends (PONG, for instance) counts.
      pinged_ = true;
      Reply(0, wire::Ping{});
    }
  }
  ArmWatchdog();
}

void Connection::TimeOut(std::string reason) {
  asio::error_code ec;
  const auto peer = socket_.remote_endpoint(ec);
  timeout_log.Print("connection.timed_out", [&] {
    return fmt::format("node {}: closing the connection from {}: {}", limits_->node_id,
                       ec ? std::string("?") : fmt::format("{}:{}", peer.address().to_string(), peer.port()),
                       reason);
  });
  timed_out_ = true;
  close_by_ = std::chrono::steady_clock::now() + kCloseGrace;
  Error(0, wire::WireError::kUnavailable, fmt::format("node {} closes this connection: {}", limits_->node_id, reason));
  // Wakes a read in progress (it sees EOF); the ERROR is still written.
  socket_.shutdown(tcp::socket::shutdown_receive, ec);
  if (wait_timer_) wait_timer_->cancel();
  if (push_wake_) push_wake_->cancel();
  RequestClose();
  if (!closed_) ArmWatchdog();
}

void Connection::SendFrame(std::string frame) {
  asio::post(strand_, [self = shared_from_this(), f = std::move(frame)] { self->Enqueue(f); });
}

void Connection::CloseSoon() {
  asio::post(strand_, [self = shared_from_this()] {
    asio::error_code ec;
    self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
    self->RequestClose();
  });
}

void Connection::StopReading() {
  asio::post(strand_, [self = shared_from_this()] {
    self->reading_ = false;
    asio::error_code ec;
    self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
  });
}

void Connection::Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) {
  asio::post(strand_, [self = shared_from_this(), stream, redirect] {
    if (!self->session_ || !self->session_->on_stream(stream) || self->closed_) return;
    self->LeaveStream(redirect);
  });
}

// Frames queue in outbox_ while a write is in flight; the write's completion
// sends whatever queued meanwhile, in one write.
void Connection::Enqueue(std::string_view frame) {
  if (closed_) return;
  outbox_.append(frame);
  if (!writing_) StartWrite();
}

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

void Connection::RequestClose() {
  close_after_flush_ = true;
  reading_ = false;
  MaybeClose();
}

void Connection::MaybeClose() {
  if (close_after_flush_ && !writing_ && inflight_bytes_ == 0) FinishClose();
}

void Connection::FinishClose() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  inflight_signal_.cancel();
  watchdog_.cancel();
  if (push_wake_) push_wake_->cancel();
  if (wait_timer_) wait_timer_->cancel();
  subscribed_ = false;
  if (session_) session_->Close();
  broker_->Detach(this);
}

void Connection::LeaveStream(const std::string& redirect) {
  Fail(0, broker::Failure{broker::Code::kNotOwner,
                          fmt::format("node {} no longer serves stream {}", limits_->node_id, session_->stream_name()),
                          redirect});
  asio::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_receive, ec);
  if (wait_timer_) wait_timer_->cancel();
  if (push_wake_) push_wake_->cancel();
  RequestClose();
}

void Connection::Error(uint64_t request_id, wire::WireError code, std::string_view message, bool close) {
  std::string f;
  wire::AppendFrame(&f, request_id, wire::Error{code, wire::IsRetriable(code), message, {}});
  Enqueue(f);
  if (close) {
    close_after_flush_ = true;
    reading_ = false;
  }
}

void Connection::Fail(uint64_t request_id, const broker::Failure& failure) { Enqueue(ErrorFrame(request_id, failure)); }

awaitable<bool> Connection::ReadFull(asio::mutable_buffer buf, bool in_frame) {
  char* p = static_cast<char*>(buf.data());
  size_t left = buf.size();
  while (left > 0) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(p, left), kNoThrow);
    if (ec || closed_) co_return false;
    p += n;
    left -= n;
    // Progress for the watchdog: silence restarts, and a frame has begun.
    quiet_since_ = std::chrono::steady_clock::now();
    pinged_ = false;
    mid_frame_ = in_frame || left > 0;
  }
  co_return true;
}

awaitable<void> Connection::ReadLoop() {
  char header[wire::kFrameHeaderSize];
  std::string body;
  while (reading_ && !closed_) {
    // Backpressure: stop reading while too many publish bytes await ACKs.
    while ((inflight_bytes_ > limits_->max_connection_inflight_bytes ||
            broker_->inflight_bytes() > limits_->max_node_inflight_bytes) &&
           !closed_) {
      inflight_signal_.expires_after(std::chrono::milliseconds(50));
      co_await inflight_signal_.async_wait(kNoThrow);
    }
    // From here until the frame is whole, silence counts (the watchdog).
    awaiting_bytes_ = true;
    mid_frame_ = false;
    quiet_since_ = std::chrono::steady_clock::now();
    if (!co_await ReadFull(asio::buffer(header), false)) break;
    auto h = wire::DecodeFrameHeader({header, sizeof header}, limits_->max_frame_bytes);
    if (!h) {
      const bool too_large = h.error().code() == ErrorCode::kOutOfRange;
      Error(DecodeFixed64(header + 8), too_large ? wire::WireError::kFrameTooLarge : wire::WireError::kMalformedFrame,
            h.error().message(), true);
      break;
    }
    body.resize(h->body_size());
    if (!co_await ReadFull(asio::buffer(body), true)) break;
    awaiting_bytes_ = false;
    mid_frame_ = false;
    if (!hello_ && h->type != wire::FrameType::kHello) {
      Error(h->request_id, wire::WireError::kMalformedFrame, "the first frame must be HELLO", true);
      break;
    }
    co_await Dispatch(*h, body);
  }
  awaiting_bytes_ = false;
  // The peer went away, we stopped reading, or a bad frame: close once what
  // is queued is written.
  if (!closed_) RequestClose();
}

awaitable<void> Connection::Dispatch(const wire::FrameHeader& h, std::span<const char> body) {
  using wire::FrameType;
  if (broker_->stopping() && h.type != FrameType::kGoodbye) {
    Error(h.request_id, wire::WireError::kShuttingDown, "node is shutting down");
    co_return;
  }
  switch (h.type) {
    case FrameType::kHello:
      co_await OnHello(h.request_id, body);
      break;
    case FrameType::kPing: {
      if (auto p = wire::DecodeBodyAs<wire::Ping>(body); !p)
        co_return Error(h.request_id, wire::WireError::kMalformedFrame, p.error().message(), true);
      Reply(h.request_id, wire::Pong{});
      break;
    }
    case FrameType::kPong:
      // The answer to the node's keep-alive PING: arriving was its purpose.
      if (auto p = wire::DecodeBodyAs<wire::Pong>(body); !p)
        co_return Error(h.request_id, wire::WireError::kMalformedFrame, p.error().message(), true);
      break;
    case FrameType::kGoodbye:
      if (auto g = wire::DecodeBodyAs<wire::Goodbye>(body); !g)
        co_return Error(h.request_id, wire::WireError::kMalformedFrame, g.error().message(), true);
      if (session_) session_->EndAtClose();  // the session ends: its record goes
      RequestClose();  // after the ACKs of what is in flight
      break;
    case FrameType::kSessionOpen:
      co_await OnSessionOpen(h.request_id, body);
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
    case FrameType::kFetch:
      OnFetch(h.request_id, body);
      break;
    case FrameType::kSubscribe:
      OnSubscribe(h.request_id, body);
      break;
    case FrameType::kCredit:
      OnCredit(h.request_id, body);
      break;
    case FrameType::kAnswer:
      OnAnswer(h.request_id, body);
      break;
    case FrameType::kStreamCreate:
    case FrameType::kStreamDelete:
    case FrameType::kStreamList:
    case FrameType::kStreamInfo:
    case FrameType::kDeadLetter:
      co_await OnAdmin(h, body);
      break;
    default:
      Error(h.request_id, wire::WireError::kUnknownType,
            fmt::format("frame type 0x{:02x} is not a request", static_cast<unsigned>(h.type)));
  }
}

}  // namespace floe::frontend
