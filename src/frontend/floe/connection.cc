// The connection's I/O: framing, the write queue, backpressure, dispatch by
// frame type, and the close state machine (connection.h).
#include "frontend/floe/connection.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

#include "frontend/floe/error_map.h"

namespace floe::frontend {

using asio::awaitable;
using asio::ip::tcp;
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

Connection::Connection(broker::Broker* broker, const ListenerLimits* limits, tcp::socket socket)
    : broker_(broker),
      limits_(limits),
      socket_(std::move(socket)),
      strand_(socket_.get_executor()),
      inflight_signal_(strand_) {
  inflight_signal_.expires_at(asio::steady_timer::time_point::max());
}

void Connection::Start() {
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->ReadLoop(); }, asio::detached);
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
    auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(header), kNoThrow);
    if (ec) break;
    auto h = wire::DecodeFrameHeader({header, sizeof header}, limits_->max_frame_bytes);
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
  if (broker_->stopping() && h.type != FrameType::kGoodbye) {
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
      Reply(h.request_id, wire::Pong{});
      break;
    }
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
