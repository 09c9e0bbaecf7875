// End-to-end tests of a floe cluster on one host (docs/cluster.md, issue 4):
// several real `floe serve` processes sharing one data directory and one
// SQLite bank, driven by the client library, raw sockets and the CLI. Each
// test proves one element of the floating-session claim:
//   * a client that reaches a node not serving its stream is redirected to
//     the owner (NOT_OWNER + address) and the library follows on its own;
//   * SIGKILL of the owner: another node locks the stream after the lease
//     period, recovers it from disk, and the producer and consumer sessions
//     resume there, reading their state from the bank (nothing ACKed lost,
//     nothing stored twice, no confirmed consumer ACK redelivered); the
//     session record shows the new holder and a higher session epoch;
//   * fencing: an owner paused (SIGSTOP) past its lease, then resumed, does
//     not acknowledge a publish it read after losing the lease;
//   * a session resumes from its bank record alone: SESSION_OPEN with the
//     session id and no stream name;
//   * drain and rebalance move streams between nodes while clients keep
//     working; a graceful stop hands streams over at once;
//   * a 1 GiB message travels in chunks; the bank records the bytes
//     conveyed; SIGKILL of the owner mid-transfer: the transfer resumes on
//     the new owner at the first unacknowledged byte, the bytes arrive
//     intact, and no node held the message in memory.
#include "e2e_support.h"
#include "support/etcd_server.h"

#include <signal.h>

#include <fstream>

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

constexpr int kLeaseMs = 1000;

// True once every thread of `pid` is in the stopped state (T).
bool WaitAllThreadsStopped(pid_t pid, int timeout_ms = 5000) {
  const auto start = Clock::now();
  while (MsSince(start) < timeout_ms) {
    bool all = true;
    for (const auto& t : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid))) {
      std::ifstream in(t.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const size_t paren = stat.rfind(')');
      if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'T') {
        all = false;
        break;
      }
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

class ClusterTest : public ::testing::Test {
 protected:
  // FLOE_TEST_BANK=etcd runs every test on a real etcd server (started here)
  // instead of the SQLite file: the nodes and the CLI get its URL.
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("floe-cluster");
    data_ = dir_->path() + "/data";
    bank_ = "sqlite:" + data_ + "/bank.db";
    if (const char* b = std::getenv("FLOE_TEST_BANK"); b && std::string_view(b) == "etcd") {
      auto etcd = test::EtcdServer::Start(1);
      ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
      etcd_ = std::move(*etcd);
      bank_ = etcd_->Url("/floe-cluster-test/");
    }
  }

  void TearDown() override {
    for (auto& n : nodes_) {
      if (!n->Alive()) continue;
      kill(n->pid(), SIGCONT);
      auto code = n->Stop();
      // The node's own output on failure: a sanitizer's report (exit code
      // 66 under TSan) or where a stop hung is there, nowhere else.
      const std::string out = n->output();
      const std::string tail = out.size() > 20000 ? out.substr(out.size() - 20000) : out;
      EXPECT_TRUE(code.has_value()) << "stopping the node: " << (code ? "" : code.error().ToString()) << "\n" << tail;
      if (code) {
        EXPECT_EQ(*code, 0) << "floe serve exit code after SIGTERM\n" << tail;
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
    o.client_name = "cluster-test";
    o.connect_timeout_ms = 2000;
    o.reconnect_max_backoff_ms = 200;
    return o;
  }

  Result<std::unique_ptr<client::Producer>> OpenProducer(const client::ClientOptions& base, const std::string& stream,
                                                         uint64_t session = 0) {
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = base;
    po.stream = stream;
    po.session_id = session;
    return client::Producer::Open(po);
  }

  Result<std::unique_ptr<client::Consumer>> OpenConsumer(const client::ClientOptions& base, const std::string& stream,
                                                         const std::string& name) {
    client::ConsumerOptions co;
    static_cast<client::ClientOptions&>(co) = base;
    co.stream = stream;
    co.consumer = name;
    return client::Consumer::Open(co);
  }

  // `floe cluster status --json`.
  std::string StatusJson() {
    auto r = RunCommand({FLOE_BINARY, "cluster", "status", "--json", "--bank", bank_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  struct StreamOwner {
    std::string owner;
    uint64_t epoch = 0;
  };
  StreamOwner OwnerOf(const std::string& stream) {
    const std::string json = StatusJson();
    std::smatch m;
    const std::regex re("\\{\"name\":\"" + stream + "\",\"owner\":\"([^\"]*)\",\"epoch\":([0-9]+)");
    if (!std::regex_search(json, m, re)) return {};
    return {m[1].str(), std::stoull(m[2].str())};
  }

  // Waits until `pred(owner)` holds for the stream (false on timeout).
  template <typename Pred>
  bool WaitForOwner(const std::string& stream, Pred pred, int timeout_ms = 20000) {
    const auto start = Clock::now();
    while (MsSince(start) < timeout_ms) {
      if (pred(OwnerOf(stream))) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // `floe session show ID --json`, one field.
  std::string SessionField(uint64_t id, const std::string& field) {
    auto r = RunCommand({FLOE_BINARY, "session", "show", fmt::format("{:016x}", id), "--json", "--bank", bank_});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    const std::regex re("\"" + field + "\":\"?([^,\"}]*)");
    return std::regex_search(r.out, m, re) ? m[1].str() : std::string("<absent>");
  }

  void CreateStream(const client::ClientOptions& o, const std::string& name, uint32_t ack_wait_ms = 30000) {
    ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
    wire::StreamConfig c;
    c.ack_wait_ms = ack_wait_ms;
    ASSERT_OK(admin->CreateStream(name, c));
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<test::EtcdServer> etcd_;

  // One new holder of a stream: its epoch grew (lease records: by exactly
  // one; on etcd an epoch is the lock key's create_revision).
  void ExpectNextEpoch(uint64_t before, uint64_t after) {
    if (etcd_) EXPECT_GT(after, before) << "a new holder: a higher fencing epoch";
    else EXPECT_EQ(after, before + 1) << "one takeover: the fencing epoch grew by one";
  }
  std::string data_;
  std::string bank_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(ClusterTest, ClientIsRedirectedToTheOwnerNode) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "r");  // the creating node owns it
  ASSERT_EQ(OwnerOf("r").owner, "n1");

  // Clients that know only n2 reach the stream through it.
  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(Options({n2}), "r"));
  AckLog acks;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(acks.ok(), 100u) << acks.Errors();
  EXPECT_GE(producer->redirects(), 1u) << "the producer was sent from n2 to n1";
  ASSERT_OK(producer->Close());

  ASSERT_OK_AND_ASSIGN(auto consumer, OpenConsumer(Options({n2}), "r", "c"));
  ASSERT_OK_AND_ASSIGN(auto got, PullAll(*consumer, 100, true));
  EXPECT_EQ(Audit(got).messages, 100u);
  EXPECT_GE(consumer->redirects(), 1u);
  ASSERT_OK(consumer->Close());

  // Admin requests that need the owner follow the redirect too.
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(Options({n2})));
  ASSERT_OK_AND_ASSIGN(auto info, admin->Info("r"));
  EXPECT_EQ(info.frontier, 100u);

  // By hand: n2 answers NOT_OWNER with n1's address.
  auto raw = RawConn::Connect(n2->port());
  ASSERT_TRUE(raw && raw->Handshake());
  ASSERT_TRUE(raw->Send(FrameOf(2, wire::SessionOpen{.role = wire::Role::kProducer, .stream = "r"})));
  RawFrame f;
  ASSERT_EQ(raw->ReadFrame(5000, &f), RawConn::Read::kFrame);
  ASSERT_EQ(ErrorCodeOf(f), C(wire::WireError::kNotOwner));
  auto e = wire::DecodeBodyAs<wire::Error>(std::span<const char>(f.body.data(), f.body.size()));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->redirect, n1->address());
  EXPECT_TRUE(e->retriable);
}

// Issue 11: a message its consumer gives up on reaches the dead-letter stream
// even when another node serves that stream (forwarded: DEAD_LETTER), counts
// as answered only once stored there, and a retried move is stored once.
TEST_F(ClusterTest, DeadLettersReachTheirStreamOnAnotherNodeOnce) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "dlqB");
  {
    ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(Options({n2})));
    ASSERT_OK(admin->CreateStream("srcB", {.ack_wait_ms = 30000, .max_deliveries = 2, .dead_letter = "dlqB"}));
  }
  ASSERT_EQ(OwnerOf("dlqB").owner, "n1");
  ASSERT_EQ(OwnerOf("srcB").owner, "n2");

  constexpr int kMessages = 5;
  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(Options({n2}), "srcB"));
  AckLog acks;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Close());
  ASSERT_EQ(acks.ok(), static_cast<size_t>(kMessages)) << acks.Errors();

  // NAK every delivery until nothing comes back: each message is delivered
  // max_deliveries (2) times, then moved.
  ASSERT_OK_AND_ASSIGN(auto consumer, OpenConsumer(Options({n2}), "srcB", "w"));
  std::map<uint64_t, uint32_t> deliveries;
  for (auto quiet_since = Clock::now(); MsSince(quiet_since) < 1500;) {
    ASSERT_OK_AND_ASSIGN(auto b, consumer->Fetch(10, 1 << 20, 300));
    for (const auto& m : b) {
      deliveries[m.seq] = std::max(deliveries[m.seq], m.delivery_count);
      ASSERT_OK(consumer->Nak(m.seq));
      quiet_since = Clock::now();
    }
  }
  ASSERT_EQ(deliveries.size(), static_cast<size_t>(kMessages));
  for (const auto& [seq, n] : deliveries) EXPECT_EQ(n, 2u) << "seq " << seq;

  ASSERT_OK_AND_ASSIGN(auto admin1, client::Admin::Connect(Options({n1})));
  uint64_t frontier = 0;
  for (auto start = Clock::now(); MsSince(start) < 10000 && frontier < kMessages;) {
    ASSERT_OK_AND_ASSIGN(auto info, admin1->Info("dlqB"));
    frontier = info.frontier;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(frontier, static_cast<uint64_t>(kMessages)) << "every given-up message is in dlqB on n1";
  ASSERT_OK_AND_ASSIGN(auto src, admin1->Info("srcB"));  // follows the redirect to n2
  ASSERT_EQ(src.consumers.size(), 1u);
  EXPECT_EQ(src.consumers[0].ack_floor, static_cast<uint64_t>(kMessages)) << "moved messages count as answered";
  EXPECT_EQ(src.consumers[0].pending, 0u);
  ASSERT_OK(consumer->Close());

  ASSERT_OK_AND_ASSIGN(auto dead, OpenConsumer(Options({n1}), "dlqB", "ops"));
  ASSERT_OK_AND_ASSIGN(auto got, PullAll(*dead, kMessages, /*ack=*/true, 10000));
  const AuditResult audit = Audit(got);
  EXPECT_EQ(audit.messages, static_cast<size_t>(kMessages));
  EXPECT_EQ(audit.stored_twice, 0u);
  EXPECT_EQ(audit.bad_payloads, 0u);
  ASSERT_OK(dead->Close());

  // A move retried (its reply lost, say) by hand: n1 finds the first copy.
  auto raw = RawConn::Connect(n1->port());
  ASSERT_TRUE(raw && raw->Handshake());
  const std::string payload = MakePayload(0, 0);
  ASSERT_TRUE(raw->Send(FrameOf(2, wire::DeadLetter{.stream = "dlqB", .source_stream = "srcB", .consumer = "w",
                                                    .source_seq = 1, .payload = payload})));
  RawFrame f;
  ASSERT_EQ(raw->ReadFrame(5000, &f), RawConn::Read::kFrame);
  ASSERT_EQ(f.type, static_cast<uint8_t>(wire::FrameType::kPublishAck)) << "error " << ErrorCodeOf(f);
  auto ack = wire::DecodeBodyAs<wire::PublishAck>(std::span<const char>(f.body.data(), f.body.size()));
  ASSERT_TRUE(ack.has_value());
  ASSERT_EQ(ack->results.size(), 1u);
  EXPECT_TRUE(ack->results[0].duplicate);
  EXPECT_EQ(ack->results[0].seq, audit.seq_of.at({0, 0}));
  ASSERT_OK_AND_ASSIGN(auto after, admin1->Info("dlqB"));
  EXPECT_EQ(after.frontier, static_cast<uint64_t>(kMessages)) << "the retry was not stored again";
}

TEST_F(ClusterTest, OwnerDeathMovesTheStreamAndSessionsResumeOnAnotherNode) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  const auto both = Options({n1, n2});
  CreateStream(Options({n1}), "f", /*ack_wait_ms=*/2000);
  ASSERT_EQ(OwnerOf("f").owner, "n1");

  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(both, "f"));
  AckLog acks;
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  ASSERT_EQ(acks.ok(), 300u) << acks.Errors();

  ASSERT_OK_AND_ASSIGN(auto consumer, OpenConsumer(both, "f", "c"));
  std::set<uint64_t> confirmed;
  std::map<uint64_t, int> received;
  auto pull = [&](size_t until_confirmed) {
    const auto start = Clock::now();
    while (confirmed.size() < until_confirmed && MsSince(start) < 30000) {
      auto got = consumer->Fetch(50, 1 << 20, 300);
      if (!got) continue;  // the node died under the fetch: the client reconnects
      std::vector<uint64_t> seqs;
      for (const auto& m : *got) {
        if (m.gap) continue;
        EXPECT_EQ(confirmed.count(m.seq), 0u) << "seq " << m.seq << " was redelivered after its ACK was confirmed";
        ++received[m.seq];
        seqs.push_back(m.seq);
      }
      if (!seqs.empty() && consumer->Ack(seqs).ok()) confirmed.insert(seqs.begin(), seqs.end());
    }
  };
  pull(100);
  ASSERT_GE(confirmed.size(), 100u);
  const uint64_t producer_session = producer->session_id();
  const uint64_t consumer_session = consumer->session_id();
  EXPECT_EQ(SessionField(producer_session, "holder"), "n1");
  const uint64_t epoch_before = std::stoull(SessionField(producer_session, "epoch"));
  const uint64_t stream_epoch_before = OwnerOf("f").epoch;

  // The owner dies. The first ACK after it comes from n2, once n1's lease
  // ran out and n2 recovered the stream.
  const auto killed = Clock::now();
  n1->Kill();
  AckLog after;
  ASSERT_TRUE(producer->Send(MakePayload(0, 300), after.Callback()).has_value());
  ASSERT_TRUE(after.WaitForOk(1, 30000)) << after.Errors();
  const int64_t failover_ms = MsSince(killed);
  fmt::print("failover: owner SIGKILLed to the first ACK from the new owner: {} ms (lease {} ms)\n", failover_ms,
             kLeaseMs);
  EXPECT_LT(failover_ms, 10 * kLeaseMs);
  for (int i = 301; i < 600; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), after.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(after.ok(), 300u) << after.Errors();
  EXPECT_EQ(after.failed(), 0u);
  StreamOwner owner = OwnerOf("f");
  EXPECT_EQ(owner.owner, "n2");
  ExpectNextEpoch(stream_epoch_before, owner.epoch);

  // The sessions moved with their state: n2 holds them, one epoch higher,
  // and the producer's conveyance state is the last message acknowledged.
  EXPECT_EQ(SessionField(producer_session, "holder"), "n2");
  EXPECT_GT(std::stoull(SessionField(producer_session, "epoch")), epoch_before);
  pull(600);
  EXPECT_EQ(confirmed.size(), 600u);
  EXPECT_EQ(producer->session_id(), producer_session) << "the producer resumed its session";
  EXPECT_EQ(consumer->session_id(), consumer_session) << "the consumer resumed its session";
  ASSERT_OK(producer->Close());
  ASSERT_OK(consumer->Close());

  // Nothing lost, nothing stored twice, every ACK at its seq.
  auto info_admin = client::Admin::Connect(Options({n2}));
  ASSERT_TRUE(info_admin.has_value());
  ASSERT_OK_AND_ASSIGN(auto info, (*info_admin)->Info("f"));
  ASSERT_OK_AND_ASSIGN(auto all, ReadStream(Options({n2}), "f", "audit", info.frontier));
  AuditResult audit = Audit(all);
  EXPECT_EQ(audit.messages, 600u);
  EXPECT_EQ(audit.stored_twice, 0u);
  ExpectAcked(audit, 0, acks.Outcomes());
  ExpectAcked(audit, 0, after.Outcomes());
  ASSERT_OK(n1->Restart());  // so TearDown's clean stop covers it
}

TEST_F(ClusterTest, PausedOwnerDoesNotAcknowledgeAfterLosingItsLease) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "z");
  ASSERT_EQ(OwnerOf("z").owner, "n1");
  const uint64_t z_epoch = OwnerOf("z").epoch;

  // A producer session on n1, by hand.
  auto raw = RawConn::Connect(n1->port());
  ASSERT_TRUE(raw && raw->Handshake());
  const uint64_t session = 0x5eed;
  ASSERT_TRUE(raw->Send(FrameOf(2, wire::SessionOpen{.session_id = session, .role = wire::Role::kProducer,
                                                     .stream = "z"})));
  RawFrame f;
  ASSERT_EQ(raw->ReadFrame(5000, &f), RawConn::Read::kFrame);
  ASSERT_EQ(f.type, T(wire::FrameType::kSessionOk)) << "error " << ErrorCodeOf(f);

  // n1 stops running; its publish waits in the socket. n2 takes the lease
  // (it cannot open the stream while n1 holds the directory lock).
  ASSERT_EQ(kill(n1->pid(), SIGSTOP), 0);
  // kill() returns before every thread has stopped: a thread running on the
  // other core could still take the publish (legitimately: n1 holds the
  // lease). Send it only once all of n1's threads are stopped.
  ASSERT_TRUE(WaitAllThreadsStopped(n1->pid())) << "n1 did not stop";
  const std::string payload = "written by a node that lost its lease";
  ASSERT_TRUE(raw->Send(FrameOf(3, wire::Publish{.messages = {{.producer_seq = 1, .payload = payload}}})));
  ASSERT_TRUE(WaitForOwner("z", [&](const StreamOwner& o) { return o.owner == "n2" && o.epoch > z_epoch; }))
      << StatusJson();
  ASSERT_EQ(kill(n1->pid(), SIGCONT), 0);

  // n1 runs again: it may store the message, but it must not acknowledge
  // it; it says it no longer serves the stream and closes.
  std::vector<RawFrame> frames;
  ASSERT_TRUE(raw->ReadUntilClosed(20000, &frames)) << "n1 kept the connection open";
  bool told = false;
  for (const RawFrame& x : frames) {
    EXPECT_NE(x.type, T(wire::FrameType::kPublishAck)) << "a node that lost its lease acknowledged a publish";
    const int code = ErrorCodeOf(x);
    if (code == C(wire::WireError::kNotOwner) || code == C(wire::WireError::kUnavailable)) told = true;
  }
  EXPECT_TRUE(told) << "n1 closed without saying why";
  EXPECT_TRUE(n1->Alive()) << "stepping back is not dying";

  // n2 serves the stream once n1 let go of it; the producer resumes its
  // session there and resends producer seq 1: it is acknowledged and stored
  // once, whichever node wrote it.
  std::unique_ptr<RawConn> to_n2;
  const auto start = Clock::now();
  while (MsSince(start) < 20000) {
    to_n2 = RawConn::Connect(n2->port());
    ASSERT_TRUE(to_n2 && to_n2->Handshake());
    ASSERT_TRUE(to_n2->Send(FrameOf(2, wire::SessionOpen{.session_id = session, .role = wire::Role::kProducer,
                                                         .stream = "z"})));
    ASSERT_EQ(to_n2->ReadFrame(5000, &f), RawConn::Read::kFrame);
    if (f.type == T(wire::FrameType::kSessionOk)) break;
    EXPECT_EQ(ErrorCodeOf(f), C(wire::WireError::kUnavailable)) << "n2 holds the lease: only 'retry' is expected";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(f.type, T(wire::FrameType::kSessionOk));
  ASSERT_TRUE(to_n2->Send(FrameOf(3, wire::Publish{.messages = {{.producer_seq = 1, .payload = payload}}})));
  ASSERT_EQ(to_n2->ReadFrame(5000, &f), RawConn::Read::kFrame);
  ASSERT_EQ(f.type, T(wire::FrameType::kPublishAck)) << "error " << ErrorCodeOf(f);
  auto ack = wire::DecodeBodyAs<wire::PublishAck>(std::span<const char>(f.body.data(), f.body.size()));
  ASSERT_TRUE(ack.has_value());
  ASSERT_EQ(ack->results.size(), 1u);
  EXPECT_EQ(ack->results[0].code, wire::WireError::kOk);
  fmt::print("the resend on n2 was {}\n", ack->results[0].duplicate ? "a duplicate of what n1 stored" : "stored by n2");
  EXPECT_EQ(OwnerOf("z").owner, "n2");
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(Options({n2})));
  ASSERT_OK_AND_ASSIGN(auto info, admin->Info("z"));
  ASSERT_OK_AND_ASSIGN(auto all, ReadStream(Options({n2}), "z", "audit", info.frontier));
  size_t copies = 0;
  for (const auto& m : all) copies += !m.gap && m.payload == payload;
  EXPECT_EQ(copies, 1u) << "the message is stored exactly once";
}

TEST_F(ClusterTest, SessionResumesFromItsBankRecordAlone) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "s");
  uint64_t session = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(Options({n1}), "s"));
    AckLog acks;
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
    ASSERT_OK(producer->Flush());
    ASSERT_EQ(acks.ok(), 20u);
    session = producer->session_id();
    // Dropped without GOODBYE: the record stays, released.
  }
  // The record shows the conveyance state once the lazy checkpoint landed.
  const auto start = Clock::now();
  while (SessionField(session, "last_producer_seq") != "20" && MsSince(start) < 5000)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(SessionField(session, "last_producer_seq"), "20");
  EXPECT_EQ(SessionField(session, "stream"), "s");
  EXPECT_EQ(SessionField(session, "holder"), "") << "a closed connection releases the session";

  // SESSION_OPEN with only the id: the node reads the record to find the
  // stream, and n2 redirects to its owner.
  for (NodeProcess* n : {n2, n1}) {
    auto raw = RawConn::Connect(n->port());
    ASSERT_TRUE(raw && raw->Handshake());
    ASSERT_TRUE(raw->Send(FrameOf(2, wire::SessionOpen{.session_id = session, .role = wire::Role::kProducer})));
    RawFrame f;
    ASSERT_EQ(raw->ReadFrame(5000, &f), RawConn::Read::kFrame);
    if (n == n2) {
      EXPECT_EQ(ErrorCodeOf(f), C(wire::WireError::kNotOwner));
      continue;
    }
    ASSERT_EQ(f.type, T(wire::FrameType::kSessionOk)) << "error " << ErrorCodeOf(f);
    auto ok = wire::DecodeBodyAs<wire::SessionOk>(std::span<const char>(f.body.data(), f.body.size()));
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->session_id, session);
    EXPECT_EQ(ok->highest_producer_seq, 20u);
    EXPECT_GE(ok->epoch, 2u) << "a new holder: a higher session epoch";
    ASSERT_TRUE(raw->Send(FrameOf(3, wire::Goodbye{})));
    std::vector<RawFrame> rest;
    EXPECT_TRUE(raw->ReadUntilClosed(5000, &rest));
  }
  // GOODBYE ends the session: its record goes.
  const auto start2 = Clock::now();
  auto gone = [&] {
    auto r = RunCommand({FLOE_BINARY, "session", "show", fmt::format("{:016x}", session), "--bank", bank_});
    return r.exit_code != 0 && r.err.find("no session") != std::string::npos;
  };
  while (!gone() && MsSince(start2) < 5000) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(gone()) << "the record of a session ended with GOODBYE is deleted";
}

TEST_F(ClusterTest, DrainAndRebalanceMoveStreamsWhileClientsWork) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  const auto both = Options({n1, n2});
  CreateStream(Options({n1}), "d1");
  CreateStream(Options({n1}), "d2");
  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(both, "d1"));
  AckLog acks;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());

  auto drain = RunCommand({FLOE_BINARY, "node", "drain", "n1", "--bank", bank_});
  ASSERT_EQ(drain.exit_code, 0) << drain.err;
  for (const char* s : {"d1", "d2"})
    EXPECT_TRUE(WaitForOwner(s, [](const StreamOwner& o) { return o.owner == "n2"; })) << s << "\n" << StatusJson();
  for (int i = 50; i < 100; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(acks.ok(), 100u) << acks.Errors();

  auto undo = RunCommand({FLOE_BINARY, "node", "drain", "n1", "--undo", "--bank", bank_});
  ASSERT_EQ(undo.exit_code, 0) << undo.err;
  auto rebalance = RunCommand({FLOE_BINARY, "cluster", "rebalance", "--bank", bank_});
  ASSERT_EQ(rebalance.exit_code, 0) << rebalance.err;
  // One stream each, once the balance settles.
  const auto start = Clock::now();
  bool even = false;
  while (!even && MsSince(start) < 20000) {
    const StreamOwner a = OwnerOf("d1"), b = OwnerOf("d2");
    even = !a.owner.empty() && !b.owner.empty() && a.owner != b.owner;
    if (!even) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(even) << StatusJson();
  for (int i = 100; i < 150; ++i) ASSERT_TRUE(producer->Send(MakePayload(0, i), acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(acks.ok(), 150u) << acks.Errors();
  ASSERT_OK(producer->Close());
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(both));
  ASSERT_OK_AND_ASSIGN(auto info, admin->Info("d1"));
  ASSERT_OK_AND_ASSIGN(auto all, ReadStream(both, "d1", "audit", info.frontier));
  AuditResult audit = Audit(all);
  EXPECT_EQ(audit.messages, 150u);
  EXPECT_EQ(audit.stored_twice, 0u);
  ExpectAcked(audit, 0, acks.Outcomes());
}

TEST_F(ClusterTest, GracefulStopHandsStreamsOverAtOnce) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "g");
  ASSERT_EQ(OwnerOf("g").owner, "n1");
  const uint64_t g_epoch = OwnerOf("g").epoch;
  ASSERT_OK_AND_ASSIGN(int code, n1->Stop());
  EXPECT_EQ(code, 0);
  // The lease was released, not left to expire: n2 takes it at its next
  // tick (a third of the lease period), and it is not a takeover from a
  // dead node but a hand-over (the epoch still grows: a new holder).
  EXPECT_TRUE(WaitForOwner("g", [](const StreamOwner& o) { return o.owner == "n2"; }));
  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(Options({n1, n2}), "g"));
  AckLog acks;
  ASSERT_TRUE(producer->Send("after the hand-over", acks.Callback()).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(acks.ok(), 1u) << acks.Errors();
  ASSERT_OK(producer->Close());
  ExpectNextEpoch(g_epoch, OwnerOf("g").epoch);
  // The stopped node left the cluster's node list.
  EXPECT_EQ(StatusJson().find("\"id\":\"n1\""), std::string::npos);
}

// The byte at `offset` of the large test message.
inline char LargeByte(uint64_t offset) {
  uint64_t x = (offset / 8 + 1) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return static_cast<char>(x >> (8 * (offset % 8)));
}

// Peak resident memory of a process (VmHWM), in bytes.
uint64_t PeakRssBytes(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

TEST_F(ClusterTest, LargeMessageResumesAtTheFirstUnacknowledgedByteOnTheNewOwner) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  CreateStream(Options({n1}), "big");
  // 1 GiB; FLOE_LARGE_TEST_BYTES makes it smaller where the node runs
  // slowly (the TSan build).
  const char* env = std::getenv("FLOE_LARGE_TEST_BYTES");
  const uint64_t size = env ? std::stoull(env) : 1ull << 30;
  const uint32_t chunk = 8u << 20;
  const uint64_t kill_at = size / 10 * 3;

  std::mutex mu;
  std::condition_variable cv;
  bool reached = false, killed = false;
  uint64_t reached_offset = 0;
  client::LargeMessageOptions lo;
  static_cast<client::ClientOptions&>(lo) = Options({n1, n2});
  lo.stream = "big";
  lo.chunk_bytes = chunk;
  auto reader = [&](uint64_t offset, std::span<char> out) -> Status {
    std::unique_lock l(mu);
    if (offset >= kill_at && !reached) {
      reached = true;
      reached_offset = offset;  // every byte below it is acknowledged
      cv.notify_all();
      cv.wait(l, [&] { return killed; });  // hold the transfer while the owner dies
    }
    l.unlock();
    for (size_t i = 0; i < out.size(); ++i) out[i] = LargeByte(offset + i);
    return Status::OK();
  };
  Result<client::LargeMessageOutcome> outcome = Err(Status::Internal("not run"));
  std::thread sender([&] { outcome = client::PublishLarge(lo, size, reader, "k", EncodeHeader("h", "v")); });

  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(120), [&] { return reached; }));
  }
  // The bank records the bytes conveyed as the transfer runs.
  auto list = RunCommand({FLOE_BINARY, "session", "list", "--json", "--bank", bank_});
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      list.out, m, std::regex(fmt::format("\"conveying_total\":{},\"bytes_conveyed\":([0-9]+)", size))))
      << list.out;
  const uint64_t conveyed = std::stoull(m[1].str());
  EXPECT_EQ(conveyed, reached_offset) << "every acknowledged chunk is in the bank before its ACK";
  n1->Kill();
  {
    std::lock_guard l(mu);
    killed = true;
  }
  cv.notify_all();
  sender.join();
  ASSERT_TRUE(outcome.has_value()) << outcome.error().ToString();
  fmt::print("large message: {} bytes sent for {} (resumed once at the durable byte), {} reconnects, seq {}\n",
             outcome->bytes_sent, size, outcome->reconnects, outcome->seq);
  EXPECT_GE(outcome->reconnects, 1u);
  EXPECT_LE(outcome->bytes_sent, size + chunk) << "what was acknowledged is not sent again";
  EXPECT_EQ(OwnerOf("big").owner, "n2");

  // A small message after it; then read both back through n2.
  ASSERT_OK_AND_ASSIGN(auto producer, OpenProducer(Options({n2}), "big"));
  AckLog acks;
  ASSERT_TRUE(producer->Send("small", acks.Callback()).has_value());
  ASSERT_OK(producer->Close());
  ASSERT_EQ(acks.ok(), 1u) << acks.Errors();
  ASSERT_OK_AND_ASSIGN(auto consumer, OpenConsumer(Options({n2}), "big", "c"));
  ASSERT_OK_AND_ASSIGN(auto got, consumer->Fetch(10, 1 << 20, 5000));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].seq, outcome->seq);
  EXPECT_EQ(got[0].large_size, size);
  EXPECT_TRUE(got[0].payload.empty());
  EXPECT_EQ(got[0].key, "k");
  EXPECT_EQ(got[0].headers, EncodeHeader("h", "v")) << "the producer's headers, without the reserved one";
  EXPECT_EQ(got[1].payload, "small");
  EXPECT_EQ(got[1].large_size, 0u);
  uint64_t offset = 0, bad = 0;
  while (offset < size) {
    ASSERT_OK_AND_ASSIGN(std::string piece, consumer->ReadLarge(got[0].seq, offset, 8u << 20));
    ASSERT_FALSE(piece.empty());
    for (size_t i = 0; i < piece.size(); ++i) bad += piece[i] != LargeByte(offset + i);
    offset += piece.size();
  }
  EXPECT_EQ(offset, size);
  EXPECT_EQ(bad, 0u) << "the large message's bytes arrived intact";
  const uint64_t seqs[] = {got[0].seq, got[1].seq};
  ASSERT_OK(consumer->Ack(seqs));
  ASSERT_OK(consumer->Close());
  const uint64_t rss = PeakRssBytes(n2->pid());
  fmt::print("peak resident memory of the node that finished and served it: {} MiB\n", rss >> 20);
  // The bound needs the full-size message and a plain build: with the
  // smaller message of the TSan run, TSan's own shadow memory dominates, and
  // under ASan freed memory is held in its quarantine (up to 256 MiB), which
  // counts as resident.
#if defined(__SANITIZE_ADDRESS__)
  constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  constexpr bool kAsan = true;
#else
  constexpr bool kAsan = false;
#endif
#else
  constexpr bool kAsan = false;
#endif
  if (!env && !kAsan) EXPECT_LT(rss, size / 2) << "the node never held the message whole";
  ASSERT_OK(n1->Restart());
}

}  // namespace
}  // namespace floe
