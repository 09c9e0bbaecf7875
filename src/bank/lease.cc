// Leases over any bank's compare-and-set (docs/bank.md "Leases").
#include <fmt/format.h>

#include "bank/bank.h"
#include "base/codec.h"

namespace floe::bank {
namespace {

constexpr uint8_t kLeaseEncodingVersion = 1;

std::string EncodeLease(const Lease& l) {
  std::string out;
  Encoder e(&out);
  e.U8(kLeaseEncodingVersion);
  e.String(l.owner);
  e.U64(l.epoch);
  e.I64(l.expires_ms);
  return out;
}

Result<Lease> DecodeLease(std::string_view name, const Versioned& v) {
  Decoder d({v.value.data(), v.value.size()});
  if (d.U8() != kLeaseEncodingVersion) return Err(Status::Corruption("unknown lease encoding"));
  Lease l;
  l.name = std::string(name);
  l.owner = std::string(d.String());
  l.epoch = d.U64();
  l.expires_ms = d.I64();
  l.version = v.version;
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption(fmt::format("lease {}: {}", name, s.message())));
  return l;
}

}  // namespace

std::string LeaseKey(std::string_view name) { return fmt::format("{}{}", kLeasePrefix, name); }

Result<Lease> Bank::GetLease(std::string_view name) {
  auto v = Get(LeaseKey(name));
  if (!v) return Err(v.error());
  return DecodeLease(name, *v);
}

Result<std::vector<Lease>> Bank::ListLeases(std::string_view prefix) {
  auto kvs = List(LeaseKey(prefix));
  if (!kvs) return Err(kvs.error());
  std::vector<Lease> out;
  out.reserve(kvs->size());
  for (const KeyValue& kv : *kvs) {
    const std::string_view name = std::string_view(kv.key).substr(kLeasePrefix.size());
    auto l = DecodeLease(name, Versioned{kv.value, kv.version});
    if (!l) return Err(l.error());
    out.push_back(std::move(*l));
  }
  return out;
}

Result<Lease> Bank::AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms, int64_t now_ms) {
  if (owner.empty() || ttl_ms <= 0) return Err(Status::InvalidArgument("a lease needs an owner and a positive TTL"));
  for (int attempt = 0; attempt < 100; ++attempt) {
    Lease next;
    next.name = std::string(name);
    next.owner = std::string(owner);
    next.expires_ms = now_ms + ttl_ms;
    uint64_t expected = 0;
    auto current = GetLease(name);
    if (current) {
      expected = current->version;
      const bool live = current->expires_ms > now_ms;
      if (live && current->owner != owner)
        return Err(Status::Unavailable(fmt::format("lease {} is held by {} (epoch {}) for {} ms more", name,
                                                   current->owner, current->epoch, current->expires_ms - now_ms)));
      // Ours and live: a renewal. Otherwise a new holder: a higher epoch.
      next.epoch = live ? current->epoch : current->epoch + 1;
    } else if (current.error().IsNotFound()) {
      next.epoch = 1;
    } else {
      return Err(current.error());
    }
    auto r = Put(LeaseKey(name), EncodeLease(next), expected);
    if (r) {
      next.version = *r;
      return next;
    }
    if (r.error().code() != ErrorCode::kAborted) return Err(r.error());
    // Someone changed it between our read and our write: look again.
  }
  return Err(Status::Unavailable(fmt::format("lease {}: too much contention", name)));
}

Result<Lease> Bank::RenewLease(const Lease& lease, int64_t ttl_ms, int64_t now_ms) {
  Lease next = lease;
  next.expires_ms = now_ms + ttl_ms;
  auto r = Put(LeaseKey(lease.name), EncodeLease(next), lease.version);
  if (!r) {
    if (r.error().code() == ErrorCode::kAborted) {
      // A backend that retried our write after a lost reply (etcd) sees its
      // own first attempt: the record is exactly what we wrote.
      auto current = GetLease(lease.name);
      if (current && current->owner == next.owner && current->epoch == next.epoch &&
          current->expires_ms == next.expires_ms)
        return *current;
      return Err(Status::Aborted(fmt::format("lease {} (epoch {}) was lost", lease.name, lease.epoch)));
    }
    return Err(r.error());
  }
  next.version = *r;
  return next;
}

std::vector<Result<Lease>> Bank::RenewLeases(std::span<const Lease> leases, int64_t ttl_ms, int64_t now_ms) {
  std::vector<Result<Lease>> out(leases.size(), Err(Status::Aborted("not renewed")));
  std::vector<size_t> todo(leases.size());
  for (size_t i = 0; i < leases.size(); ++i) todo[i] = i;
  // Each round commits every renewal still to do; an abort means at least
  // one record moved: those are found (a read each) and the rest retried.
  for (int round = 0; !todo.empty() && round < 3; ++round) {
    if (todo.size() == 1) {
      out[todo[0]] = RenewLease(leases[todo[0]], ttl_ms, now_ms);
      return out;
    }
    std::vector<Op> ops;
    std::vector<Lease> next;
    ops.reserve(todo.size());
    next.reserve(todo.size());
    for (size_t i : todo) {
      Lease n = leases[i];
      n.expires_ms = now_ms + ttl_ms;
      ops.push_back(Op::Put(LeaseKey(n.name), EncodeLease(n), n.version));
      next.push_back(std::move(n));
    }
    auto r = Commit(ops);
    if (r) {
      for (size_t k = 0; k < todo.size(); ++k) {
        next[k].version = (*r)[k];
        out[todo[k]] = std::move(next[k]);
      }
      return out;
    }
    if (r.error().code() != ErrorCode::kAborted) {
      for (size_t i : todo) out[i] = Err(r.error());
      return out;
    }
    // Which moved? Those are lost (or, on a backend that retried a write
    // whose reply was lost, renewed already: RenewLease tells).
    std::vector<size_t> still;
    for (size_t i : todo) {
      auto current = GetLease(leases[i].name);
      if (current && current->version == leases[i].version) still.push_back(i);
      else out[i] = RenewLease(leases[i], ttl_ms, now_ms);
    }
    todo.swap(still);
  }
  for (size_t i : todo) out[i] = RenewLease(leases[i], ttl_ms, now_ms);
  return out;
}

// A new holder's record, as AcquireLease writes for an expired lease, but
// without waiting for the expiry: the compare on `seen`'s version makes it
// fail if anyone renewed or took the lease since it was read.
Result<Lease> Bank::SucceedLease(const Lease& seen, int64_t ttl_ms, int64_t now_ms) {
  if (seen.owner.empty() || ttl_ms <= 0 || seen.version == 0)
    return Err(Status::InvalidArgument("a lease to succeed needs an owner, a TTL and the record's version"));
  Lease next;
  next.name = seen.name;
  next.owner = seen.owner;
  next.epoch = seen.epoch + 1;
  next.expires_ms = now_ms + ttl_ms;
  auto r = Put(LeaseKey(seen.name), EncodeLease(next), seen.version);
  if (!r) {
    if (r.error().code() != ErrorCode::kAborted) return Err(r.error());
    // A backend that retried our write after a lost reply sees its own
    // first attempt: the record is exactly what we wrote.
    auto current = GetLease(seen.name);
    if (current && current->owner == next.owner && current->epoch == next.epoch &&
        current->expires_ms == next.expires_ms)
      return *current;
    return Err(Status::Aborted(fmt::format("lease {} moved since it was read (epoch {})", seen.name, seen.epoch)));
  }
  next.version = *r;
  return next;
}

Status Bank::ReleaseLease(const Lease& lease) {
  Lease released = lease;
  released.expires_ms = 0;
  auto r = Put(LeaseKey(lease.name), EncodeLease(released), lease.version);
  if (!r && r.error().code() == ErrorCode::kAborted)
    return Status::Aborted(fmt::format("lease {} (epoch {}) was already lost", lease.name, lease.epoch));
  return r ? Status::OK() : r.error();
}

Op Bank::FencedBy(const Lease& lease) { return Op::Check(LeaseKey(lease.name), lease.version); }

}  // namespace floe::bank
