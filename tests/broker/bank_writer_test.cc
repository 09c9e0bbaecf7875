// The node's bank writer (src/broker/bank_writer.h) on a real etcd server: its
// batches stay within etcd's transaction limits, and a lost lease fences its
// writes.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bank/bank.h"
#include "broker/registry.h"
#include "support/etcd_server.h"

namespace floe::broker {
namespace {

struct Done {
  std::mutex mu;
  std::condition_variable cv;
  int count = 0;
  Status last;
  std::function<void(Status)> Fn() {
    return [this](Status s) {
      std::lock_guard l(mu);
      ++count;
      last = s;
      cv.notify_all();
    };
  }
  bool Wait(int n) {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(30), [&] { return count >= n; });
  }
};

class BankWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto etcd = test::EtcdServer::Start(1);
    ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
    etcd_ = std::move(*etcd);
    auto b = bank::OpenBank(etcd_->Url("/writer/"));
    ASSERT_TRUE(b.has_value()) << b.error().ToString();
    bank_ = std::move(*b);
    auto l = bank_->AcquireLease("stream/s", "node-1", 5000, 0);
    ASSERT_TRUE(l.has_value()) << l.error().ToString();
    lease_ = *l;
  }

  BankWriter::Fence FenceFn() {
    return [this](const std::string&) -> std::optional<bank::Op> { return bank_->FencedBy(lease_); };
  }

  std::unique_ptr<test::EtcdServer> etcd_;
  std::unique_ptr<bank::Bank> bank_;
  bank::Lease lease_;
};

TEST_F(BankWriterTest, ABatchOverEtcdsRequestSizeIsCommittedInSlices) {
  // Twelve 200 KiB records queued together: 2.4 MiB, over etcd's 1.5 MiB per
  // request; the writer must split the batch, and every record lands.
  constexpr int kRecords = 12;
  const std::string big(200 << 10, 'x');
  BankWriter writer(bank_.get(), FenceFn());
  for (int i = 0; i < kRecords - 1; ++i)
    writer.Write(fmt::format("sessions/{}", i), "s", [&big, i] { return big + std::to_string(i); }, nullptr);
  Done done;
  writer.Write(fmt::format("sessions/{}", kRecords - 1), "s", [&big] { return big + "last"; }, done.Fn());
  ASSERT_TRUE(done.Wait(1));
  EXPECT_TRUE(done.last.ok()) << done.last.ToString();
  writer.Stop();
  auto all = bank_->List("sessions/");
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->size(), static_cast<size_t>(kRecords));
  EXPECT_GT(writer.commits(), 1u) << "split into several transactions";
  EXPECT_EQ(writer.records(), static_cast<uint64_t>(kRecords));
}

TEST_F(BankWriterTest, AWriteForALostLeaseIsFenced) {
  BankWriter writer(bank_.get(), FenceFn());
  Done first;
  writer.Write("cursors/s/c", "s", [] { return std::string("1"); }, first.Fn());
  ASSERT_TRUE(first.Wait(1));
  ASSERT_TRUE(first.last.ok()) << first.last.ToString();
  // Another node takes the stream (this one released it, as after a move).
  ASSERT_TRUE(bank_->ReleaseLease(lease_).ok());
  auto other = bank::OpenBank(etcd_->Url("/writer/"));
  ASSERT_TRUE(other.has_value());
  ASSERT_TRUE((*other)->AcquireLease("stream/s", "node-2", 5000, 0).has_value());
  Done stale;
  writer.Write("cursors/s/c", "s", [] { return std::string("stale"); }, stale.Fn());
  ASSERT_TRUE(stale.Wait(1));
  EXPECT_EQ(stale.last.code(), ErrorCode::kAborted) << stale.last.ToString();
  EXPECT_EQ(bank_->Get("cursors/s/c")->value, "1");
}

}  // namespace
}  // namespace floe::broker
