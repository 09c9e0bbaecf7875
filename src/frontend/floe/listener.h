// The floe protocol's listener: accepts TCP connections on the node's I/O
// threads and hands each to a Connection over the broker core.
//
// Limits. Past max_connections a new connection gets ERROR
// TOO_MANY_CONNECTIONS (request id 0) and is closed at once. When accept
// itself fails (out of file descriptors: EMFILE/ENFILE, or of kernel
// memory) the loop backs off, 10 ms doubling to 1 s, reset by the next
// accepted connection; connections already open are served meanwhile and
// the ones waiting in the backlog are accepted once descriptors free up.
// Both are logged, at most one line per 10 s each (LogLimiter).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <asio.hpp>

#include "base/status.h"
#include "broker/broker.h"
#include "frontend/floe/connection.h"
#include "frontend/floe/log_limiter.h"

namespace floe::frontend {

class Listener {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks a free one). The limits and the
  // broker outlive the listener.
  static Result<std::unique_ptr<Listener>> Bind(asio::io_context& io, const std::string& listen,
                                                broker::Broker* broker, ListenerLimits limits, size_t max_connections);
  uint16_t port() const;
  std::string host() const { return host_; }
  // Starts the accept loop (on `io`).
  void Start();
  // Stops accepting; call on one of io's threads or before they run.
  void Close();

 private:
  Listener(asio::io_context& io, broker::Broker* broker, ListenerLimits limits, size_t max_connections);
  asio::awaitable<void> AcceptLoop();

  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer backoff_timer_;  // the accept loop's pause after a failed accept
  broker::Broker* const broker_;
  const ListenerLimits limits_;
  const size_t max_connections_;
  std::string host_;
  LogLimiter limit_log_{std::chrono::seconds(10)};
  LogLimiter accept_log_{std::chrono::seconds(10)};
};

}  // namespace floe::frontend
