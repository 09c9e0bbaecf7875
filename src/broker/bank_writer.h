#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bank/bank.h"
#include "base/mutex.h"
#include "metrics/metrics.h"

namespace floe::broker {

struct ConsumerGroup;

// Writes a node's bank records (cursors, sessions) in batches: every write
// asked for while a commit runs goes into the next one (group commit, as the
// log does). Each record belongs to a stream; a commit carries the fence of
// every stream it touches (the stream's lease, FencedBy), so a node that lost
// a stream cannot change its records.
class BankWriter {
 public:
  // The value to write, taken on the writer thread at commit time (so later
  // changes coalesce); nullopt deletes the key.
  using Encode = std::function<std::optional<std::string>()>;
  // The fence op for a stream's records, or nullopt if the node does not own
  // the stream (its writes then fail with Aborted).
  using Fence = std::function<std::optional<bank::Op>(const std::string& stream)>;

  // `commit_ns` and `failures` (may be null) time and count every commit.
  BankWriter(bank::Bank* bank, Fence fence, metrics::Histogram* commit_ns = nullptr,
             metrics::Counter* failures = nullptr);
  ~BankWriter();
  // Writes `key` as `encode()` returns when the writer takes it; `done` runs
  // on the writer thread after the commit. Without `done` the write is lazy:
  // it joins the next commit, at most kLazyDelay later.
  void Write(std::string key, const std::string& stream, Encode encode, std::function<void(Status)> done);
  void Persist(const std::string& stream, std::shared_ptr<ConsumerGroup> group, std::function<void(Status)> done);
  void Stop();  // writes what is queued, then stops
  uint64_t commits() const;
  uint64_t records() const;  // records written

 private:
  void Loop();
  struct Item {
    std::string key;
    std::string stream;
    Encode encode;
    std::function<void(Status)> done;
  };
  // Commits the items; each one's `done` gets the outcome of the commit
  // that carried it (failures are also logged).
  void CommitBatch(std::vector<Item>& items);
  static constexpr std::chrono::milliseconds kLazyDelay{100};
  static constexpr size_t kMaxOpsPerCommit = 100;
  // etcd takes requests up to 1.5 MiB; a commit stays well below.
  static constexpr size_t kMaxBytesPerCommit = 1 << 20;
  // bank_->Commit, timed and counted.
  Result<std::vector<uint64_t>> Commit(std::span<const bank::Op> ops);
  bank::Bank* bank_;
  Fence fence_;
  metrics::Histogram* const commit_ns_;
  metrics::Counter* const failures_;
  mutable Mutex mu_;
  CondVar cv_;                                              // the writer waits on it
  std::vector<Item> queue_ GUARDED_BY(mu_);                 // urgent, in order
  std::map<std::string, Item> lazy_ GUARDED_BY(mu_);        // by key
  std::chrono::steady_clock::time_point lazy_since_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t commits_ GUARDED_BY(mu_) = 0;
  uint64_t records_ GUARDED_BY(mu_) = 0;
  std::thread thread_;  // started in the constructor, joined by Stop
};

}  // namespace floe::broker
