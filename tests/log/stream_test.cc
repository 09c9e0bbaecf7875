// Streams on real files in temporary directories: append and read back,
// the frontier, read limits, waiting, seeking by seq and by time, rolling,
// retention, reopening, concurrent appends, the directory lock, limits and
// the sync=none mode. Small segments force rolls; a settable clock makes
// timestamps, segment ages and retention by age deterministic.
#include "log/stream.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/env.h"
#include "log/format.h"
#include "log/segment.h"
#include "support/temp_dir.h"

#include <sys/stat.h>

namespace floe::log {
namespace {

using ::testing::HasSubstr;

// Generous: only reached when the code under test is broken.
constexpr auto kLongWait = std::chrono::seconds(60);

using ::floe::test::TempDir;

// The POSIX Env with a clock the test sets.
class ClockEnv final : public Env {
 public:
  explicit ClockEnv(uint64_t now) : now_(now) {}
  void Set(uint64_t now) { now_ = now; }
  void Advance(uint64_t us) { now_ += us; }

  Result<std::unique_ptr<File>> Open(const std::string& path, const OpenOptions& o) override {
    return base_->Open(path, o);
  }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override { return base_->ListDir(dir); }
  Status CreateDir(const std::string& dir) override { return base_->CreateDir(dir); }
  Status Remove(const std::string& path) override { return base_->Remove(path); }
  Status Rename(const std::string& from, const std::string& to) override { return base_->Rename(from, to); }
  Status SyncDir(const std::string& dir) override { return base_->SyncDir(dir); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Result<std::unique_ptr<FileLock>> Lock(const std::string& path) override { return base_->Lock(path); }
  uint64_t NowMicros() override { return now_.load(); }

 private:
  Env* base_ = Env::Default();
  std::atomic<uint64_t> now_;
};

constexpr uint64_t kT0 = 1'700'000'000'000'000;  // a fixed "now" for ClockEnv

std::string PayloadFor(uint64_t i, size_t size = 100) {
  std::string p = "message-" + std::to_string(i) + "-";
  while (p.size() < size) p += static_cast<char>('a' + (i + p.size()) % 26);
  p.resize(size);
  return p;
}

class StreamTest : public ::testing::Test {
 protected:
  StreamOptions Options() {
    StreamOptions o;
    o.segment_bytes = 256 << 10;
    o.logger = [this](const std::string& line) {
      std::lock_guard l(log_mu_);
      log_.push_back(line);
    };
    return o;
  }

  std::unique_ptr<Stream> OpenOrDie(const StreamOptions& o, const std::string& sub = "s") {
    auto s = Stream::Open(dir_.path() + "/" + sub, o);
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    return s ? std::move(*s) : nullptr;
  }

  // Appends `n` messages with payloads PayloadFor(first_index..) in calls of
  // `per_call`; returns the seq of the first.
  uint64_t AppendN(Stream* s, uint64_t first_index, uint64_t n, size_t per_call = 1, size_t size = 100) {
    uint64_t first_seq = 0;
    for (uint64_t i = 0; i < n;) {
      const size_t k = std::min<uint64_t>(per_call, n - i);
      std::vector<std::string> payloads;
      std::vector<Message> msgs(k);
      for (size_t j = 0; j < k; ++j) payloads.push_back(PayloadFor(first_index + i + j, size));
      for (size_t j = 0; j < k; ++j) msgs[j].payload = payloads[j];
      AppendResult r = s->Append(msgs);
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(r.count, k);
      EXPECT_FALSE(r.hole);
      if (first_seq == 0) first_seq = r.first_seq;
      i += k;
    }
    return first_seq;
  }

  // Every entry from `from` to the frontier, in pages.
  std::vector<Entry> ReadAll(Stream* s, uint64_t from, size_t page = 1000) {
    std::vector<Entry> out;
    const uint64_t frontier = s->stats().frontier;
    while (from <= frontier) {
      auto r = s->Read({.from_seq = from, .max_messages = page, .max_bytes = 64 << 20});
      EXPECT_TRUE(r.has_value()) << r.error().ToString();
      if (!r || r->entries.empty()) break;
      EXPECT_GT(r->next_seq, from);
      for (auto& e : r->entries) out.push_back(std::move(e));
      from = r->next_seq;
    }
    return out;
  }

  std::vector<std::string> SegmentFiles(const std::string& sub = "s") {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path() + "/" + sub)) {
      uint64_t id;
      if (ParseSegmentFileName(e.path().filename(), &id)) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // The code of a read's error, kOk if it succeeded.
  static ErrorCode ReadCode(Stream* s, uint64_t from) {
    auto r = s->Read({.from_seq = from});
    return r ? ErrorCode::kOk : r.error().code();
  }

  std::vector<std::string> Logged() {
    std::lock_guard l(log_mu_);
    return log_;
  }

  TempDir dir_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

// --- append and read -----------------------------------------------------------

TEST_F(StreamTest, NewStreamIsEmpty) {
  auto s = OpenOrDie(Options(), "a/b/c");  // parents created
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->dir(), dir_.path() + "/a/b/c");
  const StreamStats st = s->stats();
  EXPECT_EQ(st.first_seq, 1u);
  EXPECT_EQ(st.frontier, 0u);
  EXPECT_EQ(st.next_seq, 1u);
  EXPECT_EQ(st.segments, 1u);
  EXPECT_EQ(st.bytes, kSegmentHeaderSize);
  EXPECT_EQ(st.in_doubt, 0u);
  EXPECT_TRUE(s->health().ok());
  EXPECT_EQ(s->recovery_report().truncated_bytes, 0u);
  EXPECT_EQ(s->recovery_report().frontier, 0u);
  auto r = s->Read({.from_seq = 1});
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->entries.empty());
  EXPECT_EQ(r->next_seq, 1u);
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/a/b/c/LOCK"));
  EXPECT_EQ(SegmentFiles("a/b/c").size(), 1u);
}

TEST_F(StreamTest, AppendThenReadBackExactly) {
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  const Header h1[] = {{"content-type", "text/plain"}, {"x", std::string_view("\0\1", 2)}};
  struct Want {
    std::string key, payload;
    std::vector<std::pair<std::string, std::string>> headers;
    uint64_t producer_id, producer_seq;
  };
  std::vector<Want> want;
  uint64_t expected_seq = 1;
  for (uint64_t call = 0; call < 30; ++call) {
    const size_t k = 1 + call % 4;
    std::vector<std::string> keys, payloads;
    for (size_t j = 0; j < k; ++j) {
      keys.push_back(call % 3 == 0 ? "" : "key-" + std::to_string(want.size() + j));
      payloads.push_back(PayloadFor(want.size() + j, 1 + (call * 37 + j * 11) % 300));
    }
    payloads[0][0] = '\0';  // binary payloads survive
    std::vector<Message> msgs(k);
    for (size_t j = 0; j < k; ++j) {
      msgs[j].key = keys[j];
      msgs[j].payload = payloads[j];
      if (j == 0) msgs[j].headers = h1;
      msgs[j].producer_id = call % 2 ? 0 : 42;
      msgs[j].producer_seq = call % 2 ? 0 : want.size() + j + 1;
    }
    AppendResult r = s->Append(msgs);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.first_seq, expected_seq);
    EXPECT_EQ(r.count, k);
    EXPECT_FALSE(r.hole);
    expected_seq += k;
    for (size_t j = 0; j < k; ++j) {
      Want w{keys[j], payloads[j], {}, msgs[j].producer_id, msgs[j].producer_seq};
      if (j == 0) w.headers = {{"content-type", "text/plain"}, {"x", std::string("\0\1", 2)}};
      want.push_back(std::move(w));
    }
  }
  EXPECT_EQ(s->stats().frontier, want.size());

  const auto got = ReadAll(s.get(), 1, 7);
  ASSERT_EQ(got.size(), want.size());
  int64_t last_ts = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    const Entry& e = got[i];
    EXPECT_EQ(e.kind, Entry::Kind::kMessage);
    EXPECT_EQ(e.seq, i + 1);
    EXPECT_EQ(e.key, want[i].key);
    EXPECT_EQ(e.payload, want[i].payload);
    EXPECT_EQ(e.producer_id, want[i].producer_id);
    EXPECT_EQ(e.producer_seq, want[i].producer_seq);
    EXPECT_GE(e.timestamp_us, last_ts);  // non-decreasing along the stream
    EXPECT_GT(e.timestamp_us, 0);
    last_ts = e.timestamp_us;
    std::vector<std::pair<std::string, std::string>> headers;
    Status ps = ParseHeaders(
        e.headers,
        [](void* ctx, std::string_view n, std::string_view v) {
          static_cast<std::vector<std::pair<std::string, std::string>>*>(ctx)->emplace_back(n, v);
        },
        &headers);
    ASSERT_TRUE(ps.ok()) << ps.ToString();
    EXPECT_EQ(headers, want[i].headers);
  }
}

TEST_F(StreamTest, FrontierFollowsAppends) {
  auto s = OpenOrDie(Options());
  for (uint64_t i = 1; i <= 5; ++i) {
    AppendN(s.get(), i, 1);
    const StreamStats st = s->stats();
    EXPECT_EQ(st.frontier, i);
    EXPECT_EQ(st.next_seq, i + 1);
    EXPECT_EQ(st.in_doubt, 0u);
  }
  AppendN(s.get(), 6, 10, 10);
  EXPECT_EQ(s->stats().frontier, 15u);
  EXPECT_GE(s->stats().groups_written, 6u);
  EXPECT_EQ(s->stats().syncs, s->stats().groups_written);  // fdatasync is the default
  EXPECT_GT(s->stats().bytes, kSegmentHeaderSize + 15 * 100);
  // Reads stop at the frontier.
  auto r = s->Read({.from_seq = 15});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->entries.size(), 1u);
  EXPECT_EQ(r->next_seq, 16u);
  auto past = s->Read({.from_seq = 16});
  ASSERT_TRUE(past.has_value());
  EXPECT_TRUE(past->entries.empty());
  EXPECT_EQ(past->next_seq, 16u);
  auto far = s->Read({.from_seq = 1000});
  ASSERT_TRUE(far.has_value());
  EXPECT_TRUE(far->entries.empty());
}

TEST_F(StreamTest, ReadLimits) {
  auto s = OpenOrDie(Options());
  AppendN(s.get(), 1, 20, 5, 100);

  auto r = s->Read({.from_seq = 1, .max_messages = 7});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->entries.size(), 7u);
  EXPECT_EQ(r->entries.back().seq, 7u);
  EXPECT_EQ(r->next_seq, 8u);

  r = s->Read({.from_seq = 3, .max_messages = 100, .max_bytes = 250});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->entries.size(), 2u);  // 100 + 100; a third would pass 250
  EXPECT_EQ(r->entries[0].seq, 3u);
  EXPECT_EQ(r->next_seq, 5u);

  r = s->Read({.from_seq = 4, .max_messages = 100, .max_bytes = 300});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->entries.size(), 3u);  // exactly at the limit fits

  for (size_t tiny : {size_t{0}, size_t{1}, size_t{99}}) {
    r = s->Read({.from_seq = 9, .max_messages = 100, .max_bytes = tiny});
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->entries.size(), 1u) << "the first message is always returned";
    EXPECT_EQ(r->entries[0].seq, 9u);
    EXPECT_EQ(r->entries[0].payload, PayloadFor(9));
    EXPECT_EQ(r->next_seq, 10u);
  }

  // Paging with small limits sees every message once, in order.
  std::vector<uint64_t> seqs;
  for (uint64_t from = 1; from <= 20;) {
    r = s->Read({.from_seq = from, .max_messages = 3, .max_bytes = 150});
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->entries.empty());
    for (const Entry& e : r->entries) seqs.push_back(e.seq);
    from = r->next_seq;
  }
  ASSERT_EQ(seqs.size(), 20u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i + 1);
}

TEST_F(StreamTest, ReadBytesCountKeysAndHeaders) {
  auto s = OpenOrDie(Options());
  const std::string key(100, 'k');
  const std::string value(50, 'v');
  const Header h[] = {{"name", value}};
  std::vector<Message> msgs(3);
  for (Message& m : msgs) {
    m.payload = "0123456789";
    m.key = key;
    m.headers = h;
  }
  ASSERT_TRUE(s->Append(msgs).status.ok());
  // Each entry costs 10 + 100 + (2 + 4 + 4 + 50) = 170 bytes.
  auto r = s->Read({.from_seq = 1, .max_messages = 100, .max_bytes = 339});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->entries.size(), 1u);
  r = s->Read({.from_seq = 1, .max_messages = 100, .max_bytes = 340});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->entries.size(), 2u);
}

TEST_F(StreamTest, LargeMessageIsReturnedAlone) {
  auto s = OpenOrDie(Options());
  AppendN(s.get(), 1, 1, 1, 10);
  AppendN(s.get(), 2, 1, 1, 300'000);  // larger than a segment
  AppendN(s.get(), 3, 1, 1, 10);
  auto r = s->Read({.from_seq = 2, .max_messages = 10, .max_bytes = 1024});
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->entries.size(), 1u);
  EXPECT_TRUE(r->entries[0].payload == PayloadFor(2, 300'000));
  EXPECT_EQ(r->next_seq, 3u);
  r = s->Read({.from_seq = 1, .max_messages = 10, .max_bytes = 1024});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->entries.size(), 1u);  // the big one does not fit after the first
  EXPECT_EQ(r->next_seq, 2u);
}

TEST_F(StreamTest, ReadBelowFirstSeqIsOutOfRange) {
  auto s = OpenOrDie(Options());
  AppendN(s.get(), 1, 3);
  auto r = s->Read({.from_seq = 0});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kOutOfRange);
}

// --- waiting ------------------------------------------------------------------

TEST_F(StreamTest, WaitForReturnsAtOnceForVisibleSeqs) {
  auto s = OpenOrDie(Options());
  EXPECT_TRUE(s->WaitFor(0, std::chrono::milliseconds(0)));
  EXPECT_FALSE(s->WaitFor(1, std::chrono::milliseconds(1)));  // nothing appended
  AppendN(s.get(), 1, 2);
  EXPECT_TRUE(s->WaitFor(2, std::chrono::milliseconds(0)));
  EXPECT_FALSE(s->WaitFor(3, std::chrono::milliseconds(1)));
}

TEST_F(StreamTest, WaitForWakesWhenTheFrontierPasses) {
  auto s = OpenOrDie(Options());
  struct Waiter {
    uint64_t seq;
    bool reached = false;
    uint64_t frontier_seen = 0;
  };
  std::vector<Waiter> waiters = {{1}, {3}, {3}, {6}};
  std::vector<std::thread> threads;
  for (Waiter& w : waiters) {
    threads.emplace_back([&s, &w] {
      w.reached = s->WaitFor(w.seq, kLongWait);
      w.frontier_seen = s->stats().frontier;
    });
  }
  for (uint64_t i = 1; i <= 6; ++i) AppendN(s.get(), i, 1);
  for (auto& t : threads) t.join();
  for (const Waiter& w : waiters) {
    EXPECT_TRUE(w.reached) << w.seq;
    EXPECT_GE(w.frontier_seen, w.seq);  // it woke because the frontier passed
  }
}

TEST_F(StreamTest, FrontierListenerSeesEveryAdvance) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint64_t> seen;
  auto s = OpenOrDie(Options());  // after what the listener uses: closes first
  s->SetFrontierListener([&](uint64_t f) {
    std::lock_guard l(mu);
    seen.push_back(f);
    cv.notify_all();
  });
  for (uint64_t i = 0; i < 10; ++i) {
    AppendN(s.get(), i, 1 + i % 3, 3);
    const uint64_t frontier = s->stats().frontier;
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, kLongWait, [&] { return !seen.empty() && seen.back() == frontier; }))
        << "listener never told of frontier " << frontier;
  }
  std::lock_guard l(mu);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i], seen[i - 1]);  // only advances
  EXPECT_EQ(seen.back(), 19u);  // 1+2+3+1+2+3+1+2+3+1 messages
}

// --- seeking ------------------------------------------------------------------

TEST_F(StreamTest, SeekBySeqAcrossManySegments) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 1024;
  auto s = OpenOrDie(o);
  constexpr uint64_t kN = 3000;
  AppendN(s.get(), 1, kN, 10, 150);
  ASSERT_GE(s->stats().segments, 8u);
  ASSERT_EQ(s->stats().frontier, kN);
  for (uint64_t seq = 1; seq <= kN; seq += (seq % 2 ? 6 : 7)) {
    auto r = s->Read({.from_seq = seq, .max_messages = 1});
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->entries.size(), 1u) << seq;
    EXPECT_EQ(r->entries[0].seq, seq);
    EXPECT_EQ(r->entries[0].payload, PayloadFor(seq, 150));
  }
  // Reading across segment boundaries in one call.
  const auto all = ReadAll(s.get(), 1, 777);
  ASSERT_EQ(all.size(), kN);
  for (uint64_t i = 0; i < kN; ++i) {
    ASSERT_EQ(all[i].seq, i + 1);
    ASSERT_EQ(all[i].payload, PayloadFor(i + 1, 150));
  }
  // A read starting at each segment's first seq.
  const auto last = s->Read({.from_seq = kN, .max_messages = 10});
  ASSERT_TRUE(last.has_value());
  ASSERT_EQ(last->entries.size(), 1u);
  EXPECT_EQ(last->next_seq, kN + 1);
}

class ClockedStreamTest : public StreamTest {
 protected:
  ClockedStreamTest() : clock_(kT0) {}
  StreamOptions Options() {
    StreamOptions o = StreamTest::Options();
    o.env = &clock_;
    return o;
  }
  ClockEnv clock_;
};

TEST_F(ClockedStreamTest, SeekTime) {
  StreamOptions o = Options();
  o.index_interval_bytes = 256;
  auto s = OpenOrDie(o);
  // Group g is two messages appended at kT0 + g ms; a roll every 7 groups.
  constexpr uint64_t kGroups = 40;
  for (uint64_t g = 0; g < kGroups; ++g) {
    clock_.Set(kT0 + g * 1000);
    ASSERT_EQ(AppendN(s.get(), 2 * g, 2, 2), 2 * g + 1);
    if (g % 7 == 6) {
      ASSERT_TRUE(s->TEST_RollSegment().ok());
    }
  }
  ASSERT_GE(s->stats().segments, 5u);
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), 2 * kGroups);
  for (const Entry& e : all) EXPECT_EQ(e.timestamp_us, static_cast<int64_t>(kT0 + (e.seq - 1) / 2 * 1000));

  auto seek = [&](int64_t ts) {
    auto r = s->SeekTime(ts);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r.value_or(0);
  };
  EXPECT_EQ(seek(0), 1u);
  EXPECT_EQ(seek(kT0 - 1), 1u);
  for (uint64_t g = 0; g < kGroups; ++g) {
    SCOPED_TRACE(g);
    const int64_t t = static_cast<int64_t>(kT0 + g * 1000);
    EXPECT_EQ(seek(t), 2 * g + 1);          // the first message at that time
    EXPECT_EQ(seek(t - 1), 2 * g + 1);      // or the first after it
    EXPECT_EQ(seek(t + 1), 2 * g + 3);      // the next group's (frontier+1 after the last)
  }
  EXPECT_EQ(seek(static_cast<int64_t>(kT0 + kGroups * 1000)), 2 * kGroups + 1);
}

TEST_F(ClockedStreamTest, SeekTimeSkipsEmptySegments) {
  // Empty segments (a roll with nothing appended since; also left behind when
  // a write fails right after a roll) carry no timestamps: seeking must not
  // land past older data because of them.
  auto s = OpenOrDie(Options());
  clock_.Set(kT0);
  AppendN(s.get(), 1, 2, 2);                     // seqs 1, 2 in segment 1
  ASSERT_TRUE(s->TEST_RollSegment().ok());       // segment 2, left empty
  ASSERT_TRUE(s->TEST_RollSegment().ok());       // segment 3
  clock_.Set(kT0 + 1000);
  AppendN(s.get(), 3, 2, 2);                     // seqs 3, 4 in segment 3
  ASSERT_TRUE(s->TEST_RollSegment().ok());       // segment 4, active and empty
  ASSERT_EQ(s->stats().segments, 4u);
  auto first = s->SeekTime(static_cast<int64_t>(kT0));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(*first, 1u);
  auto before = s->SeekTime(static_cast<int64_t>(kT0 - 5));
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(*before, 1u);
  auto second = s->SeekTime(static_cast<int64_t>(kT0 + 1));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(*second, 3u);
  auto after = s->SeekTime(static_cast<int64_t>(kT0 + 1001));
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(*after, 5u);
}

// --- segments and retention ---------------------------------------------------

TEST_F(StreamTest, RollsBySize) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  auto s = OpenOrDie(o);
  AppendN(s.get(), 1, 2000, 10, 200);  // ~490 KB of records
  const StreamStats st = s->stats();
  EXPECT_GE(st.segments, 7u);
  const auto files = SegmentFiles();
  ASSERT_EQ(files.size(), st.segments);
  uint64_t total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const uint64_t size = std::filesystem::file_size(files[i]);
    EXPECT_LE(size, o.segment_bytes) << files[i];
    uint64_t id;
    ASSERT_TRUE(ParseSegmentFileName(std::filesystem::path(files[i]).filename(), &id));
    EXPECT_EQ(id, i + 1);  // ids from 1, consecutive
    total += size;
  }
  EXPECT_GE(total, st.bytes);  // the files hold at least the counted bytes (plus padding)
  EXPECT_EQ(ReadAll(s.get(), 1).size(), 2000u);
}

TEST_F(ClockedStreamTest, RollsByAge) {
  StreamOptions o = Options();
  o.segment_age_us = 10'000'000;
  auto s = OpenOrDie(o);
  AppendN(s.get(), 1, 3);
  clock_.Advance(5'000'000);
  AppendN(s.get(), 4, 3);
  EXPECT_EQ(s->stats().segments, 1u);
  clock_.Advance(6'000'000);  // the segment is now 11 s old
  AppendN(s.get(), 7, 3);
  EXPECT_EQ(s->stats().segments, 2u);
  AppendN(s.get(), 10, 3);
  EXPECT_EQ(s->stats().segments, 2u);  // the new segment is young
  EXPECT_EQ(ReadAll(s.get(), 1).size(), 12u);
}

TEST_F(StreamTest, RetentionByBytesDeletesWholeSegments) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  o.retention_bytes = 200 << 10;
  auto s = OpenOrDie(o);
  constexpr uint64_t kN = 3000;
  AppendN(s.get(), 1, kN, 10, 150);
  ASSERT_TRUE(s->EnforceRetention().ok());
  const StreamStats st = s->stats();
  EXPECT_LE(st.bytes, o.retention_bytes);
  EXPECT_GT(st.bytes, o.retention_bytes - o.segment_bytes);
  EXPECT_GT(st.first_seq, 1u);
  const auto files = SegmentFiles();
  EXPECT_EQ(files.size(), st.segments);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/s/" + SegmentFileName(1)));

  // Everything from the new first seq on is intact; below it is out of range.
  auto below = s->Read({.from_seq = st.first_seq - 1});
  ASSERT_FALSE(below.has_value());
  EXPECT_EQ(below.error().code(), ErrorCode::kOutOfRange);
  const auto rest = ReadAll(s.get(), st.first_seq);
  ASSERT_EQ(rest.size(), kN - st.first_seq + 1);
  for (const Entry& e : rest) ASSERT_EQ(e.payload, PayloadFor(e.seq, 150));

  // The first remaining segment begins at first_seq: whole segments went.
  auto r = s->Read({.from_seq = st.first_seq, .max_messages = 1});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->entries[0].seq, st.first_seq);

  // Retention holds across a reopen, and appends continue after it.
  s.reset();
  s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().first_seq, st.first_seq);
  EXPECT_EQ(s->stats().frontier, kN);
  EXPECT_EQ(ReadCode(s.get(), 1), ErrorCode::kOutOfRange);
  EXPECT_EQ(AppendN(s.get(), kN + 1, 1), kN + 1);
}

TEST_F(ClockedStreamTest, RetentionByAge) {
  StreamOptions o = Options();
  o.retention_age_us = 10'000'000;
  auto s = OpenOrDie(o);
  clock_.Set(kT0);
  AppendN(s.get(), 1, 5);  // segment 1: seqs 1..5, newest record at kT0
  ASSERT_TRUE(s->TEST_RollSegment().ok());
  clock_.Set(kT0 + 5'000'000);
  AppendN(s.get(), 6, 5);  // segment 2: seqs 6..10 at kT0 + 5 s
  ASSERT_TRUE(s->TEST_RollSegment().ok());
  clock_.Set(kT0 + 8'000'000);
  AppendN(s.get(), 11, 5);  // segment 3 (active): seqs 11..15
  ASSERT_EQ(s->stats().segments, 3u);

  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_EQ(s->stats().first_seq, 1u);  // nothing is 10 s old yet

  clock_.Set(kT0 + 12'000'000);  // segment 1 is 12 s old, segment 2 7 s
  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_EQ(s->stats().first_seq, 6u);
  EXPECT_EQ(s->stats().segments, 2u);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/s/" + SegmentFileName(1)));
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/s/" + SegmentFileName(2)));

  clock_.Set(kT0 + 100'000'000);  // everything is old; the active segment stays
  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_EQ(s->stats().first_seq, 11u);
  EXPECT_EQ(s->stats().segments, 1u);
  EXPECT_EQ(SegmentFiles().size(), 1u);
  EXPECT_EQ(ReadCode(s.get(), 10), ErrorCode::kOutOfRange);
  const auto rest = ReadAll(s.get(), 11);
  ASSERT_EQ(rest.size(), 5u);
  EXPECT_EQ(rest[0].payload, PayloadFor(11));
}

TEST_F(ClockedStreamTest, RetentionByAgePassesEmptySegments) {
  // An empty sealed segment (a roll with nothing appended after it; also what
  // a write failing right after a roll leaves) holds no record, so it cannot
  // be "too young": it must not stop retention from reaching older data
  // behind it.
  StreamOptions o = Options();
  o.retention_age_us = 10'000'000;
  auto s = OpenOrDie(o);
  clock_.Set(kT0);
  AppendN(s.get(), 1, 5);                     // segment 1: seqs 1..5
  ASSERT_TRUE(s->TEST_RollSegment().ok());    // segment 2: empty
  ASSERT_TRUE(s->TEST_RollSegment().ok());    // segment 3
  clock_.Set(kT0 + 1'000'000);
  AppendN(s.get(), 6, 5);                     // segment 3: seqs 6..10
  ASSERT_TRUE(s->TEST_RollSegment().ok());    // segment 4 (active)
  clock_.Set(kT0 + 2'000'000);
  AppendN(s.get(), 11, 5);
  ASSERT_EQ(s->stats().segments, 4u);

  clock_.Set(kT0 + 100'000'000);  // every sealed segment is long past the age
  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_EQ(s->stats().first_seq, 11u);
  EXPECT_EQ(s->stats().segments, 1u);
  EXPECT_EQ(SegmentFiles().size(), 1u);
}

TEST_F(StreamTest, NoRetentionKeepsEverything) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  auto s = OpenOrDie(o);
  AppendN(s.get(), 1, 1000, 10, 150);
  const uint64_t segments = s->stats().segments;
  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_EQ(s->stats().first_seq, 1u);
  EXPECT_EQ(s->stats().segments, segments);
}

// --- reopen -------------------------------------------------------------------

TEST_F(StreamTest, ReopenRestoresFrontierDataAndDedup) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  std::vector<std::string> payloads;
  {
    auto s = OpenOrDie(o);
    // Producers 7 and 8 interleaved, producer seqs counting from 1 each;
    // anonymous messages between them.
    uint64_t p7 = 0, p8 = 0;
    for (int i = 0; i < 600; ++i) {
      payloads.push_back(PayloadFor(i, 120));
      Message m;
      m.payload = payloads.back();
      if (i % 3 == 0) {
        m.producer_id = 7;
        m.producer_seq = ++p7;
      } else if (i % 3 == 1) {
        m.producer_id = 8;
        m.producer_seq = ++p8;
      }
      ASSERT_TRUE(s->Append({&m, 1}).status.ok());
    }
    ASSERT_GE(s->stats().segments, 2u);
    EXPECT_EQ(s->LookupProducer(7, 200).state, Stream::ProducerLookup::State::kCommitted);
  }
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  const StreamStats st = s->stats();
  EXPECT_EQ(st.frontier, 600u);
  EXPECT_EQ(st.next_seq, 601u);
  EXPECT_EQ(st.first_seq, 1u);
  EXPECT_EQ(s->recovery_report().frontier, 600u);
  EXPECT_EQ(s->recovery_report().truncated_bytes, 0u);
  EXPECT_EQ(s->recovery_report().segments, st.segments);

  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), 600u);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].payload, payloads[i]);

  // The dedup window is rebuilt from the log.
  uint64_t seq = 0;
  EXPECT_EQ(s->HighestProducerSeq(7, &seq), 200u);
  EXPECT_EQ(seq, 598u);  // i = 597 is producer 7's 200th
  EXPECT_EQ(s->HighestProducerSeq(8, &seq), 200u);
  EXPECT_EQ(seq, 599u);
  EXPECT_EQ(s->HighestProducerSeq(9), 0u);
  auto known = s->LookupProducer(7, 150);
  EXPECT_EQ(known.state, Stream::ProducerLookup::State::kCommitted);
  EXPECT_EQ(known.seq, 3u * 149 + 1);
  EXPECT_EQ(all[known.seq - 1].producer_id, 7u);
  EXPECT_EQ(all[known.seq - 1].producer_seq, 150u);
  EXPECT_EQ(s->LookupProducer(7, 201).state, Stream::ProducerLookup::State::kNew);
  EXPECT_EQ(s->LookupProducer(0, 1).state, Stream::ProducerLookup::State::kNew);

  // Appends continue with the next seq.
  EXPECT_EQ(AppendN(s.get(), 600, 1), 601u);
  Message m;
  m.payload = "again";
  m.producer_id = 7;
  m.producer_seq = 201;
  AppendResult r = s->Append({&m, 1});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.first_seq, 602u);
  auto after = s->LookupProducer(7, 201);
  EXPECT_EQ(after.state, Stream::ProducerLookup::State::kCommitted);
  EXPECT_EQ(after.seq, 602u);
}

TEST_F(StreamTest, ReopenEmptyStream) {
  { ASSERT_NE(OpenOrDie(Options()), nullptr); }
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().frontier, 0u);
  EXPECT_EQ(s->stats().segments, 1u);
  EXPECT_EQ(AppendN(s.get(), 1, 1), 1u);
}

TEST_F(StreamTest, ReopenManyTimes) {
  StreamOptions o = Options();
  o.segment_bytes = 32 << 10;
  uint64_t n = 0;
  for (int round = 0; round < 5; ++round) {
    auto s = OpenOrDie(o);
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->stats().frontier, n);
    EXPECT_EQ(AppendN(s.get(), n + 1, 150, 5), n + 1);
    n += 150;
  }
  auto s = OpenOrDie(o);
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), n);
  for (const Entry& e : all) ASSERT_EQ(e.payload, PayloadFor(e.seq));
}

// --- concurrency --------------------------------------------------------------

TEST_F(StreamTest, ConcurrentAppendsFromEightThreads) {
  StreamOptions o = Options();
  o.segment_bytes = 128 << 10;
  auto s = OpenOrDie(o);
  constexpr int kThreads = 8;
  constexpr uint64_t kPerThread = 150;
  constexpr uint64_t kTotal = kThreads * kPerThread;

  // A tail reader runs alongside: it must only ever see a gapless prefix.
  std::atomic<bool> reader_ok{true};
  std::thread reader([&] {
    uint64_t next = 1;
    while (next <= kTotal) {
      if (!s->WaitFor(next, kLongWait)) {
        reader_ok = false;
        return;
      }
      auto r = s->Read({.from_seq = next, .max_messages = 50});
      if (!r) {
        reader_ok = false;
        return;
      }
      for (const Entry& e : r->entries) {
        if (e.seq != next || e.kind != Entry::Kind::kMessage) {
          reader_ok = false;
          return;
        }
        ++next;
      }
    }
  });

  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&s, t] {
      for (uint64_t i = 0; i < kPerThread;) {
        // Threads use different call sizes so groups mix them.
        const uint64_t k = std::min<uint64_t>(1 + t % 3, kPerThread - i);
        std::vector<std::string> payloads;
        std::vector<Message> msgs(k);
        for (uint64_t j = 0; j < k; ++j) payloads.push_back(std::to_string(t) + ":" + std::to_string(i + j));
        for (uint64_t j = 0; j < k; ++j) {
          msgs[j].payload = payloads[j];
          msgs[j].producer_id = static_cast<uint64_t>(t) + 1;
          msgs[j].producer_seq = i + j + 1;
        }
        AppendResult r = s->Append(msgs);
        ASSERT_TRUE(r.status.ok()) << r.status.ToString();
        ASSERT_EQ(r.count, k);
        i += k;
      }
    });
  }
  for (auto& w : writers) w.join();
  reader.join();
  EXPECT_TRUE(reader_ok);

  const StreamStats st = s->stats();
  EXPECT_EQ(st.frontier, kTotal);
  EXPECT_EQ(st.in_doubt, 0u);
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), kTotal);
  std::map<int, int64_t> last_index;  // per thread, the last index seen
  std::set<std::string> seen;
  for (size_t n = 0; n < all.size(); ++n) {
    const Entry& e = all[n];
    ASSERT_EQ(e.seq, n + 1);  // every seq 1..N exactly once
    const std::string payload(e.payload);
    ASSERT_TRUE(seen.insert(payload).second) << "duplicate " << payload;
    const size_t colon = payload.find(':');
    ASSERT_NE(colon, std::string::npos);
    const int t = std::stoi(payload.substr(0, colon));
    const int64_t i = std::stoll(payload.substr(colon + 1));
    auto it = last_index.find(t);
    const int64_t prev = it == last_index.end() ? -1 : it->second;
    ASSERT_EQ(i, prev + 1) << "thread " << t << " out of its own order";
    last_index[t] = i;
    EXPECT_EQ(e.producer_id, static_cast<uint64_t>(t) + 1);
    EXPECT_EQ(e.producer_seq, static_cast<uint64_t>(i) + 1);
  }
  ASSERT_EQ(last_index.size(), static_cast<size_t>(kThreads));
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(last_index[t], static_cast<int64_t>(kPerThread) - 1);
    EXPECT_EQ(s->HighestProducerSeq(static_cast<uint64_t>(t) + 1), kPerThread);
  }
}

TEST_F(StreamTest, AsyncAppendsCallBackOnceEachAndShareOneWrite) {
  constexpr int kN = 300;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> calls(kN, 0);
  std::vector<AppendResult> results(kN);
  int done = 0;
  // The listener runs on the writer thread: holding it there while the
  // appends queue up makes the group commit deterministic.
  bool writer_busy = false, release = false;
  // Declared after what the callbacks use, so it closes first; the guard
  // frees the writer if an assertion ends the test early.
  auto s = OpenOrDie(Options());
  struct Release {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& release;
    ~Release() {
      std::lock_guard l(mu);
      release = true;
      cv.notify_all();
    }
  } guard{mu, cv, release};
  s->SetFrontierListener([&](uint64_t) {
    std::unique_lock l(mu);
    writer_busy = true;
    cv.notify_all();
    cv.wait(l, [&] { return release; });
  });
  std::vector<std::string> payloads;
  for (int i = 0; i < kN; ++i) payloads.push_back(PayloadFor(i));
  auto append = [&](int i) {
    Message m;
    m.payload = payloads[i];
    s->AppendAsync({&m, 1}, [&, i](const AppendResult& r) {
      std::lock_guard l(mu);
      ++calls[i];
      results[i] = r;
      ++done;
      cv.notify_all();
    });
  };
  append(0);
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, kLongWait, [&] { return writer_busy; }));
  }
  for (int i = 1; i < kN; ++i) append(i);
  EXPECT_EQ(s->stats().frontier, 1u);
  EXPECT_EQ(s->stats().next_seq, static_cast<uint64_t>(kN) + 1);  // seqs assigned at once
  EXPECT_EQ(s->stats().in_doubt, static_cast<size_t>(kN) - 1);    // but in doubt
  auto hidden = s->Read({.from_seq = 2});
  ASSERT_TRUE(hidden.has_value());
  EXPECT_TRUE(hidden->entries.empty());  // and invisible to readers
  {
    std::unique_lock l(mu);
    release = true;
    cv.notify_all();
    ASSERT_TRUE(cv.wait_for(l, kLongWait, [&] { return done == kN; }));
  }
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(calls[i], 1);
    EXPECT_TRUE(results[i].status.ok());
    EXPECT_EQ(results[i].first_seq, static_cast<uint64_t>(i) + 1);  // seqs in call order
    EXPECT_EQ(results[i].count, 1u);
  }
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) EXPECT_EQ(all[i].payload, payloads[i]);
  // The first append was written alone; the other 299 waited together and
  // were written and synced as one batch.
  EXPECT_EQ(s->stats().groups_written, 2u);
  EXPECT_EQ(s->stats().syncs, 2u);
  s->SetFrontierListener(nullptr);
}

// --- the lock, limits, modes ----------------------------------------------------

TEST_F(StreamTest, SecondOpenOfTheSameDirectoryFails) {
  auto first = OpenOrDie(Options());
  ASSERT_NE(first, nullptr);
  AppendN(first.get(), 1, 3);
  auto second = Stream::Open(dir_.path() + "/s", Options());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable) << second.error().ToString();
  // The refused open changed nothing.
  EXPECT_EQ(ReadAll(first.get(), 1).size(), 3u);
  AppendN(first.get(), 4, 1);
  first.reset();
  auto third = Stream::Open(dir_.path() + "/s", Options());
  ASSERT_TRUE(third.has_value()) << third.error().ToString();
  EXPECT_EQ((*third)->stats().frontier, 4u);
}

TEST_F(StreamTest, OversizedMessageIsRefused) {
  StreamOptions o = Options();
  o.max_message_bytes = 1000;
  auto s = OpenOrDie(o);
  const std::string big(2000, 'b'), fits(1000 - kRecordFixedSize, 'f');
  Message m;
  m.payload = big;
  AppendResult r = s->Append({&m, 1});
  EXPECT_EQ(r.status.code(), ErrorCode::kInvalidArgument) << r.status.ToString();
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(r.first_seq, 0u);
  EXPECT_FALSE(r.hole);
  EXPECT_EQ(s->stats().next_seq, 1u);  // no seq was spent on it

  // One oversized message refuses the whole append.
  Message ok;
  ok.payload = "small";
  std::vector<Message> mixed = {ok, m};
  EXPECT_EQ(s->Append(mixed).status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s->stats().next_seq, 1u);

  // The key and headers count towards the limit.
  Message keyed;
  keyed.payload = fits;
  keyed.key = "k";
  EXPECT_EQ(s->Append({&keyed, 1}).status.code(), ErrorCode::kInvalidArgument);

  Message exact;
  exact.payload = fits;  // exactly max_message_bytes as a record
  r = s->Append({&exact, 1});
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.first_seq, 1u);

  // No messages at all is refused too.
  EXPECT_EQ(s->Append({}).status.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s->stats().frontier, 1u);
  EXPECT_TRUE(s->health().ok());
}

TEST_F(StreamTest, InvalidOptionsAreRefused) {
  StreamOptions o = Options();
  o.max_group_bytes = 1 << 20;
  o.max_message_bytes = 2 << 20;
  auto s = Stream::Open(dir_.path() + "/s", o);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  o.max_message_bytes = 1 << 20;
  o.max_group_bytes = kMaxBatchSize;
  s = Stream::Open(dir_.path() + "/s", o);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(StreamTest, MissingDirectoryWithoutCreateIsNotFound) {
  StreamOptions o = Options();
  o.create_if_missing = false;
  auto s = Stream::Open(dir_.path() + "/nope", o);
  ASSERT_FALSE(s.has_value());
  EXPECT_TRUE(s.error().IsNotFound()) << s.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/nope"));
}

TEST_F(StreamTest, SyncNoneMode) {
  StreamOptions o = Options();
  o.sync = SyncMode::kNone;
  o.segment_bytes = 64 << 10;
  {
    auto s = OpenOrDie(o);
    AppendN(s.get(), 1, 1000, 10, 150);
    const StreamStats st = s->stats();
    EXPECT_EQ(st.frontier, 1000u);
    EXPECT_GT(st.groups_written, 0u);
    EXPECT_EQ(st.syncs, 0u);  // acknowledged without fdatasync
    EXPECT_GE(st.segments, 2u);
    EXPECT_EQ(ReadAll(s.get(), 1).size(), 1000u);
  }
  // A clean close of the process keeps everything (only a machine crash may not).
  auto s = OpenOrDie(o);
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), 1000u);
  for (const Entry& e : all) ASSERT_EQ(e.payload, PayloadFor(e.seq, 150));
}

TEST_F(StreamTest, BufferedAndUnpreallocatedMode) {
  // The same behaviour without O_DIRECT or fallocate.
  StreamOptions o = Options();
  o.direct_io = false;
  o.preallocate = false;
  o.segment_bytes = 64 << 10;
  {
    auto s = OpenOrDie(o);
    AppendN(s.get(), 1, 800, 8, 150);
  }
  auto s = OpenOrDie(o);
  EXPECT_EQ(s->stats().frontier, 800u);
  const auto all = ReadAll(s.get(), 1);
  ASSERT_EQ(all.size(), 800u);
  for (const Entry& e : all) ASSERT_EQ(e.payload, PayloadFor(e.seq, 150));
  // Without direct I/O there is no padding: each file ends at its last batch.
  uint64_t total = 0;
  for (const auto& f : SegmentFiles()) total += std::filesystem::file_size(f);
  EXPECT_EQ(total, s->stats().bytes);
}

TEST_F(StreamTest, OpenLogsANewStream) {
  auto s = OpenOrDie(Options());
  const auto lines = Logged();
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines[0], HasSubstr("new stream"));
}

// Disk reserved in proportion to what a stream holds: an empty stream's
// segment is one header block, not a preallocated segment; a stream that
// holds a few MiB reserves at most one more step (1 to 64 MiB) beyond them.
uint64_t ReservedBytes(const std::string& dir) {
  uint64_t total = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".seg") continue;
    struct stat st {};
    if (::stat(e.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

TEST(StreamDiskTest, DiskIsReservedInStepsNotAWholeSegmentPerStream) {
  TempDir dir;
  StreamOptions o;  // preallocate on, 256 MiB segments
  auto s = Stream::Open(dir.path() + "/s", o);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_LE(ReservedBytes(dir.path() + "/s"), 64u * 1024) << "an empty stream reserved more than its header";

  const std::string payload(1024, 'p');
  constexpr int kMessages = 6000;  // about 6 MiB
  for (int i = 0; i < kMessages; i += 100) {
    std::vector<Message> batch(100, Message{.payload = payload});
    ASSERT_TRUE((*s)->Append(batch).status.ok());
  }
  const uint64_t held = (*s)->stats().bytes;
  const uint64_t reserved = ReservedBytes(dir.path() + "/s");
  EXPECT_GE(reserved, held);
  EXPECT_LE(reserved, 2 * held + (1u << 20)) << "held " << held << " bytes, reserved " << reserved;
  // Everything written reads back.
  auto r = (*s)->Read({.from_seq = 1, .max_messages = kMessages, .max_bytes = 64 << 20});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->entries.size(), static_cast<size_t>(kMessages));
}

}  // namespace
}  // namespace floe::log
