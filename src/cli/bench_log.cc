// `floe bench log`: durable appends through the real log (group commit,
// fdatasync), many in flight, then a read of them all.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <semaphore>
#include <vector>

#include <fmt/format.h>

#include "base/coding.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "model/limits.h"
#include "log/stream.h"

namespace floe::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchLogArgs {
  std::string dir;
  uint64_t messages = 200000;
  uint64_t size = 100;
  uint64_t inflight = 1000;
  uint64_t batch = 1;
  bool json = false;
  bool no_sync = false;
  bool buffered = false;
  bool keep = false;
  uint64_t cache_mb = 64;
};

int BenchLog(const BenchLogArgs& a) {
  if (a.inflight < a.batch)
    return Fail(Status::InvalidArgument(fmt::format(
                    "--batch {} is over --inflight {}: a batch waits for its ACK whole", a.batch, a.inflight)),
                a.json);
  std::string dir = a.dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/floe-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }
  const std::string stream_dir = dir + "/bench-log";
  std::error_code ec;
  std::filesystem::remove_all(stream_dir, ec);
  log::StreamOptions o;
  if (a.no_sync) o.sync = log::SyncMode::kNone;
  o.direct_io = !a.buffered;
  o.cache_bytes = a.cache_mb << 20;
  auto opened = log::Stream::Open(stream_dir, o);
  if (!opened) return Fail(opened.error(), a.json);
  log::Stream& stream = **opened;

  std::vector<uint32_t> latency_us(a.messages);
  std::counting_semaphore<1 << 30> slots(static_cast<std::ptrdiff_t>(a.inflight));
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> acked{0};
  std::vector<std::string> payloads(a.batch, std::string(a.size, 'x'));
  std::vector<log::Message> msgs(a.batch);

  const auto start = Clock::now();
  for (uint64_t i = 0; i < a.messages; i += a.batch) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(a.batch, a.messages - i));
    for (size_t k = 0; k < n; ++k) slots.acquire();
    for (size_t k = 0; k < n; ++k) {
      EncodeFixed64(payloads[k].data(), i + k);
      msgs[k] = {.payload = payloads[k], .producer_id = 1, .producer_seq = i + k + 1};
    }
    const auto sent = Clock::now();
    stream.AppendAsync({msgs.data(), n}, [&, i, n, sent](const log::AppendResult& r) {
      const auto now = Clock::now();
      const uint32_t us = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count());
      for (size_t k = 0; k < n; ++k) latency_us[i + k] = us;
      if (!r.status.ok()) failures += n;
      acked.fetch_add(n, std::memory_order_release);
      slots.release(static_cast<std::ptrdiff_t>(n));
    });
  }
  while (acked.load(std::memory_order_acquire) < a.messages) std::this_thread::sleep_for(std::chrono::microseconds(50));
  const double write_s = std::chrono::duration<double>(Clock::now() - start).count();
  const auto stats = stream.stats();

  // Read everything back, checking each index arrives once, in order.
  const auto rstart = Clock::now();
  uint64_t from = 1, seen = 0;
  bool order_ok = true;
  while (seen < a.messages) {
    auto r = stream.Read({.from_seq = from, .max_messages = 1000, .max_bytes = 8 << 20});
    if (!r) return Fail(r.error(), a.json);
    if (r->entries.empty()) break;
    for (const auto& e : r->entries) {
      if (e.payload.size() < 8 || DecodeFixed64(e.payload.data()) != seen) order_ok = false;
      ++seen;
    }
    from = r->next_seq;
  }
  const double read_s = std::chrono::duration<double>(Clock::now() - rstart).count();

  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double p) { return latency_us.empty() ? 0u : latency_us[static_cast<size_t>(p * (latency_us.size() - 1))]; };
  const double msgs_per_s = a.messages / write_s;
  const double mb_per_s = a.messages * double(a.size) / write_s / 1e6;
  const double read_per_s = seen / read_s;
  if (!a.keep) std::filesystem::remove_all(a.dir.empty() ? dir : stream_dir, ec);
  if (a.json) {
    fmt::print("{{\"messages\":{},\"size\":{},\"inflight\":{},\"batch\":{},\"sync\":\"{}\",\"direct_io\":{},"
               "\"msgs_per_s\":{:.0f},\"mb_per_s\":{:.1f},\"p50_us\":{},\"p99_us\":{},\"groups\":{},\"syncs\":{},"
               "\"read_msgs_per_s\":{:.0f},\"read_mb_per_s\":{:.1f},\"failures\":{},\"read_ok\":{}}}\n",
               a.messages, a.size, a.inflight, a.batch, a.no_sync ? "none" : "fdatasync", !a.buffered, msgs_per_s,
               mb_per_s, pct(0.5), pct(0.99), stats.groups_written, stats.syncs, read_per_s,
               seen * double(a.size) / read_s / 1e6, failures.load(), order_ok && seen == a.messages);
  } else {
    fmt::print("append: {} msgs of {} B in {:.3f} s: {:.0f} msgs/s, {:.1f} MB/s; latency p50 {} us, p99 {} us\n"
               "        {} groups, {} fdatasyncs ({:.1f} msgs per sync); failures {}\n"
               "read:   {} msgs in {:.3f} s: {:.0f} msgs/s ({})\n",
               a.messages, a.size, write_s, msgs_per_s, mb_per_s, pct(0.5), pct(0.99), stats.groups_written,
               stats.syncs, stats.syncs ? double(a.messages) / stats.syncs : 0.0, failures.load(), seen, read_s,
               read_per_s, order_ok && seen == a.messages ? "each message once, in order" : "MISMATCH");
  }
  return failures == 0 && order_ok && seen == a.messages ? 0 : 1;
}

}  // namespace

void RegisterBenchCommands(CLI::App& app, int* exit_code) {
  auto* bench = app.add_subcommand(
      "bench", "Measure floe: the log alone (log), or workloads W1-W3 against a running node (publish, consume)");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchLogArgs>();
  auto* logb = bench->add_subcommand("log", "Durable appends through the log with group commit, then a full read");
  logb->add_option("--dir", a->dir, "Directory for the bench stream (default: a new one under /tmp)");
  AddNumber(logb, "--messages", &a->messages, Kind::kInteger, Range{1, 10000000}, "Messages to append (1 to 10^7)");
  AddNumber(logb, "--size", &a->size, Kind::kBytes, Range{8, kMaxMessageBytesCeiling},
            "Payload bytes per message (8, which hold the index, to 16 MiB)");
  AddNumber(logb, "--inflight", &a->inflight, Kind::kInteger, Range{1, 100000},
            "Appends awaiting their ACK at most (W1 uses 1000; 1 to 100000)");
  AddNumber(logb, "--batch", &a->batch, Kind::kInteger, Range{1, 10000}, "Messages per append call (1 to 10000)");
  logb->add_flag("--json", a->json, "Print one JSON object");
  logb->add_flag("--no-sync", a->no_sync, "sync=none: no fdatasync (not durable; for comparison)");
  logb->add_flag("--buffered", a->buffered, "Buffered writes instead of O_DIRECT");
  logb->add_flag("--keep", a->keep, "Keep the stream directory");
  AddNumber(logb, "--cache-mb", &a->cache_mb, Kind::kInteger, Range{0, 16384},
            "Stream's cache of recent batches, MiB (0 to 16384)");
  logb->callback([=] { *exit_code = BenchLog(*a); });
  RegisterBrokerBenchCommands(bench, exit_code);
  RegisterClusterBenchCommands(bench, exit_code);
}

}  // namespace floe::cli
