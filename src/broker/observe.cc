// Broker::Observe and Broker::SessionRecords: the reads behind the node's
// HTTP views (src/http). They read the bank and the streams' logs on the
// caller's thread; the caller is the HTTP listener, never an I/O thread.
#include "broker/observe.h"

#include <fmt/format.h>

#include "broker/core.h"
#include "broker/metrics.h"

namespace floe::broker {

namespace {

// Age of the oldest unacknowledged message of a consumer: the first message
// above its ack floor (holes skipped).
double LagSeconds(log::Stream& log, uint64_t ack_floor, int64_t now_us) {
  auto r = log.Read({.from_seq = ack_floor + 1, .max_messages = 4, .max_bytes = 1});
  if (!r) return 0;
  for (const log::Entry& e : r->entries)
    if (e.kind == log::Entry::Kind::kMessage) return std::max<double>(0, double(now_us - e.timestamp_us) / 1e6);
  return 0;
}

}  // namespace

metrics::Registry& Broker::metrics() { return core_->metrics_registry; }

NodeView Broker::Observe() {
  NodeView v = ObserveLocal();
  ObserveBank(&v);
  return v;
}

NodeView Broker::ObserveLocal() {
  Core* core = core_.get();
  NodeView v;
  v.node_id = core->options.node_id;
  v.wall_ms = cluster::WallMs();
  // StartCluster sets core->cluster while this may run (HTTP serves from
  // before the node joins): touch it only once `joined` says it is set.
  const bool joined = core->joined.load(std::memory_order_acquire);
  v.stats.published = core->published.load();
  if (core->writer) {
    v.stats.bank_commits = core->writer->commits();
    v.stats.bank_records = core->writer->records();
  }
  v.floe_connections = core->sessions.peer_count(PeerProtocol::kFloe);
  v.mqtt_connections = core->sessions.peer_count(PeerProtocol::kMqtt);
  v.sessions = core->sessions.session_count();
  if (joined) {
    v.stats.takeovers = core->cluster->takeovers();
    v.leases_held = core->cluster->leases_held();
    v.leases_lost = core->cluster->leases_lost();
    v.renew = core->cluster->renew_stats();
  }
  v.not_ready = joined ? "the bank was not read" : "the node is joining the cluster";
  return v;
}

void Broker::ObserveBank(NodeView* out) {
  Core* core = core_.get();
  NodeView& v = *out;
  const bool joined = core->joined.load(std::memory_order_acquire);
  v.not_ready.clear();
  auto fail = [&v](const char* what, const Status& s) {
    if (v.bank.ok()) v.bank = Status(s.code(), fmt::format("reading {} from the bank: {}", what, s.message()));
  };
  auto nodes = core->bank->List(cluster::kNodesPrefix);
  if (nodes) {
    for (const auto& kv : *nodes)
      if (auto n = cluster::DecodeNodeInfo(kv.value)) v.nodes.push_back(std::move(*n));
  } else {
    // Each read of a bank that does not answer waits out its own retries:
    // one failure says enough.
    fail("the nodes", nodes.error());
    v.not_ready = "bank unreachable: " + v.bank.ToString();
    return;
  }
  if (auto drains = core->bank->List(cluster::kDrainPrefix)) {
    for (const auto& kv : *drains) v.drained.insert(kv.key.substr(cluster::kDrainPrefix.size()));
  } else {
    fail("the drains", drains.error());
  }
  std::map<std::string, bank::Lease> leases;
  if (auto all = core->bank->ListLeases(cluster::kStreamLeasePrefix)) {
    for (auto& l : *all) leases.emplace(l.name.substr(cluster::kStreamLeasePrefix.size()), std::move(l));
  } else {
    fail("the stream leases", all.error());
  }
  auto streams = core->bank->List(kStreamsPrefix);
  if (!streams) fail("the streams", streams.error());
  const auto counters = core->metrics.AllStreams();
  const int64_t now_us = v.wall_ms * 1000;
  if (streams) {
    for (const auto& kv : *streams) {
      StreamView s;
      s.name = kv.key.substr(kStreamsPrefix.size());
      if (auto c = DecodeStreamConfig(kv.value)) s.config = std::move(*c);
      if (auto it = leases.find(s.name); it != leases.end()) {
        const bank::Lease& l = it->second;
        s.epoch = l.epoch;
        const bool by_bank = l.expires_ms == bank::kHeldByBank;
        const int64_t left = by_bank ? 1 : l.expires_ms - v.wall_ms;
        if (!by_bank) s.expires_in_ms = std::max<int64_t>(left, 0);
        if (left > 0) s.owner = l.owner;
        s.owned_here = left > 0 && l.owner == v.node_id;
      }
      if (auto entry = core->Served(s.name)) {
        s.served = true;
        s.log = entry->log().stats();
        for (const std::shared_ptr<ConsumerGroup>& g : entry->Consumers()) {
          ConsumerView c;
          c.name = g->name;
          {
            MutexLock l(&g->mu);
            c.ack_floor = g->cursor.ack_floor();
            c.next_seq = g->cursor.next_seq();
            c.pending = static_cast<uint32_t>(g->cursor.pending().size());
          }
          c.lag = s.log.frontier > c.ack_floor ? s.log.frontier - c.ack_floor : 0;
          if (c.lag > 0) c.lag_seconds = LagSeconds(entry->log(), c.ack_floor, now_us);
          s.consumers.push_back(std::move(c));
        }
      }
      if (auto it = counters.find(s.name); it != counters.end()) {
        s.published_messages = it->second.published_messages->value();
        s.published_bytes = it->second.published_bytes->value();
        s.delivered_messages = it->second.delivered_messages->value();
        s.redelivered_messages = it->second.redelivered_messages->value();
        s.dead_letters = it->second.dead_letters->value();
      }
      v.streams.push_back(std::move(s));
    }
  }
  if (auto r = core->bank->List("frontend/mqtt/")) v.mqtt_session_records = r->size();
  if (auto r = core->bank->List("frontend/mqtt-retained/")) v.mqtt_retained_messages = r->size();
  // Ready: the bank answered, and every stream whose lease this node holds
  // is open here (a takeover or a recovery in progress is not ready yet).
  if (!v.bank.ok()) {
    v.not_ready = "bank unreachable: " + v.bank.ToString();
  } else if (!joined) {
    v.not_ready = "the node is joining the cluster";
  } else if (core->stopping.load()) {
    v.not_ready = "the node is stopping";
  } else {
    for (const StreamView& s : v.streams)
      if (s.owned_here && !s.served) {
        v.not_ready = fmt::format("stream {}: this node holds its lease but does not serve it yet", s.name);
        break;
      }
  }
}

Result<std::vector<SessionRecord>> Broker::SessionRecords() {
  auto all = core_->bank->List(kSessionsPrefix);
  if (!all) return Err(all.error());
  std::vector<SessionRecord> out;
  for (const auto& kv : *all)
    if (auto r = DecodeSessionRecord(kv.value)) out.push_back(std::move(*r));
  return out;
}

}  // namespace floe::broker
