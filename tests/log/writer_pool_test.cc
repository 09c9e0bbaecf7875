// The shared writer pool (log/writer_pool.h): jobs run one slice at a time,
// a schedule during a slice runs it again, Remove waits for a slice, timers
// fire; and streams on a pool: many streams add no threads, every append is
// committed, an idle stream arms no timer and uses no CPU.
#include "log/writer_pool.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "log/stream.h"
#include "support/temp_dir.h"

namespace floe::log {
namespace {

using namespace std::chrono_literals;
using ::floe::test::TempDir;

size_t ThreadCount() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// User + system CPU of this process, in seconds (/proc/self/stat).
double CpuSeconds() {
  std::ifstream f("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t paren = s.rfind(')');
  std::istringstream in(s.substr(paren + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Counts its slices and whether two ever overlapped; runs `slices_wanted`
// slices when scheduled once (it returns "more" until then).
class CountingJob : public WriterPool::Job {
 public:
  bool RunSlice() override {
    if (inside_.fetch_add(1) != 0) overlapped_ = true;
    std::this_thread::sleep_for(std::chrono::microseconds(hold_us_));
    const int n = ++slices_;
    inside_.fetch_sub(1);
    return n < slices_wanted_.load();
  }
  std::atomic<int> slices_{0};
  std::atomic<int> slices_wanted_{1};
  std::atomic<int> inside_{0};
  std::atomic<bool> overlapped_{false};
  int hold_us_ = 0;
};

TEST(WriterPoolTest, AJobNeverRunsOnTwoThreadsAtOnce) {
  WriterPool pool(4);
  CountingJob job;
  job.hold_us_ = 200;
  job.slices_wanted_ = 1'000'000;  // it always has more, and is scheduled from many threads too
  std::vector<std::thread> schedulers;
  for (int t = 0; t < 4; ++t)
    schedulers.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) pool.Schedule(&job);
    });
  for (auto& t : schedulers) t.join();
  ASSERT_TRUE(WaitUntil([&] { return job.slices_.load() >= 200; }));
  pool.Remove(&job);
  const int after_remove = job.slices_.load();
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(job.overlapped_.load());
  EXPECT_EQ(job.slices_.load(), after_remove) << "a removed job ran again";
}

TEST(WriterPoolTest, AScheduleDuringASliceRunsItAgain) {
  WriterPool pool(2);
  CountingJob job;
  job.hold_us_ = 20'000;
  pool.Schedule(&job);
  ASSERT_TRUE(WaitUntil([&] { return job.inside_.load() == 1; }));
  pool.Schedule(&job);  // while it runs: not lost
  EXPECT_TRUE(WaitUntil([&] { return job.slices_.load() == 2; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(job.slices_.load(), 2);
  pool.Remove(&job);
}

TEST(WriterPoolTest, TimersFireInOrderAndARemovedJobsTimerDoesNot) {
  WriterPool pool(2);
  CountingJob soon, later, removed;
  pool.ScheduleAfter(&later, 60'000);
  pool.ScheduleAfter(&soon, 10'000);
  pool.ScheduleAfter(&removed, 30'000);
  EXPECT_EQ(pool.timers_armed(), 3u);
  pool.Remove(&removed);
  ASSERT_TRUE(WaitUntil([&] { return soon.slices_.load() == 1; }));
  EXPECT_EQ(later.slices_.load(), 0) << "the later timer fired first";
  ASSERT_TRUE(WaitUntil([&] { return later.slices_.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(removed.slices_.load(), 0);
  EXPECT_EQ(pool.timers_armed(), 0u);
  pool.Remove(&soon);
  pool.Remove(&later);
}

TEST(WriterPoolTest, RemoveWaitsForTheSliceInProgress) {
  WriterPool pool(1);
  CountingJob job;
  job.hold_us_ = 50'000;
  pool.Schedule(&job);
  ASSERT_TRUE(WaitUntil([&] { return job.inside_.load() == 1; }));
  pool.Remove(&job);
  EXPECT_EQ(job.inside_.load(), 0) << "Remove returned while the slice ran";
  EXPECT_EQ(job.slices_.load(), 1);
}

// Streams: a thread per stream would add kStreams threads here.
TEST(WriterPoolTest, ManyStreamsShareAFixedNumberOfThreadsAndGoIdle) {
  constexpr int kStreams = 300;
  auto pool = std::make_shared<WriterPool>(4);
  TempDir dir;
  const size_t threads_before = ThreadCount();
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    StreamOptions o;
    o.preallocate = false;
    o.segment_bytes = 1 << 20;
    o.writer_pool = pool;
    o.idle_file_close_us = 200'000;
    o.logger = [](const std::string&) {};
    auto s = Stream::Open(dir.path() + "/s" + std::to_string(i), o);
    ASSERT_TRUE(s) << s.error().ToString();
    streams.push_back(std::move(*s));
  }
  EXPECT_EQ(ThreadCount(), threads_before) << "opening streams started threads";

  // Appends to every stream at once: each is committed, in order.
  std::atomic<int> committed{0}, failed{0};
  const std::string payload(100, 'x');
  for (int round = 0; round < 10; ++round)
    for (auto& s : streams) {
      Message m{.payload = payload};
      s->AppendAsync({&m, 1}, [&](const AppendResult& r) { (r.status.ok() ? committed : failed)++; });
    }
  ASSERT_TRUE(WaitUntil([&] { return committed.load() + failed.load() == 10 * kStreams; }, 60s));
  EXPECT_EQ(failed.load(), 0);
  for (auto& s : streams) EXPECT_EQ(s->frontier(), 10u);
  EXPECT_EQ(ThreadCount(), threads_before);

  // Maintenance after the writes runs, the writers let their files go, and
  // then no stream keeps a timer.
  EXPECT_TRUE(WaitUntil([&] { return pool->timers_armed() == 0; }, 5s)) << pool->timers_armed() << " timers armed";
  // A stream whose file was let go writes again (the handle reopened).
  for (auto& s : streams) {
    Message m{.payload = payload};
    ASSERT_TRUE(s->Append({&m, 1}).status.ok());
    EXPECT_EQ(s->frontier(), 11u);
  }
  EXPECT_TRUE(WaitUntil([&] { return pool->timers_armed() == 0; }, 5s)) << pool->timers_armed() << " timers armed";
  // Idle: the process uses (almost) no CPU with every stream open.
  const double cpu0 = CpuSeconds();
  std::this_thread::sleep_for(1s);
  EXPECT_LT(CpuSeconds() - cpu0, 0.05) << "idle streams used CPU";

  // Reads see every message; reopen finds them.
  for (auto& s : streams) {
    auto r = s->Read({.from_seq = 1, .max_messages = 100});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->entries.size(), 11u);
  }
  streams.clear();
}

TEST(WriterPoolTest, CloseWritesWhatIsPendingFirst) {
  auto pool = std::make_shared<WriterPool>(1);
  TempDir dir;
  std::atomic<int> ok{0};
  {
    StreamOptions o;
    o.preallocate = false;
    o.writer_pool = pool;
    auto s = Stream::Open(dir.path() + "/s", o);
    ASSERT_TRUE(s);
    const std::string payload(1000, 'y');
    for (int i = 0; i < 200; ++i) {
      Message m{.payload = payload};
      (*s)->AppendAsync({&m, 1}, [&](const AppendResult& r) { ok += r.status.ok(); });
    }
  }  // closed here, with appends still queued
  EXPECT_EQ(ok.load(), 200);
  StreamOptions o;
  o.preallocate = false;
  o.writer_pool = pool;
  auto s = Stream::Open(dir.path() + "/s", o);
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)->frontier(), 200u);
}

// The writer lets an idle stream's file go and reopens it for the next
// write: the partial last block (O_DIRECT rewrites it) is kept in memory, so
// the bytes before and after come back intact after a reopen of the stream.
TEST(WriterPoolTest, AWriteAfterTheIdleFileWasLetGoKeepsEveryByte) {
  TempDir dir;
  const std::string path = dir.path() + "/s";
  auto open = [&] {
    StreamOptions o;
    o.idle_file_close_us = 1000;
    o.logger = [](const std::string&) {};
    return Stream::Open(path, o);
  };
  auto count_fds = [&] {
    size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = std::filesystem::read_symlink(e.path(), ec);
      n += !ec && target.parent_path().filename() == "s" && target.extension() == ".seg";
    }
    return n;
  };
  {
    auto s = open();
    ASSERT_TRUE(s);
    const std::string pa(1000, 'a'), pb(3000, 'b');
    Message a{.payload = pa};
    ASSERT_TRUE((*s)->Append({&a, 1}).status.ok());
    EXPECT_EQ(count_fds(), 1u) << "the writer's handle";
    // Maintenance runs a second after the write, finds it idle, lets go.
    EXPECT_TRUE(WaitUntil([&] { return count_fds() == 0; }, 5s)) << "the idle writer kept its segment file";
    Message b{.payload = pb};
    ASSERT_TRUE((*s)->Append({&b, 1}).status.ok());
  }
  auto s = open();
  ASSERT_TRUE(s);
  auto r = (*s)->Read({.from_seq = 1, .max_messages = 10});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->entries.size(), 2u);
  EXPECT_EQ(r->entries[0].payload, std::string(1000, 'a'));
  EXPECT_EQ(r->entries[1].payload, std::string(3000, 'b'));
}

}  // namespace
}  // namespace floe::log
