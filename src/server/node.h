// A floe node (`floe serve`): the broker core (src/broker) with its front
// ends — the floe protocol (src/frontend/floe, docs/protocol.md) and MQTT
// (src/frontend/mqtt, docs/mqtt.md) — on one set of I/O threads.
//
// Threads: `io_threads` Asio threads run every connection (each on its own
// strand); the core's pools run bank reads, stream admin and large-message
// file I/O; each stream's log has its writer thread (group commit); one
// thread writes bank records (BankWriter: cursors, sessions); two run the
// node's cluster membership (src/cluster: heartbeat and renewals, takeovers).
// Publish ACKs are sent only after the log's group commit (fdatasync)
// resolved the message. docs/architecture.md draws the whole.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "wire/protocol.h"

namespace floe::server {

// Accepted ranges (ms) of NodeOptions' connection limits; Node::Start and
// `floe serve` refuse values outside them.
inline constexpr uint32_t kMinHandshakeTimeoutMs = 100, kMaxHandshakeTimeoutMs = 600'000;
inline constexpr uint32_t kMinFrameTimeoutMs = 100, kMaxFrameTimeoutMs = 600'000;
inline constexpr uint32_t kMinIdleTimeoutMs = 1'000, kMaxIdleTimeoutMs = 86'400'000;
inline constexpr size_t kMaxMaxConnections = 1'000'000;

struct NodeOptions {
  std::string node_id = "node-1";
  std::string data_dir = "./floe-data";
  std::string listen = "127.0.0.1:7650";    // HOST:PORT; port 0 picks a free one
  std::string bank;                         // "" = sqlite:<data_dir>/bank.db
  int io_threads = 2;
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  uint32_t max_message_bytes = wire::kDefaultMaxMessageBytes;
  size_t max_connections = 1024;
  // Connection timeouts (docs/protocol.md "Timeouts and keep-alive").
  uint32_t handshake_timeout_ms = 5000;  // accept to HELLO
  uint32_t frame_timeout_ms = 10000;     // longest pause inside a frame
  uint32_t idle_timeout_ms = 60000;      // longest silence (the node PINGs at half)
  // A connection stops reading publishes while this many bytes await their
  // ACK (backpressure on fast producers); the node as a whole, max_node_inflight.
  uint64_t max_connection_inflight_bytes = 32ull << 20;
  uint64_t max_node_inflight_bytes = 256ull << 20;
  uint32_t max_ack_pending = 10000;         // per durable consumer
  bool direct_io = true;
  // Cluster (docs/cluster.md): several nodes share data_dir and the bank.
  std::string advertise;                    // HOST:PORT clients are sent to; "" = the listen address
  int64_t lease_ms = 3000;                  // stream lease period: failover takes about this long
  bool auto_balance = true;                 // move streams to even the load
  int64_t session_ttl_ms = 24ll * 3600 * 1000;  // a released session's record is kept this long
  uint64_t max_large_message_bytes = 4ull << 30;  // messages sent in chunks (PUBLISH_CHUNK)
  // MQTT 5.0 / 3.1.1 (docs/mqtt.md): HOST:PORT ("" = off; port 0 picks a
  // free one), and the stream MQTT messages go to.
  std::string mqtt_listen = "127.0.0.1:1883";
  std::string mqtt_stream = "mqtt";
  // MQTT in a cluster (docs/mqtt.md "MQTT in a cluster"): the HOST:PORT other nodes
  // relay (or redirect) MQTT clients to ("" = the address bound), and
  // whether a node not serving the MQTT stream redirects (CONNACK 0x9C with
  // a Server Reference) instead of relaying.
  std::string mqtt_advertise;
  bool mqtt_redirect = false;
  // The HTTP listener (/metrics, /healthz, /readyz, /api/v1; docs/operations.md):
  // HOST:PORT, "" = off (`floe serve` defaults to 127.0.0.1:7680).
  std::string http_listen;
  // Users and permissions (docs/security.md): with `auth`, every client
  // logs in as a user of the bank (floe user add) and every request is
  // checked. Without it, a node whose listeners are not all on loopback
  // refuses to start unless allow_anonymous says so.
  bool auth = false;
  bool allow_anonymous = false;
  int64_t auth_refresh_ms = 2000;  // how often the node reads the users again
};

class Node {
 public:
  // Opens the bank and every stream, binds, and starts serving.
  // One node id, one live node: Start fails with FailedPrecondition if
  // another process holds this id's lock file in data_dir
  // (node-<id>.lock, flock'd for the node's life), or if the bank shows a
  // node of this id at another address whose heartbeat still advances
  // (checked for up to one lease period; see CheckNodeIdUnused in node.cc).
  static Result<std::unique_ptr<Node>> Start(const NodeOptions& options);
  ~Node();
  uint16_t port() const;
  uint16_t mqtt_port() const;  // 0 when MQTT is off
  uint16_t http_port() const;  // 0 when HTTP is off
  // Graceful stop: no new connections or requests; in-flight publishes are
  // written and acknowledged, answers persisted; then connections close.
  void Stop();
  // Blocks until Stop() (from another thread or a SIGINT/SIGTERM if
  // HandleSignals() was called).
  void Wait();
  void HandleSignals();

  struct Stats {
    uint64_t published = 0;      // messages acknowledged
    uint64_t bank_commits = 0;   // bank commits of the node's writer (cursors, sessions)
    uint64_t bank_records = 0;   // records those commits wrote
    uint64_t takeovers = 0;      // streams taken up after the first round (failover, drain, balance)
  };
  Stats stats() const;

  class Impl;

 private:
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace floe::server
