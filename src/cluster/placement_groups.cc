// Placement groups (docs/cluster.md "Placement groups"): a stream that must
// be served where another is (ClusterOptions::placed_with: MQTT's bound
// streams follow the MQTT stream, whose node answers every PUBLISH and
// reads them for its subscribers). Followers are taken only by the node
// that holds their leader, so a group never splits for long: a node holding
// a follower without its leader gives it up to the leader's node, or, when
// the leader is free, takes the leader.
#include <fmt/format.h>

#include "base/logging.h"
#include "bank/bank.h"
#include "cluster/cluster.h"

namespace floe::cluster {

std::map<std::string, std::string> Cluster::Followers(const std::vector<bank::KeyValue>& streams,
                                                      const std::set<std::string>& known) {
  std::map<std::string, std::string> leader_of;
  if (!options_.placed_with) return leader_of;
  for (auto it = placed_cache_.begin(); it != placed_cache_.end();)  // deleted streams
    it = known.count(it->first) ? std::next(it) : placed_cache_.erase(it);
  for (const auto& kv : streams) {
    std::string name = kv.key.substr(bank::kStreamsPrefix.size());
    auto& cached = placed_cache_[name];
    if (cached.first != kv.version || kv.version == 0) cached = {kv.version, options_.placed_with(name, kv.value)};
    std::string leader = cached.second;
    // A leader that does not exist (yet: the MQTT stream is made on the
    // first CONNECT) leaves its followers placed freely.
    if (!leader.empty() && leader != name && known.count(leader)) leader_of.emplace(std::move(name), std::move(leader));
  }
  return leader_of;
}

void Cluster::PlaceFollowers(const std::map<std::string, std::string>& leader_of,
                             const std::vector<std::string>& free_followers,
                             const std::function<std::optional<std::string>(const std::string&)>& owner_of) {
  for (const std::string& name : free_followers) {
    const std::string& leader = leader_of.at(name);
    bool with_leader;
    {
      MutexLock l(&mu_);
      with_leader = held_.count(leader) > 0;
      if (!with_leader) wanted_.erase(name);  // another node's to take
    }
    if (with_leader) (void)Acquire(name);
  }
  std::vector<std::string> give_up;
  std::set<std::string> take_leaders;
  {
    MutexLock l(&mu_);
    for (const auto& [name, h] : held_) {
      auto it = leader_of.find(name);
      if (it == leader_of.end() || held_.count(it->second)) continue;
      std::optional<std::string> owner = owner_of(it->second);
      if (!owner) take_leaders.insert(it->second);
      else if (*owner != options_.node_id && h.open) give_up.push_back(name);
    }
  }
  for (const std::string& leader : take_leaders) (void)Acquire(leader);
  for (const std::string& name : give_up) {
    logging::Info("lease.given_up",
                  fmt::format("giving stream {} up to the node serving {}, which it is placed with", name,
                              leader_of.at(name)),
                  {{"node", options_.node_id}, {"stream", name}});
    ReleaseOne(name);
  }
}

}  // namespace floe::cluster
