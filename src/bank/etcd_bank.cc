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
// Endpoints are tried in turn: a call that finds one unavailable moves to
// the next, with backoff, until its deadline.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "bank/bank.h"
#include "rpc.grpc.pb.h"

namespace floe::bank {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::KV;

// One RPC. Short, so that a member that stopped answering (paused, cut off)
// is skipped well within a lease period; a slow but live member is retried.
constexpr int kCallTimeoutMs = 1000;
constexpr int kRetryForMs = 15000;     // all endpoints, with backoff
constexpr size_t kMaxTxnOps = 128;     // etcd's default --max-txn-ops

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
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Status::InvalidArgument(what);
    default:
      return Status::IOError(what);
  }
}

class EtcdBank final : public Bank {
 public:
  EtcdBank(std::vector<std::string> endpoints, std::string prefix)
      : endpoints_(std::move(endpoints)), prefix_(std::move(prefix)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    for (const auto& e : endpoints_)
      stubs_.push_back(KV::NewStub(grpc::CreateCustomChannel(e, grpc::InsecureChannelCredentials(), args)));
  }
  ~EtcdBank() override {
    {
      std::lock_guard l(compact_mu_);
      stop_ = true;
    }
    compact_cv_.notify_all();
    if (compactor_.joinable()) compactor_.join();
  }

  // Keeps etcd's history bounded: every kCompactEveryS seconds, compacts it
  // to kKeepRevisions below the current revision (floe never reads old
  // revisions). Every node does it; compacting to a revision already
  // compacted is refused by etcd and ignored here.
  void StartCompactor() {
    compactor_ = std::thread([this] {
      std::unique_lock l(compact_mu_);
      while (!compact_cv_.wait_for(l, std::chrono::seconds(kCompactEveryS), [&] { return stop_; })) {
        l.unlock();
        (void)CompactOnce();
        l.lock();
      }
    });
  }

  Status CompactOnce() {
    etcdserverpb::RangeRequest req;
    req.set_key(prefix_);
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_IF_ERROR(Call([&](KV::Stub& s, grpc::ClientContext* c) { return s.Range(c, req, &resp); }));
    const int64_t revision = resp.header().revision() - kKeepRevisions;
    if (revision <= 0) return Status::OK();
    etcdserverpb::CompactionRequest creq;
    creq.set_revision(revision);
    etcdserverpb::CompactionResponse cresp;
    Status s = Call([&](KV::Stub& st, grpc::ClientContext* c) { return st.Compact(c, creq, &cresp); });
    return s.code() == ErrorCode::kInvalidArgument ? Status::OK() : s;  // already compacted past it
  }

  Result<Versioned> Get(std::string_view key) override {
    etcdserverpb::RangeRequest req;
    req.set_key(prefix_ + std::string(key));
    etcdserverpb::RangeResponse resp;
    FLOE_RETURN_ERR_IF_ERROR(Call([&](KV::Stub& s, grpc::ClientContext* c) { return s.Range(c, req, &resp); }));
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
    FLOE_RETURN_ERR_IF_ERROR(Call([&](KV::Stub& s, grpc::ClientContext* c) { return s.Range(c, req, &resp); }));
    std::vector<KeyValue> out;
    out.reserve(resp.kvs_size());
    for (const auto& kv : resp.kvs())
      out.push_back({kv.key().substr(prefix_.size()), kv.value(), static_cast<uint64_t>(kv.mod_revision())});
    return out;
  }

  Result<std::vector<uint64_t>> Commit(std::span<const Op> ops) override {
    std::vector<uint64_t> versions(ops.size(), 0);
    if (ops.empty()) return versions;
    if (ops.size() > kMaxTxnOps)
      return Err(Status::InvalidArgument(
          fmt::format("a commit of {} ops exceeds etcd's {} per transaction", ops.size(), kMaxTxnOps)));
    etcdserverpb::TxnRequest req;
    for (const Op& op : ops) {
      const std::string key = prefix_ + op.key;
      if (op.expected_version) {
        Compare* c = req.add_compare();
        c->set_key(key);
        c->set_result(Compare::EQUAL);
        if (*op.expected_version == 0) {
          c->set_target(Compare::CREATE);
          c->set_create_revision(0);
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
    FLOE_RETURN_ERR_IF_ERROR(Call([&](KV::Stub& s, grpc::ClientContext* c) { return s.Txn(c, req, &resp); }));
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
      grpc::Status s = rpc(*stubs_[i], &ctx);
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

  static constexpr int kCompactEveryS = 300;
  static constexpr int64_t kKeepRevisions = 100000;
  const std::vector<std::string> endpoints_;
  const std::string prefix_;
  std::mutex compact_mu_;
  std::condition_variable compact_cv_;
  bool stop_ = false;  // guarded by compact_mu_
  std::thread compactor_;
  std::vector<std::unique_ptr<KV::Stub>> stubs_;
  std::atomic<size_t> current_{0};

 public:
  std::atomic<bool> retry_{true};  // false: one round of the endpoints, no waiting
};

}  // namespace

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
