// Internal to the client library: one blocking TCP connection to a floe node
// speaking wire protocol v1 (docs/protocol.md), and the helper that connects
// to the configured servers in turn with backoff.
//
// Thread ownership of a Connection:
//   * SendFrame/Send may be called from any thread: a mutex keeps each frame
//     whole on the wire.
//   * ReadFrame/Call are for ONE reader thread at a time (the frame returned
//     points into the connection's read buffer until the next read).
//   * Shutdown/ShutdownWrite may be called from any thread, at any time: they
//     wake a reader blocked in ReadFrame and a writer blocked in SendFrame.
// The socket is closed only by the destructor, so a Connection kept alive by
// a shared_ptr never has its descriptor reused under a concurrent caller.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "base/status.h"
#include "client/client.h"
#include "wire/protocol.h"

namespace floe::client::internal {

// How long a request may wait for its reply before the connection is deemed
// dead (added to a fetch's own wait_ms).
inline constexpr int kRequestTimeoutMs = 30000;

// Wakes blocking connects and backoff sleeps from another thread (Close and
// destructors), so shutting a client down never waits out a backoff.
// Any thread may call any method.
class Canceller {
 public:
  void Cancel() EXCLUDES(mu_);
  bool cancelled() const EXCLUDES(mu_);
  // Sleeps up to `ms`; false when cancelled (before or during the sleep).
  bool SleepFor(int ms) EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  CondVar cv_;  // cancelled_ set
  bool cancelled_ GUARDED_BY(mu_) = false;
};

// One frame read from the server. `body` points into the connection's read
// buffer and stays valid until the next ReadFrame or Call on it.
struct Frame {
  wire::FrameHeader header;
  std::span<const char> body;
};

class Connection {
 public:
  // Resolves `server` ("host:port" or "[v6]:port"), connects within
  // options.connect_timeout_ms, sets TCP_NODELAY and runs the HELLO
  // handshake. Socket failures and timeouts are Unavailable; a non-retriable
  // Error from the node (UNSUPPORTED_VERSION) keeps its mapped code.
  static Result<std::unique_ptr<Connection>> Open(const std::string& server, const ClientOptions& options,
                                                  const Canceller* cancel);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Request ids increase per connection, from 1.
  uint64_t NextRequestId() { return next_request_id_.fetch_add(1, std::memory_order_relaxed); }

  // Writes one whole frame. Any failure leaves the connection unusable.
  Status SendFrame(std::string_view frame) EXCLUDES(write_mu_);
  template <typename M>
  Status Send(uint64_t request_id, const M& msg) {
    std::string frame;
    wire::AppendFrame(&frame, request_id, msg);
    return SendFrame(frame);
  }

  // Reads the next frame; timeout_ms < 0 waits forever. Unavailable when the
  // connection is closed or broken, TimedOut on timeout, InvalidArgument or
  // OutOfRange for a bad header. Any failure leaves the connection unusable
  // (a timeout may have cut a frame in half).
  Result<Frame> ReadFrame(int timeout_ms = -1);

  // True once a read or write failed: the connection must be replaced. An
  // Error frame from the node does not break it.
  bool broken() const { return broken_.load(std::memory_order_relaxed); }

  // Synchronous request/reply, for a connection that has no reader thread
  // (handshakes, Admin): sends `request` and reads until the frame answering
  // it arrives. An Error reply becomes a Status (ErrorToStatus). The reply's
  // views point into the read buffer (valid until the next read).
  template <typename Reply, typename Request>
  Result<Reply> Call(const Request& request, int timeout_ms);

  void Shutdown();       // both directions
  void ShutdownWrite();  // half-close after GOODBYE: the node sees EOF

  const std::string& server() const { return server_; }
  // The owner's address from the last NOT_OWNER error a Call returned ("" if none).
  const std::string& redirect() const { return redirect_; }
  const std::string& node() const { return node_; }
  uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  uint32_t max_message_bytes() const { return max_message_bytes_; }

 private:
  Connection(int fd, std::string server);
  Status Hello(const ClientOptions& options, int timeout_ms);
  // Waits until the read buffer holds `n` bytes from rstart_, growing it.
  Status Fill(size_t n, int64_t deadline_ms);
  Result<Frame> ReadFrameOnce(int timeout_ms);
  Status Waited(int64_t deadline_ms, const char* what);
  Result<std::span<const char>> AwaitReply(uint64_t request_id, wire::FrameType type, int timeout_ms);

  const int fd_;
  const std::string server_;
  std::string node_;
  std::string redirect_;
  uint32_t max_frame_bytes_ = wire::kDefaultMaxFrameBytes;
  uint32_t max_message_bytes_ = wire::kDefaultMaxMessageBytes;
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<bool> broken_{false};
  // One frame at a time on the wire: it guards the socket's write side, no
  // member (fd_ is const; broken_ is atomic).
  Mutex write_mu_;

  // Read side, owned by the one reader thread.
  std::unique_ptr<char[]> rbuf_;
  size_t rcap_ = 0;
  size_t rstart_ = 0;    // first unread byte
  size_t rend_ = 0;      // one past the last received byte
  size_t consumed_ = 0;  // size of the frame last returned, dropped on the next read
};

template <typename Reply, typename Request>
Result<Reply> Connection::Call(const Request& request, int timeout_ms) {
  const uint64_t id = NextRequestId();
  FLOE_RETURN_ERR_IF_ERROR(Send(id, request));
  auto body = AwaitReply(id, Reply::kType, timeout_ms);
  if (!body) return Err(body.error());
  auto reply = wire::DecodeBodyAs<Reply>(*body);
  if (!reply) return Err(Status::Internal(std::string("bad reply from node: ") + std::string(reply.error().message())));
  return reply;
}

// The Status for an Error frame (or a per-item wire code): retriable codes
// become Unavailable; the rest keep their meaning (NotFound, AlreadyExists,
// InvalidArgument, …). The message carries the wire code's name and the
// node's text.
Status ErrorToStatus(wire::WireError code, bool retriable, std::string_view text);
// Decodes an Error frame's body into its Status.
Status ErrorFrameToStatus(std::span<const char> body);
// Whether connecting again (or to another server) may cure `s`.
bool IsRetriableStatus(const Status& s);

// Runs on each fresh connection after HELLO, before it is handed out: the
// session handshake (SESSION_OPEN). A retriable failure moves on to the next
// server; any other failure is returned at once.
using OnConnect = std::function<Status(Connection&)>;

// Where the cluster told the client to go. `hint`: an owner's address from an
// ERROR that ended the last connection, tried first; `followed` counts the
// redirects followed.
struct Redirects {
  std::string hint;
  uint64_t followed = 0;
};
// The redirect address of an ERROR frame's body ("" if none or undecodable).
std::string RedirectOf(std::span<const char> error_body);

// Connects to options.servers in turn, starting at *next_server (updated to
// the server that worked, so a reconnect tries it first). After each full
// round of failures it sleeps, the backoff doubling from
// reconnect_min_backoff_ms to reconnect_max_backoff_ms; at give_up_at_steady_ms
// (steady clock; default: reconnect_give_up_ms from now) it fails with Unavailable naming
// every address it tried and each one's last error, having tried every server at
// least once (the CLI's --timeout bounds this). Cancelling fails
// it with Aborted. A handshake refused with NOT_OWNER and the owner's address
// goes there next (at most kMaxRedirectHops in a row, then back to the list).
inline constexpr int kMaxRedirectHops = 4;
Result<std::unique_ptr<Connection>> ConnectAny(const ClientOptions& options, const OnConnect& on_connect,
                                               Canceller* cancel, size_t* next_server,
                                               int64_t give_up_at_steady_ms = -1,
                                               Redirects* redirects = nullptr);

// Clocks. Every deadline, timeout and backoff in the client is on the steady
// clock (SteadyClock, or SteadyNowMs in milliseconds), which never jumps.
// The client takes no wall-clock timestamps of its own (a message's
// timestamp_us is the node's); one that it needs some day is to be named
// WallNowMs (system_clock) and never compared with a steady time.
using SteadyClock = std::chrono::steady_clock;
int64_t SteadyNowMs();

// Paces reconnects after connections that die young: a node that accepts the
// session and drops us at once must not make a client spin, nor keep it from
// ever giving up. A connection that carried a frame after the handshake, or
// lived a second, was healthy: reconnect at once. Otherwise the delay doubles
// from min to max backoff, and reconnect_give_up_ms counts from the end of
// the last healthy connection. Used by the one thread that reconnects.
class ReconnectPacer {
 public:
  explicit ReconnectPacer(const ClientOptions& options) : options_(options) {}
  void Connected() {
    connected_at_steady_ms_ = SteadyNowMs();
    if (failing_since_steady_ms_ == 0) failing_since_steady_ms_ = connected_at_steady_ms_;
    progressed_ = false;
  }
  void Progressed() { progressed_ = true; }
  // Call once per break: how long to wait before reconnecting.
  int DelayMs();
  // When reconnecting should give up (for ConnectAny).
  int64_t GiveUpAtSteadyMs() const { return failing_since_steady_ms_ + options_.reconnect_give_up_ms; }

 private:
  const ClientOptions& options_;
  int64_t connected_at_steady_ms_ = 0;
  int64_t failing_since_steady_ms_ = 0;
  bool progressed_ = false;
  int delay_ms_ = 0;
};

}  // namespace floe::client::internal
