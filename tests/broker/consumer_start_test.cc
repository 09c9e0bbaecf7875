// A new durable consumer's starting point is durable before SESSION_OK
// (docs/protocol.md "Sessions"), against real `floe serve` processes sharing
// one data directory and one SQLite bank:
//   * SESSION_OK for a consumer created with start_at "new" or at a seq
//     arrives only once the bank holds its cursor (ack floor start-1, next
//     seq start);
//   * a consumer created with start_at "new" whose node is SIGKILLed before
//     it delivered anything resumes on the stream's next owner at the start
//     it was given, not at the new owner's frontier: every message published
//     (and acknowledged) in between reaches it.
#include "e2e_support.h"

#include "bank/bank.h"
#include "broker/cursor.h"
#include "broker/registry.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

constexpr int kLeaseMs = 1000;

class ConsumerStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("floe-consumer-start");
    data_ = dir_->path() + "/data";
    bank_ = "sqlite:" + data_ + "/bank.db";
  }

  void TearDown() override {
    for (auto& n : nodes_) {
      if (!n->Alive()) continue;
      auto code = n->Stop();
      EXPECT_TRUE(code.has_value()) << "stopping the node: " << (code ? "" : code.error().ToString());
      if (code) {
        EXPECT_EQ(*code, 0) << "floe serve exit code after SIGTERM";
      }
    }
  }

  NodeProcess* AddNode(const std::string& id) {
    nodes_.push_back(std::make_unique<NodeProcess>(
        NodeConfig{.binary = FLOE_BINARY,
                   .data_dir = data_,
                   .extra_args = {"--node-id", id, "--bank", bank_, "--lease-ms", std::to_string(kLeaseMs)}}));
    return nodes_.back().get();
  }

  client::ClientOptions Options(std::initializer_list<NodeProcess*> nodes) {
    client::ClientOptions o;
    for (NodeProcess* n : nodes)
      for (const auto& s : n->servers()) o.servers.push_back(s);
    o.client_name = "consumer-start-test";
    o.connect_timeout_ms = 2000;
    o.reconnect_max_backoff_ms = 200;
    return o;
  }

  void CreateStream(const client::ClientOptions& o, const std::string& name) {
    ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
    wire::StreamConfig c;
    c.ack_wait_ms = 30000;
    ASSERT_OK(admin->CreateStream(name, c));
  }

  // Publishes `count` messages of producer `p` (indexes from 0) and waits
  // for every ACK.
  void Publish(const client::ClientOptions& o, const std::string& stream, int p, int count) {
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = o;
    po.stream = stream;
    ASSERT_OK_AND_ASSIGN(auto producer, client::Producer::Open(po));
    AckLog acks;
    for (int i = 0; i < count; ++i) ASSERT_TRUE(producer->Send(MakePayload(p, i), acks.Callback()).has_value());
    ASSERT_OK(producer->Flush());
    ASSERT_EQ(acks.ok(), static_cast<size_t>(count)) << acks.Errors();
    ASSERT_OK(producer->Close());
  }

  std::unique_ptr<TempDir> dir_;
  std::string data_;
  std::string bank_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

// The bank holds the cursor of a consumer the moment its SESSION_OK arrives.
// Before the fix the cursor was first written with the first delivery (or
// the session's release): the bank held none here.
TEST_F(ConsumerStartTest, NewConsumersCursorIsInTheBankWhenSessionOkArrives) {
  NodeProcess* n1 = AddNode("n1");
  ASSERT_OK(n1->Start());
  CreateStream(Options({n1}), "b");
  Publish(Options({n1}), "b", 0, 5);
  ASSERT_OK_AND_ASSIGN(auto bank, bank::OpenBank(bank_));

  struct Case {
    std::string consumer;
    wire::StartAt at;
    uint64_t value;
    uint64_t start;  // the first seq it reads
  };
  const Case cases[] = {{"late", wire::StartAt::kNew, 0, 6}, {"mid", wire::StartAt::kSeq, 3, 3}};
  uint64_t request = 2;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.consumer);
    auto raw = RawConn::Connect(n1->port());
    ASSERT_TRUE(raw && raw->Handshake());
    ASSERT_TRUE(raw->Send(FrameOf(request++, wire::SessionOpen{.session_id = 0,
                                                               .role = wire::Role::kConsumer,
                                                               .stream = "b",
                                                               .consumer = c.consumer,
                                                               .start_at = c.at,
                                                               .start_value = c.value})));
    RawFrame f;
    ASSERT_EQ(raw->ReadFrame(5000, &f), RawConn::Read::kFrame);
    ASSERT_EQ(f.type, T(wire::FrameType::kSessionOk)) << "error " << ErrorCodeOf(f);
    // Read at once: nothing the node does after SESSION_OK may count.
    auto v = bank->Get(broker::CursorKey("b", c.consumer));
    ASSERT_TRUE(v.has_value()) << "SESSION_OK arrived before the consumer's cursor was in the bank: "
                               << v.error().ToString();
    auto cursor = broker::Cursor::Decode(v->value);
    ASSERT_TRUE(cursor.has_value()) << cursor.error().ToString();
    EXPECT_EQ(cursor->ack_floor(), c.start - 1);
    EXPECT_EQ(cursor->next_seq(), c.start);
    auto ok = wire::DecodeBodyAs<wire::SessionOk>(std::span<const char>(f.body.data(), f.body.size()));
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->ack_floor, c.start - 1) << "SESSION_OK and the bank agree";
    EXPECT_TRUE(ok->pending.empty());
  }
}

// The bug this guards against: n1 creates consumer "late" at its frontier
// (start_at "new"), producers publish and get ACKs, n1 dies before it wrote
// the cursor; n2 took the stream and, when the session resumed, created the
// consumer again at ITS frontier — the messages in between never reached it.
TEST_F(ConsumerStartTest, NewConsumerGetsWhatWasPublishedBeforeItsNodeDied) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  const auto both = Options({n1, n2});
  CreateStream(Options({n1}), "m");
  // Messages from before the consumer exists: start_at "new" skips them.
  constexpr int kOld = 10, kNew = 50;
  Publish(Options({n1}), "m", 0, kOld);

  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = both;
  co.stream = "m";
  co.consumer = "late";
  co.start_at = wire::StartAt::kNew;
  ASSERT_OK_AND_ASSIGN(auto consumer, client::Consumer::Open(co));
  const uint64_t session = consumer->session_id();
  ASSERT_NE(session, 0u);

  // Published and acknowledged while the consumer exists, before it fetched.
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = both;
  po.stream = "m";
  ASSERT_OK_AND_ASSIGN(auto producer, client::Producer::Open(po));
  AckLog acks;
  for (int i = 0; i < kNew; ++i) ASSERT_TRUE(producer->Send(MakePayload(1, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  ASSERT_EQ(acks.ok(), static_cast<size_t>(kNew)) << acks.Errors();

  // n1 dies before delivering anything; n2 takes the stream after the lease.
  n1->Kill();

  std::map<std::pair<int, uint64_t>, int> received;  // (producer, index) -> deliveries
  auto take = [&](const std::vector<ReceivedMessage>& got) {
    std::vector<uint64_t> seqs;
    for (const auto& m : got) {
      if (m.gap) continue;
      int p = -1;
      uint64_t index = 0;
      EXPECT_TRUE(ParsePayload(m.payload, &p, &index)) << "seq " << m.seq;
      ++received[{p, index}];
      seqs.push_back(m.seq);
    }
    if (!seqs.empty()) (void)consumer->Ack(seqs);  // a lost ACK only means a redelivery
  };
  // The first fetch that succeeds was served by n2: the session resumed there.
  const auto start = Clock::now();
  bool resumed = false;
  while (!resumed && MsSince(start) < 15000) {
    auto got = consumer->Fetch(100, 1 << 20, 300);
    if (!got) continue;  // no node serves the stream yet: the client reconnects
    resumed = true;
    take(*got);
  }
  ASSERT_TRUE(resumed) << "the consumer never resumed on n2";
  EXPECT_EQ(consumer->session_id(), session) << "the consumer resumed its session";
  EXPECT_GE(consumer->reconnects(), 1u);

  // A marker published after the resume: once it arrives, everything before
  // it that the consumer will ever get has arrived.
  AckLog marker;
  ASSERT_TRUE(producer->Send(MakePayload(2, 0), marker.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  ASSERT_EQ(marker.ok(), 1u) << marker.Errors();
  while (!received.count({2, 0}) && MsSince(start) < 25000) {
    auto got = consumer->Fetch(100, 1 << 20, 300);
    if (got) take(*got);
  }
  ASSERT_TRUE(received.count({2, 0})) << "the marker published on n2 never arrived";

  size_t lost = 0;
  for (int i = 0; i < kNew; ++i) lost += !received.count({1, static_cast<uint64_t>(i)});
  EXPECT_EQ(lost, 0u) << "messages acknowledged to the producer while the consumer existed never reached it";
  for (int i = 0; i < kOld; ++i)
    EXPECT_EQ(received.count({0, static_cast<uint64_t>(i)}), 0u)
        << "message " << i << " was published before the consumer was created with start_at new";
  EXPECT_EQ(received.size(), static_cast<size_t>(kNew) + 1);
  ASSERT_OK(producer->Close());
  ASSERT_OK(consumer->Close());
  ASSERT_OK(n1->Restart());  // so TearDown's clean stop covers it
}

}  // namespace
}  // namespace floe
