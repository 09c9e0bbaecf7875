// The information bank: the shared store of everything that must outlive one
// node process — stream definitions, consumer cursors, sessions, and (for
// clusters) leases with fencing epochs. One interface, several backends:
// SQLite (default; several processes on one host share one file) and etcd.
//
// Keys are byte strings ordered bytewise; floe's keys are '/'-separated paths
// (docs/bank.md). Every key has a version: 0 means absent; each write of a
// key gives it a new version, greater than any version the bank issued
// before (so versions also order writes).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace floe::bank {

struct Versioned {
  std::string value;
  uint64_t version = 0;
};

struct KeyValue {
  std::string key;
  std::string value;
  uint64_t version = 0;
};

// One operation of an atomic Commit.
struct Op {
  // kCheckCreated compares the key's creation version instead (backends
  // with native leases fence on it: see Bank::FencedBy).
  enum class Kind : uint8_t { kPut, kDelete, kCheck, kCheckCreated };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;                        // kPut
  std::optional<uint64_t> expected_version; // compare first: 0 = must be absent
  static Op Put(std::string key, std::string value, std::optional<uint64_t> expected = std::nullopt) {
    return {Kind::kPut, std::move(key), std::move(value), expected};
  }
  static Op Delete(std::string key, std::optional<uint64_t> expected = std::nullopt) {
    return {Kind::kDelete, std::move(key), {}, expected};
  }
  // Only compares (fails the commit unless the key has this version).
  static Op Check(std::string key, uint64_t expected) { return {Kind::kCheck, std::move(key), {}, expected}; }
  static Op CheckCreated(std::string key, uint64_t created) {
    return {Kind::kCheckCreated, std::move(key), {}, created};
  }
};

// A lock in the bank: one owner at a time until it expires or is released.
// The fencing epoch grows at every new holder; a node that lost its lease
// (paused, partitioned) cannot write with it any more: see FencedBy.
//
// Two implementations (docs/bank.md "Leases"):
//  * records (SQLite): a compare-and-set record judged by the callers' wall
//    clocks; epoch 1 for the first holder, +1 for each new one.
//  * native (etcd): the lock is a key attached to an etcd lease that the
//    bank handle keeps alive (one per owner, one keep-alive stream per
//    handle); etcd deletes it when the keep-alives stop. The epoch is the
//    key's create_revision; renewals do not change it. expires_ms is
//    kHeldByBank while the key exists: etcd, not a clock, decides expiry.
struct Lease {
  std::string name;        // what is locked, e.g. "streams/orders"
  std::string owner;       // e.g. a node id
  uint64_t epoch = 0;      // grows at each new holder (records: +1)
  int64_t expires_ms = 0;  // wall clock, ms since the epoch; 0: released
  uint64_t version = 0;    // bank version of the lease record (internal)
  // Native leases: steady-clock ms (std::chrono::steady_clock) before which
  // the bank cannot have expired it, as of the last keep-alive it answered;
  // a holder must stop acting by then. 0: not known (records).
  int64_t alive_until_steady_ms = 0;
};
inline constexpr int64_t kHeldByBank = INT64_MAX;
// Where every backend keeps the lock of lease `name`: kLeasePrefix + name.
inline constexpr std::string_view kLeasePrefix = "leases/";
// streams/<name>: a stream's config. The broker writes it; the cluster
// lists and watches it to know which streams exist.
inline constexpr std::string_view kStreamsPrefix = "streams/";
std::string LeaseKey(std::string_view name);

class Bank {
 public:
  virtual ~Bank() = default;

  // NotFound if the key is absent.
  virtual Result<Versioned> Get(std::string_view key) = 0;
  // Every key starting with prefix, in key order.
  virtual Result<std::vector<KeyValue>> List(std::string_view prefix) = 0;
  // Applies every op atomically and durably, or none: Aborted if any
  // expected_version does not match (nothing written). Returns the new
  // version of each op's key (0 for deletes and checks).
  virtual Result<std::vector<uint64_t>> Commit(std::span<const Op> ops) = 0;

  // Conveniences over Commit.
  Result<uint64_t> Put(std::string key, std::string value, std::optional<uint64_t> expected = std::nullopt);
  Status Delete(std::string key, std::optional<uint64_t> expected = std::nullopt);

  // Leases (the lock lives at "leases/<name>"). The defaults are records
  // built on compare-and-set; a backend with native leases overrides them all.
  //
  // Takes `name` for `owner` if it is free, expired, released, or already
  // held by `owner` (then it is renewed, same epoch). Unavailable if another
  // owner holds it. Records: held until now_ms + ttl_ms, `now_ms` being the
  // caller's wall clock (every holder of one bank must share a clock, or
  // rely on epochs alone for safety). Native: held while the handle keeps
  // its etcd lease (TTL ttl_ms, rounded up to seconds) alive.
  virtual Result<Lease> AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms,
                                     int64_t now_ms);
  // Extends a held lease (native: checks it is still held). Aborted if it was
  // taken over (the epoch moved), released or expired; the caller must then
  // stop acting for it.
  virtual Result<Lease> RenewLease(const Lease& lease, int64_t ttl_ms, int64_t now_ms);
  // Renews every one of `leases` (one holder's, typically all of a node's)
  // at once: one result per lease, in order, each as RenewLease would give
  // it. Records: one Commit for all of them; if it aborts because some were
  // lost, the others are renewed again without them, so a lost lease costs
  // the others one more commit, not their lease. Native (etcd): one read of
  // every lock for all of them. The cost of keeping N leases is then one
  // bank round trip per renewal period, not N.
  virtual std::vector<Result<Lease>> RenewLeases(std::span<const Lease> leases, int64_t ttl_ms, int64_t now_ms);
  // Takes over `seen` (a lease as GetLease read it) for `seen.owner` at
  // once, expired or not, with a higher epoch, so that whoever held it
  // before is fenced (renewals and fenced writes with the earlier Lease fail
  // with Aborted). Only when the holder is proven gone: the successor of an
  // earlier process of that owner (a node restarted with its id after a
  // crash: the successor rule of docs/bank.md), or a node that proved the
  // holder dead and set `seen.owner` to itself (docs/cluster.md "Dead
  // peers"). For anyone else it would take a live holder's lease. Aborted if the lock changed since `seen` was read (renewed,
  // released, taken); Unavailable if another owner took it meanwhile
  // (native: the lock is deleted first, then taken as AcquireLease does).
  virtual Result<Lease> SucceedLease(const Lease& seen, int64_t ttl_ms, int64_t now_ms);
  // Gives the lease up (the next holder's epoch is higher). Aborted if it had
  // already been lost.
  virtual Status ReleaseLease(const Lease& lease);
  // The lease of `name`; NotFound if it was never taken (native: or is free).
  virtual Result<Lease> GetLease(std::string_view name);
  // Every lease whose name starts with `prefix`, in name order, with one
  // read (free native leases are absent, as GetLease says NotFound).
  virtual Result<std::vector<Lease>> ListLeases(std::string_view prefix);
  // An op that makes a Commit fail with Aborted unless `lease` is still held
  // by its holder at its epoch: a fenced write. Records: pass the Lease
  // returned by the latest Acquire/Renew (each renewal moves the record).
  // Native: any Lease of the same epoch.
  virtual Op FencedBy(const Lease& lease);

  // Calls `changed` (on a thread of the bank's) soon after a key under one of
  // `prefixes` is written or deleted, and with resync = true when changes may
  // have been missed (the watch was cut or history compacted): then the
  // caller should look again at everything. Stops when the returned handle is
  // destroyed (which waits for a call in progress: do not destroy it from
  // `changed`, nor while holding a lock `changed` takes). `changed` runs
  // with none of the bank's locks held. nullptr if the backend cannot watch
  // (callers poll).
  class Watch {
   public:
    virtual ~Watch() = default;
  };
  using WatchFn = std::function<void(std::string_view key, bool resync)>;
  virtual std::unique_ptr<Watch> WatchPrefixes(std::vector<std::string> prefixes, WatchFn changed) {
    (void)prefixes;
    (void)changed;
    return nullptr;
  }
};

// Opens (creating if missing) a SQLite bank file. Several processes may open
// the same file. Durable: a Commit that returned OK survives kill -9 and power
// loss (WAL, synchronous=FULL).
Result<std::unique_ptr<Bank>> OpenSqliteBank(const std::string& path);

// Opens a bank on etcd (v3 API): `endpoints` are HOST:PORT of its members,
// tried in turn; every key lives under `prefix` ("/floe/").
Result<std::unique_ptr<Bank>> OpenEtcdBank(const std::vector<std::string>& endpoints, const std::string& prefix);

// `url` with its etcd key prefix set to `prefix` ("/floe/"-like: it must
// start and end with '/'); InvalidArgument for a bank that is not etcd's.
Result<std::string> WithEtcdPrefix(const std::string& url, const std::string& prefix);

// Compacts an etcd bank's history to `keep_revisions` below the current
// revision now (the bank also does it every 5 minutes, keeping 100,000).
// InvalidArgument for another backend.
Status CompactEtcdHistory(Bank& bank, int64_t keep_revisions);

// Opens a bank from a URL: "sqlite:PATH" (or a bare path), or
// "etcd://HOST:PORT[,HOST:PORT…][/PREFIX/]" (prefix default /floe/).
Result<std::unique_ptr<Bank>> OpenBank(const std::string& url);

}  // namespace floe::bank
