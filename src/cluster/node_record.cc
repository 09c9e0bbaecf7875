// The node record (nodes/<id>, docs/bank.md "Node record"): its encoding,
// registering at start (the successor rule's incarnation), the heartbeat,
// stepping back when a newer incarnation of this id appears, and removing
// the records of nodes long dead.
#include <cstdio>

#include <fmt/format.h>

#include "base/codec.h"
#include "base/logging.h"
#include "cluster/cluster.h"

namespace floe::cluster {

namespace {
// Version 2 appends the MQTT address, 3 the MQTT connections, 4 the
// incarnation and home; records of before still decode, without them.
constexpr uint8_t kNodeEncodingVersion = 4;
}  // namespace

std::string EncodeNodeInfo(const NodeInfo& n) {
  std::string out;
  Encoder e(&out);
  e.U8(kNodeEncodingVersion);
  e.String(n.id);
  e.String(n.address);
  e.I64(n.heartbeat_ms);
  e.I64(n.started_ms);
  e.I64(n.lease_ms);
  e.U32(n.streams);
  e.U32(n.sessions);
  e.U64(n.publish_rate);
  e.String(n.mqtt_address);
  e.U32(n.mqtt_connections);
  e.U64(n.incarnation);
  e.String(n.home);
  return out;
}

Result<NodeInfo> DecodeNodeInfo(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  const uint8_t version = d.U8();
  if (version < 1 || version > kNodeEncodingVersion) return Err(Status::Corruption("unknown node record version"));
  NodeInfo n;
  n.id = std::string(d.String());
  n.address = std::string(d.String());
  n.heartbeat_ms = d.I64();
  n.started_ms = d.I64();
  n.lease_ms = d.I64();
  n.streams = d.U32();
  n.sessions = d.U32();
  n.publish_rate = d.U64();
  if (version >= 2) n.mqtt_address = std::string(d.String());
  if (version >= 3) n.mqtt_connections = d.U32();
  if (version >= 4) {
    n.incarnation = d.U64();
    n.home = std::string(d.String());
  }
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption("node record: " + std::string(s.message())));
  return n;
}

Cluster::Cluster(bank::Bank* bank, ClusterOptions options, Host* host)
    : bank_(bank), options_(std::move(options)), host_(host), started_ms_(WallMs()) {}

Cluster::~Cluster() { Stop(false); }

// The node record names the incarnation before this one and its home. The
// same home (the same host and data directory, whose node lock this process
// holds now: ClusterOptions::home) means the process that wrote it is gone:
// this one is its successor. The write compares the record's version, so
// of two processes starting at once only one gets each incarnation.
Status Cluster::Register() {
  const std::string key = NodeKey(options_.node_id);
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto v = bank_->Get(key);
    std::optional<NodeInfo> prior;
    record_version_ = 0;
    if (v) {
      record_version_ = v->version;
      if (auto n = DecodeNodeInfo(v->value)) prior = *n;
    } else if (!v.error().IsNotFound()) {
      return v.error();
    }
    incarnation_ = prior ? prior->incarnation + 1 : 1;
    successor_ = prior && !options_.home.empty() && prior->home == options_.home;
    Status s = Heartbeat(WallMs(), /*first=*/true);
    if (s.code() != ErrorCode::kAborted) {
      if (s.ok() && successor_)
        logging::Info("node.successor",
                  fmt::format("incarnation {} succeeds incarnation {} (home {}): its stream leases are taken back at "
                              "once",
                              incarnation_, prior->incarnation, options_.home),
                  {{"node", options_.node_id}, {"incarnation", incarnation_}});
      return s;
    }
  }
  return Status::Unavailable(fmt::format("node {}: its node record keeps changing", options_.node_id));
}

void Cluster::Supersede(uint64_t by) {
  std::vector<std::string> names;
  {
    MutexLock l(&mu_);
    if (superseded_) return;
    superseded_ = true;
    for (auto& [name, h] : held_) names.push_back(name);
    wanted_.clear();
  }
  logging::Warn("node.superseded",
            fmt::format("incarnation {} is superseded by incarnation {} (a newer process with this id); stepping back "
                        "from all {} streams",
                        incarnation_, by, names.size()),
            {{"node", options_.node_id}, {"incarnation", incarnation_}});
  for (const std::string& name : names) Lose(name, "");
}

Status Cluster::Heartbeat(int64_t now, bool first) {
  NodeInfo n;
  n.id = options_.node_id;
  n.address = options_.address;
  n.mqtt_address = options_.mqtt_address;
  n.heartbeat_ms = now;
  n.started_ms = started_ms_;
  n.lease_ms = options_.lease_ms;
  {
    MutexLock l(&mu_);
    n.streams = static_cast<uint32_t>(held_.size());
  }
  n.sessions = host_->SessionCount();
  n.mqtt_connections = host_->MqttConnectionCount();
  n.incarnation = incarnation_;
  n.home = options_.home;
  const uint64_t published = host_->PublishedTotal();
  const int64_t steady = SteadyMs();
  if (last_heartbeat_steady_ > 0 && steady > last_heartbeat_steady_)
    n.publish_rate = (published - last_published_) * 1000 / static_cast<uint64_t>(steady - last_heartbeat_steady_);
  last_published_ = published;
  last_heartbeat_steady_ = steady;
  const std::string key = NodeKey(options_.node_id);
  const std::string value = EncodeNodeInfo(n);
  for (int attempt = 0;; ++attempt) {
    auto r = bank_->Put(key, value, record_version_);
    if (r) {
      record_version_ = *r;
      return Status::OK();
    }
    if (first && r.error().code() == ErrorCode::kAborted) return r.error();
    if (r.error().code() != ErrorCode::kAborted || attempt > 0) {
      logging::Warn("node.heartbeat_failed", fmt::format("heartbeat failed: {}", r.error().ToString()),
                {{"node", options_.node_id}});
      return r.error();
    }
    // Written by someone else: a newer process with this id, or removed
    // (a graceful stop of ours, or by housekeeping after a long pause).
    auto v = bank_->Get(key);
    if (v) {
      auto other = DecodeNodeInfo(v->value);
      if (other && other->incarnation > incarnation_) {
        Supersede(other->incarnation);
        return Status::Aborted("superseded");
      }
      record_version_ = v->version;
    } else if (v.error().IsNotFound()) {
      record_version_ = 0;
    } else {
      return v.error();
    }
  }
}

void Cluster::ForgetDeadNodes() {
  auto nodes = bank_->List(kNodesPrefix);
  if (!nodes) return;
  const int64_t now = WallMs();
  for (const auto& kv : *nodes) {
    auto n = DecodeNodeInfo(kv.value);
    if (!n || n->id == options_.node_id) continue;
    if (n->heartbeat_ms + kDeadNodePeriods * std::max<int64_t>(n->lease_ms, 1) > now) continue;
    // Compared: a node that came back meanwhile wrote a newer heartbeat.
    if (bank_->Delete(kv.key, kv.version).ok())
      logging::Info("node.forgotten",
                fmt::format("removed the record of node {} (no heartbeat for {} s)", n->id, (now - n->heartbeat_ms) / 1000),
                {{"node", options_.node_id}, {"dead_node", n->id}});
  }
}

}  // namespace floe::cluster
