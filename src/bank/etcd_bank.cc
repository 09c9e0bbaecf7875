// The bank on etcd (v3 API over gRPC): docs/bank.md "etcd backend".
//
// Keys live under a prefix (default /floe/). A key's version is its etcd
// mod_revision: etcd's revision is global and grows at every write, so
// versions order writes across keys as the Bank interface promises. A
// commit is one etcd Txn: each expected version becomes a Compare (0: the
// key's create_revision is 0, i.e. absent; else its mod_revision), puts and
// deletes the success branch. etcd applies a Txn atomically and durably
// (raft log fsync'd on a quorum) before it answers.
//
// Leases are etcd's own (docs/bank.md "Leases on etcd"): each owner using
// this handle gets one etcd lease, kept alive by this handle's keep-alive
// thread over one LeaseKeepAlive stream (reopened on the next member if it
// breaks or a round waits past 1 s); a lock is a key attached to it, created by a Txn that compares
// create_revision == 0; the fencing epoch is that key's create_revision, and
// a fenced write compares it in the same Txn. When the keep-alives stop (the
// process died, or cannot reach etcd), etcd expires the lease and deletes
// the keys: nothing in floe judges expiry by a clock.
//
// Watches: one Watch stream per WatchPrefixes call, resumed after the last
// revision seen when it breaks; a cancel or compaction makes it report a
// resync.
//
// Endpoints are tried in turn: a call that finds one unavailable moves to
// the next, with backoff, until its deadline.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "bank/bank.h"
#include "base/mutex.h"
#include "rpc.grpc.pb.h"

namespace floe::bank {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::KV;

// One member's stubs.
struct Stubs {
  std::unique_ptr<KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

// One RPC. Short, so that a member that stopped answering (paused, cut off)
// is skipped well within a lease period; a slow but live member is retried.
constexpr int kCallTimeoutMs = 1000;
constexpr int kRetryForMs = 15000;     // all endpoints, with backoff
constexpr size_t kMaxTxnOps = 128;     // etcd's default --max-txn-ops
constexpr size_t kMaxTxnBytes = 1536 * 1024 - 4096;  // etcd's default --max-request-bytes, less framing

// The smallest key greater than every key starting with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) != 0xff) {
      prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Status FromGrpc(const grpc::Status& s, const std::string& endpoint) {
  const std::string what = fmt::format("etcd {}: {}", endpoint, s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Status::Unavailable(what);
    case grpc::StatusCode::NOT_FOUND:  // e.g. a put with a lease etcd no longer has
      return Status::NotFound(what);
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Status::InvalidArgument(what);
    default:
      return Status::IOError(what);
  }
}

// Any thread may call it (Bank's contract). Its own threads: the compactor
// (StartCompactor), and with the first lease the keeper (KeepAliveLoop, which
// alone uses the keep-alive stream) and its watchdog (WatchdogLoop); each
// EtcdWatch has one more. Three mutexes, never nested: compact_mu_ (the
// compactor's stop), lease_mu_ (the owners' etcd leases), watchdog_mu_ (the
// keep-alive round in flight).
class EtcdBank final : public Bank {
 public:
  EtcdBank(std::vector<std::string> endpoints, std::string prefix)
      : endpoints_(std::move(endpoints)), prefix_(std::move(prefix)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    // HTTP/2 pings find a member that stopped answering under a long-lived
    // watch stream (etcd accepts a ping every 5 s or slower while a stream
    // is open).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 6000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    // A member that comes back is reconnected to within a second (gRPC's
    // default backoff grows to two minutes), and a connection attempt that
    // has not completed its handshake in a second is tried again (a member
    // starting up accepts connections before it serves them; gRPC's
    // default waits 20 s for it).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    // After a failed connection the channel resolves the name again before
    // it reconnects; by default not within 30 s of the last resolution.
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 200);
    for (const auto& e : endpoints_) {
      auto channel = grpc::CreateCustomChannel(e, grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(Stubs{KV::NewStub(channel), etcdserverpb::Lease::NewStub(channel),
                             etcdserverpb::Watch::NewStub(channel)});
    }
  }
  ~EtcdBank() override {
    {
      MutexLock l(&compact_mu_);
      stop_ = true;
    }
    compact_cv_.SignalAll();
    if (compactor_.joinable()) compactor_.join();
    std::map<std::string, OwnerLease, std::less<>> leases;
    std::thread keeper, watchdog;
    {
      // After stop_leases_, LeaseFor starts no thread.
      MutexLock l(&lease_mu_);
      stop_leases_ = true;
      leases.swap(owner_leases_);
      keeper.swap(keeper_);
      watchdog.swap(watchdog_);
    }
    lease_cv_.SignalAll();
    if (keeper.joinable()) keeper.join();
    {
      MutexLock l(&watchdog_mu_);
      watchdog_stop_ = true;
    }
    watchdog_cv_.SignalAll();
    if (watchdog.joinable()) watchdog.join();
    // The keeper is gone: its stream is ours now.
    if (keep_stream_) {
      keep_ctx_->TryCancel();
      (void)keep_stream_->Finish();
      keep_stream_.reset();
    }
    // A closed handle gives its locks up at once (a killed process's expire).
    retry_ = false;
    for (auto& [owner, ol] : leases) {
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(ol.id);
      etcdserverpb::LeaseRevokeResponse resp;
      (void)Call([&](Stubs& s, grpc::ClientContext* c) { return s.lease->LeaseRevoke(c, req, &resp); });
    }
  }

  // Keeps etcd's history bounded: every kCompactEveryS seconds, compacts it
  // to kKeepRevisions below the current revision (floe never reads old
  // revisions). Every node does it; compacting to a revision already
  // compacted is refused by etcd and ignored here.
  // Called once, before the bank is shared.
  void StartCompactor() {
    compactor_ = std::thread([this] { CompactLoop(); });
  }
  void CompactLoop() EXCLUDES(compact_mu_) {
    compact_mu_.Lock();
    while (!stop_) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kCompactEveryS);
      while (!stop_ && compact_cv_.WaitUntil(&compact_mu_, deadline)) {}
      if (stop_) break;
      compact_mu_.Unlock();
      (void)CompactOnce();
      compact_mu_.Lock();
    }
    compact_mu_.Unlock();
  }

  // Compacts etcd's history to kKeepRevisions below the current revision
  // (tests pass a smaller `keep`).
  Status CompactOnce(int64_t keep = kKeepRevisions) {
    etcdserverpb::RangeRequest req;
    req.set_key(prefix_);
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
    const int64_t revision = resp.header().revision() - keep;
    if (revision <= 0) return Status::OK();
    etcdserverpb::CompactionRequest creq;
    creq.set_revision(revision);
    etcdserverpb::CompactionResponse cresp;
    Status s = Call([&](Stubs& st, grpc::ClientContext* c) { return st.kv->Compact(c, creq, &cresp); });
    return s.code() == ErrorCode::kInvalidArgument ? Status::OK() : s;  // already compacted past it
  }

  Result<Versioned> Get(std::string_view key) override {
    etcdserverpb::RangeRequest req;
    req.set_key(prefix_ + std::string(key));
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
    if (resp.kvs_size() == 0) return Err(Status::NotFound(fmt::format("no key {}", key)));
    const auto& kv = resp.kvs(0);
    return Versioned{kv.value(), static_cast<uint64_t>(kv.mod_revision())};
  }

  Result<std::vector<KeyValue>> List(std::string_view prefix) override {
    const std::string from = prefix_ + std::string(prefix);
    etcdserverpb::RangeRequest req;
    req.set_key(from);
    req.set_range_end(PrefixEnd(from));
    req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    req.set_sort_target(etcdserverpb::RangeRequest::KEY);
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
    std::vector<KeyValue> out;
    out.reserve(resp.kvs_size());
    for (const auto& kv : resp.kvs())
      out.push_back({kv.key().substr(prefix_.size()), kv.value(), static_cast<uint64_t>(kv.mod_revision())});
    return out;
  }

  Result<Lease> AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms, int64_t now_ms) override;
  Result<Lease> RenewLease(const Lease& lease, int64_t ttl_ms, int64_t now_ms) override;
  Result<Lease> AcquireOnce(std::string_view name, std::string_view owner, int64_t ttl_ms, bool retried);
  Status ReleaseLease(const Lease& lease) override;
  Result<Lease> GetLease(std::string_view name) override;
  Op FencedBy(const Lease& lease) override { return Op::CheckCreated(LeaseKey(lease.name), lease.epoch); }
  std::unique_ptr<Watch> WatchPrefixes(std::vector<std::string> prefixes, WatchFn changed) override;

  Result<std::vector<uint64_t>> Commit(std::span<const Op> ops) override {
    std::vector<uint64_t> versions(ops.size(), 0);
    if (ops.empty()) return versions;
    if (ops.size() > kMaxTxnOps)
      return Err(Status::InvalidArgument(
          fmt::format("a commit of {} ops exceeds etcd's {} per transaction", ops.size(), kMaxTxnOps)));
    size_t bytes = 0;
    for (const Op& op : ops) bytes += prefix_.size() + op.key.size() + op.value.size();
    if (bytes > kMaxTxnBytes)
      return Err(Status::InvalidArgument(
          fmt::format("a commit of {} bytes exceeds etcd's {} per request", bytes, kMaxTxnBytes)));
    etcdserverpb::TxnRequest req;
    for (const Op& op : ops) {
      const std::string key = prefix_ + op.key;
      if (op.expected_version) {
        Compare* c = req.add_compare();
        c->set_key(key);
        c->set_result(Compare::EQUAL);
        if (op.kind == Op::Kind::kCheckCreated || *op.expected_version == 0) {
          c->set_target(Compare::CREATE);
          c->set_create_revision(static_cast<int64_t>(*op.expected_version));
        } else {
          c->set_target(Compare::MOD);
          c->set_mod_revision(static_cast<int64_t>(*op.expected_version));
        }
      }
      if (op.kind == Op::Kind::kPut) {
        auto* put = req.add_success()->mutable_request_put();
        put->set_key(key);
        put->set_value(op.value);
      } else if (op.kind == Op::Kind::kDelete) {
        req.add_success()->mutable_request_delete_range()->set_key(key);
      }
    }
    etcdserverpb::TxnResponse resp;
    FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Txn(c, req, &resp); }));
    if (!resp.succeeded()) return Err(Status::Aborted("a compared version did not match; nothing was written"));
    const uint64_t revision = static_cast<uint64_t>(resp.header().revision());
    for (size_t i = 0; i < ops.size(); ++i)
      if (ops[i].kind == Op::Kind::kPut) versions[i] = revision;
    return versions;
  }

 private:
  // Runs `rpc` on the current endpoint; on an unavailable one moves to the
  // next, backing off after each full round, for up to kRetryForMs.
  template <typename Rpc>
  Status Call(Rpc rpc) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRetryForMs);
    int backoff_ms = 10;
    Status last;
    for (size_t attempt = 0;; ++attempt) {
      const size_t i = (current_.load() + attempt) % stubs_.size();
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kCallTimeoutMs));
      grpc::Status s = rpc(stubs_[i], &ctx);
      if (s.ok()) {
        current_ = i;
        return Status::OK();
      }
      last = FromGrpc(s, endpoints_[i]);
      if (last.code() != ErrorCode::kUnavailable) return last;
      if (std::chrono::steady_clock::now() >= give_up) return last;
      if (!retry_ && attempt + 1 >= stubs_.size()) return last;  // one round only
      if ((attempt + 1) % stubs_.size() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
        backoff_ms = std::min(backoff_ms * 2, 500);
      }
    }
  }

  friend class EtcdWatch;

  struct OwnerLease {
    int64_t id = 0;
    int64_t ttl_s = 0;
    // Steady ms by which etcd cannot have expired it: when the last
    // acknowledged keep-alive (or the grant) was sent, plus the TTL etcd
    // answered. etcd counts from when it received the request, later.
    int64_t alive_until_ms = 0;
  };
  static int64_t SteadyNowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // The etcd lease of `owner` on this handle, granted (TTL ttl_ms rounded up
  // to seconds; etcd may raise it to its minimum) on first use.
  Result<OwnerLease> LeaseFor(std::string_view owner, int64_t ttl_ms) EXCLUDES(lease_mu_);
  // Sends one keep-alive for each lease over one LeaseKeepAlive stream;
  // returns each lease's remaining TTL (0: etcd no longer knows it).
  // Keeper thread only.
  Result<std::map<int64_t, int64_t>> KeepAliveRound(const std::vector<int64_t>& ids) EXCLUDES(watchdog_mu_);
  void KeepAliveLoop() EXCLUDES(lease_mu_);
  void WatchdogLoop() EXCLUDES(watchdog_mu_);
  Lease LeaseFromKv(std::string_view name, const mvccpb::KeyValue& kv) const;

  static constexpr int kCompactEveryS = 300;
  static constexpr int64_t kKeepRevisions = 100000;
  const std::vector<std::string> endpoints_;
  const std::string prefix_;
  Mutex compact_mu_;
  CondVar compact_cv_;
  bool stop_ GUARDED_BY(compact_mu_) = false;
  std::thread compactor_;  // started before the bank is shared, joined by the destructor
  std::vector<Stubs> stubs_;  // set by the constructor
  std::atomic<size_t> current_{0};

  Mutex lease_mu_;
  CondVar lease_cv_;
  std::map<std::string, OwnerLease, std::less<>> owner_leases_ GUARDED_BY(lease_mu_);
  bool stop_leases_ GUARDED_BY(lease_mu_) = false;
  // Started with the first lease (LeaseFor).
  std::thread keeper_ GUARDED_BY(lease_mu_);
  std::thread watchdog_ GUARDED_BY(lease_mu_);
  // The keeper thread's one LeaseKeepAlive stream (keeper thread only; the
  // destructor's once the keeper is joined). The watchdog cancels it
  // through watchdog_ctx_, never through these.
  std::unique_ptr<grpc::ClientContext> keep_ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>>
      keep_stream_;
  size_t keep_endpoint_ = 0;
  Mutex watchdog_mu_;
  CondVar watchdog_cv_;
  grpc::ClientContext* watchdog_ctx_ GUARDED_BY(watchdog_mu_) = nullptr;  // a round in flight
  std::chrono::steady_clock::time_point watchdog_deadline_ GUARDED_BY(watchdog_mu_);
  bool watchdog_stop_ GUARDED_BY(watchdog_mu_) = false;

 public:
  std::atomic<bool> retry_{true};  // false: one round of the endpoints, no waiting
};

// --- Leases ------------------------------------------------------------------------------

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
Result<Lease> EtcdBank::RenewLease(const Lease& lease, int64_t /*ttl_ms*/, int64_t /*now_ms*/) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix_ + LeaseKey(lease.name));
  etcdserverpb::RangeResponse resp;
  FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
  bool ours = resp.kvs_size() == 1 && static_cast<uint64_t>(resp.kvs(0).create_revision()) == lease.epoch;
  int64_t alive_until = 0;
  if (ours) {
    MutexLock l(&lease_mu_);
    auto it = owner_leases_.find(lease.owner);
    ours = it != owner_leases_.end() && it->second.id == resp.kvs(0).lease();
    if (ours) alive_until = it->second.alive_until_ms;
  }
  if (!ours) return Err(Status::Aborted(fmt::format("lease {} (epoch {}) was lost", lease.name, lease.epoch)));
  // Still ours, but only as long as the keep-alives say: a lock read from
  // a healthy member while the keep-alive stream is stuck on another one
  // must not extend the holder's validity past etcd's expiry.
  if (alive_until <= SteadyNowMs())
    return Err(Status::Unavailable(fmt::format("lease {}: no keep-alive answered for a whole TTL", lease.name)));
  Lease renewed = LeaseFromKv(lease.name, resp.kvs(0));
  renewed.alive_until_steady_ms = alive_until;
  return renewed;
}

Status EtcdBank::ReleaseLease(const Lease& lease) {
  std::vector<Op> ops{Op::CheckCreated(LeaseKey(lease.name), lease.epoch), Op::Delete(LeaseKey(lease.name))};
  auto r = Commit(ops);
  if (!r && r.error().code() == ErrorCode::kAborted)
    return Status::Aborted(fmt::format("lease {} (epoch {}) was already lost", lease.name, lease.epoch));
  return r ? Status::OK() : r.error();
}

Result<Lease> EtcdBank::GetLease(std::string_view name) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix_ + LeaseKey(name));
  etcdserverpb::RangeResponse resp;
  FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
  if (resp.kvs_size() == 0) return Err(Status::NotFound(fmt::format("lease {} is free", name)));
  return LeaseFromKv(name, resp.kvs(0));
}

// --- Watches -----------------------------------------------------------------------------

// Its thread (Run) reads the stream and calls `changed`; the destructor, on
// the owner's thread, stops it. mu_ guards the hand-over between the two.
class EtcdWatch final : public Bank::Watch {
 public:
  EtcdWatch(EtcdBank* bank, std::vector<std::string> prefixes, Bank::WatchFn changed)
      : bank_(bank), prefixes_(std::move(prefixes)), changed_(std::move(changed)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~EtcdWatch() override {
    {
      MutexLock l(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    cv_.SignalAll();
    thread_.join();
  }

 private:
  void Run() EXCLUDES(mu_) {
    int64_t next_revision = 0;  // 0: from now
    int backoff_ms = 50;
    bool reported = false;      // this outage's resync was reported
    for (size_t attempt = 0;; ++attempt) {
      const size_t i = (bank_->current_.load() + attempt) % bank_->stubs_.size();
      grpc::ClientContext ctx;
      {
        MutexLock l(&mu_);
        if (stop_) return;
        ctx_ = &ctx;
      }
      auto stream = bank_->stubs_[i].watch->Watch(&ctx);
      bool ok = true;
      for (const std::string& p : prefixes_) {
        etcdserverpb::WatchRequest req;
        auto* create = req.mutable_create_request();
        create->set_key(bank_->prefix_ + p);
        create->set_range_end(PrefixEnd(bank_->prefix_ + p));
        create->set_start_revision(next_revision);
        ok = ok && stream->Write(req);
      }
      bool compacted = false;
      etcdserverpb::WatchResponse resp;
      while (ok && stream->Read(&resp)) {
        if (resp.compact_revision() > 0 || resp.canceled()) {
          // History we needed is gone (compacted) or etcd dropped the watch:
          // the caller looks again, and the watch goes on from the oldest
          // revision etcd still has, so nothing after it is missed (even
          // while the caller looks, or before the watch is back).
          if (resp.compact_revision() > 0) next_revision = resp.compact_revision();
          compacted = true;
          break;
        }
        if (resp.created()) {
          backoff_ms = 50;
          reported = false;  // watching again: the next cut is news
        }
        if (next_revision == 0 && resp.header().revision() > 0) next_revision = resp.header().revision() + 1;
        for (const auto& ev : resp.events()) {
          next_revision = std::max(next_revision, ev.kv().mod_revision() + 1);
          changed_(std::string_view(ev.kv().key()).substr(bank_->prefix_.size()), false);
        }
      }
      ctx.TryCancel();
      (void)stream->Finish();
      {
        MutexLock l(&mu_);
        ctx_ = nullptr;
        if (stop_) return;
      }
      // Cut (member gone) or behind a compaction: whatever changed meanwhile
      // is found by looking again (said once per outage); then watch again,
      // from where we were if we can.
      if (compacted || !reported) changed_("", true);
      reported = true;
      MutexLock l(&mu_);
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::milliseconds(compacted && next_revision > 0 ? 0 : backoff_ms);
      while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {}
      backoff_ms = std::min(backoff_ms * 2, 1000);
    }
  }

  EtcdBank* const bank_;
  const std::vector<std::string> prefixes_;
  const Bank::WatchFn changed_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ GUARDED_BY(mu_) = nullptr;  // the stream to cancel
  std::thread thread_;
};

std::unique_ptr<Bank::Watch> EtcdBank::WatchPrefixes(std::vector<std::string> prefixes, WatchFn changed) {
  return std::make_unique<EtcdWatch>(this, std::move(prefixes), std::move(changed));
}

}  // namespace

Status CompactEtcdHistory(Bank& bank, int64_t keep_revisions) {
  auto* etcd = dynamic_cast<EtcdBank*>(&bank);
  if (etcd == nullptr) return Status::InvalidArgument("not an etcd bank");
  return etcd->CompactOnce(keep_revisions);
}

Result<std::unique_ptr<Bank>> OpenEtcdBank(const std::vector<std::string>& endpoints, const std::string& prefix) {
  if (endpoints.empty()) return Err(Status::InvalidArgument("etcd: no endpoint"));
  if (prefix.empty() || prefix.front() != '/' || prefix.back() != '/')
    return Err(Status::InvalidArgument(fmt::format("etcd prefix must start and end with '/': {}", prefix)));
  auto bank = std::make_unique<EtcdBank>(endpoints, prefix);
  // Reachable? A first read (one round of the endpoints) says so now rather
  // than at the first commit.
  bank->retry_ = false;
  auto probe = bank->Get("\x01probe");
  bank->retry_ = true;
  if (!probe && !probe.error().IsNotFound()) return Err(probe.error());
  bank->StartCompactor();
  return std::unique_ptr<Bank>(std::move(bank));
}

}  // namespace floe::bank
