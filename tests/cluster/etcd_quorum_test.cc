// floe on a 3-member etcd cluster (issue 5): two floe nodes, a producer
// publishing all along, and the bank's own failures:
//   * one etcd member SIGKILLed: floe keeps acknowledging;
//   * the leader paused (SIGSTOP) and resumed: floe rides it out;
//   * the quorum lost (two members killed): floe stops acknowledging (its
//     leases cannot be renewed, so it stops acting; clients get retriable
//     errors), and once the quorum is back it carries on;
// and at the end every acknowledged message is in the stream once.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/node_process.h"
#include "client/client.h"
#include "support/etcd_server.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kLeaseMs = 1500;

TEST(EtcdQuorumTest, FloeRidesOutMemberFailuresAndStopsAckingWithoutAQuorum) {
  auto etcd = test::EtcdServer::Start(3);
  ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
  const std::string bank = (*etcd)->Url("/floe-quorum/");
  char pattern[] = "/tmp/floe-quorum-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string data = std::string(pattern) + "/data";
  std::vector<std::unique_ptr<test::NodeProcess>> nodes;
  std::vector<std::string> servers;
  for (int i = 0; i < 2; ++i) {
    nodes.push_back(std::make_unique<test::NodeProcess>(test::NodeConfig{
        .binary = FLOE_BINARY,
        .data_dir = data,
        .extra_args = {"--node-id", fmt::format("n{}", i + 1), "--bank", bank, "--lease-ms",
                       std::to_string(kLeaseMs)}}));
    ASSERT_TRUE(nodes.back()->Start().ok()) << nodes.back()->output();
    for (const auto& s : nodes.back()->servers()) servers.push_back(s);
  }
  client::ClientOptions o;
  o.servers = servers;
  o.reconnect_max_backoff_ms = 200;
  o.reconnect_give_up_ms = 120000;
  {
    auto admin = client::Admin::Connect(o);
    ASSERT_TRUE(admin.has_value());
    ASSERT_TRUE((*admin)->CreateStream("q", {}).ok());
  }

  std::mutex mu;
  std::map<uint64_t, uint64_t> acked;  // index -> seq
  uint64_t failed = 0;
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = o;
    po.stream = "q";
    po.max_inflight = 100;
    auto p = client::Producer::Open(po);
    ASSERT_TRUE(p.has_value());
    for (uint64_t i = 0; !stop; ++i) {
      auto sent = (*p)->Send(fmt::format("q{}", i), [&, i](const client::PublishOutcome& r) {
        std::lock_guard l(mu);
        if (r.status.ok()) acked[i] = r.seq;
        else ++failed;
      });
      if (!sent) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_TRUE((*p)->Flush().ok());
    EXPECT_TRUE((*p)->Close().ok());
  });
  auto acks = [&] {
    std::lock_guard l(mu);
    return acked.size();
  };
  auto acks_during = [&](int ms) {
    const size_t before = acks();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return acks() - before;
  };

  ASSERT_GT(acks_during(2000), 0u) << "publishing works";
  (*etcd)->Kill(0);
  const size_t with_member_down = acks_during(4000);
  EXPECT_GT(with_member_down, 100u) << "one etcd member down: floe keeps acknowledging";
  ASSERT_TRUE((*etcd)->Restart(0).ok());

  // The leader is paused: writes wait for an election among the other two,
  // leases may lapse (etcd restarts their TTLs on a new leader); floe
  // carries on by itself once etcd does.
  auto leader = (*etcd)->Leader();
  ASSERT_TRUE(leader.has_value()) << leader.error().ToString();
  (*etcd)->Signal(*leader, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  auto new_leader = (*etcd)->Leader();
  (*etcd)->Signal(*leader, SIGCONT);
  fmt::print("etcd leader m{} paused 2 s; leader meanwhile: {}\n", *leader,
             new_leader ? fmt::format("m{}", *new_leader) : new_leader.error().ToString());
  std::fflush(stdout);  // before NodeProcess forks copy the buffer

  const auto resumed = Clock::now();
  size_t after_pause = 0;
  while (after_pause < 100 && Clock::now() - resumed < std::chrono::seconds(15)) after_pause += acks_during(500);
  EXPECT_GE(after_pause, 100u) << "after a member's pause floe carries on";

  // The quorum goes: after the lease period no node may act.
  (*etcd)->Kill(1);
  (*etcd)->Kill(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLeaseMs + 1000));
  const size_t without_quorum = acks_during(3000);
  EXPECT_EQ(without_quorum, 0u) << "no ACK while the bank has no quorum";
  ASSERT_TRUE((*etcd)->Restart(1).ok());
  ASSERT_TRUE((*etcd)->Restart(2).ok());
  const auto back = Clock::now();
  size_t after = 0;
  while (after == 0 && Clock::now() - back < std::chrono::seconds(60)) after = acks_during(500);
  EXPECT_GT(after, 0u) << "floe carries on once the quorum is back";
  fmt::print("etcd quorum: {} ACKs with one member down, 0 expected without a quorum (got {}), resumed {} ms "
             "after the quorum came back\n",
             with_member_down, without_quorum,
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - back).count());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  stop = true;
  producer.join();

  // Everything acknowledged is in the stream, once, at its seq.
  std::map<uint64_t, uint64_t> ack_copy;
  {
    std::lock_guard l(mu);
    ack_copy = acked;
    EXPECT_EQ(failed, 0u);
  }
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = o;
  co.stream = "q";
  co.consumer = "audit";
  auto c = client::Consumer::Open(co);
  ASSERT_TRUE(c.has_value());
  std::map<std::string, uint64_t> seq_of;
  size_t twice = 0;
  for (;;) {
    auto got = (*c)->Fetch(1000, 4 << 20, 1000);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    if (got->empty()) break;
    std::vector<uint64_t> seqs;
    for (const auto& m : *got) {
      if (m.gap) continue;
      if (!seq_of.emplace(m.payload, m.seq).second) ++twice;
      seqs.push_back(m.seq);
    }
    ASSERT_TRUE((*c)->Ack(seqs).ok());
  }
  (void)(*c)->Close();
  size_t lost = 0, moved = 0;
  for (const auto& [i, seq] : ack_copy) {
    auto it = seq_of.find(fmt::format("q{}", i));
    if (it == seq_of.end()) ++lost;
    else if (it->second != seq) ++moved;
  }
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(moved, 0u);
  EXPECT_EQ(twice, 0u);
  fmt::print("etcd quorum: {} messages ACKed, {} lost, {} stored twice\n", ack_copy.size(), lost, twice);
  for (auto& n : nodes) (void)n->Stop();
  std::filesystem::remove_all(pattern);
}

}  // namespace
}  // namespace floe
