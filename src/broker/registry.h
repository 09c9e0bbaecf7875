// The streams a node serves, their durable consumers, and the group commit of
// consumer cursors to the bank.
//
// Bank keys (docs/bank.md):
//   streams/<name>               stream config
//   cursors/<stream>/<consumer>  Cursor::Encode()
//   sessions/<id:016x>           session record
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bank/bank.h"
#include "broker/cursor.h"
#include "log/stream.h"
#include "wire/protocol.h"

namespace floe::broker {

int64_t NowMs();  // wall clock, milliseconds since the epoch

// One durable consumer of a stream. `mu` guards cursor; hold it while reading
// the log for a delivery so two sessions never take the same seqs.
struct ConsumerGroup {
  std::string name;
  std::mutex mu;
  Cursor cursor;
};

class StreamEntry {
 public:
  StreamEntry(std::string name, wire::StreamConfig config, std::unique_ptr<log::Stream> log);
  ~StreamEntry();

  const std::string& name() const { return name_; }
  const wire::StreamConfig& config() const { return config_; }
  log::Stream& log() { return *log_; }

  // Creates the consumer at `start_seq` if it does not exist yet.
  std::shared_ptr<ConsumerGroup> GetOrCreateConsumer(const std::string& name, uint64_t start_seq);
  std::shared_ptr<ConsumerGroup> FindConsumer(const std::string& name);
  std::vector<std::shared_ptr<ConsumerGroup>> Consumers();
  void AddLoadedConsumer(std::shared_ptr<ConsumerGroup> c);

  // One-shot: `fn` runs (on the log's writer thread) the next time the
  // frontier moves, or when the stream closes. Keep it cheap: post work.
  void AddFrontierWaiter(std::function<void()> fn);
  void WakeAll();

 private:
  void OnFrontier(uint64_t frontier);

  const std::string name_;
  const wire::StreamConfig config_;
  std::unique_ptr<log::Stream> log_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<ConsumerGroup>> consumers_;  // guarded by mu_
  std::vector<std::function<void()>> waiters_;                      // guarded by mu_
};

// Persists cursors in batches: every request that arrives while a bank commit
// runs goes into the next one (group commit, as the log does).
class CursorFlusher {
 public:
  explicit CursorFlusher(bank::Bank* bank);
  ~CursorFlusher();
  // Persists the consumer's cursor as it is when the flusher takes it; `done`
  // runs on the flusher thread after the commit. Without `done` the write is
  // lazy: it joins the next commit, at most kLazyDelay later.
  void Persist(const std::string& stream, std::shared_ptr<ConsumerGroup> group, std::function<void(Status)> done);
  void Stop();  // persists what is queued, then stops
  uint64_t commits() const;

 private:
  void Loop();
  struct Item {
    std::string key;
    std::shared_ptr<ConsumerGroup> group;
    std::function<void(Status)> done;
  };
  static constexpr std::chrono::milliseconds kLazyDelay{100};
  bank::Bank* bank_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Item> queue_;
  std::map<std::string, std::shared_ptr<ConsumerGroup>> lazy_;
  std::chrono::steady_clock::time_point lazy_since_;
  bool stop_ = false;
  uint64_t commits_ = 0;
  std::thread thread_;
};

struct RegistryOptions {
  std::string data_dir;
  bool direct_io = true;
  uint32_t max_message_bytes = wire::kDefaultMaxMessageBytes;  // node-wide cap
};

class Registry {
 public:
  Registry(RegistryOptions options, bank::Bank* bank);
  ~Registry();
  // Opens every stream recorded in the bank and loads its cursors.
  Status Load();
  Result<std::shared_ptr<StreamEntry>> Create(const std::string& name, const wire::StreamConfig& config);
  Status Delete(const std::string& name);
  std::shared_ptr<StreamEntry> Get(const std::string& name);
  std::vector<std::string> List();
  // Closes every stream: each writes what is pending and runs its callbacks.
  void CloseAll();

 private:
  Result<std::shared_ptr<StreamEntry>> OpenStream(const std::string& name, const wire::StreamConfig& config);

  const RegistryOptions options_;
  bank::Bank* bank_;
  std::mutex mu_;  // guards streams_; held across create/delete
  std::map<std::string, std::shared_ptr<StreamEntry>> streams_;
};

std::string EncodeStreamConfig(const wire::StreamConfig& c);
Result<wire::StreamConfig> DecodeStreamConfig(std::string_view bytes);
std::string CursorKey(const std::string& stream, const std::string& consumer);

}  // namespace floe::broker
