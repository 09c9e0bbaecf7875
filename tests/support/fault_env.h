// FaultEnv: an in-memory floe::Env that models what survives a power failure
// and injects I/O faults (after google/leveldb: db/fault_injection_test.cc).
//
// The model:
//  * A file has the bytes readers see (the page cache) and its durable bytes.
//    File::Sync (fdatasync) makes the first the second. Truncate and size
//    changes are durable only after a Sync as well.
//  * A directory entry (created, removed, renamed file) is durable only after
//    SyncDir of its directory: a file created but never dir-synced vanishes at
//    a crash, a removal never dir-synced comes back. Directories themselves are
//    durable as soon as CreateDir returns (a simplification: the log never
//    creates one it depends on without also writing into it).
//  * A failed Sync behaves like Linux (the "fsyncgate" rule): the dirty bytes
//    it failed to write are forgotten by write-back, so a later successful Sync
//    does not make them durable unless they are written again.
//  * Crash() is the machine losing power: every file reverts to its durable
//    bytes, optionally keeping some of its unsynced bytes (see CrashMode); every
//    open File and FileLock goes stale; and the env stays *down* (every call
//    fails with kIOError) until Restart(). The owner destroys whatever still
//    uses the old handles (the dead "process") between Crash() and Restart(),
//    so nothing it does after the crash reaches the post-crash disk. A crash
//    with power_loss = false is kill -9 of the process alone: the same, except
//    that every file and entry stays as it was (unsynced, in the page cache).
//
// Thread safety: every method, of the env, its files and its locks, may be
// called from any thread; one mutex guards all state. Files and locks hold a
// raw pointer to their env: the env must outlive them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/env.h"

namespace floe::test {

// What a crash keeps of each file's unsynced bytes: those from the first byte
// that differs from the durable image to the end of the file.
enum class CrashMode {
  kDropUnsynced,  // nothing: every file is exactly its durable image
  kKeepPrefix,    // a random prefix of the unsynced bytes
  kTearTail,      // a random strict prefix, then garbage (bytes that differ from
                  // what was written) over part of the rest
  kZeroTail,      // a random strict prefix, then zeros over part of the rest
                  // (blocks allocated but never written)
  kSparsePages,   // each 4 KiB page of the unsynced bytes independently (out of
                  // order write-back); lost pages read as the old bytes or zeros
  kRandom,        // one of kDropUnsynced..kZeroTail, chosen per file
};

const char* CrashModeName(CrashMode mode);

struct CrashOptions {
  CrashMode mode = CrashMode::kDropUnsynced;
  uint64_t seed = 0;  // drives every random choice of the crash
  // false: only the process dies (kill -9), the machine does not: the page
  // cache survives, every byte written stays (still unsynced), every entry
  // stays; handles and locks die as with a power loss. `mode` is unused.
  bool power_loss = true;
};

struct FaultEnvOptions {
  // Honour OpenOptions::direct: such files report direct() == true and refuse
  // (EINVAL) any read or write whose offset, length or buffer is not aligned
  // to kDirectIoAlignment, counting it in alignment_violations().
  bool support_direct = false;
  // Apply the Linux rule for failed fdatasync (see above). false: a failed
  // Sync leaves the bytes dirty, so a later Sync can still persist them.
  bool forget_on_failed_sync = true;
};

// Makes WriteAt fail after `after_bytes` more bytes have been written (to any
// file whose path contains path_filter). The write that crosses the budget
// writes only the prefix that fits (a short write) and returns `error`.
struct WriteFault {
  int error = 5;              // errno: EIO (5) or ENOSPC (28)
  uint64_t after_bytes = 0;   // 0: the next write writes nothing and fails
  bool sticky = false;        // keep failing every later write (a full disk);
                              // a sticky ENOSPC also fails Allocate calls
                              // larger than what is left
  std::string path_filter;    // "" = every file
};

class FaultEnv final : public Env {
 public:
  static constexpr int kForever = -1;

  explicit FaultEnv(FaultEnvOptions options = {});
  ~FaultEnv() override;
  FaultEnv(const FaultEnv&) = delete;
  FaultEnv& operator=(const FaultEnv&) = delete;

  // --- Env ---
  Result<std::unique_ptr<File>> Open(const std::string& path, const OpenOptions& options) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status CreateDir(const std::string& dir) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  bool Exists(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> Lock(const std::string& path) override;
  uint64_t NowMicros() override;

  // --- Crashes ---
  // Loses power now (see the file comment). The env is down until Restart().
  // Injected faults and an armed CrashAtSync are cleared: the machine comes
  // back healthy unless the test injects again.
  void Crash(CrashOptions options = {});
  // Powers the machine back on: calls work again on the post-crash state.
  void Restart();
  bool down() const;
  uint64_t crashes() const;
  // Crashes from inside the `nth` (1-based) File::Sync call from now, before
  // that Sync persists anything; the Sync itself fails. Lets a test crash with
  // a known unsynced tail. Replaces any earlier arming.
  void CrashAtSync(int nth, CrashOptions options);
  // Waits until the env has crashed `count` times in all; false on timeout.
  bool WaitForCrashes(uint64_t count, uint64_t timeout_ms);

  // --- Pausing ---
  // While paused, File::Sync calls block on entry (before anything else), so
  // a test can let appends pile up behind a sync in progress; the env's mutex
  // is released while they wait. ResumeSyncs lets them go on.
  void PauseSyncs();
  void ResumeSyncs();
  // Waits until `count` Sync calls are blocked by PauseSyncs.
  void WaitForPausedSyncs(int count);

  // --- Faults (each replaces the earlier one of its kind) ---
  // Fails `count` File::Sync calls (kForever: every one) after letting `skip`
  // succeed, with `error` (errno), on files whose path contains path_filter.
  void FailSyncs(int count, int skip = 0, int error = 5, std::string path_filter = "");
  void FailDirSyncs(int count, int skip = 0, int error = 5);
  void InjectWriteFault(WriteFault fault);
  // Clears every injected fault and any armed crash.
  void ClearFaults();
  // XORs `mask` into the byte at `offset`, in both the cached and the durable
  // image where they reach it (media corruption). NotFound / OutOfRange.
  Status FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0x01);

  // --- Inspection ---
  Result<std::string> Contents(const std::string& path) const;         // what reads see
  Result<std::string> DurableContents(const std::string& path) const;  // what a crash keeps
  // Files (full paths) in `dir`, live and durable entries.
  std::vector<std::string> Files(const std::string& dir) const;
  std::vector<std::string> DurableFiles(const std::string& dir) const;
  uint64_t sync_calls() const;    // File::Sync calls, failed ones included
  uint64_t failed_syncs() const;  // of which failed (injected or stale)
  uint64_t dir_syncs() const;     // successful SyncDir calls
  uint64_t bytes_written() const;
  uint64_t alignment_violations() const;

 private:
  friend class FaultFile;
  friend class FaultLock;

  struct Node {
    std::string data;     // what reads see
    std::string durable;  // what survives a crash
    // Lowest offset written (or truncated to) since the last Sync; UINT64_MAX
    // when clean. A Sync persists [dirty_from, end) and the size.
    uint64_t dirty_from = UINT64_MAX;
  };
  struct SyncFault {
    int count = 0;  // kForever, or how many more to fail
    int skip = 0;
    int error = 5;
    std::string path_filter;
  };

  // All below require mu_.
  Status CheckUp(const std::string& what) const;
  bool ParentExists(const std::string& path) const;
  // True if this Sync (of `path`) is to fail; consumes the fault.
  bool TakeSyncFault(SyncFault* fault, const std::string& path, int* error);
  // Shrinks *len to what the write fault lets through; sets *error if the
  // write is to fail.
  void TakeWriteFault(const std::string& path, size_t* len, int* error);
  void CrashLocked(const CrashOptions& options);
  void LosePowerLocked(const CrashOptions& options);
  void ClearFaultsLocked();

  const FaultEnvOptions options_;
  mutable std::mutex mu_;
  std::condition_variable crashed_cv_;
  std::map<std::string, std::shared_ptr<Node>> files_;          // live entries
  std::map<std::string, std::shared_ptr<Node>> durable_files_;  // entries a crash keeps
  std::set<std::string> dirs_;
  std::map<std::string, uint64_t> locks_;  // path -> token of the holder
  uint64_t next_lock_token_ = 1;
  uint64_t epoch_ = 0;  // bumped by each crash: older handles are stale
  bool down_ = false;
  uint64_t crashes_ = 0;

  SyncFault sync_fault_;
  SyncFault dir_sync_fault_;
  bool write_fault_armed_ = false;
  WriteFault write_fault_;
  uint64_t write_budget_ = 0;
  bool syncs_paused_ = false;
  int paused_syncs_ = 0;  // Sync calls blocked now
  std::condition_variable pause_cv_;
  int crash_at_sync_ = 0;  // 0: not armed
  CrashOptions crash_at_sync_options_;

  uint64_t sync_calls_ = 0;
  uint64_t failed_syncs_ = 0;
  uint64_t dir_syncs_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t alignment_violations_ = 0;
};

}  // namespace floe::test
