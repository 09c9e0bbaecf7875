// The cluster layer in-process: real Cluster objects on a real bank (a
// SQLite file; a real etcd server for the watch test) with a Host that
// records what it is told to open and close.
#include "cluster/cluster.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/etcd_server.h"
#include "support/temp_dir.h"

namespace floe::cluster {
namespace {

using Clock = std::chrono::steady_clock;

class RecordingHost : public Host {
 public:
  Status OpenStream(const std::string& name, int64_t) override {
    std::lock_guard l(mu_);
    open_.insert(name);
    return Status::OK();
  }
  void SetValidUntil(const std::string&, int64_t) override {}
  void CloseStream(const std::string& name, const std::string&) override {
    std::lock_guard l(mu_);
    open_.erase(name);
  }
  uint32_t SessionCount() override { return 0; }
  uint64_t PublishedTotal() override { return 0; }
  bool Serves(const std::string& name) {
    std::lock_guard l(mu_);
    return open_.count(name) > 0;
  }

 private:
  std::mutex mu_;
  std::set<std::string> open_;
};

bool WaitUntil(const std::function<bool()>& done, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

TEST(ClusterTest, RecordsOfLongDeadNodesAreRemovedLiveOnesKept) {
  test::TempDir dir;
  auto bank = bank::OpenBank("sqlite:" + dir.path() + "/bank.db");
  ASSERT_TRUE(bank.has_value()) << bank.error().ToString();
  constexpr int64_t kLease = 60;
  // A node dead for longer than kDeadNodePeriods lease periods, and one
  // that heartbeats (as far as the record says) just now.
  NodeInfo dead{.id = "dead", .address = "x:1", .heartbeat_ms = WallMs() - kDeadNodePeriods * kLease - 1000,
                .lease_ms = kLease};
  NodeInfo recent{.id = "recent", .address = "x:2", .heartbeat_ms = WallMs() + 60'000, .lease_ms = kLease};
  ASSERT_TRUE((*bank)->Put(NodeKey("dead"), EncodeNodeInfo(dead)));
  ASSERT_TRUE((*bank)->Put(NodeKey("recent"), EncodeNodeInfo(recent)));
  RecordingHost host;
  Cluster c(bank->get(), ClusterOptions{.node_id = "me", .address = "x:3", .lease_ms = kLease}, &host);
  ASSERT_TRUE(c.Start().ok());
  EXPECT_TRUE(WaitUntil([&] { return (*bank)->Get(NodeKey("dead")).error().IsNotFound(); },
                        static_cast<int>(kHousekeepPeriods * kLease * 5)))
      << "the dead node's record stayed";
  EXPECT_TRUE((*bank)->Get(NodeKey("recent")).has_value());
  EXPECT_TRUE((*bank)->Get(NodeKey("me")).has_value());
  c.Stop(true);
  EXPECT_TRUE((*bank)->Get(NodeKey("me")).error().IsNotFound()) << "a graceful stop removes its own record";
}

// On etcd the worker is woken by a watch: a released stream is taken by the
// other node at once, not at its next poll (one lease period away).
TEST(ClusterTest, OnEtcdAReleaseWakesTheOtherNodeAtOnce) {
  auto etcd = test::EtcdServer::Start(1);
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  auto bank_a = bank::OpenBank((*etcd)->Url("/wake/"));
  auto bank_b = bank::OpenBank((*etcd)->Url("/wake/"));
  ASSERT_TRUE(bank_a && bank_b);
  ASSERT_TRUE((*bank_a)->Put("streams/s", "config"));
  constexpr int64_t kLease = 6000;
  RecordingHost host_a, host_b;
  auto a = std::make_unique<Cluster>(bank_a->get(), ClusterOptions{.node_id = "a", .address = "x:1", .lease_ms = kLease},
                                     &host_a);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(host_a.Serves("s")) << "the first node takes the free stream in its first round";
  Cluster b(bank_b->get(), ClusterOptions{.node_id = "b", .address = "x:2", .lease_ms = kLease}, &host_b);
  ASSERT_TRUE(b.Start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // b's first rounds are over
  EXPECT_FALSE(host_b.Serves("s"));
  const auto released = Clock::now();
  a->Stop(true);  // gives the lease up
  ASSERT_TRUE(WaitUntil([&] { return host_b.Serves("s"); }, static_cast<int>(2 * kLease)));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - released).count();
  std::printf("[          ] released stream taken by the other node after %lld ms (lease %lld ms)\n",
              static_cast<long long>(ms), static_cast<long long>(kLease));
  EXPECT_LT(ms, kLease / 3) << "woken by the watch, not by polling (the worker polls every lease period on etcd)";
  b.Stop(true);
}

}  // namespace
}  // namespace floe::cluster
