// Internal to the broker core: the instruments its paths update (metrics.cc
// creates them; docs/operations.md lists every one). A path holds the
// pointers it needs (a Session its stream's StreamCounters) and never looks a
// metric up per message.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "base/mutex.h"
#include "log/stream.h"
#include "metrics/metrics.h"

namespace floe::broker {

// This node's counts for one stream since the process started (they go on
// across the stream moving away and back; Prometheus handles the reset when
// the process restarts).
struct StreamCounters {
  metrics::Counter* published_messages = nullptr;  // stored and acknowledged (not duplicates)
  metrics::Counter* published_bytes = nullptr;     // their payload + key + header bytes
  metrics::Counter* delivered_messages = nullptr;  // deliveries, redeliveries included
  metrics::Counter* redelivered_messages = nullptr;
  metrics::Counter* dead_letters = nullptr;        // moved to the dead-letter stream
};

class CoreMetrics {
 public:
  explicit CoreMetrics(metrics::Registry* registry);
  // Stable for the registry's life; takes a lock: once per session or move.
  StreamCounters* ForStream(const std::string& stream) EXCLUDES(mu_);
  // The counters of every stream seen so far (for /api/v1), by name.
  std::map<std::string, StreamCounters> AllStreams() EXCLUDES(mu_);

  metrics::Registry* const registry;
  log::LogMetrics log;                    // every stream's writer, node-wide
  metrics::Histogram* ack_latency;        // publish request to its ACK, ns
  metrics::Histogram* bank_commit;        // one bank commit of the bank writer, ns
  metrics::Counter* bank_commit_failures;
  metrics::Counter* sessions_opened_floe;
  metrics::Counter* sessions_opened_mqtt;
  metrics::Counter* streams_closed;       // streams this node stopped serving (moved, lost, deleted)

 private:
  Mutex mu_;
  std::map<std::string, std::unique_ptr<StreamCounters>> streams_ GUARDED_BY(mu_);
};

}  // namespace floe::broker
