// Leases on etcd (docs/bank.md "Leases on etcd"): one etcd lease per owner,
// kept alive by the handle's keeper over one LeaseKeepAlive stream; locks
// are keys attached to it.
#include <unordered_map>

#include "bank/etcd_internal.h"

namespace floe::bank::etcd {

Lease EtcdBank::LeaseFromKv(std::string_view name, const mvccpb::KeyValue& kv) const {
  Lease l;
  l.name = std::string(name);
  l.owner = kv.value();
  l.epoch = static_cast<uint64_t>(kv.create_revision());
  l.version = l.epoch;
  l.expires_ms = kHeldByBank;
  return l;
}

Result<EtcdBank::OwnerLease> EtcdBank::LeaseFor(std::string_view owner, int64_t ttl_ms) {
  {
    MutexLock l(&lease_mu_);
    if (auto it = owner_leases_.find(owner); it != owner_leases_.end()) return it->second;
  }
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(1, (ttl_ms + 999) / 1000));
  etcdserverpb::LeaseGrantResponse resp;
  const int64_t sent_ms = SteadyNowMs();
  FLOE_RETURN_ERR_IF_ERROR(
      Call([&](Stubs& s, grpc::ClientContext* c) { return s.lease->LeaseGrant(c, req, &resp); }));
  if (!resp.error().empty()) return Err(Status::Unavailable("etcd lease grant: " + resp.error()));
  const OwnerLease granted{resp.id(), resp.ttl(), sent_ms + resp.ttl() * 1000};
  OwnerLease theirs;
  {
    MutexLock l(&lease_mu_);
    if (stop_leases_) return Err(Status::Unavailable("the bank is closing"));
    auto [it, inserted] = owner_leases_.try_emplace(std::string(owner), granted);
    if (inserted) {
      if (!keeper_.joinable()) {
        watchdog_ = std::thread([this] { WatchdogLoop(); });
        keeper_ = std::thread([this] { KeepAliveLoop(); });
      }
      lease_cv_.SignalAll();
      return granted;
    }
    theirs = it->second;
  }
  // Another thread granted one meanwhile: use it, give ours back.
  etcdserverpb::LeaseRevokeRequest r;
  r.set_id(resp.id());
  etcdserverpb::LeaseRevokeResponse rr;
  (void)Call([&](Stubs& s, grpc::ClientContext* c) { return s.lease->LeaseRevoke(c, r, &rr); });
  return theirs;
}

Result<std::map<int64_t, int64_t>> EtcdBank::KeepAliveRound(const std::vector<int64_t>& ids) {
  // The stream stays open across rounds; a round that fails (or that the
  // watchdog cancels after kCallTimeoutMs) closes it, and the next round
  // opens one on the next member.
  if (!keep_stream_) keep_ctx_ = std::make_unique<grpc::ClientContext>();
  {
    // Armed before the stream is opened: opening blocks too.
    MutexLock l(&watchdog_mu_);
    watchdog_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCallTimeoutMs);
    watchdog_ctx_ = keep_ctx_.get();
  }
  watchdog_cv_.SignalAll();
  if (!keep_stream_) {
    keep_endpoint_ = current_.load();
    keep_stream_ = stubs_[keep_endpoint_].lease->LeaseKeepAlive(keep_ctx_.get());
  }
  std::map<int64_t, int64_t> ttls;
  bool ok = true;
  for (int64_t id : ids) {
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(id);
    ok = ok && keep_stream_->Write(req);
  }
  etcdserverpb::LeaseKeepAliveResponse resp;
  while (ok && ttls.size() < ids.size()) {
    ok = keep_stream_->Read(&resp);
    if (ok) ttls[resp.id()] = resp.ttl();
  }
  {
    MutexLock l(&watchdog_mu_);
    watchdog_ctx_ = nullptr;
  }
  if (ok) return ttls;
  keep_ctx_->TryCancel();
  grpc::Status s = keep_stream_->Finish();
  keep_stream_.reset();
  keep_ctx_.reset();
  const size_t failed = keep_endpoint_;
  size_t expected = failed;
  current_.compare_exchange_strong(expected, (failed + 1) % stubs_.size());  // the next member, next time
  return Err(s.ok() ? Status::Unavailable(fmt::format("etcd {}: keep-alive stream ended", endpoints_[failed]))
                    : FromGrpc(s, endpoints_[failed]));
}

// Cancels a keep-alive round that waits past its deadline (a member that
// stopped answering would hold the blocking Read forever).
void EtcdBank::WatchdogLoop() {
  MutexLock l(&watchdog_mu_);
  while (!watchdog_stop_) {
    (void)watchdog_cv_.WaitUntil(&watchdog_mu_, std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    if (watchdog_ctx_ != nullptr && std::chrono::steady_clock::now() > watchdog_deadline_) {
      watchdog_ctx_->TryCancel();
      watchdog_ctx_ = nullptr;
    }
  }
}

// One round every third of the shortest TTL. A lease etcd no longer knows
// (it expired: this process could not reach etcd for a whole TTL) is
// dropped; its locks are gone, so RenewLease reports them lost and the next
// AcquireLease grants a new one.
void EtcdBank::KeepAliveLoop() {
  lease_mu_.Lock();
  while (!stop_leases_) {
    int64_t min_ttl_s = 3;
    std::vector<int64_t> ids;
    for (auto& [owner, ol] : owner_leases_) {
      ids.push_back(ol.id);
      min_ttl_s = std::min(min_ttl_s, std::max<int64_t>(1, ol.ttl_s));
    }
    bool failed = false;
    if (!ids.empty()) {
      lease_mu_.Unlock();
      const int64_t sent_ms = SteadyNowMs();
      auto ttls = KeepAliveRound(ids);
      lease_mu_.Lock();
      if (!ttls) {
        failed = true;
        std::fprintf(stderr, "floe: etcd keep-alive failed: %s\n", ttls.error().ToString().c_str());
      } else {
        for (auto it = owner_leases_.begin(); it != owner_leases_.end();) {
          auto t = ttls->find(it->second.id);
          if (t != ttls->end() && t->second <= 0) {
            std::fprintf(stderr, "floe: etcd lease %lld of %s expired; its locks are lost\n",
                         static_cast<long long>(it->second.id), it->first.c_str());
            it = owner_leases_.erase(it);
            continue;
          }
          if (t != ttls->end()) it->second.alive_until_ms = sent_ms + t->second * 1000;
          ++it;
        }
      }
    }
    // After a failed round, the next member is tried at once (almost): a
    // whole TTL could otherwise pass between two rounds.
    const int64_t wait_ms = failed ? 50 : min_ttl_s * 1000 / 3;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (!stop_leases_ && lease_cv_.WaitUntil(&lease_mu_, deadline)) {}
  }
  lease_mu_.Unlock();
}

Result<Lease> EtcdBank::AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms,
                                     int64_t /*now_ms: etcd decides expiry*/) {
  if (owner.empty() || ttl_ms <= 0) return Err(Status::InvalidArgument("a lease needs an owner and a positive TTL"));
  return AcquireOnce(name, owner, ttl_ms, /*retried=*/false);
}

Result<Lease> EtcdBank::AcquireOnce(std::string_view name, std::string_view owner, int64_t ttl_ms, bool retried) {
  auto ol = LeaseFor(owner, ttl_ms);
  if (!ol) return Err(ol.error());
  if (ol->alive_until_ms <= SteadyNowMs()) return Err(Status::Unavailable("no etcd keep-alive answered for a TTL"));
  const std::string key = prefix_ + LeaseKey(name);
  etcdserverpb::TxnRequest req;
  Compare* c = req.add_compare();
  c->set_key(key);
  c->set_result(Compare::EQUAL);
  c->set_target(Compare::CREATE);
  c->set_create_revision(0);
  auto* put = req.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::string(owner));
  put->set_lease(ol->id);
  req.add_failure()->mutable_request_range()->set_key(key);
  etcdserverpb::TxnResponse resp;
  Status sent = Call([&](Stubs& s, grpc::ClientContext* ctx) { return s.kv->Txn(ctx, req, &resp); });
  if (sent.IsNotFound() && !retried) {
    // etcd expired our lease before the keeper noticed: a new one, once.
    {
      MutexLock l(&lease_mu_);
      if (auto it = owner_leases_.find(owner); it != owner_leases_.end() && it->second.id == ol->id)
        owner_leases_.erase(it);
    }
    return AcquireOnce(name, owner, ttl_ms, /*retried=*/true);
  }
  if (!sent.ok()) return Err(sent);
  if (resp.succeeded()) {
    Lease l;
    l.name = std::string(name);
    l.owner = std::string(owner);
    l.epoch = static_cast<uint64_t>(resp.header().revision());  // the put's revision: its create_revision
    l.version = l.epoch;
    l.expires_ms = kHeldByBank;
    l.alive_until_steady_ms = ol->alive_until_ms;
    return l;
  }
  if (resp.responses_size() != 1 || resp.responses(0).response_range().kvs_size() == 0)
    return Err(Status::Unavailable(fmt::format("lease {} changed hands meanwhile; try again", name)));
  const mvccpb::KeyValue& kv = resp.responses(0).response_range().kvs(0);
  if (kv.value() == owner && kv.lease() == ol->id) {  // ours already
    Lease l = LeaseFromKv(name, kv);
    l.alive_until_steady_ms = ol->alive_until_ms;
    return l;
  }
  if (kv.value() == owner)
    return Err(Status::Unavailable(fmt::format(
        "lease {} is held by an earlier etcd lease of {} (a previous process?) until etcd expires it", name, owner)));
  return Err(Status::Unavailable(
      fmt::format("lease {} is held by {} (epoch {})", name, kv.value(), kv.create_revision())));
}

// The TTL and clock are etcd's: the keep-alive thread renews the etcd lease.
// Whether the lock `kv` (null: absent) is still `lease`'s, and until when
// the keep-alives vouch for it.
Result<Lease> EtcdBank::CheckRenewal(const Lease& lease, const mvccpb::KeyValue* kv) {
  bool ours = kv && static_cast<uint64_t>(kv->create_revision()) == lease.epoch;
  int64_t alive_until = 0;
  if (ours) {
    MutexLock l(&lease_mu_);
    auto it = owner_leases_.find(lease.owner);
    ours = it != owner_leases_.end() && it->second.id == kv->lease();
    if (ours) alive_until = it->second.alive_until_ms;
  }
  if (!ours) return Err(Status::Aborted(fmt::format("lease {} (epoch {}) was lost", lease.name, lease.epoch)));
  // Still ours, but only as long as the keep-alives say: a lock read from
  // a healthy member while the keep-alive stream is stuck on another one
  // must not extend the holder's validity past etcd's expiry.
  if (alive_until <= SteadyNowMs())
    return Err(Status::Unavailable(fmt::format("lease {}: no keep-alive answered for a whole TTL", lease.name)));
  Lease renewed = LeaseFromKv(lease.name, *kv);
  renewed.alive_until_steady_ms = alive_until;
  return renewed;
}

Result<Lease> EtcdBank::RenewLease(const Lease& lease, int64_t /*ttl_ms*/, int64_t /*now_ms*/) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix_ + LeaseKey(lease.name));
  etcdserverpb::RangeResponse resp;
  FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
  return CheckRenewal(lease, resp.kvs_size() == 1 ? &resp.kvs(0) : nullptr);
}

// One range read of every lock for all of them (the keep-alive itself is one
// per owner already).
std::vector<Result<Lease>> EtcdBank::RenewLeases(std::span<const Lease> leases, int64_t ttl_ms, int64_t now_ms) {
  std::vector<Result<Lease>> out;
  out.reserve(leases.size());
  if (leases.size() <= 1) {
    for (const Lease& l : leases) out.push_back(RenewLease(l, ttl_ms, now_ms));
    return out;
  }
  auto range = RangePrefix(kLeasePrefix);
  if (!range) {
    for (size_t i = 0; i < leases.size(); ++i) out.push_back(Err(range.error()));
    return out;
  }
  const etcdserverpb::RangeResponse& resp = *range;
  std::unordered_map<std::string_view, const mvccpb::KeyValue*> locks;
  locks.reserve(static_cast<size_t>(resp.kvs_size()));
  for (const auto& kv : resp.kvs()) locks.emplace(std::string_view(kv.key()).substr(prefix_.size()), &kv);
  for (const Lease& l : leases) {
    auto it = locks.find(LeaseKey(l.name));
    out.push_back(CheckRenewal(l, it == locks.end() ? nullptr : it->second));
  }
  return out;
}

Status EtcdBank::ReleaseLease(const Lease& lease) {
  std::vector<Op> ops{Op::CheckCreated(LeaseKey(lease.name), lease.epoch), Op::Delete(LeaseKey(lease.name))};
  auto r = Commit(ops);
  if (!r && r.error().code() == ErrorCode::kAborted)
    return Status::Aborted(fmt::format("lease {} (epoch {}) was already lost", lease.name, lease.epoch));
  return r ? Status::OK() : r.error();
}

// The lock is attached to the earlier process's etcd lease, which etcd would
// keep until its TTL ran out: it is deleted (compared on create_revision, so
// only that lock) and taken again on this handle's lease, as AcquireLease
// takes a free one. The new key's create_revision, the epoch, is higher;
// FencedBy of the earlier one fails from the delete on. Between the two
// another node may take the free lock: then Unavailable, as AcquireLease.
Result<Lease> EtcdBank::SucceedLease(const Lease& seen, int64_t ttl_ms, int64_t /*now_ms*/) {
  if (seen.owner.empty() || ttl_ms <= 0 || seen.epoch == 0)
    return Err(Status::InvalidArgument("a lease to succeed needs an owner, a TTL and its epoch"));
  std::vector<Op> ops{Op::CheckCreated(LeaseKey(seen.name), seen.epoch), Op::Delete(LeaseKey(seen.name))};
  auto r = Commit(ops);
  if (!r) {
    if (r.error().code() != ErrorCode::kAborted) return Err(r.error());
    return Err(Status::Aborted(fmt::format("lease {} moved since it was read (epoch {})", seen.name, seen.epoch)));
  }
  return AcquireOnce(seen.name, seen.owner, ttl_ms, /*retried=*/false);
}

Result<Lease> EtcdBank::GetLease(std::string_view name) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix_ + LeaseKey(name));
  etcdserverpb::RangeResponse resp;
  FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
  if (resp.kvs_size() == 0) return Err(Status::NotFound(fmt::format("lease {} is free", name)));
  return LeaseFromKv(name, resp.kvs(0));
}

Result<std::vector<Lease>> EtcdBank::ListLeases(std::string_view prefix) {
  auto range = RangePrefix(LeaseKey(prefix));
  if (!range) return Err(range.error());
  const etcdserverpb::RangeResponse& resp = *range;
  std::vector<Lease> out;
  out.reserve(static_cast<size_t>(resp.kvs_size()));
  const size_t skip = prefix_.size() + kLeasePrefix.size();
  for (const auto& kv : resp.kvs()) out.push_back(LeaseFromKv(std::string_view(kv.key()).substr(skip), kv));
  return out;
}

}  // namespace floe::bank::etcd
