// Balance: the worker's round of taking and giving up streams — free
// streams up to the fair share, a predecessor's or a dead peer's leases at
// once, placement groups, and one stream given up per round to even the load
// (docs/cluster.md "Ownership").
#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "base/logging.h"
#include "cluster/cluster.h"

namespace floe::cluster {

void Cluster::Balance() {
  const int64_t now = WallMs();
  auto nodes = bank_->List(kNodesPrefix);
  auto streams = bank_->List(bank::kStreamsPrefix);
  auto drains = bank_->List(kDrainPrefix);
  if (!nodes || !streams || !drains) return;
  std::set<std::string> drained;
  for (const auto& kv : *drains) drained.insert(kv.key.substr(kDrainPrefix.size()));
  std::set<std::string> live;  // live, undrained nodes
  std::vector<std::string> home_peers;
  for (const auto& kv : *nodes) {
    auto n = DecodeNodeInfo(kv.value);
    if (!n) continue;
    if (!options_.home.empty() && n->home == options_.home && n->id != options_.node_id) home_peers.push_back(n->id);
    if (n->heartbeat_ms + std::max<int64_t>(n->lease_ms, 1) > now && !drained.count(n->id)) live.insert(n->id);
  }
  std::set<std::string> dead;  // peers proven dead: not live, whatever their heartbeat says
  {
    MutexLock l(&mu_);
    home_peers_ = home_peers;
    dead = dead_peers_;
  }
  for (const std::string& id : dead) live.erase(id);
  const bool me_drained = drained.count(options_.node_id) > 0;

  if (me_drained) {
    std::vector<std::string> mine;
    {
      MutexLock l(&mu_);
      for (auto& [name, h] : held_) mine.push_back(name);
      wanted_.clear();
    }
    for (auto& name : mine) ReleaseOne(name);
    return;
  }

  // Who holds what (live leases only): every stream lease in one read.
  auto all_leases = bank_->ListLeases(kStreamLeasePrefix);
  if (!all_leases) return;
  std::map<std::string, const bank::Lease*, std::less<>> lease_of;
  for (const bank::Lease& l : *all_leases) lease_of.emplace(l.name, &l);
  std::map<std::string, size_t> counts;
  std::vector<std::string> free_streams;
  // The successor's first round (before it serves anything, so no lease of
  // this id not in held_ can be this process's own): the leases of this id
  // are the earlier process's, taken back at once (docs/bank.md "The
  // successor rule").
  std::vector<bank::Lease> inherited;
  std::vector<bank::Lease> from_dead;
  const bool inherit = successor_ && !started_;
  std::set<std::string> known;
  for (const auto& kv : *streams) known.insert(kv.key.substr(bank::kStreamsPrefix.size()));
  const std::map<std::string, std::string> leader_of = Followers(*streams, known);
  std::vector<std::string> free_followers;
  for (const auto& kv : *streams) {
    std::string name = kv.key.substr(bank::kStreamsPrefix.size());
    // A follower goes where its leader is: it does not count toward anyone's share.
    const bool follower = leader_of.count(name) > 0;
    {
      MutexLock l(&mu_);
      if (held_.count(name)) {
        if (!follower) ++counts[options_.node_id];
        continue;
      }
    }
    auto lease = lease_of.find(StreamLeaseName(name));
    if (lease != lease_of.end() && lease->second->expires_ms > now && inherit &&
        lease->second->owner == options_.node_id) {
      inherited.push_back(*lease->second);
      continue;
    }
    if (lease != lease_of.end() && lease->second->expires_ms > now && dead.count(lease->second->owner)) {
      // Its holder is proven dead (docs/cluster.md "Dead peers"): taken now,
      // with a higher epoch, rather than waited out.
      bank::Lease taken = *lease->second;
      taken.owner = options_.node_id;
      from_dead.push_back(std::move(taken));
      continue;
    }
    if (lease != lease_of.end() && lease->second->expires_ms > now) {
      if (!follower) ++counts[lease->second->owner];
      continue;
    }
    (follower ? free_followers : free_streams).push_back(name);
  }
  const size_t n_nodes = std::max<size_t>(1, live.size());
  const size_t total = known.size() - leader_of.size();
  const size_t hi = (total + n_nodes - 1) / n_nodes;
  const size_t lo = total / n_nodes;
  size_t mine = counts[options_.node_id];

  // All of them: they were this node's, and nobody else may take them
  // before they expire (balancing moves some later if need be).
  for (const bank::Lease& l : inherited)
    if (Acquire(l.name.substr(kStreamLeasePrefix.size()), &l)) ++mine;
  // A dead peer's: all of them, at once (balancing spreads them later).
  for (const bank::Lease& l : from_dead)
    if (Acquire(l.name.substr(kStreamLeasePrefix.size()), &l, /*from_dead=*/true)) {
      ++mine;
      ++taken_from_dead_;
    }

  // Take streams nobody serves, up to the fair share (any a client asked for).
  for (const std::string& name : free_streams) {
    bool wanted;
    {
      MutexLock l(&mu_);
      wanted = wanted_.erase(name) > 0;
    }
    auto rel = released_at_.find(name);
    const bool just_released = rel != released_at_.end() && SteadyMs() - rel->second < 2 * options_.lease_ms;
    // A stream this node just gave up goes to another node, even if a client
    // asks this one for it.
    if (just_released && n_nodes > 1) continue;
    if (!wanted && mine >= hi && n_nodes > 1) continue;
    if (Acquire(name)) ++mine;
  }
  {
    MutexLock l(&mu_);
    for (auto it = wanted_.begin(); it != wanted_.end();)  // deleted or owned by others
      it = std::find(free_streams.begin(), free_streams.end(), *it) == free_streams.end() ? wanted_.erase(it) : ++it;
  }
  PlaceFollowers(leader_of, free_followers, [&](const std::string& leader) -> std::optional<std::string> {
    auto lease = lease_of.find(StreamLeaseName(leader));
    if (lease == lease_of.end() || lease->second->expires_ms <= now || !live.count(lease->second->owner))
      return std::nullopt;
    return lease->second->owner;
  });

  // Give streams up to even the load: when above the fair share, or above
  // its floor while another live node is below it.
  bool rebalance_now = false;
  if (auto r = bank_->Get(kRebalanceKey); r) {
    if (rebalance_seen_ && r->version != last_rebalance_) rebalance_now = true;
    last_rebalance_ = r->version;
    rebalance_seen_ = true;
  } else {
    rebalance_seen_ = true;
  }
  if (!(options_.auto_balance || rebalance_now) || n_nodes < 2) return;
  size_t min_other = SIZE_MAX;
  for (const auto& id : live)
    if (id != options_.node_id) min_other = std::min(min_other, counts[id]);
  if (min_other == SIZE_MAX) return;
  const bool over = mine > hi || (mine > lo && min_other < lo);
  if (!over) return;
  // The stream held longest (settled: at least two lease periods, unless an
  // operator asked for a rebalance now).
  std::string victim;
  int64_t oldest = INT64_MAX;
  std::set<std::string> leaders;  // a group moves only when its node drains or dies
  for (const auto& [follower, leader] : leader_of) leaders.insert(leader);
  {
    MutexLock l(&mu_);
    for (auto& [name, h] : held_) {
      if (!h.open || leader_of.count(name) || leaders.count(name)) continue;
      if (!rebalance_now && SteadyMs() - h.acquired_at < 2 * options_.lease_ms) continue;
      if (h.acquired_at < oldest) {
        oldest = h.acquired_at;
        victim = name;
      }
    }
  }
  if (victim.empty()) return;
  logging::Info("lease.given_up",
            fmt::format("giving stream {} up to balance the load ({} held, fair share {}-{})", victim, mine, lo, hi),
            {{"node", options_.node_id}, {"stream", victim}});
  ReleaseOne(victim);
}

}  // namespace floe::cluster
