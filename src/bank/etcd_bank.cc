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
#include "bank/etcd_internal.h"

namespace floe::bank {

using etcd::EtcdBank;

namespace etcd {

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

}  // namespace etcd

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
