// Storage faults a stream must come through by itself, on the fault-injecting
// file layer (tests/support/fault_env.h): the order of a producer's messages
// across a failed write, healing after a failure that could not be recorded
// at once, and a full disk (its own retriable error, the shared disk guard
// and its reserve).
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "log/disk_guard.h"
#include "log/stream.h"
#include "support/fault_env.h"

namespace floe::log {
namespace {

using test::FaultEnv;
using test::WriteFault;

constexpr char kDir[] = "/data/orders";
constexpr int kENOSPC = 28;
constexpr uint64_t kProducer = 0xabc;

class StorageFaultTest : public testing::Test {
 protected:
  StreamOptions Options() {
    StreamOptions o;
    o.env = &env_;
    o.direct_io = false;
    o.segment_bytes = 1 << 20;
    o.max_group_bytes = 16 << 10;
    o.max_message_bytes = 4 << 10;
    o.heal_min_backoff_us = 20'000;
    o.heal_max_backoff_us = 100'000;
    o.disk_guard = guard_;
    o.logger = [](const std::string&) {};
    return o;
  }
  void Open(const std::string& dir = kDir) {
    auto s = Stream::Open(dir, Options());
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    stream_ = std::move(*s);
  }

  // Messages of kProducer with producer seqs [from, from + n).
  static std::vector<Message> Msgs(uint64_t from, uint64_t n, std::vector<std::string>* payloads) {
    payloads->clear();
    for (uint64_t i = 0; i < n; ++i) payloads->push_back(fmt::format("p{}", from + i));
    std::vector<Message> out;
    for (uint64_t i = 0; i < n; ++i)
      out.push_back({.payload = (*payloads)[i], .producer_id = kProducer, .producer_seq = from + i});
    return out;
  }
  AppendResult Append(uint64_t from, uint64_t n) {
    std::vector<std::string> payloads;
    auto msgs = Msgs(from, n, &payloads);
    return stream_->Append(msgs);
  }
  std::future<AppendResult> AppendAsync(uint64_t from, uint64_t n) {
    auto payloads = std::make_shared<std::vector<std::string>>();
    auto msgs = Msgs(from, n, payloads.get());
    auto p = std::make_shared<std::promise<AppendResult>>();
    auto f = p->get_future();
    stream_->AppendAsync(msgs, [p, payloads](const AppendResult& r) { p->set_value(r); });
    return f;
  }
  // The producer seqs of the stream's messages, in stream order (holes skipped).
  std::vector<uint64_t> StoredOrder() {
    std::vector<uint64_t> out;
    uint64_t seq = stream_->first_seq();
    while (true) {
      auto r = stream_->Read({.from_seq = seq, .max_messages = 1000});
      EXPECT_TRUE(r.has_value());
      if (!r || r->entries.empty()) break;
      for (const Entry& e : r->entries)
        if (e.kind == Entry::Kind::kMessage) out.push_back(e.producer_seq);
      seq = r->next_seq;
    }
    return out;
  }
  bool WaitHealthy(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!stream_->health().ok() || guard_->full()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  FaultEnv env_;
  std::shared_ptr<DiskGuard> guard_ = std::make_shared<DiskGuard>(DiskGuardOptions{
      .env = &env_, .dir = "/data", .reserve_bytes = 1 << 20, .probe_interval_us = 10'000,
      .logger = [](const std::string&) {}});
  std::unique_ptr<Stream> stream_;
};

// Order: appends queued behind a failed one fail with it, and a later
// message of the same producer is refused (retriably) until the failed ones
// are resent, so the producer's messages are stored in producer-seq order.
// Before: the queued append committed (pseqs 4-6 stored before 1-3's resend)
// and pseq 7 was accepted at once.
TEST_F(StorageFaultTest, FailedWriteKeepsEachProducersOrder) {
  ASSERT_TRUE(env_.CreateDir("/data").ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  env_.PauseSyncs();
  auto first = AppendAsync(1, 3);
  env_.WaitForPausedSyncs(1);  // 1-3 are being written; 4-6 queue behind them
  auto second = AppendAsync(4, 3);
  env_.FailSyncs(1);
  env_.ResumeSyncs();
  AppendResult a = first.get(), b = second.get();
  EXPECT_TRUE(a.hole) << a.status.ToString();
  EXPECT_FALSE(b.status.ok()) << "an append queued behind a failed one fails with it";
  EXPECT_TRUE(b.hole);

  // A later message of the producer must not pass the unstored ones...
  AppendResult c = Append(7, 1);
  EXPECT_TRUE(c.out_of_order) << c.status.ToString();
  EXPECT_EQ(c.status.code(), ErrorCode::kAborted);
  EXPECT_EQ(c.count, 0u);
  // ...nor a resend that skips one of them; another producer is not held back.
  EXPECT_TRUE(Append(4, 4).out_of_order);
  std::string other = "other";
  Message m{.payload = other, .producer_id = kProducer + 1, .producer_seq = 1};
  EXPECT_TRUE(stream_->Append({&m, 1}).status.ok());

  // Resent in order: accepted, and stored in producer-seq order.
  EXPECT_TRUE(Append(1, 3).status.ok());
  EXPECT_TRUE(Append(4, 4).status.ok());
  std::vector<uint64_t> mine;
  uint64_t seq = stream_->first_seq();
  auto r = stream_->Read({.from_seq = seq, .max_messages = 1000});
  ASSERT_TRUE(r.has_value());
  for (const Entry& e : r->entries)
    if (e.kind == Entry::Kind::kMessage && e.producer_id == kProducer) mine.push_back(e.producer_seq);
  EXPECT_EQ(mine, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7}));
  // The resend of a stored message is recognised, not stored twice.
  auto again = stream_->LookupProducer(kProducer, 5);
  EXPECT_EQ(again.state, Stream::ProducerLookup::State::kCommitted);
}

// A failure whose holes could not be recorded (every fdatasync fails) makes
// the stream refuse writes with a retriable error; once the disk works again
// the stream records the holes and accepts writes by itself, and what it
// made visible survives a crash. Before: FailedPrecondition until reopened.
TEST_F(StorageFaultTest, UnrecordableFailureHealsByItself) {
  ASSERT_TRUE(env_.CreateDir("/data").ok());
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_TRUE(Append(1, 2).status.ok());
  env_.FailSyncs(FaultEnv::kForever);
  AppendResult failed = Append(3, 2);
  EXPECT_FALSE(failed.status.ok());
  EXPECT_FALSE(failed.hole);
  EXPECT_EQ(stream_->health().code(), ErrorCode::kUnavailable) << stream_->health().ToString();
  AppendResult refused = Append(3, 2);
  EXPECT_EQ(refused.status.code(), ErrorCode::kUnavailable) << refused.status.ToString();
  // Still failing: it stays refused (and retries with backoff).
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_FALSE(stream_->health().ok());

  env_.ClearFaults();
  ASSERT_TRUE(WaitHealthy(std::chrono::seconds(5))) << stream_->health().ToString();
  EXPECT_EQ(stream_->stats().heals, 1u);
  EXPECT_EQ(stream_->stats().frontier, 4u) << "seqs 3 and 4 resolved as holes";
  AppendResult resent = Append(3, 2);
  ASSERT_TRUE(resent.status.ok()) << resent.status.ToString();
  EXPECT_EQ(resent.first_seq, 5u);
  auto r = stream_->Read({.from_seq = 3, .max_messages = 10});
  ASSERT_TRUE(r.has_value());
  ASSERT_GE(r->entries.size(), 1u);
  EXPECT_EQ(r->entries[0].kind, Entry::Kind::kGap);
  EXPECT_EQ(r->entries[0].gap_count, 2u);

  // What it made visible is durable: a power loss keeps all of it.
  const uint64_t frontier = stream_->frontier();
  env_.Crash();
  stream_.reset();
  env_.Restart();
  ASSERT_NO_FATAL_FAILURE(Open());
  EXPECT_EQ(stream_->frontier(), frontier);
  EXPECT_EQ(StoredOrder(), (std::vector<uint64_t>{1, 2, 3, 4}));
}

// A full disk: the write fails with NoSpace, the disk guard releases its
// reserve and every stream sharing it refuses writes with NoSpace (naming
// the room needed) instead of eating the space released; once space is
// back, the reserve is restored and writes resume with no reopen. Before:
// FailedPrecondition (read-only) until reopened.
TEST_F(StorageFaultTest, FullDiskIsItsOwnRetriableErrorAndPassesByItself) {
  ASSERT_TRUE(guard_->Init().ok());
  const std::string reserve = guard_->reserve_path();
  ASSERT_TRUE(env_.Exists(reserve));
  ASSERT_NO_FATAL_FAILURE(Open());
  auto other = Stream::Open("/data/other", Options());
  ASSERT_TRUE(other.has_value());
  ASSERT_TRUE(Append(1, 2).status.ok());

  env_.InjectWriteFault({.error = kENOSPC, .after_bytes = 0, .sticky = true, .path_filter = "/data"});
  AppendResult r = Append(3, 2);
  EXPECT_EQ(r.status.code(), ErrorCode::kNoSpace) << r.status.ToString();
  EXPECT_TRUE(guard_->full());
  EXPECT_FALSE(env_.Exists(reserve)) << "the reserve is released for the bank";
  AppendResult refused = Append(3, 2);
  EXPECT_EQ(refused.status.code(), ErrorCode::kNoSpace) << refused.status.ToString();
  EXPECT_NE(refused.status.message().find(fmt::format("{} bytes are free", guard_->need())), std::string::npos)
      << refused.status.message();
  std::string payload = "x";
  Message m{.payload = payload, .producer_id = 9, .producer_seq = 1};
  EXPECT_EQ((*other)->Append({&m, 1}).status.code(), ErrorCode::kNoSpace) << "the whole disk is full, not one stream";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(guard_->full()) << "no room yet: still refused";

  env_.ClearFaults();  // space is back
  ASSERT_TRUE(WaitHealthy(std::chrono::seconds(5))) << stream_->health().ToString();
  EXPECT_TRUE(env_.Exists(reserve)) << "the reserve is restored";
  AppendResult resent = Append(3, 2);
  ASSERT_TRUE(resent.status.ok()) << resent.status.ToString();
  EXPECT_TRUE((*other)->Append({&m, 1}).status.ok());
  EXPECT_EQ(StoredOrder(), (std::vector<uint64_t>{1, 2, 3, 4}));
}

}  // namespace
}  // namespace floe::log
