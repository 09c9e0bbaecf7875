// The chaos test of a floe cluster (issue 4): three real `floe serve`
// processes on loopback sharing one data directory and one bank (SQLite, or
// etcd with FLOE_TEST_BANK=etcd), idempotent producers and acking consumers
// on several streams and one large message in transfer, while a driver
// randomly SIGKILLs and restarts nodes, SIGSTOPs one past its lease and
// resumes it, drains nodes and asks for rebalances (on etcd, a 3-member
// cluster, it also SIGKILLs and restarts etcd members). A checker then proves:
//   * every ACKed message is consumed, and is stored at the seq its ACK named;
//   * no producer message is stored twice, and each producer's messages are
//     in stream order;
//   * no consumer ACK that was confirmed is ever delivered again;
//   * the large message interrupted mid-transfer completes with its bytes
//     intact;
//   * dead letters: on the last stream the consumer NAKs every fifth message
//     until it reaches max_deliveries; the dead-letter stream lives wherever
//     the cluster puts it (often another node than its source). Every
//     message there is either ACKed by the consumer or stored once in the
//     dead-letter stream — every NAKed one in it — and none is stored there
//     twice.
// It prints the counts it checked. FLOE_CHAOS_SECONDS sets the chaos phase
// (default 45 s); FLOE_CHAOS_SEED the random seed (printed).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
using test::NodeConfig;
using test::NodeProcess;
using test::RunCommand;

constexpr int kNodes = 3;
constexpr int kStreams = 4;
constexpr int kDeadLetterSource = kStreams - 1;  // its consumer NAKs poison messages until they die
// One message in five of the dead-letter source is poison (~200 a second).
bool Poison(uint64_t index) { return index % 5 == 1; }
constexpr int kLeaseMs = 1500;
constexpr uint64_t kLargeSize = 64ull << 20;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

std::string Payload(int stream, uint64_t index) { return fmt::format("s{}:{}:{}", stream, index, index * 7919 % 1000); }

char LargeByte(uint64_t offset) { return static_cast<char>((offset * 131 + offset / 4096) & 0xff); }

// What one producer saw: producer seq -> stream seq of every ACK.
struct ProducerLog {
  std::mutex mu;
  std::map<uint64_t, uint64_t> acked;  // index (producer seq - 1) -> seq
  uint64_t sent = 0, failed = 0, duplicates = 0;
};

// What one consumer saw.
struct ConsumerLog {
  std::mutex mu;
  std::map<uint64_t, std::string> payload_of;  // seq -> payload
  std::set<uint64_t> confirmed;                // ACK confirmed by the node
  uint64_t deliveries = 0, redeliveries = 0, redelivered_after_confirm = 0;
  std::vector<std::string> violations;
};

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/floe-chaos-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    data_ = dir_ + "/data";
    bank_ = "sqlite:" + data_ + "/bank.db";
    if (const char* b = std::getenv("FLOE_TEST_BANK"); b && std::string_view(b) == "etcd") {
      // Three members: the chaos also kills and restarts etcd members.
      auto etcd = test::EtcdServer::Start(3);
      ASSERT_TRUE(etcd.has_value()) << etcd.error().ToString();
      etcd_ = std::move(*etcd);
      bank_ = etcd_->Url("/floe-chaos/");
    }
    for (int i = 0; i < kNodes; ++i)
      nodes_.push_back(std::make_unique<NodeProcess>(NodeConfig{
          .binary = FLOE_BINARY,
          .data_dir = data_,
          .extra_args = {"--node-id", fmt::format("n{}", i + 1), "--bank", bank_, "--lease-ms",
                         std::to_string(kLeaseMs)}}));
    for (auto& n : nodes_) ASSERT_TRUE(n->Start().ok());
    for (auto& n : nodes_)
      for (const auto& s : n->servers()) servers_.push_back(s);
  }

  void TearDown() override {
    if (HasFailure()) {
      // What the nodes said, written beside the data for a look afterwards.
      for (size_t i = 0; i < nodes_.size(); ++i) {
        std::ofstream out(fmt::format("{}/n{}.log", dir_, i + 1));
        out << nodes_[i]->output();
      }
    }
    for (auto& n : nodes_) {
      if (!n->Alive()) continue;
      kill(n->pid(), SIGCONT);
      (void)n->Stop();
    }
    nodes_.clear();
    etcd_.reset();
    if (!HasFailure() && !std::getenv("FLOE_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_);
    else fmt::print("chaos data kept in {}\n", dir_);
  }

  client::ClientOptions Options() {
    client::ClientOptions o;
    o.servers = servers_;
    o.client_name = "chaos";
    o.connect_timeout_ms = 1000;
    o.reconnect_max_backoff_ms = 200;
    o.reconnect_give_up_ms = 120000;  // outlive any pause the driver makes
    return o;
  }

  std::string Cli(std::vector<std::string> args) {
    args.insert(args.begin(), FLOE_BINARY);
    args.push_back("--bank");
    args.push_back(bank_);
    auto r = RunCommand(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::string dir_, data_, bank_;
  std::unique_ptr<test::EtcdServer> etcd_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::string> servers_;
};

TEST_F(ChaosTest, NothingAcknowledgedIsLostNothingIsStoredTwiceNoConfirmedAckComesBack) {
  const char* secs_env = std::getenv("FLOE_CHAOS_SECONDS");
  const int chaos_seconds = secs_env ? std::atoi(secs_env) : 45;
  const char* seed_env = std::getenv("FLOE_CHAOS_SEED");
  const uint64_t seed = seed_env ? std::stoull(seed_env) : std::random_device{}();
  fmt::print("chaos: {} s, seed {}, bank {}\n", chaos_seconds, seed, bank_);
  std::mt19937_64 rng(seed);

  {
    auto admin = client::Admin::Connect(Options());
    ASSERT_TRUE(admin.has_value()) << admin.error().ToString();
    // The dead-letter stream starts on another node than its source (the
    // creating node serves a stream), so moves are forwarded from the start.
    client::ClientOptions on_n2 = Options();
    on_n2.servers = nodes_[1]->servers();
    auto admin2 = client::Admin::Connect(on_n2);
    ASSERT_TRUE(admin2.has_value()) << admin2.error().ToString();
    ASSERT_TRUE((*admin2)->CreateStream("chaos-dlq", {}).ok());
    for (int s = 0; s < kStreams; ++s) {
      wire::StreamConfig c;
      c.ack_wait_ms = 2000;
      c.max_deliveries = 0;  // never dead-letter: every message must reach the consumer
      if (s == kDeadLetterSource) {
        c.max_deliveries = 2;
        c.dead_letter = "chaos-dlq";
      }
      ASSERT_TRUE((*admin)->CreateStream(fmt::format("chaos-{}", s), c).ok());
    }
  }

  std::atomic<bool> producing{true}, consuming{true};
  std::vector<std::unique_ptr<ProducerLog>> plogs;
  std::vector<std::unique_ptr<ConsumerLog>> clogs;
  std::atomic<uint64_t> redirects{0};
  std::vector<std::thread> workers;
  for (int s = 0; s < kStreams; ++s) {
    plogs.push_back(std::make_unique<ProducerLog>());
    clogs.push_back(std::make_unique<ConsumerLog>());
  }

  // Producers: one session each, paced, every ACK recorded.
  for (int s = 0; s < kStreams; ++s) {
    workers.emplace_back([&, s] {
      client::ProducerOptions po;
      static_cast<client::ClientOptions&>(po) = Options();
      po.stream = fmt::format("chaos-{}", s);
      po.max_inflight = 200;
      auto p = client::Producer::Open(po);
      ASSERT_TRUE(p.has_value()) << p.error().ToString();
      ProducerLog& log = *plogs[s];
      uint64_t index = 0;
      while (producing) {
        const uint64_t i = index++;
        auto sent = (*p)->Send(Payload(s, i), [&log, i](const client::PublishOutcome& o) {
          std::lock_guard l(log.mu);
          if (!o.status.ok()) {
            ++log.failed;
            return;
          }
          if (o.duplicate) ++log.duplicates;
          log.acked[i] = o.seq;
        });
        if (!sent) {
          ADD_FAILURE() << "send: " << sent.error().ToString();
          break;
        }
        {
          std::lock_guard l(log.mu);
          ++log.sent;
        }
        if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // ~1000 msgs/s
      }
      EXPECT_TRUE((*p)->Flush().ok());
      EXPECT_TRUE((*p)->Close().ok());
      redirects += (*p)->redirects();
    });
  }

  // Consumers: pull and ACK; a delivery of a seq whose ACK was confirmed is a
  // violation.
  for (int s = 0; s < kStreams; ++s) {
    workers.emplace_back([&, s] {
      client::ConsumerOptions co;
      static_cast<client::ClientOptions&>(co) = Options();
      co.stream = fmt::format("chaos-{}", s);
      co.consumer = "c";
      auto c = client::Consumer::Open(co);
      ASSERT_TRUE(c.has_value()) << c.error().ToString();
      ConsumerLog& log = *clogs[s];
      while (consuming) {
        auto got = (*c)->Fetch(100, 1 << 20, 200);
        if (!got) continue;  // a node died under the fetch: the client reconnects
        std::vector<uint64_t> seqs, nak;
        {
          std::lock_guard l(log.mu);
          for (const auto& m : *got) {
            if (m.gap) continue;
            if (m.large_size > 0) {  // the large message: checked byte by byte at the end
              seqs.push_back(m.seq);
              continue;
            }
            ++log.deliveries;
            if (m.delivery_count > 1) ++log.redeliveries;
            if (log.confirmed.count(m.seq)) {
              ++log.redelivered_after_confirm;
              if (log.violations.size() < 5)
                log.violations.push_back(fmt::format("stream {} seq {} delivered again (count {}) after its ACK was "
                                                     "confirmed",
                                                     s, m.seq, m.delivery_count));
            }
            auto [it, fresh] = log.payload_of.emplace(m.seq, m.payload);
            if (!fresh && it->second != m.payload && log.violations.size() < 5)
              log.violations.push_back(fmt::format("stream {} seq {} changed payload", s, m.seq));
            unsigned long long index = 0;
            if (s == kDeadLetterSource && std::sscanf(m.payload.c_str(), "s%*d:%llu:", &index) == 1 && Poison(index)) {
              nak.push_back(m.seq);  // poison: NAKed until it is dead-lettered
              continue;
            }
            seqs.push_back(m.seq);
          }
        }
        for (uint64_t seq : nak) (void)(*c)->Nak(seq);
        if (seqs.empty()) continue;
        if ((*c)->Ack(seqs).ok()) {
          std::lock_guard l(log.mu);
          log.confirmed.insert(seqs.begin(), seqs.end());
        }
      }
      EXPECT_TRUE((*c)->Close().ok());
      redirects += (*c)->redirects();
    });
  }

  // The dead-letter stream's reader: which source index each of its seqs holds.
  std::mutex dlq_mu;
  std::map<uint64_t, uint64_t> dlq_index_of;  // dead-letter seq -> source index
  std::vector<std::string> dlq_violations;
  std::atomic<bool> reading_dlq{true};
  std::thread dlq_reader([&] {
    client::ConsumerOptions co;
    static_cast<client::ClientOptions&>(co) = Options();
    co.stream = "chaos-dlq";
    co.consumer = "ops";
    auto c = client::Consumer::Open(co);
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    while (reading_dlq) {
      auto got = (*c)->Fetch(100, 1 << 20, 200);
      if (!got) continue;
      std::vector<uint64_t> seqs;
      for (const auto& m : *got) {
        if (m.gap) continue;
        seqs.push_back(m.seq);
        int ps = -1;
        unsigned long long index = 0;
        std::lock_guard l(dlq_mu);
        if (std::sscanf(m.payload.c_str(), "s%d:%llu:", &ps, &index) != 2 || ps != kDeadLetterSource ||
            m.payload != Payload(ps, index)) {
          dlq_violations.push_back(fmt::format("chaos-dlq seq {}: foreign payload '{}'", m.seq, m.payload));
          continue;
        }
        dlq_index_of[m.seq] = index;
      }
      if (!seqs.empty()) (void)(*c)->Ack(seqs);
    }
    (void)(*c)->Close();
  });
  // Source indices in the dead-letter stream (each: how many seqs hold it).
  auto dead_lettered = [&] {
    std::lock_guard l(dlq_mu);
    std::map<uint64_t, int> copies;
    for (const auto& [seq, index] : dlq_index_of) ++copies[index];
    return copies;
  };

  // One large message, in chunks, through all of it.
  Result<client::LargeMessageOutcome> large = Err(Status::Internal("not run"));
  std::thread large_sender([&] {
    client::LargeMessageOptions lo;
    static_cast<client::ClientOptions&>(lo) = Options();
    lo.stream = "chaos-0";
    lo.chunk_bytes = 1u << 20;
    // Spread over most of the chaos phase, so nodes die under it.
    const auto pause = std::chrono::milliseconds(chaos_seconds * 700 / (kLargeSize >> 20));
    large = client::PublishLarge(lo, kLargeSize, [&](uint64_t offset, std::span<char> out) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = LargeByte(offset + i);
      std::this_thread::sleep_for(pause);
      return Status::OK();
    });
  });

  // The driver. Its first action kills the node serving chaos-0, where the
  // large message is in transfer.
  std::map<std::string, int> actions;
  const auto chaos_start = Clock::now();
  bool first = true;
  bool etcd_member_killed = false;
  while (MsSince(chaos_start) < chaos_seconds * 1000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 2000));
    int n = static_cast<int>(rng() % kNodes);
    if (first) {
      std::smatch m;
      const std::string status = Cli({"cluster", "status", "--json"});
      if (std::regex_search(status, m, std::regex("\"name\":\"chaos-0\",\"owner\":\"n([0-9])\"")))
        n = std::stoi(m[1].str()) - 1;
    }
    // On etcd the second action always kills an etcd member; later ones may.
    int action = first ? 0 : static_cast<int>(rng() % (etcd_ ? 5 : 4));
    if (!first && etcd_ && !etcd_member_killed) action = 4;
    first = false;
    if (action == 4) etcd_member_killed = true;
    NodeProcess& node = *nodes_[n];
    const std::string id = fmt::format("n{}", n + 1);
    // Every node runs between actions: one that died on its own is a failure.
    if (!node.Alive()) {
      ADD_FAILURE() << "node " << id << " died on its own:\n" << node.output();
      break;
    }
    bool restarted = true;
    switch (action) {
      case 0: {  // kill -9, restart a moment later
        node.Kill();
        std::this_thread::sleep_for(std::chrono::milliseconds(500 + rng() % 1500));
        restarted = node.Restart().ok();
        ++actions["kill -9 + restart"];
        break;
      }
      case 1: {  // paused past its lease, then resumed
        const pid_t pid = node.pid();
        if (pid <= 0) break;
        kill(pid, SIGSTOP);
        std::this_thread::sleep_for(std::chrono::milliseconds(kLeaseMs * 3 / 2 + 500));
        kill(pid, SIGCONT);
        ++actions["SIGSTOP past the lease + SIGCONT"];
        break;
      }
      case 2: {  // drain, then take streams again
        Cli({"node", "drain", id});
        std::this_thread::sleep_for(std::chrono::milliseconds(2000 + rng() % 2000));
        Cli({"node", "drain", id, "--undo"});
        ++actions["drain + undo"];
        break;
      }
      case 3:
        Cli({"cluster", "rebalance"});
        ++actions["rebalance"];
        break;
      case 4: {  // an etcd member SIGKILLed, restarted a moment later: floe keeps serving
        const int member = static_cast<int>(rng() % 3);
        etcd_->Kill(member);
        std::this_thread::sleep_for(std::chrono::milliseconds(1000 + rng() % 2000));
        if (Status s = etcd_->Restart(member); !s.ok()) ADD_FAILURE() << "etcd member did not restart: " << s.ToString();
        ++actions["etcd member kill -9 + restart"];
        break;
      }
    }
    if (!restarted) {
      ADD_FAILURE() << "node " << id << " did not restart:\n" << node.output();
      break;
    }
  }
  for (auto& node : nodes_) EXPECT_TRUE(node->Alive()) << "a node died on its own:\n" << node->output();
  if (etcd_) EXPECT_GE(actions["etcd member kill -9 + restart"], 1) << "the chaos phase was too short";

  fmt::print("chaos phase over after {} ms\n", MsSince(chaos_start));
  // Wind down: producers finish (every message ACKed or failed), the large
  // message completes, consumers drain everything ACKed.
  producing = false;
  large_sender.join();
  for (int s = 0; s < kStreams; ++s) workers[s].join();
  uint64_t acked_total = 0;
  std::vector<std::map<uint64_t, uint64_t>> acked(kStreams);
  for (int s = 0; s < kStreams; ++s) {
    std::lock_guard l(plogs[s]->mu);
    acked[s] = plogs[s]->acked;
    acked_total += acked[s].size();
  }
  const auto drain_start = Clock::now();
  auto all_consumed = [&] {
    for (int s = 0; s < kStreams; ++s) {
      std::lock_guard l(clogs[s]->mu);
      for (const auto& [i, seq] : acked[s])
        if (!clogs[s]->payload_of.count(seq)) return false;
    }
    return true;
  };
  // Every poison message of the dead-letter source reaches chaos-dlq.
  auto all_dead_lettered = [&] {
    const auto copies = dead_lettered();
    for (const auto& [i, seq] : acked[kDeadLetterSource])
      if (Poison(i) && !copies.count(i)) return false;
    return true;
  };
  while (!(all_consumed() && all_dead_lettered()) && MsSince(drain_start) < 90000)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  fmt::print("everything ACKed was consumed {} ms after the producers stopped\n", MsSince(drain_start));
  consuming = false;
  for (int s = kStreams; s < static_cast<int>(workers.size()); ++s) workers[s].join();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a last move in flight reaches the reader
  reading_dlq = false;
  dlq_reader.join();

  // --- The checker -------------------------------------------------------------
  uint64_t consumed = 0, redeliveries = 0, lost = 0, misplaced = 0, stored_twice = 0, out_of_order = 0;
  uint64_t after_confirm = 0, failed = 0, duplicates = 0, sent = 0;
  for (int s = 0; s < kStreams; ++s) {
    ConsumerLog& c = *clogs[s];
    std::lock_guard l(c.mu);
    for (const auto& v : c.violations) ADD_FAILURE() << v;
    consumed += c.payload_of.size();
    redeliveries += c.redeliveries;
    after_confirm += c.redelivered_after_confirm;
    failed += plogs[s]->failed;
    duplicates += plogs[s]->duplicates;
    sent += plogs[s]->sent;
    // Every ACKed message was consumed, at the seq its ACK named.
    for (const auto& [i, seq] : acked[s]) {
      auto it = c.payload_of.find(seq);
      if (it == c.payload_of.end()) {
        if (++lost <= 5) ADD_FAILURE() << fmt::format("stream {} index {} ACKed at seq {} never consumed", s, i, seq);
      } else if (it->second != Payload(s, i)) {
        if (++misplaced <= 5)
          ADD_FAILURE() << fmt::format("stream {} seq {} holds '{}', its ACK said '{}'", s, seq, it->second,
                                       Payload(s, i));
      }
    }
    // Each stored payload once; a producer's messages in stream order.
    std::map<uint64_t, uint64_t> seq_of_index;
    for (const auto& [seq, payload] : c.payload_of) {
      int ps = -1;
      unsigned long long index = 0;
      if (std::sscanf(payload.c_str(), "s%d:%llu:", &ps, &index) != 2 || ps != s) {
        ADD_FAILURE() << fmt::format("stream {} seq {}: foreign payload '{}'", s, seq, payload);
        continue;
      }
      if (!seq_of_index.emplace(index, seq).second && ++stored_twice <= 5)
        ADD_FAILURE() << fmt::format("stream {} index {} stored twice (seqs {} and {})", s, index,
                                     seq_of_index[index], seq);
    }
    uint64_t last_seq = 0;
    for (const auto& [index, seq] : seq_of_index) {
      if (seq < last_seq && ++out_of_order <= 5)
        ADD_FAILURE() << fmt::format("stream {} index {} at seq {} is before an earlier index's seq {}", s, index, seq,
                                     last_seq);
      last_seq = std::max(last_seq, seq);
    }
  }
  // Read every stream back with a fresh consumer: what is stored is exactly
  // what was ACKed (producers flushed: every message sent was ACKed), each
  // once, at its ACK's seq.
  uint64_t audited = 0, audit_mismatch = 0, audit_ack_refused = 0;
  for (int s = 0; s < kStreams; ++s) {
    client::ConsumerOptions co;
    static_cast<client::ClientOptions&>(co) = Options();
    co.stream = fmt::format("chaos-{}", s);
    co.consumer = "audit";
    auto c = client::Consumer::Open(co);
    ASSERT_TRUE(c.has_value()) << c.error().ToString();
    std::map<uint64_t, uint64_t> stored;  // index -> seq
    // Until nothing more comes; after a refused ACK, until what was ACKed is
    // all read again (its messages come back after the 2 s ACK wait) or 60 s.
    const auto audit_deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      auto got = (*c)->Fetch(1000, 4 << 20, 1000);
      ASSERT_TRUE(got.has_value()) << got.error().ToString();
      if (got->empty()) {
        if (audit_ack_refused == 0 || stored.size() >= acked[s].size() || Clock::now() > audit_deadline) break;
        continue;
      }
      std::vector<uint64_t> seqs;
      for (const auto& m : *got) {
        if (m.gap) continue;
        seqs.push_back(m.seq);
        if (m.large_size > 0) continue;
        int ps = -1;
        unsigned long long index = 0;
        if (std::sscanf(m.payload.c_str(), "s%d:%llu:", &ps, &index) != 2 || ps != s ||
            m.payload != Payload(s, index)) {
          ++audit_mismatch;
          continue;
        }
        // Delivered again (an earlier ACK was refused) at the same seq: fine.
        auto [it, fresh] = stored.emplace(index, m.seq);
        if (!fresh && it->second != m.seq) ++audit_mismatch;
      }
      // The cluster may still be balancing: if the stream moved, the new
      // owner may not know this session's deliveries (they are recorded
      // lazily) and refuse the ACK; they come again, and are checked again.
      if (Status a = (*c)->Ack(seqs); !a.ok()) {
        ASSERT_LT(++audit_ack_refused, 100u) << a.ToString();
        fmt::print("audit: ACK refused ({}); reading on\n", a.ToString());
      }
    }
    (void)(*c)->Close();
    audited += stored.size();
    if (stored != acked[s]) {
      ++audit_mismatch;
      ADD_FAILURE() << fmt::format("stream {}: {} stored, {} ACKed; they differ", s, stored.size(), acked[s].size());
    }
  }
  EXPECT_EQ(audit_mismatch, 0u);
  EXPECT_EQ(audited, acked_total);

  // Dead letters: each message of the source ACKed by its consumer or stored
  // once in chaos-dlq; every poison (always NAKed) one there; none there twice.
  uint64_t dl_moved = 0, dl_missing = 0, dl_twice = 0, dl_neither = 0;
  {
    for (const auto& v : dlq_violations) ADD_FAILURE() << v;
    const auto copies = dead_lettered();
    ConsumerLog& c = *clogs[kDeadLetterSource];
    std::lock_guard l(c.mu);
    for (const auto& [i, seq] : acked[kDeadLetterSource]) {
      auto it = copies.find(i);
      const int n = it == copies.end() ? 0 : it->second;
      dl_moved += n > 0;
      if (n > 1 && ++dl_twice <= 5) ADD_FAILURE() << fmt::format("index {} is in chaos-dlq {} times", i, n);
      if (Poison(i) && n == 0 && ++dl_missing <= 5)
        ADD_FAILURE() << fmt::format("index {} (seq {}) reached max deliveries but is not in chaos-dlq", i, seq);
      if (!Poison(i) && n == 0 && !c.confirmed.count(seq) && ++dl_neither <= 5)
        ADD_FAILURE() << fmt::format("index {} (seq {}) neither ACKed nor dead-lettered", i, seq);
    }
    for (const auto& [index, n] : copies)
      if (!acked[kDeadLetterSource].count(index))
        ADD_FAILURE() << fmt::format("chaos-dlq holds index {}, never ACKed to its producer", index);
  }
  EXPECT_EQ(dl_missing + dl_twice + dl_neither, 0u);
  EXPECT_GT(dl_moved, 100u) << "too few dead-letter moves to prove anything";
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(misplaced, 0u);
  EXPECT_EQ(stored_twice, 0u);
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(after_confirm, 0u);
  EXPECT_EQ(failed, 0u) << "producers give up only after minutes without a node";
  EXPECT_GT(acked_total, 1000u) << "the chaos left too little traffic to prove anything";

  // The large message: stored once, every byte intact.
  ASSERT_TRUE(large.has_value()) << large.error().ToString();
  uint64_t large_bad = 0;
  {
    client::ConsumerOptions co;
    static_cast<client::ClientOptions&>(co) = Options();
    co.stream = "chaos-0";
    co.consumer = "large-reader";
    co.start_at = wire::StartAt::kSeq;
    co.start_value = large->seq;
    auto c = client::Consumer::Open(co);
    ASSERT_TRUE(c.has_value());
    auto first = (*c)->Fetch(1, 1 << 20, 5000);
    ASSERT_TRUE(first.has_value() && !first->empty());
    ASSERT_EQ((*first)[0].seq, large->seq);
    ASSERT_EQ((*first)[0].large_size, kLargeSize);
    uint64_t offset = 0;
    while (offset < kLargeSize) {
      auto piece = (*c)->ReadLarge(large->seq, offset, 4u << 20);
      ASSERT_TRUE(piece.has_value() && !piece->empty()) << (piece ? "empty" : piece.error().ToString());
      for (size_t i = 0; i < piece->size(); ++i) large_bad += (*piece)[i] != LargeByte(offset + i);
      offset += piece->size();
    }
    (void)(*c)->Close();
  }
  EXPECT_EQ(large_bad, 0u);
  EXPECT_GE(large->reconnects, 1u) << "the large message's transfer was interrupted (its node was killed)";
  EXPECT_LE(large->bytes_sent, kLargeSize + (large->reconnects + 1) * (1u << 20))
      << "only unacknowledged chunks are sent again";

  // Takeovers: on the SQLite bank every epoch above 1 is a new holder of a
  // stream (on etcd an epoch is a revision: not counted).
  uint64_t takeovers = 0;
  const std::string status = Cli({"cluster", "status", "--json"});
  std::regex epoch_re("\"epoch\":([0-9]+)");
  for (auto it = std::sregex_iterator(status.begin(), status.end(), epoch_re); it != std::sregex_iterator() && !etcd_;
       ++it)
    takeovers += std::stoull((*it)[1].str()) - 1;

  std::string acts;
  for (const auto& [what, count] : actions) acts += fmt::format("{} {}, ", count, what);
  fmt::print(
      "chaos checked: {} messages sent, {} ACKed ({} as duplicates of a resend), {} stored, {} consumed, {} "
      "redeliveries, {} "
      "stream moves (epochs), {} redirects followed, large message {} MiB in {} reconnects ({} bytes sent); "
      "lost 0 of {}, stored twice {}, confirmed ACKs redelivered {}; {} dead-lettered, each once; actions: {}\n",
      sent, acked_total, duplicates, audited, consumed, redeliveries, takeovers, redirects.load(), kLargeSize >> 20,
      large->reconnects, large->bytes_sent, acked_total - lost, stored_twice, after_confirm, dl_moved, acts);
}

}  // namespace
}  // namespace floe
