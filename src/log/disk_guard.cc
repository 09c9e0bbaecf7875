#include "log/disk_guard.h"

#include <cstdio>

#include <fmt/format.h>

#include "base/logging.h"

namespace floe::log {

DiskGuard::DiskGuard(DiskGuardOptions options)
    : options_(std::move(options)),
      env_(options_.env ? options_.env : Env::Default()),
      reserve_path_(options_.dir + "/" + kReserveName),
      probe_path_(options_.dir + "/" + kProbeName) {}

void DiskGuard::Log(const std::string& line) {
  if (options_.logger) options_.logger(line);
  else logging::Warn("disk.space", line, {{"dir", options_.dir}});
}

Status DiskGuard::CreateReserve() {
  if (options_.reserve_bytes == 0) return Status::OK();
  if (env_->Exists(reserve_path_)) {
    // Whole, or left short by a crash between creating and allocating it
    // (then made whole now; a full disk says so).
    auto f = env_->Open(reserve_path_, {.writable = true});
    if (f) {
      auto size = (*f)->Size();
      if (size && *size >= options_.reserve_bytes) {
        reserve_held_ = true;
        return Status::OK();
      }
      Status s = (*f)->Allocate(0, options_.reserve_bytes);
      if (s.ok()) s = (*f)->Sync();
      if (s.ok()) reserve_held_ = true;
      return s;
    }
    reserve_held_ = true;
    return Status::OK();
  }
  auto f = env_->Open(reserve_path_, {.create = true, .exclusive = true, .writable = true});
  if (!f) {
    // Another node on the same directory made it first: it is there.
    if (env_->Exists(reserve_path_)) {
      reserve_held_ = true;
      return Status::OK();
    }
    return f.error();
  }
  Status s = (*f)->Allocate(0, options_.reserve_bytes);
  if (s.ok()) s = (*f)->Sync();
  f->reset();
  if (s.ok()) s = env_->SyncDir(options_.dir);
  if (!s.ok()) {
    (void)env_->Remove(reserve_path_);
    return s;
  }
  reserve_held_ = true;
  return Status::OK();
}

Status DiskGuard::Init() {
  FLOE_RETURN_IF_ERROR(env_->CreateDir(options_.dir));
  MutexLock l(&mu_);
  Status s = CreateReserve();
  if (s.code() == ErrorCode::kNoSpace) {
    need_ = options_.reserve_bytes;
    what_ = "creating the disk reserve";
    full_.store(true, std::memory_order_release);
    Log(fmt::format("the disk is too full for the reserve of {} bytes ({}); streams refuse writes until it fits",
                    options_.reserve_bytes, s.ToString()));
    return Status::OK();
  }
  return s;
}

Status DiskGuard::Admit() const {
  if (!full_.load(std::memory_order_acquire)) return Status::OK();
  MutexLock l(&mu_);
  return Status::NoSpace(fmt::format(
      "disk full: {} failed with ENOSPC; writes resume once {} bytes are free on the disk of {} "
      "(a new segment plus the {}-byte reserve); retry later",
      what_, need_ + options_.reserve_bytes, options_.dir, options_.reserve_bytes));
}

uint64_t DiskGuard::need() const {
  MutexLock l(&mu_);
  return need_ + options_.reserve_bytes;
}

void DiskGuard::Full(const std::string& what, uint64_t need) {
  MutexLock l(&mu_);
  need_ = std::max(need_, need);
  what_ = what;
  if (full_.exchange(true, std::memory_order_acq_rel)) return;
  last_probe_us_ = static_cast<int64_t>(env_->NowMicros());
  std::string released = "no reserve held";
  if (reserve_held_) {
    Status s = env_->Remove(reserve_path_);
    if (s.ok()) s = env_->SyncDir(options_.dir);
    reserve_held_ = !s.ok() && env_->Exists(reserve_path_);
    released = s.ok() ? fmt::format("released the {}-byte reserve for the bank", options_.reserve_bytes)
                      : "releasing the reserve failed: " + s.ToString();
  }
  Log(fmt::format("disk full ({}); {}; streams refuse writes until {} bytes are free", what, released,
                  need_ + options_.reserve_bytes));
}

bool DiskGuard::Probe() {
  if (!full_.load(std::memory_order_acquire)) return true;
  MutexLock l(&mu_);
  const int64_t now = static_cast<int64_t>(env_->NowMicros());
  if (now - last_probe_us_ < options_.probe_interval_us) return false;
  last_probe_us_ = now;
  // The room a writer needs and the reserve together, as one file
  // fallocated to that size and removed — and only then the reserve taken
  // back, so a disk with room for the reserve but not for writers keeps its
  // space for the bank.
  const uint64_t probe = need_ + (reserve_held_ ? 0 : options_.reserve_bytes);
  if (probe > 0) {
    auto f = env_->Open(probe_path_, {.create = true, .writable = true});
    if (!f) return false;
    Status s = (*f)->Allocate(0, probe);
    f->reset();
    (void)env_->Remove(probe_path_);
    if (!s.ok()) return false;
  }
  if (!reserve_held_ && !CreateReserve().ok()) return false;
  full_.store(false, std::memory_order_release);
  Log(fmt::format("disk has room again ({} bytes free for writers, reserve restored); streams accept writes", need_));
  need_ = 0;
  return true;
}

}  // namespace floe::log
