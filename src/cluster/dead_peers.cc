// Dead peers (docs/cluster.md "Dead peers"): a node sharing this node's home
// (host and data directory) whose node lock can be taken is dead — the
// kernel frees a flock only when its holder is gone — so its stream leases
// need not be waited out. The prober asks ClusterOptions::peer_dead about
// each such peer every kPeerProbeMs and wakes the worker when one is found
// dead; Balance then takes the dead peer's leases at once with higher
// epochs (Bank::SucceedLease), which fences anything the dead process left
// in flight exactly as an expired lease would.
#include <chrono>

#include <fmt/format.h>

#include "base/logging.h"
#include "cluster/cluster.h"

namespace floe::cluster {

void Cluster::ProbeLoop() {
  const auto period = std::chrono::milliseconds(kPeerProbeMs);
  mu_.Lock();
  while (!stop_) {
    const auto deadline = std::chrono::steady_clock::now() + period;
    while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {}
    if (stop_) break;
    const std::vector<std::string> peers = home_peers_;
    mu_.Unlock();
    std::set<std::string> dead;
    for (const std::string& id : peers)
      if (options_.peer_dead(id)) dead.insert(id);
    mu_.Lock();
    bool newly = false;
    for (const std::string& id : dead)
      if (!dead_peers_.count(id)) {
        newly = true;
        logging::Info("node.peer_dead",
                      fmt::format("node {} is dead (its node lock is free): its streams are taken now", id),
                      {{"node", options_.node_id}, {"dead_node", id}});
      }
    dead_peers_ = std::move(dead);  // a peer restarted with its id holds its lock again
    if (newly) {
      changed_ = true;
      cv_.SignalAll();
    }
  }
  mu_.Unlock();
}

}  // namespace floe::cluster
