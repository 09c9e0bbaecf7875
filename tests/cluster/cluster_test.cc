// The cluster layer in-process: real Cluster objects on a real bank (a
// SQLite file; a real etcd server for the watch test) with a Host that
// records what it is told to open and close.
#include "cluster/cluster.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <span>
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

// Version 3 node records carry the MQTT address (version 2 on) and the MQTT
// connection count; records of versions 1 and 2 (nodes of before) still
// decode, without what they lack.
TEST(NodeRecordTest, OlderVersionsDecodeAndTheMqttFieldsRoundTrip) {
  NodeInfo n{.id = "n1", .address = "127.0.0.1:7651", .heartbeat_ms = 5, .started_ms = 4, .lease_ms = 3000,
             .streams = 2, .sessions = 3, .publish_rate = 7, .mqtt_address = "127.0.0.1:1884",
             .mqtt_connections = 11};
  const std::string v3 = EncodeNodeInfo(n);
  auto back = DecodeNodeInfo(v3);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->mqtt_address, "127.0.0.1:1884");
  EXPECT_EQ(back->address, "127.0.0.1:7651");
  EXPECT_EQ(back->publish_rate, 7u);
  EXPECT_EQ(back->mqtt_connections, 11u);
  // As version 2 wrote it: no connection count at the end.
  std::string v2 = v3.substr(0, v3.size() - 4);
  v2[0] = 2;
  auto two = DecodeNodeInfo(v2);
  ASSERT_TRUE(two.has_value()) << two.error().ToString();
  EXPECT_EQ(two->mqtt_address, "127.0.0.1:1884");
  EXPECT_EQ(two->mqtt_connections, 0u);
  // As version 1 wrote it: no MQTT address either.
  std::string v1 = v2.substr(0, v2.size() - (2 + n.mqtt_address.size()));
  v1[0] = 1;
  auto old = DecodeNodeInfo(v1);
  ASSERT_TRUE(old.has_value()) << old.error().ToString();
  EXPECT_EQ(old->id, "n1");
  EXPECT_EQ(old->publish_rate, 7u);
  EXPECT_TRUE(old->mqtt_address.empty());
  std::string v4 = v3;
  v4[0] = 4;
  EXPECT_FALSE(DecodeNodeInfo(v4).has_value());
  v4[0] = 0;
  EXPECT_FALSE(DecodeNodeInfo(v4).has_value());
  EXPECT_FALSE(DecodeNodeInfo(v1.substr(0, v1.size() - 1)).has_value());
  EXPECT_FALSE(DecodeNodeInfo(v3.substr(0, v3.size() - 1)).has_value());
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

// A bank that forwards every call to another but cannot watch (as SQLite):
// the control of the watch test below.
class NoWatchBank final : public bank::Bank {
 public:
  explicit NoWatchBank(bank::Bank* inner) : inner_(inner) {}
  Result<bank::Versioned> Get(std::string_view key) override { return inner_->Get(key); }
  Result<std::vector<bank::KeyValue>> List(std::string_view prefix) override { return inner_->List(prefix); }
  Result<std::vector<uint64_t>> Commit(std::span<const bank::Op> ops) override { return inner_->Commit(ops); }
  Result<bank::Lease> AcquireLease(std::string_view name, std::string_view owner, int64_t ttl_ms,
                                   int64_t now_ms) override {
    return inner_->AcquireLease(name, owner, ttl_ms, now_ms);
  }
  Result<bank::Lease> RenewLease(const bank::Lease& lease, int64_t ttl_ms, int64_t now_ms) override {
    return inner_->RenewLease(lease, ttl_ms, now_ms);
  }
  Status ReleaseLease(const bank::Lease& lease) override { return inner_->ReleaseLease(lease); }
  Result<bank::Lease> GetLease(std::string_view name) override { return inner_->GetLease(name); }
  bank::Op FencedBy(const bank::Lease& lease) override { return inner_->FencedBy(lease); }
  // WatchPrefixes: the default, nullptr (the cluster polls).

 private:
  bank::Bank* const inner_;
};

// The lease period of the watch tests: the worker polls every lease period
// on a bank that watches (every third of one otherwise), so polling alone
// cannot find a release within kWokenWithinMs.
constexpr int64_t kWatchTestLeaseMs = 60'000;
constexpr int kWokenWithinMs = 3000;

// Node a holds stream s, node b (on `bank_b`, or on it without its watch)
// starts, a gives s up: whether b takes it within kWokenWithinMs, and after
// how many ms.
struct Takeover {
  bool taken = false;
  int64_t ms = 0;
};
Takeover ReleaseToTheOtherNode(bool b_watches) {
  Takeover out;
  auto etcd = test::EtcdServer::Start(1);
  EXPECT_TRUE(etcd.has_value()) << etcd.error().ToString();
  if (!etcd) return out;
  auto bank_a = bank::OpenBank((*etcd)->Url("/wake/"));
  auto bank_b = bank::OpenBank((*etcd)->Url("/wake/"));
  EXPECT_TRUE(bank_a && bank_b);
  if (!bank_a || !bank_b) return out;
  NoWatchBank no_watch(bank_b->get());
  bank::Bank* b_bank = b_watches ? bank_b->get() : &no_watch;
  EXPECT_TRUE((*bank_a)->Put("streams/s", "config"));
  RecordingHost host_a, host_b;
  auto a = std::make_unique<Cluster>(
      bank_a->get(), ClusterOptions{.node_id = "a", .address = "x:1", .lease_ms = kWatchTestLeaseMs}, &host_a);
  EXPECT_TRUE(a->Start().ok());
  EXPECT_TRUE(host_a.Serves("s")) << "the first node takes the free stream in its first round";
  Cluster b(b_bank, ClusterOptions{.node_id = "b", .address = "x:2", .lease_ms = kWatchTestLeaseMs}, &host_b);
  EXPECT_TRUE(b.Start().ok());
  // b's first round is over (Start runs it); its next poll is a lease
  // period (a third of one without the watch) away, far past kWokenWithinMs.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(host_b.Serves("s"));
  const auto released = Clock::now();
  a->Stop(true);  // gives the lease up: the lock key is deleted
  out.taken = WaitUntil([&] { return host_b.Serves("s"); }, kWokenWithinMs);
  out.ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - released).count();
  b.Stop(true);
  return out;
}

// On etcd the worker is woken by a watch: a released stream is taken by the
// other node at once, not at its next poll (a lease period away).
TEST(ClusterTest, OnEtcdAReleaseWakesTheOtherNodeAtOnce) {
  const Takeover t = ReleaseToTheOtherNode(/*b_watches=*/true);
  std::printf("[          ] released stream taken by the other node after %lld ms (lease %lld ms)\n",
              static_cast<long long>(t.ms), static_cast<long long>(kWatchTestLeaseMs));
  EXPECT_TRUE(t.taken) << "not taken within " << kWokenWithinMs << " ms: the watch did not wake the worker (its "
                       << "poll is " << kWatchTestLeaseMs << " ms away)";
}

// The control: without the watch the same release waits for the poll, so
// the test above passes only by the watch.
TEST(ClusterTest, WithoutTheWatchAReleaseWaitsForThePoll) {
  const Takeover t = ReleaseToTheOtherNode(/*b_watches=*/false);
  EXPECT_FALSE(t.taken) << "taken after " << t.ms << " ms without a watch: something other than the watch wakes "
                        << "the worker, and the test above cannot tell whether the watch works";
}

}  // namespace
}  // namespace floe::cluster
