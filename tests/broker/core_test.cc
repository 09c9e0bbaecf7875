// A front end can be added without touching the core: this test is one. It
// drives the broker core (src/broker/broker.h) in process, with a real
// SQLite bank and real stream directories, through the core API alone — no
// wire format, no socket: publish with dedup, fetch, answers, a session
// resumed after its connection closed, and the core's refusals.
#include <chrono>
#include <future>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "core_support.h"
#include "bank/bank.h"
#include "broker/broker.h"
#include "support/temp_dir.h"

namespace floe::broker {
namespace {

// The smallest front end: a Peer that remembers what the core told it.
class TestPeer final : public Peer {
 public:
  void StopReading() override { stop_reading = true; }
  void CloseSoon() override { close_soon = true; }
  void Evict(const std::shared_ptr<StreamEntry>&, const std::string& redirect) override {
    evicted = true;
    this->redirect = redirect;
  }
  std::atomic<bool> stop_reading{false}, close_soon{false}, evicted{false};
  std::string redirect;
};

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }
  void TearDown() override { Stop(); }

  void Start() {
    BrokerOptions o;
    o.node_id = "core-test";
    o.data_dir = dir_.path();
    o.lease_ms = 2000;
    auto b = Broker::Open(o);
    ASSERT_TRUE(b.has_value()) << b.error().ToString();
    broker_ = std::move(*b);
    ASSERT_TRUE(broker_->StartCluster("127.0.0.1:1").ok());
  }
  void Stop() {
    if (!broker_) return;
    broker_->BeginStop();
    broker_->Flush();
    broker_->Finish();
    broker_.reset();
  }

  Outcome<void> Create(const std::string& name, StreamConfig config = {}) {
    return Await<Outcome<void>>([&](auto done) { broker_->CreateStream(name, config, done); });
  }
  Outcome<Broker::Opened> Open(std::shared_ptr<Peer> peer, SessionRequest req) {
    return Await<Outcome<Broker::Opened>>([&](auto done) { broker_->OpenSession(peer, req, done); });
  }
  struct Msg {
    uint64_t producer_seq;
    std::string key;
    std::string payload;
  };
  PublishOutcome Publish(Session& s, std::vector<Msg> msgs) {
    std::vector<PublishInput> in;
    for (const Msg& m : msgs) in.push_back({ProducerSeq(m.producer_seq), m.key, "", m.payload});
    return Await<PublishOutcome>([&](auto done) { s.Publish(in, 100, done); });
  }
  struct Ans {
    uint64_t seq;
    AnswerKind kind;
  };
  Outcome<std::vector<Code>> Answer(Session& s, std::vector<Ans> answers) {
    std::vector<AnswerInput> items;
    for (const Ans& a : answers) items.push_back({StreamSeq(a.seq), a.kind});
    return Await<Outcome<std::vector<Code>>>([&](auto done) { s.Answer(items, done); });
  }

  test::TempDir dir_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(CoreTest, PublishFetchAnswerAndResume) {
  ASSERT_TRUE(Create("orders").has_value());

  // A producer publishes three messages; a resend of the second is a duplicate.
  auto producer_peer = std::make_shared<TestPeer>();
  auto p = Open(producer_peer, {.role = Role::kProducer, .stream = "orders"});
  ASSERT_TRUE(p.has_value()) << p.error().message;
  Session& producer = *p->session;
  EXPECT_NE(producer.id(), SessionId(0));
  EXPECT_EQ(p->grant.highest_producer_seq, ProducerSeq(0));
  auto out = Publish(producer, {{1, "", "one"}, {2, "", "two"}, {3, "", "three"}});
  ASSERT_FALSE(out.fenced);
  ASSERT_EQ(out.results.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out.results[i].code, Code::kOk);
    EXPECT_EQ(out.results[i].seq, StreamSeq(i + 1));
    EXPECT_FALSE(out.results[i].duplicate);
  }
  auto again = Publish(producer, {{2, "", "two"}});
  ASSERT_EQ(again.results.size(), 1u);
  EXPECT_TRUE(again.results[0].duplicate);
  EXPECT_EQ(again.results[0].seq, StreamSeq(2));
  EXPECT_EQ(broker_->stats().published, 4u);  // the duplicate is acknowledged again
  const SessionId producer_id = producer.id();
  producer.Close();

  // The producer resumes on a new connection: the core knows how far it got.
  auto p2 = Open(std::make_shared<TestPeer>(), {.session_id = producer_id, .role = Role::kProducer});
  ASSERT_TRUE(p2.has_value()) << p2.error().message;
  EXPECT_EQ(p2->grant.session_id, producer_id);
  EXPECT_EQ(p2->grant.highest_producer_seq, ProducerSeq(3));
  EXPECT_EQ(p2->grant.highest_seq, StreamSeq(3));
  EXPECT_GT(p2->grant.epoch, p->grant.epoch);
  p2->session->Close();

  // A consumer takes all three, ACKs the first, NAKs the second.
  auto consumer_peer = std::make_shared<TestPeer>();
  auto c = Open(consumer_peer, {.role = Role::kConsumer, .stream = "orders", .consumer = "billing"});
  ASSERT_TRUE(c.has_value()) << c.error().message;
  Session& consumer = *c->session;
  auto batch = consumer.Deliver(100, 1 << 20);
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->entries.size(), 3u);
  EXPECT_EQ(batch->entries[0].payload, "one");
  EXPECT_EQ(batch->entries[2].payload, "three");
  EXPECT_EQ(batch->entries[1].delivery_count, 1u);
  auto codes = Answer(consumer, {{1, AnswerKind::kAck}, {2, AnswerKind::kNak}, {9, AnswerKind::kAck}});
  ASSERT_TRUE(codes.has_value()) << codes.error().message;
  EXPECT_EQ(*codes, (std::vector<Code>{Code::kOk, Code::kOk, Code::kNotDelivered}));
  // The NAKed one comes again, with its count.
  auto redelivered = consumer.Deliver(100, 1 << 20);
  ASSERT_TRUE(redelivered.has_value());
  ASSERT_EQ(redelivered->entries.size(), 1u);
  EXPECT_EQ(redelivered->entries[0].seq, StreamSeq(2));
  EXPECT_EQ(redelivered->entries[0].delivery_count, 2u);
  const SessionId consumer_id = consumer.id();

  // Another connection claims the consumer session: the first is told to close.
  auto c2 = Open(std::make_shared<TestPeer>(), {.session_id = consumer_id, .role = Role::kConsumer});
  ASSERT_TRUE(c2.has_value()) << c2.error().message;
  EXPECT_TRUE(consumer_peer->close_soon.load());
  EXPECT_EQ(c2->grant.ack_floor, StreamSeq(1));
  std::set<uint64_t> pending;
  for (const auto& d : c2->grant.pending) pending.insert(d.seq.value());
  EXPECT_EQ(pending, (std::set<uint64_t>{2, 3}));
  consumer.Close();  // the old connection goes: the new one keeps the session
  codes = Answer(*c2->session, {{2, AnswerKind::kAck}, {3, AnswerKind::kAck}});
  ASSERT_TRUE(codes.has_value());
  EXPECT_EQ(*codes, (std::vector<Code>{Code::kOk, Code::kOk}));
  auto status = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("orders", done); });
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->frontier, StreamSeq(3));
  ASSERT_EQ(status->consumers.size(), 1u);
  EXPECT_EQ(status->consumers[0].ack_floor, StreamSeq(3));
  EXPECT_EQ(status->consumers[0].pending, 0u);
  c2->session->Close();

  // Confirmed answers survive a restart of the whole core: nothing is
  // redelivered. (A front end lets go of its sessions when its connections
  // go; they hold the stream open.)
  for (auto* o : {&p, &p2, &c, &c2}) (*o)->session.reset();
  Stop();
  Start();
  auto c3 = Open(std::make_shared<TestPeer>(), {.session_id = consumer_id, .role = Role::kConsumer});
  ASSERT_TRUE(c3.has_value()) << c3.error().message;
  EXPECT_EQ(c3->grant.ack_floor, StreamSeq(3));
  auto none = c3->session->Deliver(100, 1 << 20);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->entries.empty());
  c3->session->Close();
}

TEST_F(CoreTest, RefusalsAreCoreCodes) {
  EXPECT_EQ(Create("bad/name").error().code, Code::kInvalidName);
  ASSERT_TRUE(Create("s").has_value());
  EXPECT_EQ(Create("s").error().code, Code::kStreamExists);
  // Settings that cannot work are refused with the accepted range.
  auto zero_wait = Create("w0", StreamConfig{.ack_wait_ms = 0});
  ASSERT_FALSE(zero_wait.has_value());
  EXPECT_EQ(zero_wait.error().code, Code::kInvalidArgument);
  EXPECT_NE(zero_wait.error().message.find("100 to 604800000 ms"), std::string::npos) << zero_wait.error().message;
  EXPECT_EQ(Create("w1", StreamConfig{.ack_wait_ms = kMaxAckWaitMs + 1}).error().code, Code::kInvalidArgument);
  auto no_dlq = Create("d", StreamConfig{.dead_letter = "missing"});
  ASSERT_FALSE(no_dlq.has_value());
  EXPECT_EQ(no_dlq.error().code, Code::kInvalidArgument);
  EXPECT_NE(no_dlq.error().message.find("missing does not exist"), std::string::npos) << no_dlq.error().message;
  auto none = Await<Outcome<std::vector<std::string>>>([&](auto done) { broker_->ListStreams(done); });
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(*none, std::vector<std::string>{"s"}) << "a refused create left a stream behind";
  EXPECT_TRUE(Create("d", StreamConfig{.ack_wait_ms = kMinAckWaitMs, .dead_letter = "s"}).has_value());
  auto peer = std::make_shared<TestPeer>();
  EXPECT_EQ(Open(peer, {.role = Role::kProducer, .stream = "nope"}).error().code, Code::kUnknownStream);
  EXPECT_EQ(Open(peer, {.role = Role::kConsumer, .stream = "s", .consumer = ""}).error().code, Code::kInvalidName);
  auto p = Open(peer, {.role = Role::kProducer, .stream = "s"});
  ASSERT_TRUE(p.has_value());
  // A resumed session must keep its kind and stream.
  EXPECT_EQ(Open(peer, {.session_id = p->session->id(), .role = Role::kConsumer, .consumer = "c"}).error().code,
            Code::kInvalidArgument);
  auto out = Publish(*p->session, {{0, "", "x"}, {5, "", std::string(2u << 20, 'x')}, {7, "", "ok"}});
  EXPECT_EQ(out.results[0].code, Code::kInvalidArgument);  // producer seqs start at 1
  EXPECT_EQ(out.results[1].code, Code::kMessageTooLarge);  // the stream's default limit is 1 MiB
  EXPECT_EQ(out.results[2].code, Code::kOk);
  auto not_consumer = p->session->Deliver(10, 1000);
  ASSERT_FALSE(not_consumer.has_value());
  EXPECT_EQ(not_consumer.error().code, Code::kNoSession);
  p->session->Close();
  EXPECT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("d", done); }).has_value());  // s's sender
  EXPECT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("s", done); }).has_value());
  EXPECT_EQ(Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("s", done); }).error().code,
            Code::kUnknownStream);
}

TEST_F(CoreTest, DeadLettersMoveOffTheConsumersLock) {
  ASSERT_TRUE(Create("dlq").has_value());
  ASSERT_TRUE(Create("src", StreamConfig{.max_deliveries = 2, .dead_letter = "dlq"}).has_value());
  auto peer = std::make_shared<TestPeer>();
  auto p = Open(peer, {.role = Role::kProducer, .stream = "src"});
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(Publish(*p->session, {{1, "k", "poison"}}).results[0].code, Code::kOk);
  auto c = Open(peer, {.role = Role::kConsumer, .stream = "src", .consumer = "w"});
  ASSERT_TRUE(c.has_value());
  for (int i = 0; i < 2; ++i) {
    auto b = c->session->Deliver(10, 1 << 20);
    ASSERT_TRUE(b.has_value());
    ASSERT_EQ(b->entries.size(), 1u) << "delivery " << i + 1;
    ASSERT_TRUE(Answer(*c->session, {{1, AnswerKind::kNak}}).has_value());
  }
  // The third attempt moves it instead of delivering it.
  auto b = c->session->Deliver(10, 1 << 20);
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->entries.empty());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  uint64_t frontier = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("dlq", done); });
    ASSERT_TRUE(st.has_value());
    frontier = st->frontier.value();
    if (frontier == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(frontier, 1u);
  auto src = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("src", done); });
  ASSERT_TRUE(src.has_value());
  ASSERT_EQ(src->consumers.size(), 1u);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (src->consumers[0].ack_floor != StreamSeq(1) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    src = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("src", done); });
  }
  EXPECT_EQ(src->consumers[0].ack_floor, StreamSeq(1)) << "the source message counts as answered once moved";
  auto dc = Open(peer, {.role = Role::kConsumer, .stream = "dlq", .consumer = "ops"});
  ASSERT_TRUE(dc.has_value());
  auto moved = dc->session->Deliver(10, 1 << 20);
  ASSERT_TRUE(moved.has_value());
  ASSERT_EQ(moved->entries.size(), 1u);
  EXPECT_EQ(moved->entries[0].payload, "poison");
  EXPECT_EQ(moved->entries[0].key, "k");
  dc->session->Close();
  c->session->Close();
  p->session->Close();
}

// A session taken over by a newer connection: when the older one closes
// late, the deliveries outstanding are the newer one's (its grant lists
// them) and are not released to be delivered to it again; a takeover of a
// producer session leaves the old connection unable to store anything.
TEST_F(CoreTest, ATakenOverSessionsLateCloseLeavesTheNewOneAlone) {
  ASSERT_TRUE(Create("t", StreamConfig{.ack_wait_ms = 60000}).has_value());
  auto p = Open(std::make_shared<TestPeer>(), {.role = Role::kProducer, .stream = "t"});
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(Publish(*p->session, {{1, "", "a"}, {2, "", "b"}}).results[1].code, Code::kOk);
  auto old_c = Open(std::make_shared<TestPeer>(), {.role = Role::kConsumer, .stream = "t", .consumer = "w"});
  ASSERT_TRUE(old_c.has_value());
  auto first = old_c->session->Deliver(10, 1 << 20);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->entries.size(), 2u);
  auto new_c = Open(std::make_shared<TestPeer>(), {.session_id = old_c->session->id(), .role = Role::kConsumer});
  ASSERT_TRUE(new_c.has_value());
  EXPECT_EQ(new_c->grant.pending.size(), 2u) << "the new connection learns what is outstanding";
  old_c->session->Close();  // late, after the takeover
  auto again = new_c->session->Deliver(10, 1 << 20);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->entries.empty()) << "the old connection's close released the new one's deliveries";

  auto new_p = Open(std::make_shared<TestPeer>(), {.session_id = p->session->id(), .role = Role::kProducer});
  ASSERT_TRUE(new_p.has_value());
  auto late = Publish(*p->session, {{3, "", "from the old connection"}});
  EXPECT_TRUE(late.fenced) << "an old connection stored after the takeover";
  auto st = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("t", done); });
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->frontier, StreamSeq(2));
  p->session->Close();
  new_p->session->Close();
  new_c->session->Close();
}

TEST_F(CoreTest, ADeadLetterMoveRetriedIsStoredOnce) {
  ASSERT_TRUE(Create("dlq").has_value());
  ASSERT_TRUE(Create("src", StreamConfig{.max_deliveries = 1, .dead_letter = "dlq"}).has_value());
  auto move = [&](const std::string& consumer, uint64_t seq) {
    return Await<Outcome<DeadLetterStored>>([&](auto done) {
      broker_->AppendDeadLetter({.stream = "dlq", .source_stream = "src", .consumer = consumer,
                                 .source_seq = StreamSeq(seq), .payload = "poison"},
                                done);
    });
  };
  auto first = move("w", 7);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_FALSE(first->duplicate);
  // A retry (a lost reply, a failed write reported late, the node that took
  // the source stream over) finds the first copy.
  auto again = move("w", 7);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->seq, first->seq);
  // Another consumer's give-up on the same message is a move of its own.
  auto other = move("v", 7);
  ASSERT_TRUE(other.has_value());
  EXPECT_FALSE(other->duplicate);
  EXPECT_NE(other->seq, first->seq);
  auto st = Await<Outcome<StreamStatus>>([&](auto done) { broker_->DescribeStream("dlq", done); });
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->frontier, StreamSeq(2)) << "two moves stored, the retry not";
  EXPECT_EQ(move("w", 0).error().code, Code::kInvalidArgument);
  auto missing = Await<Outcome<DeadLetterStored>>([&](auto done) {
    broker_->AppendDeadLetter({.stream = "nope", .source_stream = "src", .consumer = "w", .source_seq = StreamSeq(1)},
                              done);
  });
  EXPECT_EQ(missing.error().code, Code::kUnknownStream);
}

TEST_F(CoreTest, ADeadLetterStreamIsNotDeletedBeforeItsSources) {
  ASSERT_TRUE(Create("dlq").has_value());
  ASSERT_TRUE(Create("src", StreamConfig{.dead_letter = "dlq"}).has_value());
  auto refused = Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("dlq", done); });
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Code::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("dead-letter stream of src"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("src", done); }).has_value());
  EXPECT_TRUE(Await<Outcome<void>>([&](auto done) { broker_->DeleteStream("dlq", done); }).has_value());
}

TEST_F(CoreTest, AChunkWhoseBankCommitIsFencedIsAnsweredNotAcknowledged) {
  ASSERT_TRUE(Create("big").has_value());
  auto p = Open(std::make_shared<TestPeer>(), {.role = Role::kProducer, .stream = "big"});
  ASSERT_TRUE(p.has_value());
  // Another holder's write moves the stream's lease record under the node:
  // the next fenced commit (the chunk's bytes conveyed) is refused, and its
  // answer comes from the bank writer's thread, long after the file pool's
  // job that wrote the chunk returned.
  auto bank = bank::OpenBank("sqlite:" + dir_.path() + "/bank.db");
  ASSERT_TRUE(bank.has_value()) << bank.error().ToString();
  const std::vector<bank::Op> steal{bank::Op::Put(std::string(bank::kLeasePrefix) + "stream/big", "someone else")};
  ASSERT_TRUE((*bank)->Commit(steal).has_value());
  const std::string data(1000, 'x');
  auto r = Await<ChunkResult>([&](auto done) {
    p->session->PublishChunk({.producer_seq = ProducerSeq(1), .total_size = ByteOffset(4000), .offset = ByteOffset(0),
                              .data = data},
                             done);
  });
  EXPECT_EQ(r.producer_seq, ProducerSeq(1));
  // Not an ACK: the bytes conveyed are not in the bank.
  EXPECT_TRUE(r.fenced || r.code == Code::kUnavailable) << CodeName(r.code);
  p->session->Close();
}

TEST_F(CoreTest, ASessionOpenAfterTheBankWriterStoppedIsRefusedNotHung) {
  ASSERT_TRUE(Create("s").has_value());
  broker_->Flush();  // the stop sequence's step: the bank writer takes no more writes
  auto p = Open(std::make_shared<TestPeer>(), {.role = Role::kProducer, .stream = "s"});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Code::kUnavailable) << p.error().message;
}

}  // namespace
}  // namespace floe::broker
