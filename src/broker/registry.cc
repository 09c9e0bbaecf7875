#include "broker/registry.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "base/logging.h"
#include "model/limits.h"
#include "mqtt/topic.h"

namespace floe::broker {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {
// docs/cluster.md "The stream record": version 1 holds the pinned fields;
// version 2 adds the MQTT topic filters after them. A stream without
// filters is still written as version 1, which nodes of before read.
constexpr uint8_t kConfigEncodingVersion = 1;
constexpr uint8_t kConfigWithTopicsVersion = 2;
}  // namespace

std::string EncodeStreamConfig(const StreamConfig& c) {
  std::string out;
  Encoder e(&out);
  e.U8(c.mqtt_topics.empty() ? kConfigEncodingVersion : kConfigWithTopicsVersion);
  EncodeStreamConfigFields(e, c);
  if (!c.mqtt_topics.empty()) {
    e.U32(static_cast<uint32_t>(c.mqtt_topics.size()));
    for (const auto& t : c.mqtt_topics) e.String(t);
  }
  return out;
}

Result<StreamConfig> DecodeStreamConfig(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  const uint8_t version = d.U8();
  if (version != kConfigEncodingVersion && version != kConfigWithTopicsVersion)
    return Err(Status::Corruption("unknown stream config version"));
  StreamConfig c = DecodeStreamConfigFields(d);
  if (version == kConfigWithTopicsVersion) {
    const uint32_t n = d.Count(2);
    for (uint32_t i = 0; i < n && d.ok(); ++i) c.mqtt_topics.emplace_back(d.String());
  }
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption("stream config: " + std::string(s.message())));
  return c;
}

Status ValidateMqttTopics(const std::vector<std::string>& filters) {
  if (filters.size() > kMaxMqttTopics)
    return Status::InvalidArgument(fmt::format("at most {} MQTT topic filters per stream, got {}", kMaxMqttTopics,
                                               filters.size()));
  for (const auto& f : filters) {
    // The filter rules of SUBSCRIBE; "$share/..." names a group, not topics.
    Status s = ::floe::mqtt::ValidateTopicFilter(f, ::floe::mqtt::Version::kV311);
    if (!s.ok()) return Status::InvalidArgument(fmt::format("MQTT {}", s.message()));  // it names the filter
    if (f.starts_with("$share/"))
      return Status::InvalidArgument(fmt::format("MQTT topic filter \"{}\": a shared subscription is no topic filter", f));
    if (std::count(filters.begin(), filters.end(), f) > 1)
      return Status::InvalidArgument(fmt::format("MQTT topic filter \"{}\" given twice", f));
  }
  return Status::OK();
}

std::string StreamKey(std::string_view name) { return std::string(kStreamsPrefix) + std::string(name); }

std::string CursorKey(const std::string& stream, const std::string& consumer) {
  return fmt::format("{}{}/{}", kCursorsPrefix, stream, consumer);
}

// --- StreamEntry ---------------------------------------------------------------

StreamEntry::StreamEntry(std::string name, StreamConfig config, std::unique_ptr<log::Stream> log)
    : name_(std::move(name)), config_(std::move(config)), log_(std::move(log)) {
  log_->SetFrontierListener([this](uint64_t f) { OnFrontier(f); });
}

bool StreamEntry::owned() const {
  if (lost_.load(std::memory_order_relaxed)) return false;
  const int64_t until = valid_until_ms_.load(std::memory_order_relaxed);
  if (until == INT64_MAX) return true;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
             .count() < until;
}

StreamEntry::~StreamEntry() { Shutdown(); }

void StreamEntry::Shutdown() {
  MarkLost();
  log_.reset();  // writes what is pending; its callbacks run now
  WakeAll();
}

std::shared_ptr<ConsumerGroup> StreamEntry::GetOrCreateConsumer(const std::string& name, uint64_t start_seq) {
  MutexLock l(&mu_);
  auto& c = consumers_[name];
  if (!c) c = std::make_shared<ConsumerGroup>(name, Cursor(std::max<uint64_t>(start_seq, 1)));
  return c;
}

std::vector<std::shared_ptr<ConsumerGroup>> StreamEntry::Consumers() {
  MutexLock l(&mu_);
  std::vector<std::shared_ptr<ConsumerGroup>> out;
  for (auto& [n, c] : consumers_) out.push_back(c);
  return out;
}

void StreamEntry::AddLoadedConsumer(std::shared_ptr<ConsumerGroup> c) {
  MutexLock l(&mu_);
  consumers_[c->name] = std::move(c);
}

void StreamEntry::AddFrontierWaiter(std::function<void()> fn) {
  MutexLock l(&mu_);
  waiters_.push_back(std::move(fn));
}

void StreamEntry::OnFrontier(uint64_t) { WakeAll(); }

void StreamEntry::WakeAll() {
  std::vector<std::function<void()>> ready;
  {
    MutexLock l(&mu_);
    ready.swap(waiters_);
  }
  for (auto& fn : ready) fn();
}

// --- Registry ---------------------------------------------------------------------

Registry::Registry(RegistryOptions options, bank::Bank* bank)
    : options_(std::move(options)),
      bank_(bank),
      disk_guard_(std::make_shared<log::DiskGuard>(log::DiskGuardOptions{
          .env = options_.env, .dir = options_.data_dir, .reserve_bytes = options_.disk_reserve_bytes})) {
  Status s = disk_guard_->Init();
  if (!s.ok()) {
    logging::Error("disk.reserve_failed",
                   fmt::format("creating the disk reserve {} failed: {}", disk_guard_->reserve_path(), s.ToString()));
  }
}

Registry::~Registry() { CloseAll(); }

Result<std::shared_ptr<StreamEntry>> Registry::OpenStream(const std::string& name, const StreamConfig& config) {
  log::StreamOptions o;
  o.env = options_.env;
  o.disk_guard = disk_guard_;
  o.direct_io = options_.direct_io;
  o.metrics = options_.log_metrics;
  o.sync = config.sync == SyncMode::kNone ? log::SyncMode::kNone : log::SyncMode::kFdatasync;
  o.retention_bytes = config.retention_bytes;
  o.retention_age_us = config.retention_age_ms * 1000;
  // A record is the payload plus key, headers and 44 bytes of fixed fields.
  o.max_message_bytes = std::min(config.max_message_bytes, options_.max_message_bytes) + 64 * 1024;
  o.max_group_bytes = std::max<uint64_t>(o.max_group_bytes, o.max_message_bytes);
  auto s = log::Stream::Open(options_.data_dir + "/streams/" + name, o);
  if (!s) return Err(Status(s.error().code(), fmt::format("stream {}: {}", name, s.error().message())));
  return std::make_shared<StreamEntry>(name, config, std::move(*s));
}

Result<std::shared_ptr<StreamEntry>> Registry::Open(const std::string& name) {
  {
    MutexLock l(&mu_);
    if (auto it = streams_.find(name); it != streams_.end()) return it->second;
  }
  auto v = bank_->Get(StreamKey(name));
  if (!v) return Err(v.error());
  auto config = DecodeStreamConfig(v->value);
  if (!config) return Err(Status(config.error().code(), "stream " + name + ": " + std::string(config.error().message())));
  auto entry = OpenStream(name, *config);
  if (!entry) return entry;
  auto cursors = bank_->List(fmt::format("{}{}/", kCursorsPrefix, name));
  if (!cursors) return Err(cursors.error());
  const int64_t now = NowMs();
  for (const auto& ckv : *cursors) {
    auto cursor = Cursor::Decode(ckv.value);
    if (!cursor) return Err(Status(cursor.error().code(), ckv.key + ": " + std::string(cursor.error().message())));
    // The sessions that had deliveries pending may resume here or elsewhere;
    // their deliveries are free to go to any session of the consumer now
    // (an answer from the original session still counts).
    cursor->ReleaseAll(now);
    (*entry)->AddLoadedConsumer(
        std::make_shared<ConsumerGroup>(ckv.key.substr(kCursorsPrefix.size() + name.size() + 1), std::move(*cursor)));
  }
  MutexLock l(&mu_);
  streams_[name] = *entry;
  return entry;
}

std::shared_ptr<StreamEntry> Registry::Close(const std::string& name) {
  MutexLock l(&mu_);
  auto it = streams_.find(name);
  if (it == streams_.end()) return nullptr;
  auto entry = std::move(it->second);
  streams_.erase(it);
  entry->MarkLost();
  return entry;
}

Result<std::shared_ptr<StreamEntry>> Registry::Create(const std::string& name, const StreamConfig& config,
                                                      std::optional<bank::Op> fence) {
  Status valid = ValidateStreamName(name);
  if (!valid.ok()) return Err(valid);
  if (!config.dead_letter.empty()) {
    valid = ValidateStreamName(config.dead_letter);
    if (!valid.ok()) return Err(Status::InvalidArgument("dead-letter " + std::string(valid.message())));
    if (config.dead_letter == name) return Err(Status::InvalidArgument("a stream cannot be its own dead-letter stream"));
    // A dead-letter stream that does not exist would drop what it should keep.
    auto dlq = bank_->Get(StreamKey(config.dead_letter));
    if (!dlq && dlq.error().IsNotFound())
      return Err(Status::InvalidArgument(
          fmt::format("dead-letter stream {} does not exist: create it first", config.dead_letter)));
    if (!dlq) return Err(dlq.error());
    // Every message of this stream must fit the dead-letter stream (a move
    // it refused would be retried for ever).
    auto dlq_config = DecodeStreamConfig(dlq->value);
    if (dlq_config && dlq_config->max_message_bytes < config.max_message_bytes)
      return Err(Status::InvalidArgument(fmt::format(
          "dead-letter stream {} takes messages up to {} bytes, less than this stream's {}: give it a larger "
          "--max-message-bytes or this one a smaller",
          config.dead_letter, dlq_config->max_message_bytes, config.max_message_bytes)));
  }
  if (Status v = ValidateStreamSettings(config); !v.ok()) return Err(v);  // model/limits.h: the CLI's ranges too
  if (Status v = ValidateMqttTopics(config.mqtt_topics); !v.ok()) return Err(v);
  if (config.ack_wait_ms < kMinAckWaitMs || config.ack_wait_ms > kMaxAckWaitMs)
    return Err(Status::InvalidArgument(fmt::format("ack wait must be {} to {} ms, got {}", kMinAckWaitMs,
                                                   kMaxAckWaitMs, config.ack_wait_ms)));
  if (config.max_message_bytes == 0 || config.max_message_bytes > options_.max_message_bytes)
    return Err(Status::InvalidArgument(
        fmt::format("max message bytes must be 1 to {} (the node's limit)", options_.max_message_bytes)));
  MutexLock l(&mu_);
  if (streams_.count(name)) return Err(Status::AlreadyExists(fmt::format("stream {} exists", name)));
  // Record it in the bank first (version 0: must be new), then create it.
  std::vector<bank::Op> ops;
  if (fence) ops.push_back(*fence);
  ops.push_back(bank::Op::Put(StreamKey(name), EncodeStreamConfig(config), 0));
  auto put = bank_->Commit(ops);
  if (!put) {
    if (put.error().code() == ErrorCode::kAborted)
      return Err(Status::AlreadyExists(fmt::format("stream {} exists", name)));
    return Err(put.error());
  }
  std::error_code ec;
  std::filesystem::remove_all(options_.data_dir + "/streams/" + name, ec);  // leftovers of a half-done delete
  auto entry = OpenStream(name, config);
  if (!entry) {
    (void)bank_->Delete(StreamKey(name));
    std::filesystem::remove_all(options_.data_dir + "/streams/" + name, ec);  // what the failed open made
    return entry;
  }
  streams_[name] = *entry;
  return entry;
}

Status Registry::Delete(const std::string& name, std::optional<bank::Op> fence) {
  std::shared_ptr<StreamEntry> entry;
  {
    MutexLock l(&mu_);
    auto it = streams_.find(name);
    if (it == streams_.end()) return Status::NotFound(fmt::format("stream {} does not exist", name));
    entry = it->second;
    std::vector<bank::Op> ops{bank::Op::Delete(StreamKey(name))};
    if (fence) ops.push_back(*fence);
    auto cursors = bank_->List(fmt::format("{}{}/", kCursorsPrefix, name));
    if (cursors)
      for (const auto& kv : *cursors) ops.push_back(bank::Op::Delete(kv.key));
    auto r = bank_->Commit(ops);
    if (!r) return r.error();
    streams_.erase(it);
    entry->MarkLost();
  }
  entry.reset();  // the last user closes the log
  std::error_code ec;
  std::filesystem::remove_all(options_.data_dir + "/streams/" + name, ec);
  if (ec) return Status::IOError(fmt::format("removing stream {}: {}", name, ec.message()));
  std::filesystem::remove_all(options_.data_dir + "/blobs/" + name, ec);  // its large messages
  return Status::OK();
}

std::shared_ptr<StreamEntry> Registry::Get(const std::string& name) {
  MutexLock l(&mu_);
  auto it = streams_.find(name);
  return it == streams_.end() ? nullptr : it->second;
}

void Registry::CloseAll() {
  std::map<std::string, std::shared_ptr<StreamEntry>> streams;
  {
    MutexLock l(&mu_);
    streams.swap(streams_);
  }
  for (auto& [name, entry] : streams) entry->Shutdown();
}

}  // namespace floe::broker
