// A node restarted with its id after kill -9, against real `floe serve`
// processes: it is its own successor (its node lock in the data directory
// was free, and it wrote the next incarnation to its node record in the
// bank), so it takes its stream back at once instead of waiting out the
// lease its dead predecessor left, and with a higher epoch, so anything of
// the predecessor is fenced. On the SQLite bank, and on a real etcd server
// with FLOE_TEST_BANK=etcd (restart_test_etcd).
#include <cstdlib>

#include "bank/bank.h"
#include "broker/e2e_support.h"
#include "cluster/cluster.h"
#include "support/etcd_server.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

constexpr int64_t kLeaseMs = 3000;  // the default lease period

TEST(RestartTest, ANodeRestartedAfterKill9ServesItsStreamAtOnceWithAHigherEpoch) {
  TempDir dir("floe-restart");
  const std::string data = dir.path() + "/data";
  std::string bank_url = "sqlite:" + data + "/bank.db";
  std::unique_ptr<test::EtcdServer> etcd;
  NodeConfig config{.binary = FLOE_BINARY, .data_dir = data, .extra_args = {"--lease-ms", std::to_string(kLeaseMs)}};
  if (const char* b = std::getenv("FLOE_TEST_BANK"); b && std::string_view(b) == "etcd") {
    auto e = test::EtcdServer::Start(1);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    etcd = std::move(*e);
    bank_url = etcd->Url("/floe-restart-test/");
    config.extra_args.push_back("--bank");
    config.extra_args.push_back(bank_url);
  }
  NodeProcess node(config);
  ASSERT_OK(node.Start());
  client::ClientOptions o;
  o.servers = node.servers();
  o.client_name = "restart-test";
  o.connect_timeout_ms = 2000;
  o.reconnect_max_backoff_ms = 50;
  {
    ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
    ASSERT_OK(admin->CreateStream("r", wire::StreamConfig{}));
  }
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = o;
  po.stream = "r";
  ASSERT_OK_AND_ASSIGN(auto producer, client::Producer::Open(po));
  AckLog acks;
  constexpr int kBefore = 100;
  for (int i = 0; i < kBefore; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  ASSERT_EQ(acks.ok(), static_cast<size_t>(kBefore)) << acks.Errors();

  ASSERT_OK_AND_ASSIGN(auto bank, bank::OpenBank(bank_url));
  auto lease_before = bank->GetLease(cluster::StreamLeaseName("r"));
  ASSERT_TRUE(lease_before.has_value()) << lease_before.error().ToString();
  auto record_before = bank->Get(cluster::NodeKey("node-1"));
  ASSERT_TRUE(record_before.has_value());
  const uint64_t incarnation_before = cluster::DecodeNodeInfo(record_before->value)->incarnation;

  // kill -9, and the same node again at once: the first ACK after it.
  const auto killed = Clock::now();
  node.Kill();
  ASSERT_OK(node.Restart());
  const int64_t listening_ms = MsSince(killed);
  AckLog after;
  ASSERT_TRUE(producer->Send(MakePayload(0, kBefore), after.Callback()).has_value());
  ASSERT_TRUE(after.WaitForOk(1, 30000)) << after.Errors();
  const int64_t first_ack_ms = MsSince(killed);
  fmt::print("restart after kill -9: listening after {} ms, first ACK after {} ms (lease {} ms, {})\n", listening_ms,
             first_ack_ms, kLeaseMs, etcd ? "etcd" : "sqlite");
  EXPECT_LT(first_ack_ms, kLeaseMs / 2) << "the restarted node waited for its own old lease\n" << node.output();

  // A higher epoch (the predecessor is fenced) and the next incarnation.
  auto lease_after = bank->GetLease(cluster::StreamLeaseName("r"));
  ASSERT_TRUE(lease_after.has_value()) << lease_after.error().ToString();
  EXPECT_EQ(lease_after->owner, "node-1");
  EXPECT_GT(lease_after->epoch, lease_before->epoch);
  if (!etcd) EXPECT_EQ(lease_after->epoch, lease_before->epoch + 1);
  std::vector<bank::Op> stale{bank->FencedBy(*lease_before), bank::Op::Put("probe", "x")};
  EXPECT_FALSE(bank->Commit(stale).has_value()) << "the predecessor's lease still fences writes";
  auto record_after = bank->Get(cluster::NodeKey("node-1"));
  ASSERT_TRUE(record_after.has_value());
  EXPECT_EQ(cluster::DecodeNodeInfo(record_after->value)->incarnation, incarnation_before + 1);
  EXPECT_NE(node.output().find("succeeds incarnation"), std::string::npos) << node.output();

  // Every acknowledged message is there, once.
  ASSERT_OK(producer->Flush());
  ASSERT_OK(producer->Close());
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
  ASSERT_OK_AND_ASSIGN(auto info, admin->Info("r"));
  EXPECT_EQ(info.frontier, static_cast<uint64_t>(kBefore + 1));
  auto stopped = node.Stop();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().ToString();
  EXPECT_EQ(*stopped, 0);
}

// A node on the same data directory sees its peer die (the peer's node lock
// is free at once after kill -9) and takes the peer's stream at once, with
// a higher epoch, instead of waiting out the lease (docs/cluster.md "Dead
// peers"). Before: the first ACK came after about the lease period.
TEST(RestartTest, ANodeOnTheSameDirectoryTakesADeadPeersStreamAtOnce) {
  TempDir dir("floe-deadpeer");
  const std::string data = dir.path() + "/data";
  std::string bank_url = "sqlite:" + data + "/bank.db";
  std::unique_ptr<test::EtcdServer> etcd;
  std::vector<std::string> common = {"--lease-ms", std::to_string(kLeaseMs), "--no-auto-balance", "--mqtt-listen", ""};
  if (const char* b = std::getenv("FLOE_TEST_BANK"); b && std::string_view(b) == "etcd") {
    auto e = test::EtcdServer::Start(1);
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    etcd = std::move(*e);
    bank_url = etcd->Url("/floe-deadpeer-test/");
    common.push_back("--bank");
    common.push_back(bank_url);
  }
  auto config = [&](const std::string& id) {
    NodeConfig c{.binary = FLOE_BINARY, .data_dir = data, .extra_args = common};
    c.extra_args.push_back("--node-id");
    c.extra_args.push_back(id);
    return c;
  };
  NodeProcess n1(config("n1")), n2(config("n2"));
  ASSERT_OK(n1.Start());
  ASSERT_OK(n2.Start());
  client::ClientOptions o;
  o.servers = n1.servers();
  for (const auto& s : n2.servers()) o.servers.push_back(s);
  o.client_name = "deadpeer-test";
  o.connect_timeout_ms = 2000;
  o.reconnect_max_backoff_ms = 50;
  {
    client::ClientOptions first = o;
    first.servers = n1.servers();  // created on n1: n1 holds it
    ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(first));
    ASSERT_OK(admin->CreateStream("d", wire::StreamConfig{}));
  }
  ASSERT_OK_AND_ASSIGN(auto bank, bank::OpenBank(bank_url));
  auto lease_before = bank->GetLease(cluster::StreamLeaseName("d"));
  ASSERT_TRUE(lease_before.has_value()) << lease_before.error().ToString();
  ASSERT_EQ(lease_before->owner, "n1");
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = o;
  po.stream = "d";
  ASSERT_OK_AND_ASSIGN(auto producer, client::Producer::Open(po));
  AckLog acks;
  constexpr int kBefore = 50;
  for (int i = 0; i < kBefore; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  ASSERT_EQ(acks.ok(), static_cast<size_t>(kBefore)) << acks.Errors();

  const auto killed = Clock::now();
  n1.Kill();
  AckLog after;
  ASSERT_TRUE(producer->Send(MakePayload(0, kBefore), after.Callback()).has_value());
  ASSERT_TRUE(after.WaitForOk(1, 30000)) << after.Errors();
  const int64_t first_ack_ms = MsSince(killed);
  fmt::print("peer killed: first ACK from the other node after {} ms (lease {} ms, {})\n", first_ack_ms, kLeaseMs,
             etcd ? "etcd" : "sqlite");
  EXPECT_LT(first_ack_ms, kLeaseMs / 2) << "the dead peer's lease was waited out\n" << n2.output();

  auto lease_after = bank->GetLease(cluster::StreamLeaseName("d"));
  ASSERT_TRUE(lease_after.has_value()) << lease_after.error().ToString();
  EXPECT_EQ(lease_after->owner, "n2");
  EXPECT_GT(lease_after->epoch, lease_before->epoch);
  std::vector<bank::Op> stale{bank->FencedBy(*lease_before), bank::Op::Put("probe", "x")};
  EXPECT_FALSE(bank->Commit(stale).has_value()) << "the dead peer's lease still fences writes";
  EXPECT_NE(n2.output().find("node.peer_dead"), std::string::npos) << n2.output();

  ASSERT_OK(producer->Flush());
  ASSERT_OK(producer->Close());
  client::ClientOptions second = o;
  second.servers = n2.servers();
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(second));
  ASSERT_OK_AND_ASSIGN(auto info, admin->Info("d"));
  EXPECT_EQ(info.frontier, static_cast<uint64_t>(kBefore + 1));

  // The dead peer restarted with its id takes its lock again: no longer dead
  // (it starts, and n2 keeps the stream it took).
  ASSERT_OK(n1.Restart());
  auto stopped = n2.Stop();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().ToString();
  EXPECT_EQ(*stopped, 0);
}

}  // namespace
}  // namespace floe
