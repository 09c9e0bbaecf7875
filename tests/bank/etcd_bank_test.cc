// The etcd bank: the same conformance suite as SQLite's, against a real etcd
// server (Debian's etcd-server) that this test starts on loopback and stops
// by PID; each test gets a key prefix of its own. Then what is etcd's own:
// URLs, endpoint failover, and the transaction size limit.
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bank/bank.h"
#include "bank/bank_conformance.h"
#include "support/etcd_server.h"

namespace floe::bank {
namespace {

using conformance::BankBackend;
using conformance::BankConformanceTest;

// One etcd server for the whole binary.
test::EtcdServer* g_etcd = nullptr;

class EtcdEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (conformance::InChild()) return;  // a conformance child uses its parent's server
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
}

}  // namespace
}  // namespace floe::bank
