#include "cluster/cluster.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "base/codec.h"
#include "base/logging.h"

namespace floe::cluster {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string NodeKey(std::string_view id) { return fmt::format("{}{}", kNodesPrefix, id); }
std::string DrainKey(std::string_view id) { return fmt::format("{}{}", kDrainPrefix, id); }
std::string StreamLeaseName(std::string_view stream) { return fmt::format("{}{}", kStreamLeasePrefix, stream); }

Status Cluster::Start() {
  if (options_.lease_ms < 30) return Status::InvalidArgument("the lease period must be at least 30 ms");
  FLOE_RETURN_IF_ERROR(Register());
  auto streams = bank_->List(bank::kStreamsPrefix);
  if (!streams) return streams.error();
  // A bank that can watch wakes the worker when a lease, stream, drain or
  // rebalance request changes (a node died: etcd deleted its locks); the
  // worker then polls only every lease period, as a fallback.
  watch_ = bank_->WatchPrefixes({std::string(bank::kLeasePrefix), std::string(bank::kStreamsPrefix), std::string(kDrainPrefix),
                                 std::string(kClusterPrefix)},
                                [this](std::string_view, bool) {
                                  {
                                    MutexLock l(&mu_);
                                    changed_ = true;
                                  }
                                  cv_.SignalAll();
                                });
  watching_ = watch_ != nullptr;
  renewer_ = std::thread([this] { RenewLoop(); });
  if (options_.peer_dead) prober_ = std::thread([this] { ProbeLoop(); });
  Work();  // the node's share of the streams is open before it takes connections
  started_ = true;
  thread_ = std::thread([this] { WorkLoop(); });
  return Status::OK();
}

void Cluster::Stop(bool release) {
  {
    MutexLock l(&mu_);
    if (stop_ && !thread_.joinable() && !renewer_.joinable() && held_.empty()) return;
    stop_ = true;
  }
  cv_.SignalAll();
  watch_.reset();
  if (thread_.joinable()) thread_.join();
  if (renewer_.joinable()) renewer_.join();
  if (prober_.joinable()) prober_.join();
  if (!release) return;
  std::map<std::string, Held> held;
  {
    MutexLock l(&mu_);
    held.swap(held_);
  }
  for (auto& [name, h] : held) (void)bank_->ReleaseLease(h.lease);
  bool superseded;
  {
    MutexLock l(&mu_);
    superseded = superseded_;
  }
  // Compared: a newer process with this id may have written it since.
  if (!superseded && record_version_ != 0) (void)bank_->Delete(NodeKey(options_.node_id), record_version_);
}

void Cluster::WorkLoop() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(10, options_.lease_ms / (watching_ ? 1 : 3)));
  mu_.Lock();
  while (!stop_) {
    const auto deadline = std::chrono::steady_clock::now() + period;
    while (!stop_ && !changed_ && wanted_.empty() && lost_.empty() && cv_.WaitUntil(&mu_, deadline)) {}
    if (stop_) break;
    changed_ = false;
    mu_.Unlock();
    Work();
    // A client asking for an unowned stream wakes the loop early, but rounds
    // stay at least 20 ms apart.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    mu_.Lock();
  }
  mu_.Unlock();
}

// Ticks at a fixed rate: a slow tick does not push the next one back by its
// own length (a lease renewed at t is renewed again by t + period, or at
// once if the tick overran).
void Cluster::RenewLoop() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(10, options_.lease_ms / 3));
  auto deadline = std::chrono::steady_clock::now() + period;
  mu_.Lock();
  while (!stop_) {
    while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {}
    if (stop_) break;
    const bool superseded = superseded_;
    mu_.Unlock();
    deadline = std::max(deadline + period, std::chrono::steady_clock::now());
    RenewAll();
    if (!superseded) (void)Heartbeat(WallMs());
    mu_.Lock();
  }
  mu_.Unlock();
}

void Cluster::Work() {
  CloseLost();
  {
    MutexLock l(&mu_);
    if (superseded_) return;  // a newer process with this id serves them
  }
  ReleaseOrphans();
  OpenPending();
  Balance();
  const int64_t now = SteadyMs();
  if (last_housekeep_steady_ == 0) last_housekeep_steady_ = now;
  if (now - last_housekeep_steady_ >= kHousekeepPeriods * options_.lease_ms) {
    last_housekeep_steady_ = now;
    host_->Housekeep();
    ForgetDeadNodes();
  }
}

int64_t Cluster::ValidUntil(int64_t t0, const bank::Lease& lease) const {
  const int64_t margin = options_.lease_ms / 10;
  int64_t until = t0 + options_.lease_ms - margin;
  // A native lease: never past what its keep-alives guarantee.
  if (lease.alive_until_steady_ms > 0) until = std::min(until, lease.alive_until_steady_ms - margin);
  return until;
}

void Cluster::ReleaseOrphans() {
  std::vector<bank::Lease> orphans;
  {
    MutexLock l(&mu_);
    orphans.swap(orphans_);
  }
  std::vector<bank::Lease> keep;
  for (const bank::Lease& lease : orphans) {
    Status s = bank_->ReleaseLease(lease);
    if (s.ok() || s.code() == ErrorCode::kAborted) continue;  // given up, or lost anyway
    keep.push_back(lease);
  }
  MutexLock l(&mu_);
  orphans_.insert(orphans_.end(), keep.begin(), keep.end());
}

void Cluster::CloseLost() {
  std::vector<std::pair<std::string, std::string>> lost;
  {
    MutexLock l(&mu_);
    lost.swap(lost_);
  }
  for (auto& [name, redirect] : lost) host_->CloseStream(name, redirect);
}

// Streams held but not served yet (the previous owner still had the
// directory locked, or opening failed): try again.
void Cluster::OpenPending() {
  std::vector<std::pair<std::string, uint64_t>> pending;
  {
    MutexLock l(&mu_);
    for (auto& [name, h] : held_)
      if (!h.open) pending.emplace_back(name, h.lease.epoch);
  }
  for (auto& [name, epoch] : pending) (void)TryOpen(name, epoch);
}

Status Cluster::TryOpen(const std::string& name, uint64_t epoch) {
  int64_t valid_until;
  {
    MutexLock l(&mu_);
    auto it = held_.find(name);
    if (it == held_.end() || it->second.lease.epoch != epoch) return Status::Aborted("lost");
    valid_until = it->second.valid_until;
  }
  Status s = host_->OpenStream(name, valid_until);
  if (s.IsNotFound()) {
    ReleaseOne(name);  // deleted meanwhile
    return s;
  }
  if (!s.ok()) return s;
  bool still_ours;
  {
    MutexLock l(&mu_);
    auto it = held_.find(name);
    still_ours = it != held_.end() && it->second.lease.epoch == epoch;
    if (still_ours) {
      it->second.open = true;
      valid_until = it->second.valid_until;  // renewed while it opened
    }
  }
  if (!still_ours) {
    host_->CloseStream(name, "");  // lost while opening
    return Status::Aborted("lost while opening");
  }
  GiveValidity(name, epoch, valid_until);
  return Status::OK();
}

void Cluster::GiveValidity(const std::string& name, uint64_t epoch, int64_t valid_until) {
  host_->SetValidUntil(name, valid_until);
  // Lose (on the renewer) drops the validity to 0 after it removed the
  // stream from held_, outside mu_ like this call: if it ran between our
  // look at held_ and the call above, the call gave a lost stream its
  // validity back. Still held at `epoch` now: any Lose comes after the call.
  bool held;
  {
    MutexLock l(&mu_);
    auto it = held_.find(name);
    held = it != held_.end() && it->second.lease.epoch == epoch;
  }
  if (!held) host_->SetValidUntil(name, 0);
}

// Every held lease renewed with one bank call (Bank::RenewLeases: one commit
// on SQLite, one read on etcd), so keeping many streams costs one round trip
// per tick, not one per stream.
void Cluster::RenewAll() {
  std::vector<std::string> names;
  std::vector<bank::Lease> leases;
  {
    MutexLock l(&mu_);
    for (auto& [name, h] : held_) {
      names.push_back(name);
      leases.push_back(h.lease);
      renewing_.insert(name);  // Fence waits: the record's version is about to change
    }
  }
  if (leases.empty()) return;
  const int64_t t0 = SteadyMs();
  std::vector<Result<bank::Lease>> renewed = bank_->RenewLeases(leases, options_.lease_ms, WallMs());
  std::vector<std::pair<std::string, std::pair<uint64_t, int64_t>>> give;  // open streams: epoch, valid until
  {
    MutexLock l(&mu_);
    const int64_t took = SteadyMs() - t0;
    ++renew_stats_.ticks;
    renew_stats_.last_ms = took;
    renew_stats_.max_ms = std::max(renew_stats_.max_ms, took);
    renew_stats_.last_leases = leases.size();
    for (size_t i = 0; i < names.size(); ++i) {
      renewing_.erase(names[i]);
      const Result<bank::Lease>& r = renewed[i];
      if (!r) continue;
      auto it = held_.find(names[i]);
      if (it == held_.end() || it->second.lease.epoch != r->epoch) continue;  // forgotten meanwhile
      it->second.lease = *r;
      it->second.valid_until = ValidUntil(t0, *r);
      if (it->second.open) give.push_back({names[i], {r->epoch, it->second.valid_until}});
    }
    renew_cv_.SignalAll();
  }
  for (const auto& [name, v] : give) GiveValidity(name, v.first, v.second);
  for (size_t i = 0; i < names.size(); ++i) {
    const Result<bank::Lease>& r = renewed[i];
    if (r) continue;
    const std::string& name = names[i];
    if (r.error().code() == ErrorCode::kAborted) {
      // Taken over (we were paused or partitioned past the lease): step back.
      logging::Warn("lease.lost", fmt::format("lost stream {}: {}", name, r.error().ToString()),
                {{"node", options_.node_id}, {"stream", name}});
      std::string redirect;
      if (auto owner = OwnerOf(name); owner && owner->live && owner->node != options_.node_id)
        redirect = owner->address;
      Lose(name, redirect);
      continue;
    }
    bool expired;
    {
      MutexLock l(&mu_);
      auto it = held_.find(name);
      expired = it != held_.end() && SteadyMs() >= it->second.valid_until;
    }
    if (expired) {
      logging::Warn("lease.expired", fmt::format("cannot renew stream {} ({}); stepping back", name, r.error().ToString()),
                {{"node", options_.node_id}, {"stream", name}});
      Lose(name, "");
      // The lease may still be ours in the bank (on etcd the keep-alives
      // resume with the connection): give it up once the bank answers, or
      // nobody would serve the stream.
      MutexLock l(&mu_);
      orphans_.push_back(leases[i]);
    }
  }
}

bool Cluster::Acquire(const std::string& stream, const bank::Lease* inherited, bool from_dead) {
  const int64_t t0 = SteadyMs();
  auto r = inherited ? bank_->SucceedLease(*inherited, options_.lease_ms, WallMs())
                     : bank_->AcquireLease(StreamLeaseName(stream), options_.node_id, options_.lease_ms, WallMs());
  if (!r) {
    if (inherited && from_dead)
      logging::Info("lease.succeed_failed",
                    fmt::format("cannot take stream {} from its dead holder: {}", stream, r.error().ToString()),
                    {{"node", options_.node_id}, {"stream", stream}});
    else if (inherited)
      logging::Warn("lease.succeed_failed",
                    fmt::format("cannot take stream {} back from incarnation {}: {}", stream, incarnation_ - 1,
                                r.error().ToString()),
                    {{"node", options_.node_id}, {"stream", stream}});
    return false;
  }
  if (inherited && !from_dead) ++inherited_;
  const int64_t valid_until = ValidUntil(t0, *r);
  bool stopping;
  {
    MutexLock l(&mu_);
    stopping = stop_;
    if (!stopping) {
      held_[stream] = Held{*r, valid_until, t0, false};
      wanted_.erase(stream);
    }
  }
  if (stopping) {
    // Given back with mu_ not held: on etcd a release can take seconds.
    (void)bank_->ReleaseLease(*r);
    return false;
  }
  if (started_) ++takeovers_;  // after the node's first round: from a node gone, drained or balancing
  logging::Info(from_dead   ? "lease.taken_from_dead"
                : inherited ? "lease.succeeded"
                : started_  ? "lease.taken_over"
                            : "lease.gained",
            fmt::format("holds stream {} (epoch {})", stream, r->epoch),
            {{"node", options_.node_id}, {"stream", stream}, {"epoch", r->epoch}});
  Status s = TryOpen(stream, r->epoch);
  if (s.ok()) return true;
  if (s.IsNotFound() || s.code() == ErrorCode::kAborted) return false;
  logging::Warn("stream.open_failed",
            fmt::format("holds stream {} (epoch {}) but cannot open it yet: {}", stream, r->epoch, s.ToString()),
            {{"node", options_.node_id}, {"stream", stream}, {"epoch", r->epoch}});
  return true;
}

void Cluster::Lose(const std::string& stream, const std::string& redirect) {
  bool open = false;
  {
    MutexLock l(&mu_);
    auto it = held_.find(stream);
    if (it == held_.end()) return;
    open = it->second.open;
    held_.erase(it);
    if (open) lost_.emplace_back(stream, redirect);
  }
  leases_lost_.fetch_add(1, std::memory_order_relaxed);
  if (!open) return;
  host_->SetValidUntil(stream, 0);  // fencing: no ACK, delivery or write from now on
  cv_.SignalAll();
}

std::optional<Cluster::Held> Cluster::TakeHeld(const std::string& stream) {
  MutexLock l(&mu_);
  auto it = held_.find(stream);
  if (it == held_.end()) return std::nullopt;
  Held h = it->second;
  held_.erase(it);
  return h;
}

void Cluster::ReleaseOne(const std::string& stream) {
  std::optional<Held> h = TakeHeld(stream);
  if (!h) return;
  if (h->open) host_->CloseStream(stream, "");
  (void)bank_->ReleaseLease(h->lease);
  released_at_[stream] = SteadyMs();
}

std::optional<bank::Op> Cluster::Fence(const std::string& stream) {
  MutexLock l(&mu_);
  // A renewal in flight is about to change the record's version: a fence
  // taken now would fail; wait for it (briefly).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (renewing_.count(stream) && renew_cv_.WaitUntil(&mu_, deadline)) {}
  auto it = held_.find(stream);
  if (it == held_.end() || SteadyMs() >= it->second.valid_until) return std::nullopt;
  return bank_->FencedBy(it->second.lease);
}

Cluster::RenewStats Cluster::renew_stats() {
  MutexLock l(&mu_);
  return renew_stats_;
}

std::string Cluster::AddressOf(const std::string& node) {
  auto v = bank_->Get(NodeKey(node));
  if (!v) return {};
  auto n = DecodeNodeInfo(v->value);
  return n ? n->address : std::string();
}

Result<Cluster::Owner> Cluster::OwnerOf(const std::string& stream) {
  auto lease = bank_->GetLease(StreamLeaseName(stream));
  if (!lease) return Err(lease.error());
  Owner o;
  o.node = lease->owner;
  o.epoch = lease->epoch;
  const int64_t now = WallMs();
  o.live = lease->expires_ms > now;
  if (o.live) {
    auto v = bank_->Get(NodeKey(o.node));
    auto n = v ? DecodeNodeInfo(v->value) : Result<NodeInfo>(Err(v.error()));
    if (n) {
      o.address = n->address;
      o.mqtt_address = n->mqtt_address;
      o.live = n->heartbeat_ms + std::max<int64_t>(n->lease_ms, 1) > now;
    } else {
      o.live = false;
    }
  }
  return o;
}

void Cluster::Want(const std::string& stream) {
  {
    MutexLock l(&mu_);
    if (held_.count(stream)) return;
    wanted_.insert(stream);
  }
  cv_.SignalAll();
}

Result<int64_t> Cluster::TakeNew(const std::string& stream) {
  {
    MutexLock l(&mu_);
    if (superseded_) return Err(Status::Unavailable("a newer process with this node id serves the cluster"));
  }
  const int64_t t0 = SteadyMs();
  auto r = bank_->AcquireLease(StreamLeaseName(stream), options_.node_id, options_.lease_ms, WallMs());
  if (!r) return Err(r.error());
  const int64_t valid_until = ValidUntil(t0, *r);
  MutexLock l(&mu_);
  // open = true: the creating node opens it; the cluster thread must not.
  held_[stream] = Held{*r, valid_until, t0, true};
  logging::Info("lease.gained", fmt::format("holds new stream {} (epoch {})", stream, r->epoch),
                {{"node", options_.node_id}, {"stream", stream}, {"epoch", r->epoch}});
  return valid_until;
}

void Cluster::Forget(const std::string& stream) {
  if (std::optional<Held> h = TakeHeld(stream)) (void)bank_->ReleaseLease(h->lease);
}

}  // namespace floe::cluster
