// The descriptors a stream holds (issue 13: a node serving 10,000 streams
// within RLIMIT_NOFILE): segment read handles come from a bounded cache
// shared by streams (segment.h, SegmentFileCache), so the descriptors are
// O(streams) plus the bound, not O(segments). On real files in temporary
// directories, counting /proc/self/fd:
//   * the cache: its bound, least-recently-used order, handles that outlive
//     their eviction, and giving back half when open() meets EMFILE;
//   * a stream of many sealed segments holds a bounded number of
//     descriptors after reading every segment (small and O_DIRECT-sized
//     batches), and after reopening; every message still reads back;
//   * a reader holding a segment that retention removes (its handle evicted
//     meanwhile) still reads it to the end;
//   * out of descriptors is reported as "too many open files (limit N)",
//     never as "open elsewhere"; a real lock conflict still says that;
//   * with the process's descriptors exhausted, reads still succeed by
//     closing cached handles;
//   * descriptors per idle stream, printed for N streams.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/env.h"
#include "log/format.h"
#include "log/segment.h"
#include "log/stream.h"
#include "support/temp_dir.h"

namespace floe::log {
namespace {

using ::floe::test::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n - 1;  // the iterator's own
}

std::string PayloadFor(uint64_t i, size_t size) {
  std::string p = "message-" + std::to_string(i) + "-";
  while (p.size() < size) p += static_cast<char>('a' + (i + p.size()) % 26);
  p.resize(size);
  return p;
}

// Appends messages index first..first+n-1, one batch per message.
void AppendN(Stream* s, uint64_t first, uint64_t n, size_t size) {
  for (uint64_t i = first; i < first + n; ++i) {
    const std::string payload = PayloadFor(i, size);
    Message m;
    m.payload = payload;
    AppendResult r = s->Append({&m, 1});
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    ASSERT_EQ(r.first_seq, i);
  }
}

// Reads every message from seq 1 and checks each against PayloadFor.
void ExpectAll(Stream* s, uint64_t n, size_t size, size_t big_every = 0, size_t big_size = 0) {
  uint64_t from = 1;
  uint64_t seen = 0;
  while (from <= n) {
    auto r = s->Read({.from_seq = from, .max_messages = 97, .max_bytes = 64 << 20});
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_FALSE(r->entries.empty()) << "at seq " << from;
    for (const Entry& e : r->entries) {
      ASSERT_EQ(e.kind, Entry::Kind::kMessage);
      ASSERT_EQ(e.seq, from);
      const size_t want = big_every && from % big_every == 0 ? big_size : size;
      ASSERT_EQ(e.payload, PayloadFor(from, want)) << "seq " << from;
      ++from;
      ++seen;
    }
  }
  EXPECT_EQ(seen, n);
}

// For a scope, no descriptor left: the soft RLIMIT_NOFILE just above the
// highest one open, and every free number below it taken by /dev/null.
// Restores both after.
// Under ASan + UBSan the sanitizer runtime itself needs descriptors (its
// check that memory is readable, behind UBSan's vptr check, opens a pipe),
// so with none left it reports errors of its own: the tests that exhaust
// descriptors run in the plain builds only.
#if defined(__SANITIZE_ADDRESS__)
#define FLOE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLOE_SANITIZED 1
#endif
#endif
#ifdef FLOE_SANITIZED
#define SKIP_IF_SANITIZED() GTEST_SKIP() << "the sanitizer runtime needs descriptors this test takes away"
#else
#define SKIP_IF_SANITIZED() (void)0
#endif

class ExhaustDescriptors {
 public:
  ExhaustDescriptors() {
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved_), 0);
    int highest = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
      highest = std::max(highest, std::stoi(e.path().filename().string()));
    limit_ = static_cast<rlim_t>(highest) + 1;
    rlimit r{limit_, saved_.rlim_max};
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0) << std::strerror(errno);
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers_.push_back(fd);
    EXPECT_EQ(errno, EMFILE);
  }
  ~ExhaustDescriptors() {
    for (int fd : fillers_) ::close(fd);
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &saved_), 0);
  }
  rlim_t limit() const { return limit_; }

 private:
  rlimit saved_{};
  rlim_t limit_ = 0;
  std::vector<int> fillers_;
};

// --- the cache --------------------------------------------------------------------

class SegmentFileCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 8; ++i) {
      paths_.push_back(dir_.path() + "/f" + std::to_string(i));
      auto f = Env::Default()->Open(paths_.back(), {.create = true, .writable = true});
      ASSERT_TRUE(f.has_value());
      ASSERT_TRUE((*f)->WriteAt(0, std::string_view("x")).ok());
    }
  }
  SegmentFileCache::Opener OpenerFor(int i, int* opens = nullptr) {
    return [this, i, opens]() -> Result<std::shared_ptr<File>> {
      if (opens) ++*opens;
      auto f = Env::Default()->Open(paths_[i], {});
      if (!f) return Err(f.error());
      return std::shared_ptr<File>(std::move(*f));
    };
  }
  TempDir dir_;
  std::vector<std::string> paths_;
};

TEST_F(SegmentFileCacheTest, HoldsAtMostItsCapacityClosingTheLeastRecentlyUsed) {
  const size_t base = OpenFds();
  SegmentFileCache cache(3);
  const uint64_t key = SegmentFileCache::NewKeys(8);
  int opens = 0;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.Get(key + i, OpenerFor(i, &opens)).has_value());
  EXPECT_EQ(opens, 3);
  EXPECT_EQ(OpenFds(), base + 3);
  ASSERT_NE(cache.Find(key + 0), nullptr);  // 0 is now the most recent; 1 the least
  ASSERT_TRUE(cache.Get(key + 3, OpenerFor(3, &opens)).has_value());
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(OpenFds(), base + 3) << "the evicted handle was not closed";
  EXPECT_EQ(cache.Find(key + 1), nullptr);
  EXPECT_NE(cache.Find(key + 0), nullptr);
  EXPECT_NE(cache.Find(key + 2), nullptr);
  // A hit opens nothing.
  ASSERT_TRUE(cache.Get(key + 3, OpenerFor(3, &opens)).has_value());
  EXPECT_EQ(opens, 4);
  cache.SetCapacity(1);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(OpenFds(), base + 1);
  cache.Erase(key + 3);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(OpenFds(), base);
}

TEST_F(SegmentFileCacheTest, AHandleHeldOutlivesItsEviction) {
  const size_t base = OpenFds();
  SegmentFileCache cache(1);
  const uint64_t key = SegmentFileCache::NewKeys(2);
  auto held = cache.Get(key, OpenerFor(0));
  ASSERT_TRUE(held.has_value());
  ASSERT_TRUE(cache.Get(key + 1, OpenerFor(1)).has_value());  // evicts key
  EXPECT_EQ(cache.Find(key), nullptr);
  EXPECT_EQ(OpenFds(), base + 2);  // evicted but still held
  char c = 0;
  auto n = (*held)->ReadAt(0, {&c, 1});
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(c, 'x');
  held->reset();
  EXPECT_EQ(OpenFds(), base + 1);
}

TEST_F(SegmentFileCacheTest, OutOfDescriptorsGivesBackHalfAndRetries) {
  SegmentFileCache cache(8);
  const uint64_t key = SegmentFileCache::NewKeys(8);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(cache.Get(key + i, OpenerFor(i)).has_value());
  int calls = 0;
  auto f = cache.Get(key + 6, [&]() -> Result<std::shared_ptr<File>> {
    if (++calls == 1) return Err(Status::FromErrno(EMFILE, "open " + paths_[6]));
    return OpenerFor(6)();
  });
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cache.size(), 4u);  // 6 halved to 3, then the new one
  // Any other failure is returned as it is, without a retry.
  calls = 0;
  auto g = cache.Get(key + 7, [&]() -> Result<std::shared_ptr<File>> {
    ++calls;
    return Err(Status::FromErrno(EACCES, "open " + paths_[7]));
  });
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.size(), 4u);
}

TEST(OutOfDescriptors, RecognisesEmfileAndEnfileOnly) {
  EXPECT_TRUE(IsOutOfDescriptors(Status::FromErrno(EMFILE, "open x")));
  EXPECT_TRUE(IsOutOfDescriptors(Status::FromErrno(ENFILE, "open x")));
  EXPECT_FALSE(IsOutOfDescriptors(Status::FromErrno(ENOENT, "open x")));
  EXPECT_FALSE(IsOutOfDescriptors(Status::Unavailable("lock x: held by another process")));
  EXPECT_FALSE(IsOutOfDescriptors(Status::OK()));
  rlimit nofile{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  Status s = OutOfDescriptors(Status::FromErrno(EMFILE, "open x"), "reading y");
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr(fmt::format("too many open files (limit {})", nofile.rlim_cur)));
  EXPECT_THAT(std::string(s.message()), HasSubstr("reading y"));
  // Said once, however many callers pass it up.
  const std::string passed_up = "rebuilding: " + std::string(s.message());
  EXPECT_EQ(OutOfDescriptors(Status(ErrorCode::kIOError, passed_up), "opening z").message(), passed_up);
  Status twice = OutOfDescriptors(s, "opening z");
  EXPECT_EQ(twice.message(), s.message());
}

// --- streams -----------------------------------------------------------------------

class SegmentFilesTest : public ::testing::Test {
 protected:
  StreamOptions Options(size_t capacity) {
    StreamOptions o;
    o.segment_bytes = 16 << 10;
    o.preallocate = false;
    o.cache_bytes = 0;  // every read goes to the files (only the newest batch stays cached)
    o.segment_files = std::make_shared<SegmentFileCache>(capacity);
    o.logger = [](const std::string&) {};
    return o;
  }
  std::unique_ptr<Stream> OpenOrDie(const StreamOptions& o, const std::string& sub = "s") {
    auto s = Stream::Open(dir_.path() + "/" + sub, o);
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    return s ? std::move(*s) : nullptr;
  }
  TempDir dir_;
};

// Every 25th message is 80 KiB: its batch is read with O_DIRECT, the rest buffered.
constexpr size_t kSmall = 120;
constexpr size_t kBig = 80 << 10;
constexpr size_t kBigEvery = 25;

void AppendMixed(Stream* s, uint64_t n) {
  for (uint64_t i = 1; i <= n; ++i) AppendN(s, i, 1, i % kBigEvery == 0 ? kBig : kSmall);
}

TEST_F(SegmentFilesTest, ManySealedSegmentsHoldBoundedDescriptors) {
  constexpr size_t kCapacity = 6;
  constexpr uint64_t kN = 1500;
  StreamOptions o = Options(kCapacity);
  const size_t base = OpenFds();
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  AppendMixed(s.get(), kN);
  const uint64_t segments = s->stats().segments;
  ASSERT_GE(segments, 40u) << "the test needs many sealed segments";
  ExpectAll(s.get(), kN, kSmall, kBigEvery, kBig);
  // The stream's own: its LOCK and the writer's handle on the active
  // segment; the rest are cached read handles, at most the bound.
  const size_t held = OpenFds() - base;
  fmt::print("{} segments read: {} descriptors held (cache {} of {})\n", segments, held,
             o.segment_files->size(), kCapacity);
  EXPECT_LE(o.segment_files->size(), kCapacity);
  EXPECT_LE(held, 2 + kCapacity);

  // Reopened: recovery scans every segment and rereads the dedup window,
  // and still leaves only the bound open.
  s.reset();
  EXPECT_EQ(OpenFds(), base) << "closing the stream left descriptors open";
  s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().segments, segments);
  EXPECT_LE(OpenFds() - base, 2 + kCapacity) << "recovery left segment files open";
  ExpectAll(s.get(), kN, kSmall, kBigEvery, kBig);
  EXPECT_LE(OpenFds() - base, 2 + kCapacity);
}

TEST_F(SegmentFilesTest, StreamsShareOneBound) {
  constexpr size_t kCapacity = 4;
  StreamOptions o = Options(kCapacity);
  const size_t base = OpenFds();
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 5; ++i) {
    streams.push_back(OpenOrDie(o, "s" + std::to_string(i)));
    ASSERT_NE(streams.back(), nullptr);
    AppendN(streams.back().get(), 1, 300, kSmall);
    ASSERT_GE(streams.back()->stats().segments, 3u);
  }
  for (auto& s : streams) ExpectAll(s.get(), 300, kSmall);
  EXPECT_LE(OpenFds() - base, 2 * streams.size() + kCapacity);
}

// An Env whose files block in ReadAt once, at the first read of `path`
// after Arm(), until Release().
class BlockingEnv final : public Env {
 public:
  void Arm(const std::string& path) {
    std::lock_guard l(mu_);
    path_ = path;
    armed_ = true;
  }
  void WaitBlocked() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return blocked_; });
  }
  void Release() {
    std::lock_guard l(mu_);
    released_ = true;
    cv_.notify_all();
  }
  void MaybeBlock(const std::string& path) {
    std::unique_lock l(mu_);
    if (!armed_ || path != path_) return;
    armed_ = false;
    blocked_ = true;

    cv_.notify_all();
    cv_.wait(l, [&] { return released_; });
  }

  Result<std::unique_ptr<File>> Open(const std::string& path, const OpenOptions& o) override {
    auto f = base_->Open(path, o);
    if (!f) return f;
    return std::unique_ptr<File>(new Blocking(this, path, std::move(*f)));
  }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override { return base_->ListDir(dir); }
  Status CreateDir(const std::string& dir) override { return base_->CreateDir(dir); }
  Status Remove(const std::string& path) override { return base_->Remove(path); }
  Status Rename(const std::string& from, const std::string& to) override { return base_->Rename(from, to); }
  Status SyncDir(const std::string& dir) override { return base_->SyncDir(dir); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Result<std::unique_ptr<FileLock>> Lock(const std::string& path) override { return base_->Lock(path); }
  uint64_t NowMicros() override { return base_->NowMicros(); }

 private:
  class Blocking final : public File {
   public:
    Blocking(BlockingEnv* env, std::string path, std::unique_ptr<File> f)
        : env_(env), path_(std::move(path)), f_(std::move(f)) {}
    Result<size_t> ReadAt(uint64_t offset, std::span<char> buf) override {
      env_->MaybeBlock(path_);
      return f_->ReadAt(offset, buf);
    }
    Status WriteAt(uint64_t offset, std::span<const char> data) override { return f_->WriteAt(offset, data); }
    Status Sync() override { return f_->Sync(); }
    Status Truncate(uint64_t size) override { return f_->Truncate(size); }
    Status Allocate(uint64_t offset, uint64_t len) override { return f_->Allocate(offset, len); }
    Result<uint64_t> Size() override { return f_->Size(); }
    bool direct() const override { return f_->direct(); }

   private:
    BlockingEnv* const env_;
    const std::string path_;
    const std::unique_ptr<File> f_;
  };

  Env* const base_ = Env::Default();
  std::mutex mu_;
  std::condition_variable cv_;
  std::string path_;
  bool armed_ = false, blocked_ = false, released_ = false;
};

TEST_F(SegmentFilesTest, AReaderOfASegmentRetentionRemovesStillReadsIt) {
  constexpr uint64_t kN = 400;
  StreamOptions o = Options(1);  // one handle: any other read evicts the reader's
  uint64_t bytes = 0, first_segment_end = 0;
  {
    auto s = OpenOrDie(o);
    ASSERT_NE(s, nullptr);
    AppendN(s.get(), 1, kN, kSmall);
    ASSERT_GE(s->stats().segments, 3u);
    bytes = s->stats().bytes;
  }
  // Reopened with a retention limit that drops exactly the first segment;
  // no write follows, so only the test runs retention.
  BlockingEnv env;
  o.env = &env;
  o.retention_bytes = bytes - 1;
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  const std::string first = dir_.path() + "/s/" + SegmentFileName(1);
  env.Arm(first);
  Result<ReadResult> read = Err(Status::Internal("not read"));
  std::thread reader([&] { read = s->Read({.from_seq = 1, .max_messages = kN, .max_bytes = 64 << 20}); });
  env.WaitBlocked();  // the reader holds the first segment, inside a read of it
  // Another read takes the cache's one handle (evicting the reader's), then
  // retention removes the first segment from under the reader. (Not seq kN:
  // its batch, the last the open read, is still in the batch cache.)
  auto other = s->Read({.from_seq = kN - 1, .max_messages = 1});
  ASSERT_TRUE(other.has_value()) << other.error().ToString();
  ASSERT_TRUE(s->EnforceRetention().ok());
  EXPECT_FALSE(std::filesystem::exists(first));
  first_segment_end = s->stats().first_seq;
  EXPECT_GT(first_segment_end, 50u);
  env.Release();
  reader.join();
  ASSERT_TRUE(read.has_value()) << read.error().ToString();
  ASSERT_EQ(read->entries.size(), kN);
  for (uint64_t i = 0; i < kN; ++i) {
    ASSERT_EQ(read->entries[i].seq, i + 1);
    ASSERT_EQ(read->entries[i].payload, PayloadFor(i + 1, kSmall));
  }
  // New reads see the stream without it.
  auto below = s->Read({.from_seq = 1});
  ASSERT_FALSE(below.has_value());
  EXPECT_EQ(below.error().code(), ErrorCode::kOutOfRange);
}

TEST_F(SegmentFilesTest, OutOfDescriptorsIsReportedAsThatNotAsALockConflict) {
  SKIP_IF_SANITIZED();
  StreamOptions o = Options(4);
  {
    // No descriptor left for the stream's lock file.
    ExhaustDescriptors exhausted;
    auto s = Stream::Open(dir_.path() + "/s", o);
    ASSERT_FALSE(s.has_value());
    const std::string m(s.error().message());
    EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable) << m;
    EXPECT_THAT(m, HasSubstr(fmt::format("too many open files (limit {})", exhausted.limit())));
    EXPECT_THAT(m, Not(HasSubstr("open elsewhere")));
  }
  // A lock another holder has is still "open elsewhere".
  auto held = Env::Default()->Lock(dir_.path() + "/t/LOCK");
  if (!held) {
    ASSERT_TRUE(Env::Default()->CreateDir(dir_.path() + "/t").ok());
    held = Env::Default()->Lock(dir_.path() + "/t/LOCK");
  }
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  auto t = Stream::Open(dir_.path() + "/t", o);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(std::string(t.error().message()), HasSubstr("open elsewhere"));
  EXPECT_THAT(std::string(t.error().message()), Not(HasSubstr("too many open files")));
}

TEST_F(SegmentFilesTest, ReadsSucceedWithDescriptorsExhaustedByClosingCachedHandles) {
  SKIP_IF_SANITIZED();
  StreamOptions o = Options(64);
  // A: every segment read, so the cache holds a handle of each.
  auto a = OpenOrDie(o, "a");
  ASSERT_NE(a, nullptr);
  AppendN(a.get(), 1, 600, kSmall);
  ExpectAll(a.get(), 600, kSmall);
  // B: its segments not read since it was opened (the dedup window covers
  // only its last one).
  StreamOptions ob = o;
  ob.dedup_window_bytes = 1;
  {
    auto b = OpenOrDie(ob, "b");
    AppendN(b.get(), 1, 600, kSmall);
  }
  auto b = OpenOrDie(ob, "b");
  ASSERT_NE(b, nullptr);
  ASSERT_GE(b->stats().segments, 5u);
  const size_t cached = o.segment_files->size();
  ASSERT_GE(cached, 5u);
  {
    ExhaustDescriptors exhausted;  // none left to open B's segments with but the cache's
    ExpectAll(b.get(), 600, kSmall);
  }
  EXPECT_LT(o.segment_files->size(), cached + b->stats().segments) << "no handle was given back";
}

// Not a pass/fail check of a number: prints the descriptors per idle stream
// (each with a few sealed segments, all read once) for the report, and
// bounds them by the stream's own two plus its share of the cache.
TEST_F(SegmentFilesTest, DescriptorsPerIdleStream) {
  constexpr int kStreams = 100;
  constexpr size_t kCapacity = 64;
  StreamOptions o = Options(kCapacity);
  o.segment_bytes = 8 << 10;
  const size_t base = OpenFds();
  std::vector<std::unique_ptr<Stream>> streams;
  uint64_t segments = 0;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(OpenOrDie(o, "s" + std::to_string(i)));
    ASSERT_NE(streams.back(), nullptr);
    AppendN(streams.back().get(), 1, 120, kSmall);
    segments += streams.back()->stats().segments;
  }
  for (auto& s : streams) ExpectAll(s.get(), 120, kSmall);
  const size_t held = OpenFds() - base;
  fmt::print("{} idle streams, {} segments: {} descriptors, {:.2f} per stream (cache bound {})\n", kStreams,
             segments, held, double(held) / kStreams, kCapacity);
  EXPECT_LE(held, 2 * kStreams + kCapacity);
}

}  // namespace
}  // namespace floe::log
