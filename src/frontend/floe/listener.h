// The floe protocol's listener: accepts TCP connections on the node's I/O
// threads and hands each to a Connection over the broker core.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <asio.hpp>

#include "base/status.h"
#include "broker/broker.h"
#include "frontend/floe/connection.h"

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
  broker::Broker* const broker_;
  const ListenerLimits limits_;
  const size_t max_connections_;
  std::string host_;
};

}  // namespace floe::frontend
