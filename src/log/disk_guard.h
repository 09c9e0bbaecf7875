// The disk guard: one per data directory, shared by the streams on it (and
// made privately by a stream opened without one). It knows whether the disk
// is full, and it holds the reserve: a file of `reserve_bytes` fallocated in
// the data directory while the disk has room, removed when a stream hits
// ENOSPC so that what else writes to that disk — the SQLite bank's WAL,
// above all: lease renewals, cursors, answers — still finds space.
//
// States, moved by Full() and Probe():
//   clear  --Full()-->  full (the reserve is removed, Admit() refuses)
//   full   --Probe() finds the reserve restored and `need` bytes free-->  clear
// While full, every stream sharing the guard refuses appends with NoSpace
// (retriable; wire DISK_FULL) instead of writing into the space the reserve
// gave back. Why that is only mostly sound: the reserve protects the bank
// from this node's segments, not from other processes or from blob files of
// large messages (docs/operations.md).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "base/env.h"
#include "base/mutex.h"
#include "base/status.h"

namespace floe::log {

struct DiskGuardOptions {
  Env* env = nullptr;            // nullptr: Env::Default()
  std::string dir;               // the data directory (created if missing)
  uint64_t reserve_bytes = 0;    // 0: no reserve file
  int64_t probe_interval_us = 1'000'000;  // Probe does its work at most this often
  std::function<void(const std::string&)> logger;  // nullptr: stderr
};

class DiskGuard {
 public:
  static constexpr char kReserveName[] = "floe.reserve";
  static constexpr char kProbeName[] = "floe.space-probe";

  explicit DiskGuard(DiskGuardOptions options);

  // Creates the reserve file if it is missing (an existing one, another
  // node's on the same directory, is kept). A disk too full for it is not an
  // error: the guard starts full and Probe tries again.
  Status Init() EXCLUDES(mu_);

  // OK, or NoSpace naming the free space needed while the disk is full.
  // Cheap: one atomic load while clear.
  Status Admit() const EXCLUDES(mu_);
  bool full() const { return full_.load(std::memory_order_acquire); }

  // A write on the disk failed with ENOSPC (`what` says which) and `need`
  // bytes free would let the writer go on. Removes the reserve (once).
  void Full(const std::string& what, uint64_t need) EXCLUDES(mu_);

  // While full, at most once per probe interval: restores the reserve, then
  // checks that `need` more bytes can be allocated (a probe file, fallocated
  // and removed). Clears the guard when both succeed. Returns !full().
  bool Probe() EXCLUDES(mu_);

  const std::string& reserve_path() const { return reserve_path_; }
  uint64_t need() const EXCLUDES(mu_);

 private:
  Status CreateReserve() REQUIRES(mu_);
  void Log(const std::string& line);

  const DiskGuardOptions options_;
  Env* const env_;
  const std::string reserve_path_;
  const std::string probe_path_;
  std::atomic<bool> full_{false};
  mutable Mutex mu_;
  bool reserve_held_ GUARDED_BY(mu_) = false;  // this guard made or found the reserve and has not removed it
  uint64_t need_ GUARDED_BY(mu_) = 0;
  std::string what_ GUARDED_BY(mu_);
  int64_t last_probe_us_ GUARDED_BY(mu_) = 0;
};

}  // namespace floe::log
