// Internal to the etcd backend (etcd_bank.cc, etcd_leases.cc, etcd_watch.cc):
// the EtcdBank class and what its files share. See etcd_bank.cc for the design.
#pragma once

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

namespace floe::bank::etcd {

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
std::string PrefixEnd(std::string prefix);
Status FromGrpc(const grpc::Status& s, const std::string& endpoint);

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

  // Every key under prefix_ + `prefix`, in key order, with one range read.
  Result<etcdserverpb::RangeResponse> RangePrefix(std::string_view prefix) {
    const std::string from = prefix_ + std::string(prefix);
    etcdserverpb::RangeRequest req;
    req.set_key(from);
    req.set_range_end(PrefixEnd(from));
    req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    req.set_sort_target(etcdserverpb::RangeRequest::KEY);
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_ERR_IF_ERROR(Call([&](Stubs& s, grpc::ClientContext* c) { return s.kv->Range(c, req, &resp); }));
    return resp;
  }

  Result<std::vector<KeyValue>> List(std::string_view prefix) override {
    auto range = RangePrefix(prefix);
    if (!range) return Err(range.error());
    const etcdserverpb::RangeResponse& resp = *range;
    std::vector<KeyValue> out;
    out.reserve(resp.kvs_size());
    for (const auto& kv : resp.kvs())
      out.push_back({kv.key().substr(prefix_.size()), kv.value(), static_cast<uint64_t>(kv.mod_revision())});
    return out;
  }

  Result<Lease> AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms, int64_t now_ms) override;
  Result<Lease> RenewLease(const Lease& lease, int64_t ttl_ms, int64_t now_ms) override;
  std::vector<Result<Lease>> RenewLeases(std::span<const Lease> leases, int64_t ttl_ms, int64_t now_ms) override;
  Result<Lease> CheckRenewal(const Lease& lease, const mvccpb::KeyValue* kv);
  Result<Lease> AcquireOnce(std::string_view name, std::string_view owner, int64_t ttl_ms, bool retried);
  Result<Lease> SucceedLease(const Lease& seen, int64_t ttl_ms, int64_t now_ms) override;
  Status ReleaseLease(const Lease& lease) override;
  Result<Lease> GetLease(std::string_view name) override;
  Result<std::vector<Lease>> ListLeases(std::string_view prefix) override;
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

}  // namespace floe::bank::etcd
