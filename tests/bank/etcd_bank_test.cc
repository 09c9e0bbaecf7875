// The etcd bank: the same conformance suite as SQLite's, against a real etcd
// server (Debian's etcd-server) that this test starts on loopback and stops
// by PID; each test gets a key prefix of its own. Then what is etcd's own:
// URLs, endpoint failover, and the transaction size limit.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bank/bank.h"
#include "bank/bank_conformance.h"
#include "support/etcd_server.h"
#include "support/spawn_self.h"

namespace floe::bank {
namespace {

using conformance::BankBackend;
using conformance::BankConformanceTest;

// Set in a child process of a test below: the bank URL to use.
constexpr const char* kChildUrlEnv = "FLOE_ETCD_TEST_CHILD_URL";

// One etcd server for the whole binary.
test::EtcdServer* g_etcd = nullptr;

class EtcdEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // A child process uses its parent's server.
    if (conformance::InChild() || ::getenv(kChildUrlEnv) != nullptr) return;
    auto s = test::EtcdServer::Start(1);
    ASSERT_TRUE(s.has_value()) << s.error().ToString();
    server_ = std::move(*s);
    g_etcd = server_.get();
  }
  void TearDown() override {
    g_etcd = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<test::EtcdServer> server_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new EtcdEnvironment);

BankBackend EtcdBackend() {
  return BankBackend{
      .name = "Etcd",
      .new_location =
          [] {
            static std::atomic<int> n{0};
            return g_etcd->Url(fmt::format("/floe-test-{}-{}/", getpid(), n++));
          },
      .open = [](const std::string& url) { return OpenBank(url); },
      .destroy = [](const std::string&) {},  // the server's data directory goes at the end
      .clock_leases = false,
  };
}

INSTANTIATE_TEST_SUITE_P(Etcd, BankConformanceTest, ::testing::Values(EtcdBackend()), conformance::BackendName);

TEST(EtcdBankTest, BadUrlsAreClearErrors) {
  auto no_port = OpenBank("etcd://127.0.0.1/floe/");
  ASSERT_FALSE(no_port.has_value());
  EXPECT_NE(no_port.error().message().find("needs a port"), std::string_view::npos) << no_port.error().ToString();
  auto bad_prefix = OpenEtcdBank({"127.0.0.1:1"}, "floe");
  ASSERT_FALSE(bad_prefix.has_value());
  EXPECT_EQ(bad_prefix.error().code(), ErrorCode::kInvalidArgument);
}

TEST(EtcdBankTest, ABankPrefixReplacesTheUrlsOwn) {
  EXPECT_EQ(*WithEtcdPrefix("etcd://a:1,b:2", "/p/"), "etcd://a:1,b:2/p/");
  EXPECT_EQ(*WithEtcdPrefix("etcd://a:1/floe/", "/other/x/"), "etcd://a:1/other/x/");
  EXPECT_EQ(WithEtcdPrefix("sqlite:/tmp/b.db", "/p/").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(WithEtcdPrefix("etcd://a:1", "p").error().code(), ErrorCode::kInvalidArgument);
  auto url = WithEtcdPrefix(g_etcd->Url("/ignored/"), "/chosen/");
  ASSERT_TRUE(url.has_value());
  auto chosen = OpenBank(*url);
  auto same = OpenBank(g_etcd->Url("/chosen/"));
  ASSERT_TRUE(chosen && same);
  ASSERT_TRUE((*chosen)->Put("k", "v"));
  EXPECT_EQ((*same)->Get("k")->value, "v");
}

TEST(EtcdBankTest, PrefixesKeepBanksApart) {
  auto a = OpenBank(g_etcd->Url("/iso-a/"));
  auto b = OpenBank(g_etcd->Url("/iso-b/"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->Put("k", "from a"));
  EXPECT_TRUE((*b)->Get("k").error().IsNotFound());
  ASSERT_TRUE((*b)->Put("k", "from b"));
  EXPECT_EQ((*a)->Get("k")->value, "from a");
  EXPECT_EQ((*a)->List("")->size(), 1u);
}

TEST(EtcdBankTest, AnUnreachableEndpointIsSkipped) {
  // The first endpoint refuses connections; the bank moves to the second.
  const std::string url = "etcd://127.0.0.1:1," + g_etcd->endpoints()[0] + "/skip/";
  auto bank = OpenBank(url);
  ASSERT_TRUE(bank.has_value()) << bank.error().ToString();
  ASSERT_TRUE((*bank)->Put("k", "v"));
  EXPECT_EQ((*bank)->Get("k")->value, "v");
}

TEST(EtcdBankTest, NoEndpointAnsweringIsUnavailable) {
  auto bank = OpenBank("etcd://127.0.0.1:1/x/");
  ASSERT_FALSE(bank.has_value());
  EXPECT_EQ(bank.error().code(), ErrorCode::kUnavailable) << bank.error().ToString();
}

TEST(EtcdBankTest, CommitsOverEtcdsTransactionLimitAreRefused) {
  auto bank = OpenBank(g_etcd->Url("/big/"));
  ASSERT_TRUE(bank.has_value());
  std::vector<Op> ops;
  for (int i = 0; i < 129; ++i) ops.push_back(Op::Put(fmt::format("k{}", i), "v"));
  auto r = (*bank)->Commit(ops);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE((*bank)->List("")->empty()) << "nothing was written";
  ops.pop_back();
  EXPECT_TRUE((*bank)->Commit(ops).has_value()) << "128 ops fit";
  // And 1.5 MiB per request.
  std::vector<Op> big{Op::Put("big/a", std::string(800 << 10, 'a')), Op::Put("big/b", std::string(800 << 10, 'b'))};
  auto too_big = (*bank)->Commit(big);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error().code(), ErrorCode::kInvalidArgument) << too_big.error().ToString();
  EXPECT_TRUE((*bank)->Get("big/a").error().IsNotFound());
  big.pop_back();
  EXPECT_TRUE((*bank)->Commit(big).has_value()) << "800 KiB fit";
}

// --- Leases are etcd's: kept alive by the handle, expired by etcd -------------------------

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

TEST(EtcdBankTest, KeepAlivesHoldALeaseLongPastItsTtlAndRenewalsKeepTheFence) {
  const std::string url = g_etcd->Url("/keep/");
  auto a = OpenBank(url);
  auto b = OpenBank(url);
  ASSERT_TRUE(a && b);
  auto held = (*a)->AcquireLease("s", "node-1", 1000, 0);
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  EXPECT_EQ((*a)->GetLease("s")->expires_ms, kHeldByBank);
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // > etcd's TTL (1-2 s)
  auto other = (*b)->AcquireLease("s", "node-2", 1000, 0);
  ASSERT_FALSE(other.has_value()) << "the keep-alives kept node-1's lease";
  EXPECT_EQ(other.error().code(), ErrorCode::kUnavailable);
  const int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                             Clock::now().time_since_epoch()).count();
  auto renewed = (*a)->RenewLease(*held, 1000, 0);
  ASSERT_TRUE(renewed.has_value()) << renewed.error().ToString();
  EXPECT_EQ(renewed->epoch, held->epoch);
  // Valid as far as the last keep-alive says: later than now, at most one
  // TTL (etcd's minimum, 2 s, here) after it.
  EXPECT_GT(renewed->alive_until_steady_ms, before);
  EXPECT_LE(renewed->alive_until_steady_ms, before + 3000);
  // A fence taken before renewals still holds: renewals do not move it.
  std::vector<Op> write{(*a)->FencedBy(*held), Op::Put("cursor", "1")};
  EXPECT_TRUE((*a)->Commit(write).has_value());
}

TEST(EtcdBankTest, AClosedHandleGivesItsLeasesUpAtOnce) {
  const std::string url = g_etcd->Url("/close/");
  auto b = OpenBank(url);
  ASSERT_TRUE(b.has_value());
  uint64_t epoch = 0;
  {
    auto a = OpenBank(url);
    ASSERT_TRUE(a.has_value());
    auto held = (*a)->AcquireLease("s", "node-1", 5000, 0);
    ASSERT_TRUE(held.has_value());
    epoch = held->epoch;
  }  // revoked
  auto taken = (*b)->AcquireLease("s", "node-2", 5000, 0);
  ASSERT_TRUE(taken.has_value()) << "free at once, not after 5 s: " << taken.error().ToString();
  EXPECT_GT(taken->epoch, epoch);
}

// The member carrying the keep-alive stream stops answering for longer than
// the TTL: the keep-alives move to another member and the lock stays held.
TEST(EtcdBankTest, KeepAlivesMoveOffAPausedMember) {
  auto etcd = test::EtcdServer::Start(3);
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  // A follower first: the keep-alives start there, and pausing it does not
  // restart the lease TTLs as a leader change would.
  auto leader = (*etcd)->Leader();
  ASSERT_TRUE(leader.has_value()) << leader.error().ToString();
  const int f = (*leader + 1) % 3, g = (*leader + 2) % 3;
  const auto& ep = (*etcd)->endpoints();
  auto a = OpenBank(fmt::format("etcd://{},{},{}/pause/", ep[f], ep[g], ep[*leader]));
  auto b = OpenBank(fmt::format("etcd://{},{}/pause/", ep[g], ep[*leader]));
  ASSERT_TRUE(a && b);
  auto held = (*a)->AcquireLease("s", "node-1", 1000, 0);
  ASSERT_TRUE(held.has_value()) << held.error().ToString();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  (*etcd)->Signal(f, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(5000));  // > the TTL (2 s)
  auto other = (*b)->AcquireLease("s", "node-2", 1000, 0);
  (*etcd)->Signal(f, SIGCONT);
  EXPECT_FALSE(other.has_value()) << "node-1's lease expired while a member was paused";
  auto renewed = (*a)->RenewLease(*held, 1000, 0);
  ASSERT_TRUE(renewed.has_value()) << renewed.error().ToString();
  EXPECT_EQ(renewed->epoch, held->epoch);
}

// A process holding a lease is killed: etcd expires its lease (no keep-alive
// comes) and deletes the lock; another takes it with a higher epoch, and the
// dead holder's fence no longer lets a write through.
TEST(EtcdBankTest, TheLeaseOfAKilledHolderIsExpiredByEtcd) {
  if (const char* url = ::getenv(kChildUrlEnv)) {
    auto a = OpenBank(url);
    if (!a) ::_exit(10);
    auto held = (*a)->AcquireLease("s", "node-1", 1000, 0);
    if (!held) ::_exit(11);
    const uint64_t epoch = held->epoch;
    if (::write(test::SpawnedFd(0), &epoch, sizeof epoch) != sizeof epoch) ::_exit(12);
    ::pause();  // killed here
    ::_exit(13);
  }
  const std::string url = g_etcd->Url("/killed/");
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = test::SpawnSelf(kChildUrlEnv, url, {pipe_fds[1]});
  ASSERT_GT(pid, 0);
  ::close(pipe_fds[1]);
  uint64_t dead_epoch = 0;
  ASSERT_EQ(::read(pipe_fds[0], &dead_epoch, sizeof dead_epoch), static_cast<ssize_t>(sizeof dead_epoch));
  ::close(pipe_fds[0]);
  auto b = OpenBank(url);
  ASSERT_TRUE(b.has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ((*b)->GetLease("s")->owner, "node-1") << "alive: kept by its keep-alives past the TTL";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  const auto killed = Clock::now();
  Result<Lease> taken = Err(Status::Unavailable("not yet"));
  while (MsSince(killed) < 15000) {
    taken = (*b)->AcquireLease("s", "node-2", 1000, 0);
    if (taken) break;
    ASSERT_EQ(taken.error().code(), ErrorCode::kUnavailable) << taken.error().ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int64_t after_ms = MsSince(killed);
  ASSERT_TRUE(taken.has_value()) << "etcd never expired the dead holder's lease";
  EXPECT_GT(taken->epoch, dead_epoch);
  EXPECT_GE(after_ms, 200) << "not free at once: etcd waits out the lease's TTL";
  Lease dead{.name = "s", .owner = "node-1", .epoch = dead_epoch};
  std::vector<Op> stale{(*b)->FencedBy(dead), Op::Put("cursor", "stale")};
  auto r = (*b)->Commit(stale);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  std::cout << "[          ] the killed holder's lease was taken " << after_ms << " ms after the kill\n";
}

// --- Watches ---------------------------------------------------------------------------

struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::multiset<std::string> keys;
  int resyncs = 0;
  Bank::WatchFn Fn() {
    return [this](std::string_view key, bool resync) {
      std::lock_guard l(mu);
      if (resync) ++resyncs;
      else keys.insert(std::string(key));
      cv.notify_all();
    };
  }
  bool WaitFor(const std::string& key, size_t count = 1) {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(10), [&] { return keys.count(key) >= count; });
  }
  bool WaitForResync(int n) {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(20), [&] { return resyncs >= n; });
  }
};

TEST(EtcdBankTest, AWatchSeesPutsAndDeletesUnderItsPrefixesOnly) {
  auto bank = OpenBank(g_etcd->Url("/watch/"));
  ASSERT_TRUE(bank.has_value());
  Seen seen;
  auto watch = (*bank)->WatchPrefixes({"leases/", "drain/"}, seen.Fn());
  ASSERT_NE(watch, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the watch is created
  ASSERT_TRUE((*bank)->Put("sessions/x", "not watched"));
  ASSERT_TRUE((*bank)->Put("drain/n1", ""));
  EXPECT_TRUE(seen.WaitFor("drain/n1"));
  auto held = (*bank)->AcquireLease("stream/a", "node-1", 1000, 0);
  ASSERT_TRUE(held.has_value());
  EXPECT_TRUE(seen.WaitFor("leases/stream/a"));
  ASSERT_TRUE((*bank)->ReleaseLease(*held).ok());
  EXPECT_TRUE(seen.WaitFor("leases/stream/a", 2)) << "the release (a delete) is seen too";
  std::lock_guard l(seen.mu);
  EXPECT_EQ(seen.keys.count("sessions/x"), 0u);
  EXPECT_EQ(seen.resyncs, 0);
}

TEST(EtcdBankTest, AWatchCutByARestartResyncsAndGoesOn) {
  auto etcd = test::EtcdServer::Start(1);
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  auto bank = OpenBank((*etcd)->Url("/cut/"));
  ASSERT_TRUE(bank.has_value());
  Seen seen;
  auto watch = (*bank)->WatchPrefixes({"k/"}, seen.Fn());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE((*bank)->Put("k/1", "a"));
  ASSERT_TRUE(seen.WaitFor("k/1"));
  (*etcd)->Kill(0);
  EXPECT_TRUE(seen.WaitForResync(1)) << "a cut watch asks its caller to look again";
  ASSERT_TRUE((*etcd)->Restart(0).ok());
  ASSERT_TRUE((*bank)->Put("k/2", "b"));
  EXPECT_TRUE(seen.WaitFor("k/2")) << "watching again after the restart";
}

TEST(EtcdBankTest, CompactionKeepsTheLatestValuesAndAWatchBehindItResyncs) {
  // Three members; the watch uses member 0 only, the writer the other two.
  auto etcd = test::EtcdServer::Start(3);
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  const auto& ep = (*etcd)->endpoints();
  auto bank = OpenBank(fmt::format("etcd://{}/compact/", ep[0]));
  auto writer = OpenBank(fmt::format("etcd://{},{}/compact/", ep[1], ep[2]));
  ASSERT_TRUE(bank && writer);
  Seen seen;
  auto watch = (*bank)->WatchPrefixes({"k/"}, seen.Fn());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE((*writer)->Put("k/0", "first"));
  ASSERT_TRUE(seen.WaitFor("k/0"));
  // The watch is cut while the history it would resume from is written
  // over and compacted away: it must resync, not resume nor miss it.
  (*etcd)->Kill(0);
  ASSERT_TRUE(seen.WaitForResync(1)) << "the cut is reported";
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*writer)->Put("k/0", std::to_string(i)));
  ASSERT_TRUE(CompactEtcdHistory(**writer, 0).ok());
  ASSERT_TRUE(CompactEtcdHistory(**writer, 10).ok()) << "compacting behind a compaction is no error";
  EXPECT_EQ((*writer)->Get("k/0")->value, "99");
  ASSERT_TRUE((*etcd)->Restart(0).ok());
  EXPECT_TRUE(seen.WaitForResync(2)) << "resuming behind the compaction is reported as a resync";
  ASSERT_TRUE((*writer)->Put("k/after", "x"));
  EXPECT_TRUE(seen.WaitFor("k/after")) << "watching again after the resync";
  std::lock_guard l(seen.mu);
  // The first put, and at most the one at the compaction's revision: none of
  // the 99 before it (that history is gone; the resync stands for it).
  EXPECT_LE(seen.keys.count("k/0"), 2u) << "no event from the compacted history";
  EXPECT_EQ(seen.resyncs, 2);
}

TEST(EtcdBankTest, CompactingAnotherBackendIsRefused) {
  char dir[] = "/tmp/floe-compact-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto sqlite = OpenBank(std::string("sqlite:") + dir + "/bank.db");
  ASSERT_TRUE(sqlite.has_value());
  EXPECT_EQ(CompactEtcdHistory(**sqlite, 10).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ((*sqlite)->WatchPrefixes({"x/"}, [](std::string_view, bool) {}), nullptr) << "SQLite banks poll";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace floe::bank
