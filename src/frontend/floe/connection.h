// One client connection speaking the floe protocol (docs/protocol.md): the
// socket and its framing, the request ids, and the translation of frames
// into broker-core calls and of their outcomes into frames. What a request
// *does* lives in the core (src/broker/broker.h), never here.
//
// Threads: everything but the broker::Peer calls and SendFrame runs on the
// connection's strand (the socket's executor). Core callbacks come back on
// core threads and post to the strand.
//
// The close state machine (who moves it in brackets):
//   open         reading and dispatching frames
//   draining     close_after_flush_: no more reads; queued frames and ACKs of
//                publishes in flight are still written [GOODBYE, a bad frame,
//                the peer's EOF, CloseSoon, LeaveStream]
//   closed       closed_: the socket is shut; the session is released
//                (FinishClose, once nothing is being written and no publish
//                awaits its ACK, or at once on a write error) [MaybeClose,
//                OnWritten]
// A connection never goes back; `closed` is final.
//
// Timeouts (docs/protocol.md "Timeouts and keep-alive"), watched by one timer
// per connection on its strand (OnWatchdog): no HELLO within
// handshake_timeout_ms of the accept; a frame begun whose next byte takes
// longer than frame_timeout_ms; nothing at all for idle_timeout_ms (the node
// sends PING halfway, so a client that answers PING, or sends anything, stays
// open). Time spent waiting on the core or on backpressure is not silence.
// A timed-out connection gets ERROR UNAVAILABLE (request id 0) and drains;
// if draining takes longer than kCloseGrace it is closed anyway.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <optional>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include "auth/auth.h"
#include "auth/directory.h"
#include "broker/broker.h"
#include "frontend/await_core.h"
#include "wire/protocol.h"

namespace floe::frontend {

struct ListenerLimits {
  std::string node_id;
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  uint32_t max_message_bytes = wire::kDefaultMaxMessageBytes;
  uint64_t max_connection_inflight_bytes = 32ull << 20;
  uint64_t max_node_inflight_bytes = 256ull << 20;
  uint32_t handshake_timeout_ms = 5000;  // from the accept to a complete HELLO
  uint32_t frame_timeout_ms = 10000;     // longest pause inside one frame
  uint32_t idle_timeout_ms = 60000;      // longest silence between frames (PING at half)
  // Users (docs/security.md): nullptr = anonymous, every request allowed.
  // Otherwise HELLO must name a user, and every request is checked against
  // the user's permissions as the directory has them now. Outlives the
  // listener.
  auth::Directory* auth = nullptr;
};

class Connection final : public broker::Peer, public std::enable_shared_from_this<Connection> {
 public:
  Connection(broker::Broker* broker, const ListenerLimits* limits, asio::ip::tcp::socket socket);
  void Start();

  // broker::Peer: any thread.
  void StopReading() override;
  void CloseSoon() override;
  void Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) override;

 private:
  // Any thread: queue a whole frame.
  void SendFrame(std::string frame);
  void Enqueue(std::string_view frame);
  void StartWrite();
  void OnWritten(const asio::error_code& ec);
  void RequestClose();  // -> draining
  void MaybeClose();    // draining -> closed once nothing is in flight
  void FinishClose();   // -> closed
  // The node no longer serves this connection's stream: say so (request id
  // 0), and close once what is queued is written.
  void LeaveStream(const std::string& redirect);
  void Error(uint64_t request_id, wire::WireError code, std::string_view message, bool close = false);
  void Fail(uint64_t request_id, const broker::Failure& f);
  template <typename M>
  void Reply(uint64_t request_id, const M& msg) {
    std::string f;
    wire::AppendFrame(&f, request_id, msg);
    Enqueue(f);
  }

  // Calls `start` with a callback for the core and suspends this
  // connection's reading (not its I/O thread) until the core answers; the
  // answer comes back on the strand. Requests are handled in order
  // (docs/protocol.md), so a request the core answers on its pools is
  // awaited before the next frame is read.
  template <typename T, typename Start>
  asio::awaitable<T> AwaitCore(Start start) {
    return AwaitOnStrand<T>(strand_, shared_from_this(), std::move(start));
  }

  asio::awaitable<void> ReadLoop();
  // Reads exactly buf.size() bytes (false: EOF, an error or a close), noting
  // each arrival for the watchdog; `in_frame`: the bytes continue a frame.
  asio::awaitable<bool> ReadFull(asio::mutable_buffer buf, bool in_frame);
  // The timeouts (file comment): re-armed at each expiry, never per frame.
  void ArmWatchdog();
  void OnWatchdog();
  void TimeOut(std::string reason);
  asio::awaitable<void> Dispatch(const wire::FrameHeader& h, std::span<const char> body);
  // Request handlers (handlers.cc): decode, call the core, answer.
  asio::awaitable<void> OnHello(uint64_t req, std::span<const char> body);
  // With users on: whether this connection's user may do `action` on
  // `stream` now (the directory's latest view). If not, answers `req` with
  // NOT_AUTHORIZED (or, for a user removed since HELLO, AUTH_FAILED and a
  // close) and returns false. Always true without users.
  bool Permitted(uint64_t req, auth::Action action, std::string_view stream);
  // The user as the directory has it now (nullptr: removed, or no users).
  std::shared_ptr<const auth::User> CurrentUser() const;
  asio::awaitable<void> OnSessionOpen(uint64_t req, std::span<const char> body);
  void OnPublish(uint64_t req, std::span<const char> body);
  void OnPublishChunk(uint64_t req, std::span<const char> body);
  void OnFetchChunk(uint64_t req, std::span<const char> body);
  void OnAnswer(uint64_t req, std::span<const char> body);
  void OnSubscribe(uint64_t req, std::span<const char> body);
  void OnCredit(uint64_t req, std::span<const char> body);
  void OnFetch(uint64_t req, std::span<const char> body);
  asio::awaitable<void> OnAdmin(const wire::FrameHeader& h, std::span<const char> body);
  // Delivery loops (delivery_loops.cc): a long poll, and push with credit.
  asio::awaitable<void> FetchLoop(uint64_t req, wire::Fetch fetch);
  asio::awaitable<void> PushLoop(uint64_t req);
  // Encodes one core delivery as a DELIVERY frame.
  static void AppendDelivery(std::string* frame, uint64_t req, const broker::DeliveryBatch& batch);
  // Sleeps until `until`, the stream's next change, or a close.
  asio::awaitable<void> WaitForChange(std::chrono::steady_clock::time_point until);

  broker::Broker* const broker_;
  const ListenerLimits* const limits_;
  asio::ip::tcp::socket socket_;
  asio::any_io_executor strand_;
  asio::steady_timer inflight_signal_;  // wakes ReadLoop blocked on backpressure
  // Timeout state, all on the strand.
  asio::steady_timer watchdog_;
  std::chrono::steady_clock::time_point accepted_at_;
  std::chrono::steady_clock::time_point quiet_since_;  // last byte read, or the read began
  std::chrono::steady_clock::time_point close_by_{};   // a timed-out drain ends by then
  bool awaiting_bytes_ = false;  // ReadLoop waits on the socket (not on the core)
  bool mid_frame_ = false;       // part of a frame has arrived
  bool pinged_ = false;          // a PING went out since quiet_since_
  bool timed_out_ = false;
  std::string outbox_;   // frames waiting for the current write to finish
  std::string sending_;  // the bytes of the write in flight
  bool writing_ = false;
  bool hello_ = false;
  std::string user_;         // with users on: who HELLO authenticated
  std::string peer_address_; // the client's IP address (the login rate limit's key)
  bool reading_ = true;
  bool closed_ = false;
  bool close_after_flush_ = false;
  std::atomic<uint64_t> inflight_bytes_{0};  // publish bytes awaiting their ACK

  std::shared_ptr<broker::Session> session_;  // once opened
  std::shared_ptr<asio::steady_timer> wait_timer_;  // a long poll's wait
  // Push subscription.
  bool subscribed_ = false;
  uint64_t credit_ = 0;
  std::shared_ptr<asio::steady_timer> push_wake_;
};

}  // namespace floe::frontend
