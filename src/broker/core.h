// Internal to the broker core: the state its files share (broker.h is the
// public API). Not for front ends.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

#include "bank/bank.h"
#include "broker/broker.h"
#include "broker/metrics.h"
#include "broker/registry.h"
#include "broker/session.h"
#include "broker/session_table.h"
#include "cluster/cluster.h"

namespace floe::broker {

// Owns every core component; lives as long as the Broker. Thread-safe: each
// member guards itself (the registry, the writer, the cluster and the
// session table have their own locks; the counters are atomic).
class Broker::Core final : public cluster::Host {
 public:
  explicit Core(BrokerOptions o) : options(std::move(o)) {}

  // cluster::Host (placement.cc): called on the cluster's threads.
  Status OpenStream(const std::string& name, int64_t valid_until_steady_ms) override;
  void SetValidUntil(const std::string& name, int64_t valid_until_steady_ms) override;
  void CloseStream(const std::string& name, const std::string& redirect) override;
  uint32_t SessionCount() override { return static_cast<uint32_t>(sessions.session_count()); }
  uint64_t PublishedTotal() override { return published.load(); }
  uint32_t MqttConnectionCount() override {
    return static_cast<uint32_t>(sessions.peer_count(PeerProtocol::kMqtt));
  }
  void Housekeep() override;  // sessions.cc

  // Tells every peer serving `entry` to go to `redirect` and close.
  void Evict(const std::shared_ptr<StreamEntry>& entry, const std::string& redirect);
  // Writes session `id`'s record as `state` holds it when the writer takes
  // it (fenced by the stream's lease); lazily without `done`.
  void PersistSession(const std::string& stream, uint64_t id, std::shared_ptr<SessionState> state,
                      std::function<void(Status)> done);
  // Where the client should go for a stream this node does not serve:
  // kNotOwner with the owner's address, kUnknownStream, or kUnavailable
  // while it has no owner (and this node tries to take it). Reads the bank:
  // call it on a pool, never on a front end's I/O thread.
  Failure Locate(const std::string& stream);
  // The stream if this node serves it now.
  std::shared_ptr<StreamEntry> Served(const std::string& stream);
  std::string BlobFile(const std::string& relative) const { return options.data_dir + "/" + relative; }

  const BrokerOptions options;
  // First, so they outlive every stream and session that holds their pointers.
  metrics::Registry metrics_registry;
  CoreMetrics metrics{&metrics_registry};
  std::unique_ptr<bank::Bank> bank;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<BankWriter> writer;
  std::unique_ptr<cluster::Cluster> cluster;
  SessionTable sessions;
  // Work that may block: bank reads and stream admin (bank_pool), large
  // message file I/O and dead-letter moves (file_pool). Never the front
  // ends' I/O threads.
  asio::thread_pool bank_pool{2};
  asio::thread_pool file_pool{2};
  // Serialises a dead-letter copy's dedup lookup with its append
  // (dead_letter.cc), and guards where moves were last forwarded.
  Mutex dead_letter_mu;
  struct Route {
    std::string address;
    int64_t until_ms = 0;  // steady clock
  };
  std::map<std::string, Route> dead_letter_routes GUARDED_BY(dead_letter_mu);
  // Told of each stream this node creates or deletes (Broker::AddStreamListener).
  Mutex stream_listeners_mu;
  std::vector<std::function<void(const std::string&, const StreamConfig*)>> stream_listeners
      GUARDED_BY(stream_listeners_mu);
  void StreamChanged(const std::string& name, const StreamConfig* config) {
    MutexLock l(&stream_listeners_mu);
    for (auto& fn : stream_listeners) fn(name, config);
  }
  std::atomic<bool> stopping{false};
  std::atomic<bool> joined{false};  // StartCluster succeeded: `cluster` is set for good
  std::atomic<bool> finished{false};
  std::atomic<uint64_t> published{0};       // messages acknowledged
  std::atomic<uint64_t> inflight_bytes{0};  // publish bytes awaiting ACK, node-wide
};

// Moves `seq` of `stream` to its dead-letter stream, wherever that is served
// (dead_letter.cc). The seq stays pending and undeliverable
// (ConsumerGroup::dead_lettering) until the copy is durable, then it is done;
// a move that cannot be made now is tried again a second later, so a message
// is never dropped while its dead-letter stream exists. Runs on the file pool.
void MoveToDeadLetter(Broker::Core* core, std::shared_ptr<StreamEntry> stream, std::shared_ptr<ConsumerGroup> group,
                      uint64_t seq);

}  // namespace floe::broker
