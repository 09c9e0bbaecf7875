// The cluster layer in-process: real Cluster objects on a real bank (a
// SQLite file; a real etcd server for the watch test) with a Host that
// records what it is told to open and close.
#include "cluster/cluster.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
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
  void SetValidUntil(const std::string& name, int64_t valid_until) override {
    std::lock_guard l(mu_);
    valid_[name] = valid_until;
  }
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
  size_t Serving() {
    std::lock_guard l(mu_);
    return open_.size();
  }
  // The last validity the cluster gave the stream (steady ms; 0: none).
  int64_t ValidUntil(const std::string& name) {
    std::lock_guard l(mu_);
    auto it = valid_.find(name);
    return it == valid_.end() ? 0 : it->second;
  }

 private:
  std::mutex mu_;
  std::set<std::string> open_;
  std::map<std::string, int64_t> valid_;
};

bool WaitUntil(const std::function<bool()>& done, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

// Version 4 node records carry the incarnation and home, version 3 the MQTT
// connection count, version 2 the MQTT address; records of versions 1 to 3
// (nodes of before) still decode, without what they lack.
TEST(NodeRecordTest, OlderVersionsDecodeAndTheNewerFieldsRoundTrip) {
  NodeInfo n{.id = "n1", .address = "127.0.0.1:7651", .heartbeat_ms = 5, .started_ms = 4, .lease_ms = 3000,
             .streams = 2, .sessions = 3, .publish_rate = 7, .mqtt_address = "127.0.0.1:1884",
             .mqtt_connections = 11, .incarnation = 9, .home = "host:/data"};
  const std::string v4 = EncodeNodeInfo(n);
  auto back = DecodeNodeInfo(v4);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->mqtt_address, "127.0.0.1:1884");
  EXPECT_EQ(back->address, "127.0.0.1:7651");
  EXPECT_EQ(back->publish_rate, 7u);
  EXPECT_EQ(back->mqtt_connections, 11u);
  EXPECT_EQ(back->incarnation, 9u);
  EXPECT_EQ(back->home, "host:/data");
  // As version 3 wrote it: no incarnation nor home at the end.
  std::string v3 = v4.substr(0, v4.size() - 8 - (2 + n.home.size()));
  v3[0] = 3;
  auto three = DecodeNodeInfo(v3);
  ASSERT_TRUE(three.has_value()) << three.error().ToString();
  EXPECT_EQ(three->mqtt_connections, 11u);
  EXPECT_EQ(three->incarnation, 0u);
  EXPECT_TRUE(three->home.empty());
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
  std::string v5 = v4;
  v5[0] = 5;
  EXPECT_FALSE(DecodeNodeInfo(v5).has_value());
  v5[0] = 0;
  EXPECT_FALSE(DecodeNodeInfo(v5).has_value());
  EXPECT_FALSE(DecodeNodeInfo(v1.substr(0, v1.size() - 1)).has_value());
  EXPECT_FALSE(DecodeNodeInfo(v3.substr(0, v3.size() - 1)).has_value());
  EXPECT_FALSE(DecodeNodeInfo(v4.substr(0, v4.size() - 1)).has_value());
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

// --- The successor rule (docs/bank.md) ------------------------------------------

constexpr int kSuccessorStreams = 5;

struct SuccessorSetup {
  test::TempDir dir;
  std::unique_ptr<bank::Bank> bank_a, bank_b;  // the two processes' handles
  std::vector<bank::Lease> before;             // the first process's leases
  bool ok = false;
};

// Node "n" (on bank_a, home "host:/data/n") takes kSuccessorStreams streams.
void StartFirst(SuccessorSetup* s, int64_t lease_ms, RecordingHost* host, std::unique_ptr<Cluster>* a) {
  auto bank_a = bank::OpenBank("sqlite:" + s->dir.path() + "/bank.db");
  auto bank_b = bank::OpenBank("sqlite:" + s->dir.path() + "/bank.db");
  ASSERT_TRUE(bank_a && bank_b);
  s->bank_a = std::move(*bank_a);
  s->bank_b = std::move(*bank_b);
  for (int i = 0; i < kSuccessorStreams; ++i) ASSERT_TRUE(s->bank_a->Put(fmt::format("streams/s{}", i), "config"));
  *a = std::make_unique<Cluster>(
      s->bank_a.get(), ClusterOptions{.node_id = "n", .address = "x:1", .lease_ms = lease_ms, .home = "host:/data/n"},
      host);
  ASSERT_TRUE((*a)->Start().ok());
  EXPECT_EQ((*a)->incarnation(), 1u);
  EXPECT_FALSE((*a)->successor()) << "the first process of an id succeeds nobody";
  for (int i = 0; i < kSuccessorStreams; ++i) {
    ASSERT_TRUE(host->Serves(fmt::format("s{}", i)));
    auto l = s->bank_a->GetLease(StreamLeaseName(fmt::format("s{}", i)));
    ASSERT_TRUE(l.has_value());
    s->before.push_back(*l);
  }
  s->ok = true;
}

// The process dies without a word (its renewals stop, nothing is released:
// ~Cluster is Stop(false)); the next one, with the same id and home, takes
// every stream back in its first round — long before the old leases (a
// minute) expire — each with a higher epoch, so the old Leases fence nothing.
TEST(ClusterTest, ARestartedNodeAtItsHomeTakesItsStreamsBackAtOnceWithHigherEpochs) {
  constexpr int64_t kLease = 60'000;
  SuccessorSetup s;
  RecordingHost host_a, host_b;
  std::unique_ptr<Cluster> a;
  StartFirst(&s, kLease, &host_a, &a);
  ASSERT_TRUE(s.ok);
  a.reset();
  Cluster b(s.bank_b.get(), ClusterOptions{.node_id = "n", .address = "x:2", .lease_ms = kLease, .home = "host:/data/n"},
            &host_b);
  const auto t0 = Clock::now();
  ASSERT_TRUE(b.Start().ok());
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  std::printf("[          ] the successor served its %d streams %lld ms after it started (lease %lld ms)\n",
              kSuccessorStreams, static_cast<long long>(ms), static_cast<long long>(kLease));
  EXPECT_TRUE(b.successor());
  EXPECT_EQ(b.incarnation(), 2u);
  EXPECT_EQ(b.inherited(), static_cast<uint64_t>(kSuccessorStreams));
  for (int i = 0; i < kSuccessorStreams; ++i) {
    const std::string name = fmt::format("s{}", i);
    EXPECT_TRUE(host_b.Serves(name)) << name << " is not served at the end of the successor's first round";
    auto l = s.bank_b->GetLease(StreamLeaseName(name));
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->owner, "n");
    EXPECT_EQ(l->epoch, s.before[i].epoch + 1) << name;
  }
  auto record = s.bank_b->Get(NodeKey("n"));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(DecodeNodeInfo(record->value)->incarnation, 2u);
  // The predecessor's lease fences nothing; the successor's does.
  std::vector<bank::Op> stale{s.bank_a->FencedBy(s.before[0]), bank::Op::Put("c", "old")};
  EXPECT_FALSE(s.bank_a->Commit(stale).has_value());
  auto fence = b.Fence("s0");
  ASSERT_TRUE(fence.has_value());
  std::vector<bank::Op> fresh{*fence, bank::Op::Put("c", "new")};
  EXPECT_TRUE(s.bank_b->Commit(fresh).has_value());
  b.Stop(true);
}

// The control: a process with the same id but another home (another data
// directory, whose node lock proves nothing about the first process) is no
// successor: the first process's leases keep it out until they expire.
TEST(ClusterTest, ANodeWithTheSameIdElsewhereWaitsTheOldLeasesOut) {
  constexpr int64_t kLease = 60'000;
  SuccessorSetup s;
  RecordingHost host_a, host_b;
  std::unique_ptr<Cluster> a;
  StartFirst(&s, kLease, &host_a, &a);
  ASSERT_TRUE(s.ok);
  a.reset();
  Cluster b(s.bank_b.get(),
            ClusterOptions{.node_id = "n", .address = "x:2", .lease_ms = kLease, .home = "host:/elsewhere"}, &host_b);
  ASSERT_TRUE(b.Start().ok());
  EXPECT_FALSE(b.successor());
  EXPECT_EQ(b.incarnation(), 2u);
  EXPECT_EQ(host_b.Serving(), 0u) << "streams taken from a live lease without the proof";
  for (int i = 0; i < kSuccessorStreams; ++i)
    EXPECT_EQ(s.bank_b->GetLease(StreamLeaseName(fmt::format("s{}", i)))->epoch, s.before[i].epoch);
  b.Stop(false);
}

// The first process is still running (a zombie: in a real node its node
// lock would keep the successor from starting at all): the successor's
// epochs fence it at its next renewal, and its next heartbeat finds the
// newer incarnation, so it steps back from everything and takes nothing
// again, not even streams set free.
TEST(ClusterTest, AnOlderIncarnationStepsBackWhenItsSuccessorStarts) {
  constexpr int64_t kLease = 300;
  SuccessorSetup s;
  RecordingHost host_a, host_b;
  std::unique_ptr<Cluster> a;
  StartFirst(&s, kLease, &host_a, &a);
  ASSERT_TRUE(s.ok);
  auto b = std::make_unique<Cluster>(
      s.bank_b.get(), ClusterOptions{.node_id = "n", .address = "x:2", .lease_ms = kLease, .home = "host:/data/n"},
      &host_b);
  ASSERT_TRUE(b->Start().ok());
  EXPECT_TRUE(b->successor());
  EXPECT_EQ(host_b.Serving(), static_cast<size_t>(kSuccessorStreams));
  EXPECT_TRUE(WaitUntil([&] { return host_a.Serving() == 0; }, 20 * kLease)) << "the zombie still serves";
  for (int i = 0; i < kSuccessorStreams; ++i) {
    const std::string name = fmt::format("s{}", i);
    EXPECT_FALSE(a->Fence(name).has_value()) << name;
    EXPECT_EQ(host_a.ValidUntil(name), 0) << name << ": the zombie's validity was not taken away";
  }
  // Its heartbeats stopped (it would have written several by now): the
  // record stays the successor's.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLease));
  auto record = s.bank_a->Get(NodeKey("n"));
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(DecodeNodeInfo(record->value)->incarnation, 2u);
  EXPECT_EQ(DecodeNodeInfo(record->value)->address, "x:2");
  // The successor stops and frees everything: the zombie takes none.
  b->Stop(true);
  b.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * kLease));
  EXPECT_EQ(host_a.Serving(), 0u) << "a superseded incarnation took streams again";
  a->Stop(false);
}

}  // namespace
}  // namespace floe::cluster
