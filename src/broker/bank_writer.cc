// Group commit of a node's bank records (cursors, sessions), fenced by the
// leases of the streams they belong to.
#include "broker/bank_writer.h"

#include <fmt/format.h>

#include "base/logging.h"
#include "broker/registry.h"

namespace floe::broker {

BankWriter::BankWriter(bank::Bank* bank, Fence fence, metrics::Histogram* commit_ns, metrics::Counter* failures)
    : bank_(bank), fence_(std::move(fence)), commit_ns_(commit_ns), failures_(failures), thread_([this] { Loop(); }) {}

Result<std::vector<uint64_t>> BankWriter::Commit(std::span<const bank::Op> ops) {
  const auto t0 = std::chrono::steady_clock::now();
  auto r = bank_->Commit(ops);
  if (commit_ns_)
    commit_ns_->Observe(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count()));
  if (!r && failures_) failures_->Add();
  return r;
}

BankWriter::~BankWriter() { Stop(); }

void BankWriter::Write(std::string key, const std::string& stream, Encode encode, std::function<void(Status)> done) {
  const bool urgent = done != nullptr;
  bool wake = urgent;
  bool refused = false;
  {
    MutexLock l(&mu_);
    if (stop_) {
      refused = true;
    } else if (urgent) {
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
  // Outside the lock: a callback may write again (a session released when
  // its open failed).
  if (refused) {
    if (done) done(Status::FailedPrecondition("node is stopping"));
    return;
  }
  if (wake) cv_.Signal();
}

void BankWriter::Persist(const std::string& stream, std::shared_ptr<ConsumerGroup> group,
                         std::function<void(Status)> done) {
  std::string key = CursorKey(stream, group->name);
  Write(std::move(key), stream,
        [group]() -> std::optional<std::string> {
          MutexLock g(&group->mu);
          return group->cursor.Encode();
        },
        std::move(done));
}

void BankWriter::Stop() {
  {
    MutexLock l(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.Signal();
  if (thread_.joinable()) thread_.join();
}

uint64_t BankWriter::commits() const {
  MutexLock l(&mu_);
  return commits_;
}

uint64_t BankWriter::records() const {
  MutexLock l(&mu_);
  return records_;
}

// One commit for the batch: the latest value of each key, plus the fence of
// each stream. If the commit aborts (a fence moved: a renewal raced us, or a
// stream was lost), each stream's records are retried alone with a fresh
// fence, so one lost stream does not fail the others.
void BankWriter::CommitBatch(std::vector<Item>& items) {
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
    auto r = Commit(ops);
    {
      MutexLock l(&mu_);
      ++commits_;
      if (r) records_ += seen.size();
    }
    if (r || r.error().code() != ErrorCode::kAborted) {
      Status s = r ? Status::OK() : r.error();
      if (!s.ok())
        logging::Error("bank.write_failed", fmt::format("writing {} bank records failed: {}", seen.size(), s.ToString()));
      for (Item& it : items)
        if (it.done) it.done(s);
      return;
    }
  }
  // Stream by stream, in slices of at most kMaxOpsPerCommit - 1 records and
  // kMaxBytesPerCommit bytes (a slice too big is halved; a single record
  // goes alone whatever its size).
  std::map<std::string, Status> result;
  for (auto& [stream, all] : by_stream) {
    Status s = Status::OK();
    bool unowned = false;  // no fence: the stream is closing here
    size_t slice = kMaxOpsPerCommit - 1;
    for (size_t from = 0; from < all.size() && s.ok();) {
      const size_t take = std::min(slice, all.size() - from);
      const std::vector<const Item*> group(all.begin() + from, all.begin() + from + take);
      s = Status::Aborted(fmt::format("this node does not own stream {}", stream));
      bool too_big = false;
      unowned = false;
      for (int attempt = 0; attempt < 5; ++attempt) {
        // A lease renewal raced the commit: the next fence has its new version.
        if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::vector<bank::Op> one;
        if (!ops_for(stream, group, &one)) {
          unowned = true;
          break;
        }
        if (take > 1 && bytes_of(one) > kMaxBytesPerCommit) {
          too_big = true;
          break;
        }
        auto r = Commit(one);
        {
          MutexLock l(&mu_);
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
    // Records of a stream this node is closing (deleted, handed over, lost)
    // are dropped on purpose: its next holder writes its own. The callers
    // still hear of it; only real failures are logged.
    if (!s.ok() && !unowned)
      logging::Error("bank.write_failed",
                     fmt::format("writing the bank records of stream {} failed: {}", stream, s.ToString()),
                     {{"stream", stream}});
    result[stream] = s;
  }
  for (Item& it : items)
    if (it.done) it.done(result[it.stream]);
}

void BankWriter::Loop() {
  std::vector<Item> items;
  std::map<std::string, Item> lazy;
  while (true) {
    {
      MutexLock l(&mu_);
      // Urgent items (someone waits for them) go at once; lazy ones (delivery
      // bookkeeping, session progress) ride along, or go after kLazyDelay.
      while (queue_.empty() && !stop_) {
        if (lazy_.empty()) cv_.Wait(&mu_);
        else if (!cv_.WaitUntil(&mu_, lazy_since_ + kLazyDelay)) break;
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

}  // namespace floe::broker
