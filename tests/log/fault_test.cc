// The stream on top of the fault-injecting file layer (tests/support/fault_env.h):
// crashes that lose unsynced bytes, failed fdatasync, short writes, a full
// disk, flipped bytes. Each test states the invariant of DESIGN.md it guards.
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "log/batch.h"
#include "log/format.h"
#include "log/segment.h"
#include "log/stream.h"
#include "support/fault_env.h"

namespace floe::log {
namespace {

using test::CrashMode;
using test::CrashModeName;
using test::CrashOptions;
using test::FaultEnv;
using test::FaultEnvOptions;
using test::WriteFault;

constexpr char kDir[] = "/data/orders";
constexpr int kEIO = 5;
constexpr int kENOSPC = 28;

std::string SegmentPath(uint64_t id) { return std::string(kDir) + "/" + SegmentFileName(id); }

// A payload that names its append, so a misplaced record is recognisable.
std::string MakePayload(size_t len) {
  static std::atomic<uint64_t> next_id{1};
  std::string p = fmt::format("m{}:", next_id.fetch_add(1));
  for (size_t i = p.size(); i < len; ++i) p.push_back(static_cast<char>('a' + (i * 7 + p.size()) % 26));
  return p;
}

std::vector<std::string> MakePayloads(size_t count, size_t len) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) out.push_back(MakePayload(len));
  return out;
}

std::vector<std::string> RandomPayloads(std::mt19937_64& rng) {
  const size_t count = std::uniform_int_distribution<size_t>(1, 6)(rng);
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) out.push_back(MakePayload(std::uniform_int_distribution<size_t>(1, 1500)(rng)));
  return out;
}

// What a stream holds, read back through Read: seq -> payload, or nullopt
// for a hole.
struct Readback {
  uint64_t first_seq = 0;
  uint64_t frontier = 0;
  std::map<uint64_t, std::optional<std::string>> seqs;
};

// Reads everything visible in pages of `page` entries. Fails if a read
// returns entries that are not contiguous from where it started, an entry
// above the frontier, or (`quiescent`: nothing appends meanwhile) stops
// short of the frontier.
Result<Readback> ReadAll(Stream& s, size_t page = 16, bool quiescent = true) {
  Readback rb;
  rb.first_seq = s.stats().first_seq;
  uint64_t seq = rb.first_seq;
  while (true) {
    auto r = s.Read({.from_seq = seq, .max_messages = page});
    if (!r) return Err(r.error());
    const uint64_t frontier = s.stats().frontier;
    for (const Entry& e : r->entries) {
      if (e.seq != seq) return Err(Status::Internal(fmt::format("read at {} returned seq {}", seq, e.seq)));
      const uint64_t n = e.kind == Entry::Kind::kGap ? e.gap_count : 1;
      if (n == 0) return Err(Status::Internal(fmt::format("empty gap at {}", seq)));
      if (seq + n - 1 > frontier)
        return Err(Status::Internal(fmt::format("seq {} read above the frontier {}", seq + n - 1, frontier)));
      for (uint64_t k = 0; k < n; ++k) {
        if (e.kind == Entry::Kind::kGap) rb.seqs[seq + k] = std::nullopt;
        else rb.seqs[seq + k] = e.payload;
      }
      seq += n;
    }
    if (r->next_seq != seq)
      return Err(Status::Internal(fmt::format("next_seq {} after reading up to {}", r->next_seq, seq)));
    if (r->entries.empty()) break;
  }
  rb.frontier = s.stats().frontier;
  if (quiescent && seq != rb.frontier + 1)
    return Err(Status::Internal(fmt::format("reads stopped at {} below the frontier {}", seq, rb.frontier)));
  return rb;
}

// What the test knows of a stream: the outcome each append's caller was
// told, and what recovery made visible. Thread-safe.
class Model {
 public:
  // Records the outcome of an append of `payloads`.
  void Record(const AppendResult& r, const std::vector<std::string>& payloads) {
    std::lock_guard l(mu_);
    if (r.count == 0) return;  // refused: no seqs
    for (uint32_t i = 0; i < r.count; ++i) {
      const uint64_t seq = r.first_seq + i;
      unknown_.erase(seq);
      if (r.status.ok()) acked_[seq] = payloads[i];
      else if (r.hole) holes_.insert(seq);
      else unknown_[seq] = payloads[i];  // in doubt: the outcome is unknown
    }
  }

  // Checks a quiescent stream: every acknowledged record is there, intact and
  // in order; every hole reads as a gap; any other visible seq is one whose
  // outcome was unknown and holds what was appended there (or is a gap); the
  // frontier did not move back. With `settle` (the stream was just opened),
  // what is now visible is what the stream must show from now on, and seqs
  // above the frontier may be assigned again.
  testing::AssertionResult Check(Stream& s, bool settle) {
    auto rb = ReadAll(s);
    if (!rb) return testing::AssertionFailure() << "reading the stream: " << rb.error().ToString();
    std::lock_guard l(mu_);
    std::vector<std::string> problems;
    auto problem = [&](std::string p) {
      if (problems.size() < 12) problems.push_back(std::move(p));
    };
    if (rb->frontier < max_frontier_)
      problem(fmt::format("frontier moved back from {} to {}", max_frontier_, rb->frontier));
    for (const auto& [seq, payload] : acked_) {
      auto it = rb->seqs.find(seq);
      if (it == rb->seqs.end()) problem(fmt::format("acknowledged seq {} is missing", seq));
      else if (!it->second) problem(fmt::format("acknowledged seq {} reads as a gap", seq));
      else if (*it->second != payload) problem(fmt::format("acknowledged seq {} holds other bytes", seq));
    }
    for (uint64_t seq : holes_) {
      auto it = rb->seqs.find(seq);
      if (it == rb->seqs.end()) problem(fmt::format("hole {} is missing", seq));
      else if (it->second) problem(fmt::format("hole {} reads as a message", seq));
    }
    for (const auto& [seq, value] : rb->seqs) {
      if (acked_.count(seq) || holes_.count(seq)) continue;
      auto it = unknown_.find(seq);
      if (it == unknown_.end()) problem(fmt::format("seq {} is visible but was never appended", seq));
      else if (value && *value != it->second) problem(fmt::format("in-doubt seq {} holds bytes never appended there", seq));
    }
    if (!problems.empty()) {
      auto f = testing::AssertionFailure();
      for (const auto& p : problems) f << p << "\n";
      return f;
    }
    max_frontier_ = std::max(max_frontier_, rb->frontier);
    if (settle) {
      for (const auto& [seq, value] : rb->seqs) {
        if (value) acked_[seq] = *value;
        else holes_.insert(seq);
      }
      unknown_.clear();
    }
    return testing::AssertionSuccess();
  }

  size_t acked() const {
    std::lock_guard l(mu_);
    return acked_.size();
  }
  size_t holes() const {
    std::lock_guard l(mu_);
    return holes_.size();
  }
  void Reset() {
    std::lock_guard l(mu_);
    acked_.clear();
    holes_.clear();
    unknown_.clear();
    max_frontier_ = 0;
  }

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, std::string> acked_;    // seq -> payload the reader must get
  std::set<uint64_t> holes_;                 // seqs that must read as gaps
  std::map<uint64_t, std::string> unknown_;  // in-doubt seq -> payload appended there
  uint64_t max_frontier_ = 0;
};

// Collects the stream's log lines (recovery events, failures).
class LogLines {
 public:
  std::function<void(const std::string&)> Sink() {
    return [this](const std::string& line) {
      std::lock_guard l(mu_);
      lines_.push_back(line);
    };
  }
  bool Contains(const std::string& needle) const {
    std::lock_guard l(mu_);
    for (const auto& line : lines_)
      if (line.find(needle) != std::string::npos) return true;
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

bool AnyContains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& line : lines)
    if (line.find(needle) != std::string::npos) return true;
  return false;
}

// A stream in a directory of a FaultEnv, with a model of what it was told.
class FaultTest : public testing::Test {
 protected:
  virtual StreamOptions Options() {
    StreamOptions o;
    o.env = env_.get();
    o.direct_io = direct_;
    o.segment_bytes = segment_bytes_;
    o.max_group_bytes = 16 << 10;  // groups of a few appends
    o.max_message_bytes = 4 << 10;
    o.logger = log_.Sink();
    return o;
  }

  void Open() {
    auto s = Stream::Open(kDir, Options());
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    stream_ = std::move(*s);
  }

  // Opens, checks the stream against the model and settles it.
  void OpenAndCheck() {
    ASSERT_NO_FATAL_FAILURE(Open());
    ASSERT_TRUE(model_.Check(*stream_, /*settle=*/true));
  }

  void Close() { stream_.reset(); }

  // The machine loses power with the stream open; then it is reopened.
  void CrashAndReopen(CrashOptions crash) {
    env_->Crash(crash);
    Close();  // the dead process: everything it still does fails
    env_->Restart();
    ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  }

  AppendResult Append(const std::vector<std::string>& payloads) {
    std::vector<Message> msgs;
    for (const auto& p : payloads) msgs.push_back({.payload = p});
    AppendResult r = stream_->Append(msgs);
    model_.Record(r, payloads);
    return r;
  }
  AppendResult Append(size_t count, size_t len = 100) { return Append(MakePayloads(count, len)); }

  // Appends `count` batches that must succeed.
  void AppendOk(int count) {
    for (int i = 0; i < count; ++i) {
      AppendResult r = Append(3);
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    }
  }

  // Blocking appends from `threads` threads at once (group commit), until
  // `each` appends or the stream refuses.
  void AppendConcurrently(int threads, int each, uint64_t seed) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([this, t, each, seed] {
        std::mt19937_64 rng(seed * 131 + static_cast<uint64_t>(t));
        for (int i = 0; i < each; ++i) {
          AppendResult r = Append(RandomPayloads(rng));
          if (!r.status.ok() && r.count == 0) break;  // refused: the stream failed
        }
      });
    }
    for (auto& w : workers) w.join();
  }

  // Appends handed to the stream without waiting for them (AppendAsync), so
  // that group commit writes many batches per fdatasync.
  class AsyncAppends {
   public:
    void Wait() {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return left_ == 0; });
    }

   private:
    friend class FaultTest;
    std::mutex mu_;
    std::condition_variable cv_;
    int left_ = 0;
  };
  // Issues `count` appends and returns at once; Wait() for their outcomes.
  std::unique_ptr<AsyncAppends> IssueAppends(int count, uint64_t seed) {
    auto pending = std::make_unique<AsyncAppends>();
    pending->left_ = count;
    std::mt19937_64 rng(seed);
    for (int i = 0; i < count; ++i) {
      auto payloads = std::make_shared<std::vector<std::string>>(RandomPayloads(rng));
      std::vector<Message> msgs;
      for (const auto& p : *payloads) msgs.push_back({.payload = p});
      stream_->AppendAsync(msgs, [this, payloads, p = pending.get()](const AppendResult& r) {
        model_.Record(r, *payloads);
        std::lock_guard l(p->mu_);
        if (--p->left_ == 0) p->cv_.notify_all();
      });
    }
    return pending;
  }

  bool direct_ = false;
  uint64_t segment_bytes_ = 64 << 10;  // several segments per test
  std::unique_ptr<FaultEnv> env_ = std::make_unique<FaultEnv>();
  LogLines log_;
  Model model_;
  std::unique_ptr<Stream> stream_;  // destroyed before env_
};

// ---------------------------------------------------------------------------
// The fault layer itself: the tests below are only as good as its model.

TEST(FaultEnvTest, UnsyncedBytesAndEntriesDoNotSurviveACrash) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true});
  ASSERT_TRUE(a);
  ASSERT_TRUE((*a)->WriteAt(0, std::string_view("synced")).ok());
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  ASSERT_TRUE((*a)->WriteAt(6, std::string_view("+lost")).ok());
  auto b = env.Open("/d/b", {.create = true, .writable = true});  // entry never dir-synced
  ASSERT_TRUE(b);
  ASSERT_TRUE((*b)->WriteAt(0, std::string_view("b")).ok());
  ASSERT_TRUE((*b)->Sync().ok());
  env.Crash();
  EXPECT_TRUE(env.down());
  EXPECT_FALSE((*a)->WriteAt(0, std::string_view("x")).ok()) << "a handle from before the crash must be stale";
  EXPECT_FALSE(env.Open("/d/a", {}).has_value()) << "the env is down until Restart";
  env.Restart();
  EXPECT_EQ(*env.Contents("/d/a"), "synced");
  EXPECT_FALSE(env.Exists("/d/b"));
}

TEST(FaultEnvTest, RemovalNotDirSyncedComesBack) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true});
  ASSERT_TRUE((*a)->WriteAt(0, std::string_view("keep")).ok());
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  ASSERT_TRUE(env.Remove("/d/a").ok());
  EXPECT_FALSE(env.Exists("/d/a"));
  env.Crash();
  env.Restart();
  ASSERT_TRUE(env.Exists("/d/a"));
  EXPECT_EQ(*env.Contents("/d/a"), "keep");
}

TEST(FaultEnvTest, FailedSyncForgetsTheDirtyBytes) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true});
  ASSERT_TRUE((*a)->WriteAt(0, std::string_view("0123")).ok());
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  ASSERT_TRUE((*a)->WriteAt(4, std::string_view("4567")).ok());
  env.FailSyncs(1);
  Status s = (*a)->Sync();
  EXPECT_EQ(s.code(), ErrorCode::kIOError);
  ASSERT_TRUE((*a)->WriteAt(8, std::string_view("89")).ok());
  ASSERT_TRUE((*a)->Sync().ok()) << "only one sync was to fail";
  EXPECT_EQ(env.failed_syncs(), 1u);
  EXPECT_EQ(env.sync_calls(), 3u);
  env.Crash();
  env.Restart();
  // Like Linux: the write-back that failed is not retried by the next sync.
  EXPECT_EQ(*env.Contents("/d/a"), std::string("0123\0\0\0\089", 10));
}

TEST(FaultEnvTest, WriteFaultsWriteAPrefixThenFail) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true});
  env.InjectWriteFault({.error = kENOSPC, .after_bytes = 3});
  Status s = (*a)->WriteAt(0, std::string_view("abcdef"));
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace);
  EXPECT_EQ(*env.Contents("/d/a"), "abc");
  EXPECT_TRUE((*a)->WriteAt(0, std::string_view("xyz")).ok()) << "a non-sticky fault fires once";

  env.InjectWriteFault({.error = kENOSPC, .after_bytes = 2, .sticky = true});
  EXPECT_TRUE((*a)->WriteAt(3, std::string_view("12")).ok());
  EXPECT_FALSE((*a)->WriteAt(5, std::string_view("3")).ok());
  EXPECT_FALSE((*a)->WriteAt(5, std::string_view("3")).ok()) << "a sticky fault keeps failing";
  EXPECT_FALSE((*a)->Allocate(0, 1 << 20).ok()) << "a full disk refuses fallocate";
  env.ClearFaults();
  EXPECT_TRUE((*a)->WriteAt(5, std::string_view("3")).ok());
  EXPECT_EQ(*env.Contents("/d/a"), "xyz123");
}

TEST(FaultEnvTest, FlipByteChangesCachedAndDurableBytes) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true});
  ASSERT_TRUE((*a)->WriteAt(0, std::string_view("aaaa")).ok());
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  ASSERT_TRUE(env.FlipByte("/d/a", 2, 0x03).ok());
  EXPECT_EQ(*env.Contents("/d/a"), "aaba");
  EXPECT_EQ(*env.DurableContents("/d/a"), "aaba");
  EXPECT_EQ(env.FlipByte("/d/a", 9).code(), ErrorCode::kOutOfRange);
}

TEST(FaultEnvTest, LocksAreExclusiveAndReleasedByDestructionOrCrash) {
  FaultEnv env;
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto first = env.Lock("/d/LOCK");
  ASSERT_TRUE(first);
  auto second = env.Lock("/d/LOCK");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  first->reset();
  auto third = env.Lock("/d/LOCK");
  ASSERT_TRUE(third) << "released on destruction";
  env.Crash();
  env.Restart();
  auto fourth = env.Lock("/d/LOCK");
  ASSERT_TRUE(fourth) << "a crash releases every lock";
  third->reset();  // the dead holder's lock must not release the new one
  EXPECT_FALSE(env.Lock("/d/LOCK"));
}

TEST(FaultEnvTest, DirectFilesRefuseUnalignedIo) {
  FaultEnv env(FaultEnvOptions{.support_direct = true});
  ASSERT_TRUE(env.CreateDir("/d").ok());
  auto a = env.Open("/d/a", {.create = true, .writable = true, .direct = true});
  ASSERT_TRUE((*a)->direct());
  EXPECT_FALSE((*a)->WriteAt(0, std::string_view("x")).ok());
  alignas(kDirectIoAlignment) static char block[kDirectIoAlignment] = {1};
  EXPECT_TRUE((*a)->WriteAt(kDirectIoAlignment, std::span<const char>(block, sizeof block)).ok());
  EXPECT_FALSE((*a)->WriteAt(1, std::span<const char>(block, sizeof block)).ok());
  EXPECT_EQ(env.alignment_violations(), 2u);
  auto buffered = env.Open("/d/b", {.create = true, .writable = true, .direct = true});
  FaultEnv plain;
  ASSERT_TRUE(plain.CreateDir("/d").ok());
  auto p = plain.Open("/d/a", {.create = true, .writable = true, .direct = true});
  EXPECT_FALSE((*p)->direct()) << "without support_direct, direct opens fall back to buffered";
}

TEST(FaultEnvTest, TornAndZeroTailsAlwaysDamageTheUnsyncedBytesOnly) {
  for (CrashMode mode : {CrashMode::kTearTail, CrashMode::kZeroTail, CrashMode::kKeepPrefix, CrashMode::kSparsePages}) {
    for (uint64_t seed = 0; seed < 50; ++seed) {
      FaultEnv env;
      ASSERT_TRUE(env.CreateDir("/d").ok());
      auto a = env.Open("/d/a", {.create = true, .writable = true});
      const std::string synced(5000, 's'), unsynced(9000, 'u');
      ASSERT_TRUE((*a)->WriteAt(0, synced).ok());
      ASSERT_TRUE((*a)->Sync().ok());
      ASSERT_TRUE(env.SyncDir("/d").ok());
      ASSERT_TRUE((*a)->WriteAt(synced.size(), unsynced).ok());
      env.Crash({mode, seed});
      env.Restart();
      const std::string after = *env.Contents("/d/a");
      ASSERT_GE(after.size(), synced.size());
      EXPECT_EQ(after.substr(0, synced.size()), synced) << CrashModeName(mode) << " seed " << seed;
      if (mode == CrashMode::kTearTail || mode == CrashMode::kZeroTail) {
        EXPECT_NE(after, synced + unsynced) << "a torn tail must differ from what was written";
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Invariant 2: an acknowledged record survives a crash that loses every byte
// that was not fdatasync'd, whatever the crash does to the unsynced tail.

struct CrashParam {
  CrashMode mode;
  bool direct;
};

class CrashTest : public FaultTest, public testing::WithParamInterface<CrashParam> {
 protected:
  void SetUp() override {
    direct_ = GetParam().direct;
    env_ = std::make_unique<FaultEnv>(FaultEnvOptions{.support_direct = direct_});
  }
};

TEST_P(CrashTest, AcknowledgedRecordsSurviveCrashesMidAppend) {
  const CrashMode mode = GetParam().mode;
  std::mt19937_64 rng(static_cast<uint64_t>(mode) * 17 + (GetParam().direct ? 1 : 0));
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  for (int round = 0; round < 6; ++round) {
    // Crash inside a random fdatasync while three threads append: the write
    // it was to make durable is the unsynced tail.
    const uint64_t crashes = env_->crashes();
    env_->CrashAtSync(std::uniform_int_distribution<int>(1, 30)(rng), {mode, rng()});
    AppendConcurrently(3, 25, rng());
    if (env_->crashes() == crashes) env_->Crash({mode, rng()});  // all appends done first
    Close();
    env_->Restart();
    ASSERT_NO_FATAL_FAILURE(OpenAndCheck()) << "round " << round;
    EXPECT_TRUE(stream_->health().ok()) << stream_->health().ToString();
  }
  EXPECT_GT(model_.acked(), 30u) << "the test must acknowledge records to mean anything";
  EXPECT_EQ(env_->alignment_violations(), 0u);
  // The stream works after all that.
  ASSERT_NO_FATAL_FAILURE(AppendOk(3));
  Close();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
}

TEST_P(CrashTest, RecoveryIsIdempotent) {
  const CrashMode mode = GetParam().mode;
  ASSERT_NO_FATAL_FAILURE(Open());
  env_->CrashAtSync(12, {mode, 7});
  AppendConcurrently(2, 20, 3);
  if (!env_->down()) env_->Crash({mode, 7});
  Close();
  env_->Restart();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  auto first = ReadAll(*stream_);
  ASSERT_TRUE(first) << first.error().ToString();
  const StreamStats a = stream_->stats();
  Close();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  auto second = ReadAll(*stream_);
  ASSERT_TRUE(second) << second.error().ToString();
  const StreamStats b = stream_->stats();
  EXPECT_EQ(first->seqs, second->seqs);
  EXPECT_EQ(a.frontier, b.frontier);
  EXPECT_EQ(a.next_seq, b.next_seq);
  EXPECT_EQ(a.segments, b.segments);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(stream_->recovery_report().truncated_bytes, 0u) << "the first recovery already cut the tail";
}

std::vector<CrashParam> CrashParams() {
  std::vector<CrashParam> out;
  for (bool direct : {false, true})
    for (CrashMode m : {CrashMode::kDropUnsynced, CrashMode::kKeepPrefix, CrashMode::kTearTail,
                        CrashMode::kZeroTail, CrashMode::kRandom})
      out.push_back({m, direct});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Modes, CrashTest, testing::ValuesIn(CrashParams()),
                         [](const testing::TestParamInfo<CrashParam>& i) {
                           return std::string(CrashModeName(i.param.mode)) + (i.param.direct ? "Direct" : "Buffered");
                         });

// Unsynced pages reach the disk out of order (write-back and device caches
// do not keep page order): a write that carried several batches can leave a
// bad region followed by good batches. Nothing of that write was
// acknowledged, so the stream must open with every acknowledged record
// rather than take the good batches for proof of mid-stream damage.
TEST_F(FaultTest, AcknowledgedRecordsSurviveOutOfOrderWriteBack) {
  segment_bytes_ = 16 << 20;  // no roll: the crash must hit the data write
  std::mt19937_64 rng(99);
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    // Hold the writer in an fdatasync while appends pile up, so that what it
    // writes next spans many pages (and, if it writes several groups at
    // once, several batches); the machine dies in the next fdatasync.
    env_->PauseSyncs();
    auto first = IssueAppends(1, rng());
    env_->WaitForPausedSyncs(1);
    auto piled = IssueAppends(60, rng());
    env_->CrashAtSync(2, {CrashMode::kSparsePages, rng()});
    env_->ResumeSyncs();
    first->Wait();
    piled->Wait();
    if (!env_->down()) env_->Crash({CrashMode::kSparsePages, rng()});
    Close();
    env_->Restart();
    ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  }
}

// ---------------------------------------------------------------------------
// Invariant 6: a torn or corrupt unsynced tail is cut at recovery, reported,
// and never served.

TEST_F(FaultTest, TornTailIsCutReportedAndNeverServed) {
  for (CrashMode mode : {CrashMode::kTearTail, CrashMode::kKeepPrefix}) {
    for (uint64_t seed = 1; seed <= 8; ++seed) {
      SCOPED_TRACE(fmt::format("{} seed {}", CrashModeName(mode), seed));
      env_ = std::make_unique<FaultEnv>();
      model_.Reset();
      ASSERT_NO_FATAL_FAILURE(Open());
      ASSERT_NO_FATAL_FAILURE(AppendOk(5));
      const uint64_t last_acked = stream_->stats().frontier;
      env_->CrashAtSync(1, {mode, seed});
      AppendResult torn = Append(40, 200);  // several pages: the tear lands inside it
      EXPECT_FALSE(torn.status.ok());
      Close();
      env_->Restart();
      ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
      const RecoveryReport& report = stream_->recovery_report();
      const bool cut = report.truncated_bytes > 0;
      if (mode == CrashMode::kTearTail) {
        EXPECT_TRUE(cut) << "garbage after the last good batch must be cut";
      }
      if (cut) {
        EXPECT_TRUE(AnyContains(report.events, "torn tail")) << "recovery must say what it cut";
        EXPECT_TRUE(log_.Contains("torn tail")) << "and log it";
        EXPECT_EQ(stream_->stats().frontier, last_acked) << "nothing of the torn write may become visible";
      }
      auto beyond = stream_->Read({.from_seq = stream_->stats().frontier + 1});
      ASSERT_TRUE(beyond);
      EXPECT_TRUE(beyond->entries.empty());
      // The cut is durable: a second recovery, even after another crash,
      // finds nothing to cut and the same stream.
      const uint64_t frontier = stream_->stats().frontier;
      Close();
      env_->Crash();
      env_->Restart();
      ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
      EXPECT_EQ(stream_->recovery_report().truncated_bytes, 0u);
      EXPECT_EQ(stream_->stats().frontier, frontier);
      ASSERT_NO_FATAL_FAILURE(AppendOk(1));
      Close();
    }
  }
}

TEST_F(FaultTest, TornTailRefusedUnderAbsoluteConsistency) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(AppendOk(3));
  env_->CrashAtSync(1, {CrashMode::kTearTail, 5});
  EXPECT_FALSE(Append(10, 500).status.ok());
  Close();
  env_->Restart();
  StreamOptions o = Options();
  o.recovery = RecoveryPolicy::kAbsoluteConsistency;
  auto s = Stream::Open(kDir, o);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
}

// ---------------------------------------------------------------------------
// A failed write becomes holes, durably; the stream goes on in a new segment.

enum class WriteFailure { kSyncEio, kShortWriteEio, kNoSpaceAtOnce, kShortWriteNoSpace };

struct HoleParam {
  WriteFailure failure;
  CrashMode crash;
};

class HoleTest : public FaultTest, public testing::WithParamInterface<HoleParam> {
 protected:
  void Inject() {
    switch (GetParam().failure) {
      case WriteFailure::kSyncEio: env_->FailSyncs(1); break;
      case WriteFailure::kShortWriteEio: env_->InjectWriteFault({.error = kEIO, .after_bytes = 100}); break;
      case WriteFailure::kNoSpaceAtOnce: env_->InjectWriteFault({.error = kENOSPC, .after_bytes = 0}); break;
      case WriteFailure::kShortWriteNoSpace: env_->InjectWriteFault({.error = kENOSPC, .after_bytes = 30}); break;
    }
  }
  ErrorCode ExpectedCode() const {
    const WriteFailure f = GetParam().failure;
    return f == WriteFailure::kNoSpaceAtOnce || f == WriteFailure::kShortWriteNoSpace ? ErrorCode::kNoSpace
                                                                                        : ErrorCode::kIOError;
  }
};

TEST_P(HoleTest, FailedWriteBecomesHolesThatStayHoles) {
  ASSERT_NO_FATAL_FAILURE(Open());
  AppendResult before = Append(3);
  ASSERT_TRUE(before.status.ok()) << before.status.ToString();
  const uint64_t segments = stream_->stats().segments;

  Inject();
  AppendResult failed = Append(4);
  EXPECT_FALSE(failed.status.ok());
  EXPECT_EQ(failed.status.code(), ExpectedCode()) << failed.status.ToString();
  EXPECT_TRUE(failed.hole) << "the failure was recorded, so the caller must learn the seqs are holes";
  EXPECT_EQ(failed.first_seq, before.first_seq + 3);
  EXPECT_EQ(failed.count, 4u);

  AppendResult after = Append(2);
  ASSERT_TRUE(after.status.ok()) << "writes resume after a recorded failure: " << after.status.ToString();
  EXPECT_EQ(after.first_seq, failed.first_seq + 4) << "a hole's seqs are never reused";
  EXPECT_TRUE(stream_->health().ok());
  EXPECT_EQ(stream_->stats().segments, segments + 1) << "writing resumes in a new segment";
  EXPECT_EQ(stream_->stats().holes, 4u);

  // Readers get one gap for the failed seqs.
  auto r = stream_->Read({.from_seq = failed.first_seq, .max_messages = 10});
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->entries.size(), 3u);
  EXPECT_EQ(r->entries[0].kind, Entry::Kind::kGap);
  EXPECT_EQ(r->entries[0].seq, failed.first_seq);
  EXPECT_EQ(r->entries[0].gap_count, 4u);
  EXPECT_EQ(r->entries[1].kind, Entry::Kind::kMessage);
  EXPECT_EQ(r->entries[1].seq, after.first_seq);
  ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));

  // After a crash, holes are still holes and their seqs still unused.
  ASSERT_NO_FATAL_FAILURE(CrashAndReopen({GetParam().crash, 11}));
  AppendResult next = Append(1);
  ASSERT_TRUE(next.status.ok()) << next.status.ToString();
  EXPECT_EQ(next.first_seq, after.first_seq + 2);
  Close();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  EXPECT_EQ(model_.holes(), 4u);
}

std::vector<HoleParam> HoleParams() {
  std::vector<HoleParam> out;
  for (WriteFailure f : {WriteFailure::kSyncEio, WriteFailure::kShortWriteEio, WriteFailure::kNoSpaceAtOnce,
                         WriteFailure::kShortWriteNoSpace})
    for (CrashMode m : {CrashMode::kDropUnsynced, CrashMode::kKeepPrefix, CrashMode::kTearTail})
      out.push_back({f, m});
  return out;
}

const char* FailureName(WriteFailure f) {
  switch (f) {
    case WriteFailure::kSyncEio: return "SyncEio";
    case WriteFailure::kShortWriteEio: return "ShortWriteEio";
    case WriteFailure::kNoSpaceAtOnce: return "NoSpace";
    case WriteFailure::kShortWriteNoSpace: return "ShortWriteNoSpace";
  }
  return "?";
}

INSTANTIATE_TEST_SUITE_P(Failures, HoleTest, testing::ValuesIn(HoleParams()),
                         [](const testing::TestParamInfo<HoleParam>& i) {
                           return std::string(FailureName(i.param.failure)) + "Then" + CrashModeName(i.param.crash);
                         });

// Every sync the stream makes, in turn, fails once (data, roll, hole
// segment): whatever the failure hit, the stream either goes on or refuses
// writes, and after a crash it opens with every acknowledged record and hole.
TEST_F(FaultTest, EachSyncFailingOnceThenCrash) {
  segment_bytes_ = 16 << 10;  // a roll every few appends
  for (int nth = 1; nth <= 30; ++nth) {
    SCOPED_TRACE(fmt::format("sync {} fails", nth));
    env_ = std::make_unique<FaultEnv>();
    model_.Reset();
    ASSERT_NO_FATAL_FAILURE(Open());
    env_->FailSyncs(1, nth - 1);
    std::mt19937_64 rng(static_cast<uint64_t>(nth));
    for (int i = 0; i < 30; ++i) {
      AppendResult r = Append(RandomPayloads(rng));  // ~2.6 KiB on average
      if (!r.status.ok() && r.count == 0) break;
    }
    ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));
    ASSERT_NO_FATAL_FAILURE(CrashAndReopen({CrashMode::kRandom, static_cast<uint64_t>(nth)}));
    ASSERT_NO_FATAL_FAILURE(AppendOk(1));
    Close();
  }
}

// A roll whose new segment could not be made durable must not leave a
// segment behind that breaks recovery or hides records written after it.
TEST_F(FaultTest, FailedRollLeavesAnOpenableStream) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(AppendOk(2));
  env_->FailSyncs(1);
  EXPECT_FALSE(stream_->TEST_RollSegment().ok());
  ASSERT_NO_FATAL_FAILURE(AppendOk(2));  // still in the old segment
  ASSERT_TRUE(stream_->TEST_RollSegment().ok());
  ASSERT_NO_FATAL_FAILURE(AppendOk(2));
  Close();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  ASSERT_NO_FATAL_FAILURE(CrashAndReopen({CrashMode::kDropUnsynced, 0}));
}

// Under sync=none no batch is fdatasync'd, but a roll first makes the segment
// it leaves durable: a power loss can then lose only the active segment's
// tail, and never leave a sealed segment ending short of the next one's base
// seq, which recovery would take for corruption and refuse to open. The
// model is not used: sync=none may lose acknowledged records.
TEST_F(FaultTest, SyncNoneRollMakesTheSealedSegmentDurable) {
  StreamOptions o = Options();
  o.sync = SyncMode::kNone;
  auto opened = Stream::Open(kDir, o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  stream_ = std::move(*opened);
  auto append = [&] {
    auto payloads = MakePayloads(3, 100);
    std::vector<Message> msgs;
    for (const auto& p : payloads) msgs.push_back({.payload = p});
    AppendResult r = stream_->Append(msgs);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  };
  for (int i = 0; i < 4; ++i) ASSERT_NO_FATAL_FAILURE(append());
  ASSERT_TRUE(stream_->TEST_RollSegment().ok());
  ASSERT_NO_FATAL_FAILURE(append());
  env_->Crash({CrashMode::kDropUnsynced, 0});
  Close();
  env_->Restart();
  opened = Stream::Open(kDir, o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  EXPECT_EQ((*opened)->frontier(), 12u) << "the sealed segment's 12 records are durable, the active one's are not";
}

// ---------------------------------------------------------------------------
// When even the holes cannot be recorded, the stream refuses writes, keeps
// serving readers, pins the frontier below the unresolved seqs, and works
// again once reopened.

TEST_F(FaultTest, UnrecordableFailureRefusesWritesAndKeepsServingReaders) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(AppendOk(4));
  const uint64_t frontier = stream_->stats().frontier;

  env_->FailSyncs(FaultEnv::kForever);
  AppendResult failed = Append(3);
  EXPECT_FALSE(failed.status.ok());
  EXPECT_FALSE(failed.hole) << "the holes were not recorded: the outcome is unknown";
  EXPECT_EQ(failed.first_seq, frontier + 1);
  Status health = stream_->health();
  EXPECT_EQ(health.code(), ErrorCode::kUnavailable) << health.ToString() << ": retriable, it heals by itself";
  EXPECT_FALSE(health.message().empty());

  AppendResult refused = Append(1);
  EXPECT_EQ(refused.status.code(), ErrorCode::kUnavailable) << refused.status.ToString();
  EXPECT_EQ(refused.count, 0u) << "a refused append is given no seqs";

  // Readers still get everything up to the frontier, which stays put.
  EXPECT_EQ(stream_->stats().frontier, frontier);
  EXPECT_FALSE(stream_->WaitFor(frontier + 1, std::chrono::milliseconds(0)));
  ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));
  auto r = stream_->Read({.from_seq = frontier + 1});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->entries.empty());

  Close();
  env_->ClearFaults();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  EXPECT_TRUE(stream_->health().ok());
  ASSERT_NO_FATAL_FAILURE(AppendOk(2));
  ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));
}

TEST_F(FaultTest, UnrecordableFailureUnderConcurrentAppends) {
  for (int skip = 2; skip <= 12; skip += 5) {
    SCOPED_TRACE(fmt::format("{} syncs succeed first", skip));
    env_ = std::make_unique<FaultEnv>();
    model_.Reset();
    ASSERT_NO_FATAL_FAILURE(Open());
    env_->FailSyncs(FaultEnv::kForever, skip);
    AppendConcurrently(4, 20, static_cast<uint64_t>(skip));
    const StreamStats st = stream_->stats();
    EXPECT_EQ(stream_->health().code(), ErrorCode::kUnavailable);
    EXPECT_GE(st.in_doubt, 1u);
    EXPECT_LT(st.frontier + 1, st.next_seq) << "unresolved seqs must pin the frontier";
    ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));
    // Reopened with the fault gone: every acknowledged record is there.
    Close();
    env_->ClearFaults();
    ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
    ASSERT_NO_FATAL_FAILURE(AppendOk(1));
    ASSERT_NO_FATAL_FAILURE(CrashAndReopen({CrashMode::kKeepPrefix, 3}));
    Close();
  }
}

// A full disk: the write fails and so does recording the holes; once space
// is back, a reopened stream works and holds every acknowledged record.
TEST_F(FaultTest, FullDiskRefusesWritesUntilReopened) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(AppendOk(3));
  env_->InjectWriteFault({.error = kENOSPC, .after_bytes = 2000, .sticky = true});
  AppendResult r;
  int appends = 0;
  do {
    r = Append(3, 300);
    ++appends;
  } while (r.status.ok() && appends < 20);
  EXPECT_EQ(r.status.code(), ErrorCode::kNoSpace) << r.status.ToString();
  EXPECT_FALSE(stream_->health().ok());
  EXPECT_EQ(Append(1).status.code(), ErrorCode::kNoSpace) << "a full disk is reported as such, retriable";
  ASSERT_TRUE(model_.Check(*stream_, /*settle=*/false));
  Close();
  env_->ClearFaults();
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  ASSERT_NO_FATAL_FAILURE(AppendOk(2));
  ASSERT_NO_FATAL_FAILURE(CrashAndReopen({CrashMode::kDropUnsynced, 0}));
}

// Invariant 1 and 3: what a reopened stream shows is durable. A stream that
// failed mid-write is reopened (the process restarted, the machine did not):
// whatever it makes visible of the unresolved write must survive a later
// power loss, or the frontier would move back and seqs would change meaning.
enum class Unresolved {
  kProcessKilledBeforeSync,  // kill -9 between write() and fdatasync()
  kHoleSegmentNotSynced,     // every fdatasync fails
  kHoleSegmentNotWritten,    // the data sync fails, then the disk is full
};

class FrontierTest : public FaultTest, public testing::WithParamInterface<Unresolved> {};

TEST_P(FrontierTest, FrontierNeverMovesBackAcrossReopenAndCrash) {
  ASSERT_NO_FATAL_FAILURE(Open());
  ASSERT_NO_FATAL_FAILURE(AppendOk(3));
  switch (GetParam()) {
    case Unresolved::kProcessKilledBeforeSync:
      env_->CrashAtSync(1, {.power_loss = false});
      break;
    case Unresolved::kHoleSegmentNotSynced:
      env_->FailSyncs(FaultEnv::kForever);
      break;
    case Unresolved::kHoleSegmentNotWritten:
      env_->FailSyncs(1);
      // Every new segment: a hole segment is tried preallocated, then not.
      env_->InjectWriteFault({.error = kENOSPC, .after_bytes = 0, .sticky = true, .path_filter = ".seg"});
      break;
  }
  AppendResult failed = Append(5);
  EXPECT_FALSE(failed.status.ok());
  EXPECT_FALSE(failed.hole);
  Close();
  env_->Restart();  // after the kill; a no-op otherwise
  env_->ClearFaults();

  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  auto seen = ReadAll(*stream_);
  ASSERT_TRUE(seen);
  Close();
  env_->Crash({CrashMode::kDropUnsynced, 0});
  env_->Restart();
  ASSERT_NO_FATAL_FAILURE(Open());
  auto after = ReadAll(*stream_);
  ASSERT_TRUE(after);
  EXPECT_GE(after->frontier, seen->frontier) << "the frontier moved back across a crash";
  for (const auto& [seq, value] : seen->seqs) {
    auto it = after->seqs.find(seq);
    ASSERT_TRUE(it != after->seqs.end()) << "seq " << seq << " was visible before the crash and is gone";
    EXPECT_EQ(it->second, value) << "seq " << seq << " changed meaning across the crash";
  }
  ASSERT_TRUE(model_.Check(*stream_, /*settle=*/true));
}

INSTANTIATE_TEST_SUITE_P(Unresolved, FrontierTest,
                         testing::Values(Unresolved::kProcessKilledBeforeSync, Unresolved::kHoleSegmentNotSynced,
                                         Unresolved::kHoleSegmentNotWritten),
                         [](const testing::TestParamInfo<Unresolved>& i) {
                           switch (i.param) {
                             case Unresolved::kProcessKilledBeforeSync: return "ProcessKilledBeforeSync";
                             case Unresolved::kHoleSegmentNotSynced: return "HoleSegmentNotSynced";
                             case Unresolved::kHoleSegmentNotWritten: return "HoleSegmentNotWritten";
                           }
                           return "?";
                         });

// The process is killed mid-append (its page cache survives), restarted and
// read; then the machine loses power. Everything acknowledged, and everything
// a reader was shown after the restart, must still be there.
TEST_F(FaultTest, VisibleRecordsSurviveKillThenPowerLoss) {
  std::mt19937_64 rng(5);
  ASSERT_NO_FATAL_FAILURE(OpenAndCheck());
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    env_->CrashAtSync(std::uniform_int_distribution<int>(1, 20)(rng), {.power_loss = false});
    AppendConcurrently(3, 15, rng());
    if (!env_->down()) env_->Crash({.power_loss = false});
    Close();
    env_->Restart();
    ASSERT_NO_FATAL_FAILURE(OpenAndCheck());  // settles what the restart shows
    ASSERT_NO_FATAL_FAILURE(CrashAndReopen({CrashMode::kRandom, rng()}));
  }
}

// ---------------------------------------------------------------------------
// Flipped bytes: corruption of synced data is reported, never served.

struct BatchLocation {
  uint64_t offset;
  BatchHeader header;
};

// The batches of a segment file, parsed from the env's bytes.
std::vector<BatchLocation> Batches(FaultEnv& env, uint64_t segment_id) {
  std::vector<BatchLocation> out;
  auto bytes = env.Contents(SegmentPath(segment_id));
  if (!bytes) return out;
  uint64_t off = kSegmentHeaderSize;
  while (off + kBatchHeaderSize <= bytes->size()) {
    auto h = DecodeBatchHeader(std::span<const char>(bytes->data() + off, kBatchHeaderSize));
    if (!h) break;
    out.push_back({off, *h});
    off += h->length;
  }
  return out;
}

class FlipTest : public FaultTest {
 protected:
  StreamOptions Options() override {
    StreamOptions o = FaultTest::Options();
    o.index_interval_bytes = 1;  // index every batch: a bad batch spoils only its own reads
    // Open re-reads only the last segment for producer dedup, so damage in
    // a sealed segment is met by readers (see the next-to-last test).
    o.dedup_window_bytes = dedup_window_bytes_;
    return o;
  }
  uint64_t dedup_window_bytes_ = 1;
  // Three segments of `batches` batches of 3 records each.
  void Build(int batches) {
    ASSERT_NO_FATAL_FAILURE(Open());
    for (int seg = 0; seg < 3; ++seg) {
      ASSERT_NO_FATAL_FAILURE(AppendOk(batches));
      if (seg < 2) {
        ASSERT_TRUE(stream_->TEST_RollSegment().ok());
      }
    }
    Close();
  }
};

TEST_F(FlipTest, FlippedByteInSealedSegmentReadsAsCorruption) {
  ASSERT_NO_FATAL_FAILURE(Build(5));
  auto batches = Batches(*env_, 2);
  ASSERT_EQ(batches.size(), 5u);
  const BatchLocation bad = batches[2];
  ASSERT_TRUE(env_->FlipByte(SegmentPath(2), bad.offset + bad.header.length - 5).ok());  // in a payload
  ASSERT_NO_FATAL_FAILURE(Open());  // sealed segments are verified when read

  for (uint64_t seq = bad.header.base_seq; seq < bad.header.end_seq(); ++seq) {
    auto r = stream_->Read({.from_seq = seq});
    ASSERT_FALSE(r.has_value()) << "seq " << seq << " served from a corrupt batch";
    EXPECT_EQ(r.error().code(), ErrorCode::kCorruption) << r.error().ToString();
  }
  auto whole = stream_->Read({.from_seq = 1, .max_messages = 1000});
  ASSERT_FALSE(whole.has_value()) << "a read across the damage must fail, not skip it";
  EXPECT_EQ(whole.error().code(), ErrorCode::kCorruption);
  // Everything else still reads, and exactly.
  auto head = stream_->Read({.from_seq = 1, .max_messages = bad.header.base_seq - 1});
  ASSERT_TRUE(head) << head.error().ToString();
  EXPECT_EQ(head->entries.size(), bad.header.base_seq - 1);
  auto tail = stream_->Read({.from_seq = bad.header.end_seq(), .max_messages = 1000});
  ASSERT_TRUE(tail) << tail.error().ToString();
  EXPECT_EQ(tail->entries.back().seq, stream_->stats().frontier);
  EXPECT_EQ(tail->entries.size(), stream_->stats().frontier - bad.header.end_seq() + 1);
}

// Open re-reads the tail of the log (dedup_window_bytes) to rebuild producer
// dedup; damage met there fails Open with Corruption naming the place.
TEST_F(FlipTest, FlippedByteInDedupWindowFailsOpen) {
  dedup_window_bytes_ = 64 << 20;
  ASSERT_NO_FATAL_FAILURE(Build(5));
  auto batches = Batches(*env_, 2);
  ASSERT_EQ(batches.size(), 5u);
  ASSERT_TRUE(env_->FlipByte(SegmentPath(2), batches[2].offset + batches[2].header.length - 5).ok());
  auto s = Stream::Open(kDir, Options());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
  EXPECT_NE(s.error().message().find(SegmentFileName(2)), std::string::npos) << s.error().ToString();
}

TEST_F(FlipTest, FlippedByteInLastSegmentBeforeGoodBatchesFailsOpen) {
  ASSERT_NO_FATAL_FAILURE(Build(5));
  auto batches = Batches(*env_, 3);
  ASSERT_EQ(batches.size(), 5u);
  ASSERT_TRUE(env_->FlipByte(SegmentPath(3), batches[1].offset + kBatchHeaderSize + 20).ok());
  auto s = Stream::Open(kDir, Options());
  ASSERT_FALSE(s.has_value()) << "damage followed by good batches is not a torn tail";
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
}

// Random bit rot anywhere in any segment (TestFileStoreBitRot): the stream
// either refuses to open with Corruption, or every read returns the exact
// record or Corruption; the only records allowed to vanish are at the tail.
TEST_F(FlipTest, RandomBitRotIsNeverServed) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 40; ++trial) {
    SCOPED_TRACE(fmt::format("trial {}", trial));
    env_ = std::make_unique<FaultEnv>();
    model_.Reset();
    ASSERT_NO_FATAL_FAILURE(Build(4));
    ASSERT_NO_FATAL_FAILURE(Open());
    auto truth = ReadAll(*stream_);
    ASSERT_TRUE(truth);
    Close();
    const uint64_t id = std::uniform_int_distribution<uint64_t>(1, 3)(rng);
    const uint64_t size = env_->Contents(SegmentPath(id))->size();
    const uint64_t off = std::uniform_int_distribution<uint64_t>(0, size - 1)(rng);
    ASSERT_TRUE(env_->FlipByte(SegmentPath(id), off, static_cast<uint8_t>(1u << (rng() % 8))).ok());
    auto s = Stream::Open(kDir, Options());
    if (!s) {
      EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
      continue;
    }
    stream_ = std::move(*s);
    const uint64_t frontier = stream_->stats().frontier;
    bool corrupt_seen = false;
    for (uint64_t seq = 1; seq <= truth->frontier; ++seq) {
      auto r = stream_->Read({.from_seq = seq, .max_messages = 1});
      if (!r) {
        EXPECT_EQ(r.error().code(), ErrorCode::kCorruption) << r.error().ToString();
        corrupt_seen = true;
        continue;
      }
      if (seq > frontier) {
        EXPECT_TRUE(r->entries.empty());
        continue;
      }
      ASSERT_EQ(r->entries.size(), 1u) << "seq " << seq;
      const Entry& e = r->entries[0];
      ASSERT_EQ(e.seq, seq);
      EXPECT_EQ(e.payload, *truth->seqs.at(seq)) << "seq " << seq << " served with flipped bytes";
    }
    if (frontier < truth->frontier) {
      EXPECT_GT(stream_->recovery_report().truncated_bytes, 0u) << "only a cut tail may lose records";
    }
    (void)corrupt_seen;
    Close();
  }
}

}  // namespace
}  // namespace floe::log
