#include "broker/registry.h"

#include <chrono>
#include <filesystem>

#include <fmt/format.h>

namespace floe::broker {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {
constexpr uint8_t kConfigEncodingVersion = 1;
}  // namespace

std::string EncodeStreamConfig(const StreamConfig& c) {
  std::string out;
  Encoder e(&out);
  e.U8(kConfigEncodingVersion);
  EncodeStreamConfigFields(e, c);
  return out;
}

Result<StreamConfig> DecodeStreamConfig(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  if (d.U8() != kConfigEncodingVersion) return Err(Status::Corruption("unknown stream config version"));
  StreamConfig c = DecodeStreamConfigFields(d);
  Status s = d.Finish();
  if (!s.ok()) return Err(Status::Corruption("stream config: " + std::string(s.message())));
  return c;
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

StreamEntry::~StreamEntry() {
  log_.reset();  // writes what is pending; its callbacks run now
  WakeAll();
}

std::shared_ptr<ConsumerGroup> StreamEntry::GetOrCreateConsumer(const std::string& name, uint64_t start_seq) {
  std::lock_guard l(mu_);
  auto& c = consumers_[name];
  if (!c) {
    c = std::make_shared<ConsumerGroup>();
    c->name = name;
    c->cursor = Cursor(std::max<uint64_t>(start_seq, 1));
  }
  return c;
}

std::vector<std::shared_ptr<ConsumerGroup>> StreamEntry::Consumers() {
  std::lock_guard l(mu_);
  std::vector<std::shared_ptr<ConsumerGroup>> out;
  for (auto& [n, c] : consumers_) out.push_back(c);
  return out;
}

void StreamEntry::AddLoadedConsumer(std::shared_ptr<ConsumerGroup> c) {
  std::lock_guard l(mu_);
  consumers_[c->name] = std::move(c);
}

void StreamEntry::AddFrontierWaiter(std::function<void()> fn) {
  std::lock_guard l(mu_);
  waiters_.push_back(std::move(fn));
}

void StreamEntry::OnFrontier(uint64_t) { WakeAll(); }

void StreamEntry::WakeAll() {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard l(mu_);
    ready.swap(waiters_);
  }
  for (auto& fn : ready) fn();
}

// --- BankWriter -------------------------------------------------------------------

BankWriter::BankWriter(bank::Bank* bank, Fence fence)
    : bank_(bank), fence_(std::move(fence)), thread_([this] { Loop(); }) {}

BankWriter::~BankWriter() { Stop(); }

void BankWriter::Write(std::string key, const std::string& stream, Encode encode, std::function<void(Status)> done) {
  const bool urgent = done != nullptr;
  bool wake = urgent;
  {
    std::lock_guard l(mu_);
    if (stop_) {
      if (done) done(Status::FailedPrecondition("node is stopping"));
      return;
    }
    if (urgent) {
      queue_.push_back({std::move(key), stream, std::move(encode), std::move(done)});
    } else {
      if (lazy_.empty()) {
        lazy_since_ = std::chrono::steady_clock::now();
        wake = true;  // the writer may be waiting with no deadline
      }
      auto k = key;
      lazy_.insert_or_assign(std::move(k), Item{std::move(key), stream, std::move(encode), nullptr});
    }
  }
  if (wake) cv_.notify_one();
}

void BankWriter::Persist(const std::string& stream, std::shared_ptr<ConsumerGroup> group,
                         std::function<void(Status)> done) {
  std::string key = CursorKey(stream, group->name);
  Write(std::move(key), stream,
        [group]() -> std::optional<std::string> {
          std::lock_guard g(group->mu);
          return group->cursor.Encode();
        },
        std::move(done));
}

void BankWriter::Stop() {
  {
    std::lock_guard l(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

uint64_t BankWriter::commits() const {
  std::lock_guard l(mu_);
  return commits_;
}

uint64_t BankWriter::records() const {
  std::lock_guard l(mu_);
  return records_;
}

// One commit for the batch: the latest value of each key, plus the fence of
// each stream. If the commit aborts (a fence moved: a renewal raced us, or a
// stream was lost), each stream's records are retried alone with a fresh
// fence, so one lost stream does not fail the others.
Status BankWriter::CommitBatch(std::vector<Item>& items) {
  std::map<std::string, std::vector<const Item*>> by_stream;
  std::map<std::string, bool> seen;
  for (const Item& it : items) {
    if (seen.count(it.key)) continue;
    seen[it.key] = true;
    by_stream[it.stream].push_back(&it);
  }
  auto ops_for = [&](const std::string& stream, const std::vector<const Item*>& group,
                     std::vector<bank::Op>* ops) -> bool {
    auto fence = fence_(stream);
    if (!fence) return false;
    ops->push_back(std::move(*fence));
    for (const Item* it : group) {
      auto v = it->encode();
      ops->push_back(v ? bank::Op::Put(it->key, std::move(*v)) : bank::Op::Delete(it->key));
    }
    return true;
  };
  std::vector<bank::Op> ops;
  bool all_fenced = true;
  for (auto& [stream, group] : by_stream) all_fenced = ops_for(stream, group, &ops) && all_fenced;
  // One commit stays within what every backend takes (etcd: 128 ops and
  // 1.5 MiB per transaction); bigger batches go stream by stream, in slices.
  auto bytes_of = [](const std::vector<bank::Op>& v) {
    size_t n = 0;
    for (const bank::Op& op : v) n += op.key.size() + op.value.size();
    return n;
  };
  if (ops.size() > kMaxOpsPerCommit || bytes_of(ops) > kMaxBytesPerCommit) all_fenced = false;
  if (all_fenced) {
    auto r = bank_->Commit(ops);
    {
      std::lock_guard l(mu_);
      ++commits_;
      if (r) records_ += seen.size();
    }
    if (r || r.error().code() != ErrorCode::kAborted) {
      Status s = r ? Status::OK() : r.error();
      if (!s.ok()) fmt::print(stderr, "floe: writing {} bank records failed: {}\n", seen.size(), s.ToString());
      for (Item& it : items)
        if (it.done) it.done(s);
      return s;
    }
  }
  // Stream by stream, in slices of at most kMaxOpsPerCommit - 1 records and
  // kMaxBytesPerCommit bytes (a slice too big is halved; a single record
  // goes alone whatever its size).
  std::map<std::string, Status> result;
  for (auto& [stream, all] : by_stream) {
    Status s = Status::OK();
    size_t slice = kMaxOpsPerCommit - 1;
    for (size_t from = 0; from < all.size() && s.ok();) {
      const size_t take = std::min(slice, all.size() - from);
      const std::vector<const Item*> group(all.begin() + from, all.begin() + from + take);
      s = Status::Aborted(fmt::format("this node does not own stream {}", stream));
      bool too_big = false;
      for (int attempt = 0; attempt < 5; ++attempt) {
        // A lease renewal raced the commit: the next fence has its new version.
        if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::vector<bank::Op> one;
        if (!ops_for(stream, group, &one)) break;
        if (take > 1 && bytes_of(one) > kMaxBytesPerCommit) {
          too_big = true;
          break;
        }
        auto r = bank_->Commit(one);
        {
          std::lock_guard l(mu_);
          ++commits_;
          if (r) records_ += group.size();
        }
        s = r ? Status::OK() : r.error();
        if (r || r.error().code() != ErrorCode::kAborted) break;
      }
      if (too_big) {
        slice = take / 2;
        s = Status::OK();
        continue;
      }
      from += take;
    }
    if (!s.ok()) fmt::print(stderr, "floe: writing the bank records of stream {} failed: {}\n", stream, s.ToString());
    result[stream] = s;
  }
  for (Item& it : items)
    if (it.done) it.done(result[it.stream]);
  return Status::OK();
}

void BankWriter::Loop() {
  std::vector<Item> items;
  std::map<std::string, Item> lazy;
  while (true) {
    {
      std::unique_lock l(mu_);
      // Urgent items (someone waits for them) go at once; lazy ones (delivery
      // bookkeeping, session progress) ride along, or go after kLazyDelay.
      while (queue_.empty() && !stop_) {
        if (lazy_.empty()) cv_.wait(l);
        else if (cv_.wait_until(l, lazy_since_ + kLazyDelay) == std::cv_status::timeout) break;
      }
      if (queue_.empty() && lazy_.empty() && stop_) return;
      items.swap(queue_);
      lazy.swap(lazy_);
    }
    // Urgent items first: for a key in both, the urgent one's callback runs.
    for (auto& [key, it] : lazy) items.push_back(std::move(it));
    lazy.clear();
    CommitBatch(items);
    items.clear();
  }
}

// --- Registry ---------------------------------------------------------------------

Registry::Registry(RegistryOptions options, bank::Bank* bank) : options_(std::move(options)), bank_(bank) {}

Registry::~Registry() { CloseAll(); }

Result<std::shared_ptr<StreamEntry>> Registry::OpenStream(const std::string& name, const StreamConfig& config) {
  log::StreamOptions o;
  o.direct_io = options_.direct_io;
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
    std::lock_guard l(mu_);
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
    auto group = std::make_shared<ConsumerGroup>();
    group->name = ckv.key.substr(kCursorsPrefix.size() + name.size() + 1);
    group->cursor = std::move(*cursor);
    // The sessions that had deliveries pending may resume here or elsewhere;
    // their deliveries are free to go to any session of the consumer now
    // (an answer from the original session still counts).
    group->cursor.ReleaseAll(now);
    (*entry)->AddLoadedConsumer(std::move(group));
  }
  std::lock_guard l(mu_);
  streams_[name] = *entry;
  return entry;
}

std::shared_ptr<StreamEntry> Registry::Close(const std::string& name) {
  std::lock_guard l(mu_);
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
  }
  if (config.max_message_bytes == 0 || config.max_message_bytes > options_.max_message_bytes)
    return Err(Status::InvalidArgument(
        fmt::format("max message bytes must be 1 to {} (the node's limit)", options_.max_message_bytes)));
  std::lock_guard l(mu_);
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
    return entry;
  }
  streams_[name] = *entry;
  return entry;
}

Status Registry::Delete(const std::string& name, std::optional<bank::Op> fence) {
  std::shared_ptr<StreamEntry> entry;
  {
    std::lock_guard l(mu_);
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
  std::lock_guard l(mu_);
  auto it = streams_.find(name);
  return it == streams_.end() ? nullptr : it->second;
}

void Registry::CloseAll() {
  std::map<std::string, std::shared_ptr<StreamEntry>> streams;
  {
    std::lock_guard l(mu_);
    streams.swap(streams_);
  }
  streams.clear();
}

}  // namespace floe::broker
