// The MQTT listener (docs/mqtt.md): accepts TCP connections on the node's
// I/O threads and hands each to an mqtt::Connection over the broker core.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <asio.hpp>

#include "base/status.h"
#include "broker/broker.h"
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/keeper.h"
#include "frontend/mqtt/shared.h"

namespace floe::frontend::mqtt {

class Listener {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks a free one). The broker
  // outlives the listener; connections count toward `max_connections`
  // together with every other front end's.
  static Result<std::unique_ptr<Listener>> Bind(asio::io_context& io, const std::string& listen,
                                                broker::Broker* broker, MqttOptions options, size_t max_connections);
  uint16_t port() const;
  const std::string& host() const { return host_; }
  void Start();
  void Close();

 private:
  Listener(asio::io_context& io, broker::Broker* broker, MqttOptions options, size_t max_connections);
  asio::awaitable<void> AcceptLoop();

  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  broker::Broker* const broker_;
  const MqttOptions options_;
  const std::shared_ptr<RetainedStore> retained_;  // the node's retained writes
  const size_t max_connections_;
  std::string host_;
  const std::shared_ptr<Keeper> keeper_;  // wills and expiry of sessions no connection holds
  const std::shared_ptr<Bindings> bindings_;  // before shared_: the groups read it
  SharedGroups shared_;                   // shared subscriptions' groups
};

}  // namespace floe::frontend::mqtt
