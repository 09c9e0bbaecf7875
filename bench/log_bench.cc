// Microbenchmarks of the log library: the CRC, batch encoding and decoding,
// and appends and reads through a real Stream on disk.
//
//   build/bench/log_bench                          # everything, ~15 s
//   build/bench/log_bench --benchmark_filter=Stream
//
// Stream benchmarks write under $TMPDIR (default /tmp); put it on the disk
// you want to measure. The fdatasync figures are bound by the disk's flush
// latency (see ../shared/BENCHMARKS.md for this machine's fio numbers);
// `floe bench log` measures the end-to-end durable throughput with many
// appends in flight.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <semaphore>
#include <string>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/batch.h"
#include "log/format.h"
#include "log/stream.h"

namespace floe::log {
namespace {

constexpr int kBatchMessages = 100;

std::string TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/floe-log-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

// Payloads whose bytes 0-7 hold the message index, as BENCHMARKS.md defines.
std::vector<std::string> Payloads(size_t n, size_t size) {
  std::vector<std::string> out(n, std::string(size, 'x'));
  for (size_t i = 0; i < n; ++i) {
    if (size >= 8) EncodeFixed64(out[i].data(), i);
  }
  return out;
}

std::vector<Message> Messages(const std::vector<std::string>& payloads) {
  std::vector<Message> out;
  for (size_t i = 0; i < payloads.size(); ++i)
    out.push_back({.payload = payloads[i], .producer_id = 1, .producer_seq = i + 1});
  return out;
}

std::string EncodeBatch(const std::vector<Message>& msgs) {
  std::string buf(kBatchHeaderSize, '\0');
  for (size_t i = 0; i < msgs.size(); ++i) AppendRecord(&buf, msgs[i], static_cast<uint32_t>(i), 1000);
  FinishBatch(buf, BatchType::kData, 1, static_cast<uint32_t>(msgs.size()), 1000, 1000);
  return buf;
}

// --- CRC32C ----------------------------------------------------------------

void BM_Crc32cHardware(benchmark::State& state) {
  if (!crc32c::HasHardware()) {
    state.SkipWithError("CPU has no SSE4.2 crc32 instruction");
    return;
  }
  const std::string data(static_cast<size_t>(state.range(0)), 'a');
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = crc32c::ExtendHardware(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32cHardware)->Arg(64)->Arg(4096)->Arg(1 << 20);

void BM_Crc32cPortable(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'a');
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = crc32c::ExtendPortable(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32cPortable)->Arg(64)->Arg(4096)->Arg(1 << 20);

// --- Batch encoding and decoding ------------------------------------------
// What the writer does per group (AppendRecord per message, FinishBatch with
// its CRC) and what a reader does per batch loaded from disk (VerifyBatch
// walks every record, then the RecordIterator hands them out).

void BM_EncodeBatch(benchmark::State& state) {
  const auto payloads = Payloads(kBatchMessages, static_cast<size_t>(state.range(0)));
  const auto msgs = Messages(payloads);
  std::string buf;
  for (auto _ : state) {
    buf.assign(kBatchHeaderSize, '\0');
    for (int i = 0; i < kBatchMessages; ++i) AppendRecord(&buf, msgs[i], static_cast<uint32_t>(i), 1000);
    FinishBatch(buf, BatchType::kData, 1, kBatchMessages, 1000, 1000);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages * state.range(0));
}
BENCHMARK(BM_EncodeBatch)->ArgName("size")->Arg(100)->Arg(1024);

void BM_DecodeBatch(benchmark::State& state) {
  const auto payloads = Payloads(kBatchMessages, static_cast<size_t>(state.range(0)));
  const std::string batch = EncodeBatch(Messages(payloads));
  for (auto _ : state) {
    auto h = VerifyBatch(batch);
    if (!h) {
      state.SkipWithError("batch does not verify");
      return;
    }
    RecordIterator it(*h, batch);
    RecordView r;
    size_t bytes = 0;
    while (it.Next(&r).value_or(false)) bytes += r.payload.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages * state.range(0));
}
BENCHMARK(BM_DecodeBatch)->ArgName("size")->Arg(100)->Arg(1024);

// --- Stream ----------------------------------------------------------------

// A stream in a fresh temporary directory, removed when done.
struct TempStream {
  explicit TempStream(StreamOptions options) : dir(TempDir()) {
    options.logger = [](const std::string&) {};  // "new stream" is not news here
    auto s = Stream::Open(dir + "/s", std::move(options));
    if (s) stream = std::move(*s);
    else error = s.error().ToString();
  }
  ~TempStream() {
    stream.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir;
  std::unique_ptr<Stream> stream;
  std::string error;
};

StreamOptions WithSync(int64_t fdatasync) {
  StreamOptions o;
  o.sync = fdatasync ? SyncMode::kFdatasync : SyncMode::kNone;
  return o;
}

// One Append of 100 messages at a time, waiting for each: with fdatasync the
// time per batch is about one write plus one fdatasync.
void BM_StreamAppend(benchmark::State& state) {
  TempStream t(WithSync(state.range(0)));
  if (!t.stream) return state.SkipWithError(t.error.c_str());
  const size_t size = static_cast<size_t>(state.range(1));
  const auto payloads = Payloads(kBatchMessages, size);
  const auto msgs = Messages(payloads);
  for (auto _ : state) {
    AppendResult r = t.stream->Append(msgs);
    if (!r.status.ok()) return state.SkipWithError(r.status.ToString().c_str());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages * static_cast<int64_t>(size));
  state.counters["syncs"] = static_cast<double>(t.stream->stats().syncs);
}
// The writer thread does the work: measure wall time, not this thread's CPU.
BENCHMARK(BM_StreamAppend)
    ->ArgNames({"fdatasync", "size"})
    ->Args({0, 100})
    ->Args({1, 100})
    ->Args({1, 1024})
    ->UseRealTime()
    ->MinTime(0.3);

// The same batches of 100 with up to 16 in flight: group commit folds the
// waiting batches into one write and one fdatasync.
void BM_StreamAppendPipelined(benchmark::State& state) {
  TempStream t(WithSync(state.range(0)));
  if (!t.stream) return state.SkipWithError(t.error.c_str());
  const size_t size = static_cast<size_t>(state.range(1));
  const auto payloads = Payloads(kBatchMessages, size);
  const auto msgs = Messages(payloads);
  constexpr std::ptrdiff_t kInFlight = 16;
  std::counting_semaphore<kInFlight> slots(kInFlight);
  std::atomic<uint64_t> failures{0};
  for (auto _ : state) {
    slots.acquire();
    t.stream->AppendAsync(msgs, [&](const AppendResult& r) {
      if (!r.status.ok()) failures.fetch_add(1);
      slots.release();
    });
  }
  for (std::ptrdiff_t i = 0; i < kInFlight; ++i) slots.acquire();  // the tail is part of the work
  if (failures.load() > 0) return state.SkipWithError("appends failed");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kBatchMessages * static_cast<int64_t>(size));
  const StreamStats stats = t.stream->stats();
  state.counters["batches_per_sync"] =
      stats.syncs ? static_cast<double>(state.iterations()) / static_cast<double>(stats.syncs) : 0.0;
}
BENCHMARK(BM_StreamAppendPipelined)
    ->ArgNames({"fdatasync", "size"})
    ->Args({1, 100})
    ->Args({1, 1024})
    ->UseRealTime()
    ->MinTime(0.3);

// Reads 100-message batches from a stream of 200,000 messages, sweeping it
// from the start and wrapping around. The stream is written once per size
// (sync=none: the write is not what is measured) and reused by every run.
TempStream& ReadStream(size_t size) {
  constexpr uint64_t kMessages = 200000;
  static std::unique_ptr<TempStream> streams[2];
  auto& t = streams[size > 100];
  if (!t) {
    t = std::make_unique<TempStream>(WithSync(0));
    if (t->stream) {
      const auto payloads = Payloads(1000, size);
      const auto msgs = Messages(payloads);
      for (uint64_t i = 0; i < kMessages; i += msgs.size()) {
        if (!t->stream->Append(msgs).status.ok()) {
          t->error = "setup append failed";
          break;
        }
      }
    }
  }
  return *t;
}

void BM_StreamRead(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  TempStream& t = ReadStream(size);
  if (!t.stream || !t.error.empty()) return state.SkipWithError(t.error.c_str());
  const uint64_t frontier = t.stream->stats().frontier;
  uint64_t from = 1;
  int64_t messages = 0;
  for (auto _ : state) {
    auto r = t.stream->Read({.from_seq = from, .max_messages = kBatchMessages, .max_bytes = 1 << 20});
    if (!r || r->entries.empty()) return state.SkipWithError("read failed");
    size_t bytes = 0;
    for (const Entry& e : r->entries) bytes += e.payload.size();
    benchmark::DoNotOptimize(bytes);
    messages += static_cast<int64_t>(r->entries.size());
    from = r->next_seq > frontier ? 1 : r->next_seq;
  }
  state.SetItemsProcessed(messages);
  state.SetBytesProcessed(messages * static_cast<int64_t>(size));
}
BENCHMARK(BM_StreamRead)->ArgName("size")->Arg(100)->Arg(1024)->MinTime(0.3);

}  // namespace
}  // namespace floe::log

BENCHMARK_MAIN();
