// The node's HTTP listener (docs/operations.md "HTTP"): /metrics
// (Prometheus), /healthz, /readyz and the /api/v1 JSON, served by
// cpp-httplib (Debian libcpp-httplib-dev) on threads of its own.
//
// Threads: a small pool of the listener's own (ServerOptions::threads), so a
// slow bank or a slow client never holds a broker I/O thread; each request
// reads the bank once (Broker::Observe) and is bounded in size and time.
// Only GET and HEAD; anything else is 405, unknown paths 404, both with a
// JSON error body.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "base/status.h"

namespace floe::broker {
class Broker;
}

namespace floe::http {

struct ServerOptions {
  std::string listen = "127.0.0.1:7680";  // HOST:PORT; port 0 picks a free one
  int threads = 2;
  // Requests are small GETs: a body over this is refused (413); headers
  // are bounded by the library (8 KiB) and reads time out.
  size_t max_request_body_bytes = 4096;
  int read_timeout_s = 5;
  int write_timeout_s = 5;
  // How long a request waits for the bank's answer; past it /readyz says
  // 503 "bank unreachable", /metrics shows floe_bank_up 0 and the node's own
  // metrics, the JSON views 503.
  int bank_timeout_ms = 3000;
};

class Server {
 public:
  // Binds and starts serving. `broker` outlives the Server.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options, broker::Broker* broker);
  ~Server();  // Stop()
  // Stops accepting, finishes the requests under way, joins the threads.
  void Stop();
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }

  class Impl;

 private:
  Server() = default;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::string host_;
  uint16_t port_ = 0;
};

}  // namespace floe::http
