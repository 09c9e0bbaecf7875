// Stream's public methods over Stream::Impl (stream_internal.h), Open and
// Close. The work is in recovery.cc, writer.cc, reader.cc and retention.cc.
#include "log/stream.h"

#include <cstdio>

#include <fmt/format.h>

#include "base/mutex.h"

#include "log/format.h"
#include "log/stream_internal.h"

namespace floe::log {

void Stream::Impl::Log(const std::string& line, std::string_view event, logging::Level level) {
  if (options_.logger) options_.logger(line);
  else logging::Write(level, event, line, {{"dir", dir_}});
}

void Stream::Impl::Close() {
  {
    MutexLock l(&mu_);
    if (closed_) return;
    closed_ = true;
    closing_ = true;
    writer_scheduled_ = true;
  }
  space_cv_.SignalAll();
  frontier_cv_.SignalAll();
  if (!writer_started_) return;
  // The writer writes what is pending, then its last slice says so; after
  // Remove no pool thread touches this stream again.
  pool_->Schedule(this);
  {
    MutexLock l(&mu_);
    while (!writer_done_) frontier_cv_.Wait(&mu_);
  }
  pool_->Remove(this);
}

Result<std::unique_ptr<Stream>> Stream::Open(const std::string& dir, StreamOptions options) {
  if (options.max_group_bytes + kBatchHeaderSize > kMaxBatchSize || options.max_message_bytes > options.max_group_bytes)
    return Err(Status::InvalidArgument("max_message_bytes <= max_group_bytes < 64 MiB required"));
  auto impl = std::make_unique<Impl>(dir, std::move(options));
  Status s = impl->Recover();
  if (!s.ok()) return Err(s);
  const RecoveryReport& rep = impl->report_;
  const bool created = !rep.events.empty() && rep.events.front() == "new stream";
  for (const auto& e : rep.events) impl->Log(e, created ? "stream.created" : "stream.recovery", logging::Level::kInfo);
  if (!created)
    impl->Log(fmt::format("recovered {} segments ({} sealed ones from their index), {} batches in the last, {} bytes "
                          "cut from its tail, frontier {}",
                          rep.segments, rep.segments_from_index, rep.batches_in_last_segment, rep.truncated_bytes,
                          rep.frontier),
              "stream.recovered", logging::Level::kInfo);
  impl->StartWriter();
  return std::unique_ptr<Stream>(new Stream(std::move(impl)));
}

Stream::Stream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Stream::~Stream() = default;

void Stream::AppendAsync(std::span<const Message> messages, AppendCallback done) {
  impl_->AppendAsync(messages, std::move(done));
}

AppendResult Stream::Append(std::span<const Message> messages) {
  // The callback runs on a writer pool thread. It signals with m held, so this
  // frame (and cv) cannot be gone before the signal is made. ready and out
  // are locals (GUARDED_BY names members only): touched only with m held.
  Mutex m;
  CondVar cv;
  bool ready = false;
  AppendResult out;
  AppendAsync(messages, [&](const AppendResult& r) {
    MutexLock l(&m);
    out = r;
    ready = true;
    cv.Signal();
  });
  MutexLock l(&m);
  while (!ready) cv.Wait(&m);
  return out;
}

Result<ReadResult> Stream::Read(const ReadOptions& options) { return impl_->Read(options); }
Result<uint64_t> Stream::SeekTime(int64_t ts) { return impl_->SeekTime(ts); }
bool Stream::WaitFor(uint64_t seq, std::chrono::milliseconds timeout) { return impl_->WaitFor(seq, timeout); }

void Stream::SetFrontierListener(std::function<void(uint64_t)> listener) {
  MutexLock l(&impl_->mu_);
  impl_->frontier_listener_ = std::move(listener);
}

Stream::ProducerLookup Stream::LookupProducer(uint64_t producer_id, uint64_t producer_seq) const {
  MutexLock l(&impl_->mu_);
  auto f = impl_->dedup_.Find(producer_id, producer_seq);
  switch (f.found) {
    case DedupIndex::Found::kNew: return {};
    case DedupIndex::Found::kBelowWindow: return {ProducerLookup::State::kBelowWindow, 0};
    case DedupIndex::Found::kKnown:
      return {f.seq <= impl_->slots_.frontier() ? ProducerLookup::State::kCommitted : ProducerLookup::State::kInDoubt,
              f.seq};
  }
  return {};
}

uint64_t Stream::HighestProducerSeq(uint64_t producer_id, uint64_t* seq) const {
  MutexLock l(&impl_->mu_);
  return impl_->dedup_.Highest(producer_id, seq);
}

void Stream::ForgetUnstored(uint64_t producer_id) {
  MutexLock l(&impl_->mu_);
  impl_->dedup_.ForgetUnstored(producer_id);
}

Status Stream::EnforceRetention() { return impl_->EnforceRetention(); }

Status Stream::health() const {
  MutexLock l(&impl_->mu_);
  return impl_->failed_;
}

StreamStats Stream::stats() const {
  MutexLock l(&impl_->mu_);
  StreamStats s = impl_->counters_;
  s.first_seq = impl_->first_seq_;
  s.frontier = impl_->slots_.frontier();
  s.next_seq = impl_->slots_.next_seq();
  s.segments = impl_->segments_.size();
  s.bytes = 0;
  for (auto& g : impl_->segments_) s.bytes += g->size;
  s.in_doubt = impl_->slots_.in_doubt_ranges();
  return s;
}

uint64_t Stream::first_seq() const {
  MutexLock l(&impl_->mu_);
  return impl_->first_seq_;
}

uint64_t Stream::frontier() const {
  MutexLock l(&impl_->mu_);
  return impl_->slots_.frontier();
}

// Set once by Open before the stream is returned; never changes after.
const RecoveryReport& Stream::recovery_report() const { return impl_->report_; }
const std::string& Stream::dir() const { return impl_->dir_; }
Status Stream::TEST_RollSegment() { return impl_->RollForTest(); }

}  // namespace floe::log
