// Storage faults through the broker core (src/broker/broker.h), as
// core_test.cc drives it, with the streams on the fault-injecting file layer
// (tests/support/fault_env.h) and a real SQLite bank: a session's messages
// keep producer-seq order across a failed write; a stream that could not
// record a failure comes back by itself with retriable refusals meanwhile; a
// full disk is its own retriable code and releases the bank's reserve.
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core_support.h"
#include "broker/broker.h"
#include "log/disk_guard.h"
#include "support/fault_env.h"
#include "support/temp_dir.h"

namespace floe::broker {
namespace {

using test::FaultEnv;

class NullPeer final : public Peer {
 public:
  void StopReading() override {}
  void CloseSoon() override {}
  void Evict(const std::shared_ptr<StreamEntry>&, const std::string&) override {}
};

class StorageFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BrokerOptions o;
    o.node_id = "storage-test";
    o.data_dir = dir_.path();
    o.lease_ms = 2000;
    o.direct_io = false;
    o.env = &env_;
    o.disk_reserve_bytes = 1 << 20;
    auto b = Broker::Open(o);
    ASSERT_TRUE(b.has_value()) << b.error().ToString();
    broker_ = std::move(*b);
    ASSERT_TRUE(broker_->StartCluster("127.0.0.1:1").ok());
    auto created = Await<Outcome<void>>([&](auto done) { broker_->CreateStream("orders", {}, done); });
    ASSERT_TRUE(created.has_value()) << created.error().message;
    auto p = Await<Outcome<Broker::Opened>>([&](auto done) {
      broker_->OpenSession(peer_, {.role = Role::kProducer, .stream = "orders"}, done);
    });
    ASSERT_TRUE(p.has_value()) << p.error().message;
    producer_ = p->session;
  }
  void TearDown() override {
    env_.ClearFaults();
    env_.ResumeSyncs();
    if (producer_) producer_->Close();
    producer_.reset();
    if (!broker_) return;
    broker_->BeginStop();
    broker_->Flush();
    broker_->Finish();
    broker_.reset();
  }

  // Publishes producer seqs [from, from + n) (payload "m<pseq>"); `done`
  // gets the outcome.
  void PublishAsync(uint64_t from, uint64_t n, std::function<void(PublishOutcome)> done) {
    auto payloads = std::make_shared<std::vector<std::string>>();
    for (uint64_t i = 0; i < n; ++i) payloads->push_back(fmt::format("m{}", from + i));
    std::vector<PublishInput> in;
    for (uint64_t i = 0; i < n; ++i) in.push_back({ProducerSeq(from + i), "", "", (*payloads)[i]});
    producer_->Publish(in, 100, [payloads, done = std::move(done)](PublishOutcome o) { done(std::move(o)); });
  }
  PublishOutcome Publish(uint64_t from, uint64_t n) {
    return Await<PublishOutcome>([&](auto done) { PublishAsync(from, n, done); });
  }
  static std::vector<Code> Codes(const PublishOutcome& o) {
    std::vector<Code> out;
    for (const auto& r : o.results) out.push_back(r.code);
    return out;
  }
  // The payloads of the stream's messages in stream order.
  std::vector<std::string> Stored() {
    auto c = Await<Outcome<Broker::Opened>>([&](auto done) {
      broker_->OpenSession(std::make_shared<NullPeer>(),
                           {.role = Role::kConsumer, .stream = "orders", .consumer = fmt::format("c{}", ++consumers_)},
                           done);
    });
    EXPECT_TRUE(c.has_value());
    std::vector<std::string> out;
    if (!c) return out;
    auto batch = c->session->Deliver(1000, 1 << 20);
    EXPECT_TRUE(batch.has_value());
    if (batch)
      for (const auto& e : batch->entries)
        if (e.kind == Delivered::Kind::kMessage) out.emplace_back(e.payload);
    c->session->Close();
    return out;
  }
  // Publishes [from, from + n) until every message is stored or `timeout`
  // passes, as a client retrying retriable codes would; returns the last
  // outcome.
  PublishOutcome PublishUntilStored(uint64_t from, uint64_t n, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    PublishOutcome o;
    do {
      o = Publish(from, n);
      if (Codes(o) == std::vector<Code>(n, Code::kOk)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return o;
  }

  FaultEnv env_;
  test::TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::shared_ptr<NullPeer> peer_ = std::make_shared<NullPeer>();
  std::shared_ptr<Session> producer_;
  int consumers_ = 0;
};

// Two publishes of one session in flight; the first one's fdatasync fails.
// The second must not be stored before the first one's resend, and a third
// sent meanwhile is refused (retriably) too. Before: the second committed
// right after the hole, the third was stored at once, and the resend of the
// first landed behind both.
TEST_F(StorageFaultsTest, SessionOrderSurvivesAFailedWrite) {
  env_.PauseSyncs();
  std::promise<PublishOutcome> first, second;
  PublishAsync(1, 2, [&](PublishOutcome o) { first.set_value(std::move(o)); });
  env_.WaitForPausedSyncs(1);
  PublishAsync(3, 2, [&](PublishOutcome o) { second.set_value(std::move(o)); });
  env_.FailSyncs(1);
  env_.ResumeSyncs();
  EXPECT_EQ(Codes(first.get_future().get()), (std::vector<Code>{Code::kStorageFailed, Code::kStorageFailed}));
  EXPECT_EQ(Codes(second.get_future().get()), (std::vector<Code>{Code::kStorageFailed, Code::kStorageFailed}))
      << "queued behind the failed write: refused with it";
  EXPECT_EQ(Codes(Publish(5, 1)), (std::vector<Code>{Code::kStorageFailed})) << "must wait for 1-4";

  // Resent in order, everything is stored once, in producer-seq order.
  EXPECT_EQ(Codes(Publish(1, 5)), std::vector<Code>(5, Code::kOk));
  auto dup = Publish(3, 1);
  ASSERT_EQ(dup.results.size(), 1u);
  EXPECT_TRUE(dup.results[0].duplicate) << "a resend of a stored message is recognised";
  EXPECT_EQ(Stored(), (std::vector<std::string>{"m1", "m2", "m3", "m4", "m5"}));
}

// Every fdatasync fails: the failure cannot be recorded as holes. The
// producer gets UNAVAILABLE (retriable), not STREAM_READ_ONLY, and once the
// disk works again the stream accepts writes by itself — same session, no
// reopen, no restart. Before: STREAM_READ_ONLY until the node restarted.
TEST_F(StorageFaultsTest, AFailedStreamComesBackByItself) {
  ASSERT_EQ(Codes(Publish(1, 1)), (std::vector<Code>{Code::kOk}));
  env_.FailSyncs(FaultEnv::kForever);
  EXPECT_NE(Codes(Publish(2, 1)), (std::vector<Code>{Code::kOk}));
  auto refused = Publish(2, 1);
  EXPECT_EQ(Codes(refused), (std::vector<Code>{Code::kUnavailable}));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Codes(Publish(2, 1)), (std::vector<Code>{Code::kUnavailable})) << "still failing: still refused";

  env_.ClearFaults();
  auto healed = PublishUntilStored(2, 2, std::chrono::seconds(10));
  EXPECT_EQ(Codes(healed), (std::vector<Code>{Code::kOk, Code::kOk}));
  EXPECT_EQ(Stored(), (std::vector<std::string>{"m1", "m2", "m3"}));
}

// ENOSPC on the segment: DISK_FULL (kNoSpace), retriable, naming the room
// needed; the reserve in the data directory is released for the bank, whose
// commits (a consumer's answers) still go through; with space back, writes
// resume and the reserve is restored. Before: STREAM_READ_ONLY, reserve none.
TEST_F(StorageFaultsTest, FullDiskIsRetriableAndReleasesTheReserve) {
  const std::string reserve = dir_.path() + "/" + log::DiskGuard::kReserveName;
  ASSERT_TRUE(env_.Exists(reserve));
  ASSERT_EQ(Codes(Publish(1, 1)), (std::vector<Code>{Code::kOk}));
  env_.InjectWriteFault({.error = 28, .after_bytes = 0, .sticky = true, .path_filter = "floe_test"});
  EXPECT_EQ(Codes(Publish(2, 1)), (std::vector<Code>{Code::kNoSpace}));
  EXPECT_EQ(Codes(Publish(2, 1)), (std::vector<Code>{Code::kNoSpace}));
  EXPECT_FALSE(env_.Exists(reserve)) << "released for the bank";

  // The bank still commits: a consumer's answer is confirmed.
  auto c = Await<Outcome<Broker::Opened>>([&](auto done) {
    broker_->OpenSession(std::make_shared<NullPeer>(), {.role = Role::kConsumer, .stream = "orders", .consumer = "b"},
                         done);
  });
  ASSERT_TRUE(c.has_value()) << c.error().message;
  auto batch = c->session->Deliver(10, 1 << 20);
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->entries.size(), 1u);
  auto answered = Await<Outcome<std::vector<Code>>>([&](auto done) {
    std::vector<AnswerInput> items{{batch->entries[0].seq, AnswerKind::kAck}};
    c->session->Answer(items, done);
  });
  ASSERT_TRUE(answered.has_value()) << answered.error().message;
  EXPECT_EQ(*answered, (std::vector<Code>{Code::kOk}));
  c->session->Close();

  env_.ClearFaults();
  auto resumed = PublishUntilStored(2, 1, std::chrono::seconds(10));
  EXPECT_EQ(Codes(resumed), (std::vector<Code>{Code::kOk}));
  EXPECT_TRUE(env_.Exists(reserve)) << "restored once there was room";
  EXPECT_EQ(Stored(), (std::vector<std::string>{"m1", "m2"}));
}

}  // namespace
}  // namespace floe::broker
