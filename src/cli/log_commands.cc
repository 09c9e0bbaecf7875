// `floe log ...`: work with a stream directory directly, without a server,
// and `floe demo`, which walks through the log's guarantees.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/env.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "log/format.h"
#include "log/segment.h"
#include "log/stream.h"

namespace floe::cli {
namespace {

using log::Stream;
using log::StreamOptions;

Result<std::unique_ptr<Stream>> OpenStream(const std::string& dir, bool create, bool sync) {
  StreamOptions o;
  o.create_if_missing = create;
  if (!sync) o.sync = log::SyncMode::kNone;
  return Stream::Open(dir, std::move(o));
}

int Append(const std::string& dir, bool sync, bool json) {
  auto stream = OpenStream(dir, true, sync);
  if (!stream) return Fail(stream.error(), json);
  std::string line;
  while (std::getline(std::cin, line)) {
    log::Message m{.payload = line};
    auto r = (*stream)->Append({&m, 1});
    if (!r.status.ok()) return Fail(r.status, json);
    if (json) fmt::print("{{\"seq\":{}}}\n", r.first_seq);
    else fmt::print("{}\n", r.first_seq);
  }
  return 0;
}

int Read(const std::string& dir, uint64_t from, uint64_t max, bool json) {
  auto stream = OpenStream(dir, false, true);
  if (!stream) return Fail(stream.error(), json);
  uint64_t printed = 0;
  while (printed < max) {
    auto r = (*stream)->Read({.from_seq = from, .max_messages = static_cast<size_t>(std::min<uint64_t>(max - printed, 1000))});
    if (!r) return Fail(r.error(), json);
    if (r->entries.empty()) break;
    for (const auto& e : r->entries) {
      if (e.kind == log::Entry::Kind::kGap) {
        if (json) fmt::print("{{\"gap\":{},\"count\":{}}}\n", e.seq, e.gap_count);
        else fmt::print("# gap: seqs {}..{} are holes\n", e.seq, e.seq + e.gap_count - 1);
      } else if (json) {
        fmt::print("{{\"seq\":{},\"timestamp_us\":{},\"producer_id\":{},\"producer_seq\":{},{}}}\n", e.seq,
                   e.timestamp_us, e.producer_id, e.producer_seq, JsonBytesField("payload", e.payload));
      } else {
        fmt::print("{}\n", e.payload);
      }
      ++printed;
    }
    from = r->next_seq;
  }
  return 0;
}

int Info(const std::string& dir, bool json) {
  auto stream = OpenStream(dir, false, true);
  if (!stream) return Fail(stream.error(), json);
  auto s = (*stream)->stats();
  const auto& rep = (*stream)->recovery_report();
  if (json) {
    fmt::print("{{\"first_seq\":{},\"frontier\":{},\"bytes\":{},\"segments\":{},\"recovery_truncated_bytes\":{}}}\n",
               s.first_seq, s.frontier, s.bytes, s.segments, rep.truncated_bytes);
  } else {
    fmt::print("stream     {}\nfirst seq  {}\nfrontier   {}\nbytes      {}\nsegments   {}\n", dir, s.first_seq,
               s.frontier, s.bytes, s.segments);
    for (const auto& e : rep.events) fmt::print("recovery   {}\n", e);
  }
  return 0;
}

// Read-only check of every batch of every segment; changes nothing.
int Verify(const std::string& dir) {
  Env* env = Env::Default();
  auto names = env->ListDir(dir);
  if (!names) return Fail(names.error(), false);
  std::vector<uint64_t> ids;
  for (const auto& n : *names) {
    uint64_t id;
    if (log::ParseSegmentFileName(n, &id)) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  int bad = 0;
  uint64_t batches = 0;
  for (uint64_t id : ids) {
    const std::string path = dir + "/" + log::SegmentFileName(id);
    auto f = env->Open(path, {});
    if (!f) return Fail(f.error(), false);
    std::string block(log::kSegmentHeaderSize, '\0');
    auto n = (*f)->ReadAt(0, block);
    if (!n) return Fail(n.error(), false);
    block.resize(*n);
    auto h = log::DecodeSegmentHeader(block);
    if (!h) {
      fmt::print("{}: {}\n", path, h.error().ToString());
      ++bad;
      continue;
    }
    auto scan = log::ScanSegment(f->get(), h->base_seq, {});
    if (!scan) return Fail(scan.error(), false);
    batches += scan->batches;
    fmt::print("{}: seqs [{}, {}), {} batches{}\n", path, h->base_seq, scan->end_seq, scan->batches,
               scan->bad_tail ? fmt::format(", then bad bytes: {}{}", scan->tail_error.message(),
                                            scan->good_after_bad ? " (good batches follow: damage)" : "")
                              : "");
    if (scan->bad_tail) ++bad;
  }
  fmt::print("{} segments, {} batches, {} with problems\n", ids.size(), batches, bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace

void RegisterLogCommands(CLI::App& app, int* exit_code) {
  auto* logc = app.add_subcommand("log", "Work with a stream directory directly (no server)");
  logc->require_subcommand(1);

  struct Args {
    std::string dir;
    bool json = false;
    bool no_sync = false;
    uint64_t from = 1;
    uint64_t max = UINT64_MAX;
  };
  auto args = std::make_shared<Args>();

  auto* append = logc->add_subcommand("append", "Append each line of stdin as a message; print its seq once durable");
  append->add_option("dir", args->dir, "Stream directory (created if missing)")->required();
  append->add_flag("--json", args->json, "Print {\"seq\":S} per message");
  append->add_flag("--no-sync", args->no_sync, "sync=none: acknowledge before fdatasync (not durable)");
  append->callback([=] { *exit_code = Append(args->dir, !args->no_sync, args->json); });

  auto* read = logc->add_subcommand("read", "Print visible messages, one payload per line; holes as gap notes");
  read->add_option("dir", args->dir, "Stream directory")->required();
  AddNumber(read, "--from", &args->from, Kind::kInteger, Range{1, UINT64_MAX - 1}, "First seq to read");
  AddNumber(read, "--max", &args->max, Kind::kInteger, Range{1, 1ull << 53}, "Stop after this many entries")
      ->default_str("no limit");
  read->add_flag("--json", args->json, "One JSON object per entry");
  read->callback([=] { *exit_code = Read(args->dir, args->from, args->max, args->json); });

  auto* info = logc->add_subcommand("info", "Open the stream (running recovery) and print its state");
  info->add_option("dir", args->dir, "Stream directory")->required();
  info->add_flag("--json", args->json, "One JSON object");
  info->callback([=] { *exit_code = Info(args->dir, args->json); });

  auto* verify = logc->add_subcommand("verify", "Check every batch's checksum without changing anything");
  verify->add_option("dir", args->dir, "Stream directory")->required();
  verify->callback([=] { *exit_code = Verify(args->dir); });
}

}  // namespace floe::cli
