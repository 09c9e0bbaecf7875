// `floe bench publish|consume`: the workloads W1–W3 of BENCHMARKS.md against
// a running node.
//   W1: floe bench publish --messages 200000 --size 100 --inflight 1000 [--connections 4]
//   W2: floe bench publish --messages 5000 --size 100 --inflight 1 --warmup 100
//   W3: floe bench consume --messages 200000 (a fresh durable consumer, batches of 100,
//       ACK every message and wait for the confirmation before the next fetch)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/coding.h"
#include "client/client.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "model/limits.h"

namespace floe::cli {
namespace {

using Clock = std::chrono::steady_clock;

// A benchmark keeps a few bytes per message (latencies, seen flags): this
// bounds its memory (40 MB) and its run.
constexpr uint64_t kMaxBenchMessages = 10000000;

struct BenchArgs {
  std::string server = "127.0.0.1:7650";
  std::string stream = "bench";
  std::string consumer;
  uint64_t timeout_ms = kDefaultTimeoutMs;
  uint64_t messages = 200000;
  uint64_t size = 100;
  uint64_t inflight = 1000;
  uint64_t connections = 1;
  uint64_t streams = 1;  // > 1: streams <stream>-0 .. -(N-1), one producer each, messages round robin
  uint64_t warmup = 0;
  uint32_t batch = 100;
  uint32_t linger_us = 0;
  bool json = false;
  bool create = true;
};

uint32_t Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * double(v.size() - 1))];
}

Result<client::ClientOptions> Options(const BenchArgs& a) {
  return ClientOptionsFor(a.server, a.timeout_ms, "floe-bench");
}

int BenchPublish(const BenchArgs& a) {
  auto Fail = [&](const Status& s) { return cli::Fail(s, a.json); };
  if (a.inflight < a.connections)
    return Fail(Status::InvalidArgument(fmt::format("--inflight {} is below --connections {}: each connection needs "
                                                    "at least one message in flight",
                                                    a.inflight, a.connections)));
  if (a.streams > 1 && a.connections > 1)
    return Fail(Status::InvalidArgument("--streams N gives each stream its own connection: leave --connections at 1"));
  auto o = Options(a);
  if (!o) return Fail(o.error());
  std::vector<std::string> names;
  if (a.streams == 1) names.push_back(a.stream);
  for (uint64_t k = 0; a.streams > 1 && k < a.streams; ++k) names.push_back(fmt::format("{}-{}", a.stream, k));
  if (a.create) {
    auto admin = client::Admin::Connect(*o);
    if (!admin) return Fail(admin.error());
    wire::StreamConfig c;
    c.max_message_bytes = static_cast<uint32_t>(std::max<uint64_t>(a.size, 1 << 20));
    for (const std::string& name : names) {
      Status s = (*admin)->CreateStream(name, c);
      if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return Fail(s);
    }
  }
  const uint64_t producer_count = a.streams > 1 ? a.streams : a.connections;
  std::vector<std::unique_ptr<client::Producer>> producers;
  for (size_t i = 0; i < producer_count; ++i) {
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = *o;
    po.stream = names[i % names.size()];
    po.max_inflight = std::max<uint64_t>(a.inflight / producer_count, 1);
    po.linger_us = a.linger_us;
    auto p = client::Producer::Open(po);
    if (!p) return Fail(p.error());
    producers.push_back(std::move(*p));
  }
  std::string payload(a.size, 'x');
  // Warm-up (W2): untimed, one at a time.
  for (uint64_t i = 0; i < a.warmup; ++i) {
    auto r = producers[0]->Send(payload, nullptr);
    if (!r) return Fail(r.error());
    Status s = producers[0]->Flush();
    if (!s.ok()) return Fail(s);
  }
  std::vector<uint32_t> latency(a.messages);
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> duplicates{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (size_t c = 0; c < a.connections; ++c) {
    threads.emplace_back([&, c] {
      std::string buf = payload;
      for (uint64_t i = c; i < a.messages; i += a.connections) {
        EncodeFixed64(buf.data(), i);
        const auto sent = Clock::now();
        // Many streams: message i goes to stream i mod N, from this one thread.
        client::Producer& producer = a.streams > 1 ? *producers[i % a.streams] : *producers[c];
        auto r = producer.Send(buf, [&, i, sent](const client::PublishOutcome& out) {
          latency[i] = static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent).count());
          if (!out.status.ok()) ++failures;
          if (out.duplicate) ++duplicates;
        });
        if (!r) {
          ++failures;
          break;
        }
        if (a.inflight == 1) (void)producer.Flush();  // W2: each after the previous ACK
      }
      if (a.streams > 1) for (auto& p : producers) (void)p->Flush();
      else (void)producers[c]->Flush();
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& p : producers) (void)p->Close();
  const double msgs_per_s = a.messages / secs;
  const double mb_per_s = a.messages * double(a.size) / secs / 1e6;
  const uint32_t p50 = Percentile(latency, 0.5), p99 = Percentile(latency, 0.99);
  if (a.json) {
    fmt::print("{{\"workload\":\"publish\",\"messages\":{},\"size\":{},\"inflight\":{},\"connections\":{},"
               "\"streams\":{},\"msgs_per_s\":{:.0f},\"mb_per_s\":{:.1f},\"p50_us\":{},\"p99_us\":{},"
               "\"failures\":{}}}\n",
               a.messages, a.size, a.inflight, a.connections, a.streams, msgs_per_s, mb_per_s, p50, p99,
               failures.load());
  } else {
    fmt::print("publish: {} msgs of {} B, {} in flight over {} connection(s) to {} stream(s), in {:.3f} s\n"
               "         {:.0f} msgs/s, {:.1f} MB/s; ACK latency p50 {} us, p99 {} us; failures {}\n",
               a.messages, a.size, a.inflight, producer_count, names.size(), secs, msgs_per_s, mb_per_s, p50, p99,
               failures.load());
  }
  return failures == 0 ? 0 : 1;
}

int BenchConsume(const BenchArgs& a) {
  auto Fail = [&](const Status& s) { return cli::Fail(s, a.json); };
  auto o = Options(a);
  if (!o) return Fail(o.error());
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = *o;
  co.stream = a.stream;
  co.consumer = a.consumer.empty() ? fmt::format("bench-{:x}", std::random_device{}()) : a.consumer;
  auto consumer = client::Consumer::Open(co);
  if (!consumer) return Fail(consumer.error());
  std::vector<uint8_t> seen(a.messages, 0);
  uint64_t got = 0, dup = 0, bad = 0;
  std::vector<uint32_t> cycles;
  std::vector<uint64_t> acks;
  const auto start = Clock::now();
  while (got < a.messages) {
    const auto t0 = Clock::now();
    auto batch = (*consumer)->Fetch(a.batch, 8 << 20, 2000);
    if (!batch) return Fail(batch.error());
    if (batch->empty()) break;
    acks.clear();
    for (const auto& m : *batch) {
      if (m.gap) continue;
      acks.push_back(m.seq);
      if (m.payload.size() < 8) { ++bad; continue; }
      const uint64_t idx = DecodeFixed64(m.payload.data());
      if (idx >= a.messages) { ++bad; continue; }
      if (seen[idx]) ++dup;
      else { seen[idx] = 1; ++got; }
    }
    Status s = (*consumer)->Ack(acks);  // returns once the node persisted them
    if (!s.ok()) return Fail(s);
    cycles.push_back(static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  (void)(*consumer)->Close();
  const bool exact = got == a.messages && dup == 0 && bad == 0;
  const uint32_t p50 = Percentile(cycles, 0.5), p99 = Percentile(cycles, 0.99);
  if (a.json) {
    fmt::print("{{\"workload\":\"consume\",\"messages\":{},\"msgs_per_s\":{:.0f},\"mb_per_s\":{:.1f},"
               "\"p50_us\":{},\"p99_us\":{},\"cycles\":{},\"duplicates\":{},\"exactly_once\":{}}}\n",
               got, got / secs, got * double(a.size) / secs / 1e6, p50, p99, cycles.size(), dup, exact);
  } else {
    fmt::print("consume: {} msgs in {:.3f} s: {:.0f} msgs/s; fetch+ack cycle p50 {} us, p99 {} us ({} cycles)\n"
               "         {}\n",
               got, secs, got / secs, p50, p99, cycles.size(),
               exact ? "each message exactly once" : fmt::format("MISMATCH: {} duplicates, {} bad", dup, bad));
  }
  return exact ? 0 : 1;
}

}  // namespace

void RegisterBrokerBenchCommands(CLI::App* bench, int* exit_code) {
  auto a = std::make_shared<BenchArgs>();
  auto* pub = bench->add_subcommand("publish", "W1/W2: pipelined durable publish to a running node");
  AddServers(pub, &a->server);
  AddTimeout(pub, &a->timeout_ms);
  AddName(pub, "--stream", &a->stream, "stream", "Stream (created if missing)")->default_val("bench");
  AddNumber(pub, "--messages", &a->messages, Kind::kInteger, Range{1, kMaxBenchMessages}, "Messages (1 to 10^7)");
  AddNumber(pub, "--size", &a->size, Kind::kBytes, Range{8, kMaxMessageBytesCeiling},
            "Payload bytes (8, which hold the index, to 16 MiB)");
  AddNumber(pub, "--inflight", &a->inflight, Kind::kInteger, Range{1, 100000},
            "Unacknowledged messages at most, in total (1 to 100000)");
  AddNumber(pub, "--connections", &a->connections, Kind::kInteger, Range{1, 64}, "Producer connections (1 to 64)");
  AddNumber(pub, "--streams", &a->streams, Kind::kInteger, Range{1, 10000},
            "Spread the messages round robin over N streams <stream>-0..N-1, a producer each (1 to 10000)");
  AddNumber(pub, "--warmup", &a->warmup, Kind::kInteger, Range{0, 1000000},
            "Untimed messages first, one at a time (0 to 10^6)");
  AddNumber(pub, "--linger-us", &a->linger_us, Kind::kInteger, Range{0, 1000000},
            "Producer batching linger in µs (0 to 1 s)");
  pub->add_flag("--json", a->json, "One JSON object (errors too)");
  pub->callback([=] { *exit_code = BenchPublish(*a); });
  auto* con = bench->add_subcommand("consume", "W3: a fresh durable consumer reads and ACKs the stream");
  AddServers(con, &a->server);
  AddTimeout(con, &a->timeout_ms);
  AddName(con, "--stream", &a->stream, "stream", "Stream")->default_val("bench");
  AddName(con, "--consumer", &a->consumer, "consumer", "Consumer name (default: a new random one)");
  AddNumber(con, "--messages", &a->messages, Kind::kInteger, Range{1, kMaxBenchMessages},
            "Messages to expect (indexes 0..N-1; 1 to 10^7)");
  AddNumber(con, "--size", &a->size, Kind::kBytes, Range{8, kMaxMessageBytesCeiling}, "Payload size (for MB/s)");
  AddNumber(con, "--batch", &a->batch, Kind::kInteger, Range{1, 10000}, "Messages per fetch (1 to 10000)");
  con->add_flag("--json", a->json, "One JSON object (errors too)");
  con->callback([=] { *exit_code = BenchConsume(*a); });
}

}  // namespace floe::cli
