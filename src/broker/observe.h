// What a node shows its operators (src/http: /metrics, /readyz, /api/v1):
// the bank's view of the cluster, as `floe cluster status` reads it, and the
// streams this node serves, as `floe stream info` reports them, with this
// node's counters. Built by Broker::Observe; plain values, no locks held.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "broker/broker.h"
#include "broker/session.h"
#include "cluster/cluster.h"
#include "log/stream.h"
#include "model/types.h"

namespace floe::broker {

struct ConsumerView {
  std::string name;
  uint64_t ack_floor = 0;
  uint64_t next_seq = 0;
  uint32_t pending = 0;
  uint64_t lag = 0;          // messages above the ack floor up to the frontier
  double lag_seconds = 0;    // age of the oldest unacknowledged message (0 without lag)
};

struct StreamView {
  std::string name;
  std::optional<StreamConfig> config;   // nullopt: its bank record did not decode
  // The stream's lease as the bank holds it.
  std::string owner;                    // "" = no live holder
  uint64_t epoch = 0;
  std::optional<int64_t> expires_in_ms; // nullopt: kept alive by the bank (etcd)
  bool owned_here = false;              // the lease names this node and has not expired
  bool served = false;                  // this node serves it now (open, lease valid by its clock)
  // When served:
  log::StreamStats log;
  std::vector<ConsumerView> consumers;
  // This node's counters for the stream since it started (0 if never served here).
  uint64_t published_messages = 0;
  uint64_t published_bytes = 0;
  uint64_t delivered_messages = 0;
  uint64_t redelivered_messages = 0;
  uint64_t dead_letters = 0;
};

struct NodeView {
  std::string node_id;
  int64_t wall_ms = 0;     // when it was taken
  Status bank;             // OK: the bank answered every read
  std::vector<cluster::NodeInfo> nodes;
  std::set<std::string> drained;
  std::vector<StreamView> streams;  // every stream of the cluster, by name
  size_t floe_connections = 0;
  size_t mqtt_connections = 0;
  size_t sessions = 0;     // sessions attached here
  // Bank records of MQTT (cluster-wide; nullopt when they could not be read).
  std::optional<uint64_t> mqtt_session_records;
  std::optional<uint64_t> mqtt_retained_messages;
  Broker::Stats stats;
  size_t leases_held = 0;
  uint64_t leases_lost = 0;
  cluster::Cluster::RenewStats renew;
  // Why the node is not ready ("" = ready): the bank unreachable, or a
  // stream whose lease it holds that it does not serve.
  std::string not_ready;
};

}  // namespace floe::broker
