// The streams a node serves, their durable consumers, and the group commit of
// consumer cursors to the bank.
//
// Bank keys (docs/bank.md):
//   streams/<name>               stream config
//   cursors/<stream>/<consumer>  Cursor::Encode()
//   sessions/<id:016x>           session record
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bank/bank.h"
#include "base/mutex.h"
#include "broker/bank_writer.h"
#include "broker/cursor.h"
#include "log/disk_guard.h"
#include "log/stream.h"
#include "model/types.h"

namespace floe::broker {

int64_t NowMs();  // wall clock, milliseconds since the epoch (timestamps, deadlines of deliveries)

using bank::kStreamsPrefix;  // bank keys: streams/<name>
inline constexpr std::string_view kCursorsPrefix = "cursors/";  // cursors/<stream>/<consumer>
std::string StreamKey(std::string_view name);

// One durable consumer of a stream, shared by its sessions (any thread).
// Hold `mu` while reading the log for a delivery so two sessions never take
// the same seqs.
struct ConsumerGroup {
  ConsumerGroup(std::string n, Cursor c) : name(std::move(n)), cursor(std::move(c)) {}
  const std::string name;
  Mutex mu;
  Cursor cursor GUARDED_BY(mu);
  // Seqs being moved to the dead-letter stream (off the consumer's lock):
  // not delivered again meanwhile.
  std::set<uint64_t> dead_lettering GUARDED_BY(mu);
};

class StreamEntry {
 public:
  StreamEntry(std::string name, StreamConfig config, std::unique_ptr<log::Stream> log);
  ~StreamEntry();

  const std::string& name() const { return name_; }
  const StreamConfig& config() const { return config_; }
  log::Stream& log() { return *log_; }

  // Whether this node may act for the stream now: it holds the stream's lease
  // and the lease is valid by the node's steady clock (cluster::SteadyMs).
  bool owned() const;
  void SetValidUntil(int64_t steady_ms) { valid_until_ms_.store(steady_ms); }
  // The node gave the stream up or lost it: owned() is false from now on.
  void MarkLost() { lost_.store(true); }
  // The node's last step (nothing calls log() any more): closes the log now
  // — what is pending is written and its callbacks run while the broker
  // core still exists — even if a session still holds the entry.
  void Shutdown();

  // Creates the consumer at `start_seq` if it does not exist yet.
  std::shared_ptr<ConsumerGroup> GetOrCreateConsumer(const std::string& name, uint64_t start_seq);
  std::vector<std::shared_ptr<ConsumerGroup>> Consumers();
  void AddLoadedConsumer(std::shared_ptr<ConsumerGroup> c);

  // One-shot: `fn` runs (on the log's writer thread) the next time the
  // frontier moves, or when the stream closes. Keep it cheap: post work.
  void AddFrontierWaiter(std::function<void()> fn);
  void WakeAll();

 private:
  void OnFrontier(uint64_t frontier);

  const std::string name_;
  const StreamConfig config_;
  std::unique_ptr<log::Stream> log_;
  std::atomic<int64_t> valid_until_ms_{0};  // fails closed: not owned until the cluster says so
  std::atomic<bool> lost_{false};
  Mutex mu_;
  std::map<std::string, std::shared_ptr<ConsumerGroup>> consumers_ GUARDED_BY(mu_);
  std::vector<std::function<void()>> waiters_ GUARDED_BY(mu_);
};

struct RegistryOptions {
  std::string data_dir;
  bool direct_io = true;
  uint32_t max_message_bytes = 8u << 20;  // node-wide cap
  // Streams' file layer (tests put a fault-injecting one here); nullptr: Env::Default().
  Env* env = nullptr;
  // The disk reserve kept in the data directory for the bank (log/disk_guard.h,
  // docs/operations.md); 0: none.
  uint64_t disk_reserve_bytes = kDefaultDiskReserveBytes;
  const log::LogMetrics* log_metrics = nullptr;  // every stream's writer updates these (null: none)
  static constexpr uint64_t kDefaultDiskReserveBytes = 32ull << 20;
};

// The streams this node serves (owns). Which streams it owns is the
// cluster's decision (src/cluster): the node opens and closes them here.
class Registry {
 public:
  // Creates the disk reserve in options.data_dir if it is missing (a disk
  // too full for it is logged, and its guard starts full).
  Registry(RegistryOptions options, bank::Bank* bank);
  ~Registry();
  // Opens a stream recorded in the bank (recovering its log from disk, which
  // takes the directory's file lock) and loads its cursors. NotFound if the
  // bank has no such stream; an IO error while another process holds the
  // directory lock.
  Result<std::shared_ptr<StreamEntry>> Open(const std::string& name);
  // Stops serving the stream: it leaves the registry; the log closes when
  // the last user lets go of the entry.
  std::shared_ptr<StreamEntry> Close(const std::string& name);
  // Records a new stream in the bank and opens it. `fence`, if set, joins
  // the bank commits (the stream's lease).
  Result<std::shared_ptr<StreamEntry>> Create(const std::string& name, const StreamConfig& config,
                                              std::optional<bank::Op> fence = std::nullopt);
  Status Delete(const std::string& name, std::optional<bank::Op> fence = std::nullopt);
  std::shared_ptr<StreamEntry> Get(const std::string& name);
  // Closes every stream: each writes what is pending and runs its callbacks.
  void CloseAll();

 private:
  Result<std::shared_ptr<StreamEntry>> OpenStream(const std::string& name, const StreamConfig& config);

  const RegistryOptions options_;
  bank::Bank* bank_;
  // One per data directory: every stream here shares it (a full disk stops
  // them all, and its reserve is released once).
  std::shared_ptr<log::DiskGuard> disk_guard_;
  Mutex mu_;  // held across create/delete
  std::map<std::string, std::shared_ptr<StreamEntry>> streams_ GUARDED_BY(mu_);
};

// The stream record in the bank (docs/cluster.md): version 1, or 2 when the
// stream is bound to MQTT topic filters.
std::string EncodeStreamConfig(const StreamConfig& c);
Result<StreamConfig> DecodeStreamConfig(std::string_view bytes);
// A stream's MQTT topic filters (`--mqtt-topics`): each a valid topic filter
// (mqtt/topic.h, not "$share/"), none twice, at most kMaxMqttTopics.
inline constexpr size_t kMaxMqttTopics = 64;
Status ValidateMqttTopics(const std::vector<std::string>& filters);
std::string CursorKey(const std::string& stream, const std::string& consumer);

}  // namespace floe::broker
