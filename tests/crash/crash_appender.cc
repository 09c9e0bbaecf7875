// The child of the crash test (crash_test.cc): appends to a stream until it
// is killed, and reports every acknowledged message on stdout.
//
//   crash_appender DIR ROUND SEED
//
// Opens the stream at DIR with the default options (fdatasync before the
// acknowledgement, direct I/O), then several threads append with many appends
// in flight. Every payload describes itself (see the layout below), so the
// parent can check each stored record without knowing what this process
// meant to write. For each message whose append callback reports OK, one line
// "seq writer counter\n" goes to fd 1 (a pipe to the parent) — and only
// then: a line is a promise that the message is durable, which is exactly what
// the parent checks after SIGKILL.
//
// Writer ids are ROUND * kWritersPerRound + thread, so every (writer, counter)
// pair is unique over the whole test and a duplicate in the stream is a bug.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/stream.h"

namespace {

// Keep in step with crash_test.cc.
constexpr uint32_t kWritersPerRound = 16;
constexpr int kThreads = 4;
constexpr std::ptrdiff_t kInFlightPerThread = 32;  // AppendAsync calls awaiting their callback
// Payload layout (little-endian):
//   [0, 8)   counter
//   [8, 12)  writer
//   [12, 16) payload size
//   [16, 20) CRC32C of bytes [0, 16) followed by bytes [20, size)
//   [20, size) filler derived from (writer, counter)
constexpr size_t kPayloadHeader = 20;
// A safety net: a child the parent forgot to kill stops by itself.
constexpr auto kMaxLifetime = std::chrono::seconds(60);

std::mutex stdout_mu;

// Writes all of `s` to fd 1. A failure means the parent is gone: stop.
void WriteAll(const std::string& s) {
  std::lock_guard l(stdout_mu);
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(1, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(4);
    done += static_cast<size_t>(n);
  }
}

// Sizes: mostly small, some medium, a few above 64 KiB (many direct-I/O
// blocks in one record), rarely above 1 MiB (more than the appender's initial
// staging buffer). The mix keeps the stream to a few hundred MB over a run,
// since the parent re-reads all of it after every kill.
size_t PickSize(std::mt19937_64& rng) {
  const uint64_t r = rng() % 10000;
  if (r < 9000) return kPayloadHeader + rng() % 500;
  if (r < 9950) return 512 + rng() % (4 << 10);
  if (r < 9995) return (64 << 10) + 1 + rng() % (128 << 10);
  return (1 << 20) + rng() % (512 << 10);
}

std::string MakePayload(uint32_t writer, uint64_t counter, size_t size) {
  std::string p(size, '\0');
  floe::EncodeFixed64(p.data(), counter);
  floe::EncodeFixed32(p.data() + 8, writer);
  floe::EncodeFixed32(p.data() + 12, static_cast<uint32_t>(size));
  // Cheap deterministic filler; the CRC is what the parent trusts.
  uint64_t x = (uint64_t{writer} << 40) ^ counter ^ 0x9E3779B97F4A7C15ull;
  for (size_t i = kPayloadHeader; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<char>(x);
  }
  uint32_t crc = floe::crc32c::Value(p.data(), 16);
  crc = floe::crc32c::Extend(crc, p.data() + kPayloadHeader, size - kPayloadHeader);
  floe::EncodeFixed32(p.data() + 16, crc);
  return p;
}

void Writer(floe::log::Stream* stream, uint32_t writer, uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Leaked on purpose: callbacks run on the stream's writer thread and the
  // process only ends by SIGKILL or _Exit, never by unwinding this frame.
  auto* slots = new std::counting_semaphore<kInFlightPerThread>(kInFlightPerThread);
  uint64_t counter = 0;
  std::vector<std::string> payloads;
  std::vector<floe::log::Message> messages;
  while (true) {
    slots->acquire();
    const size_t n = 1 + (rng() % 8 == 0 ? rng() % 16 : rng() % 3);
    payloads.clear();
    messages.clear();
    const uint64_t first_counter = counter;
    for (size_t i = 0; i < n; ++i) payloads.push_back(MakePayload(writer, counter++, PickSize(rng)));
    for (size_t i = 0; i < n; ++i) {
      messages.push_back({.payload = payloads[i],
                          .producer_id = uint64_t{writer} + 1,
                          .producer_seq = first_counter + i + 1});
    }
    stream->AppendAsync(messages, [slots, writer, first_counter, n](const floe::log::AppendResult& r) {
      if (r.status.ok()) {
        // Only now, with the callback's OK in hand, may the parent hear of it.
        std::string lines;
        for (size_t i = 0; i < n; ++i) {
          lines += std::to_string(r.first_seq + i) + ' ' + std::to_string(writer) + ' ' +
                   std::to_string(first_counter + i) + '\n';
        }
        WriteAll(lines);
      } else {
        std::fprintf(stderr, "crash_appender: append failed: %s\n", r.status.ToString().c_str());
      }
      slots->release();
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: crash_appender DIR ROUND SEED\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint32_t round = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);

  // Default options on purpose: the durability the test checks is the one
  // users get. Recovery events go to stderr, where the test log shows them.
  auto stream = floe::log::Stream::Open(dir, {});
  if (!stream) {
    std::fprintf(stderr, "crash_appender: open %s: %s\n", dir.c_str(), stream.error().ToString().c_str());
    return 3;
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    const uint32_t writer = round * kWritersPerRound + static_cast<uint32_t>(t);
    threads.emplace_back(Writer, stream->get(), writer, seed * 31 + static_cast<uint64_t>(t));
  }
  std::this_thread::sleep_for(kMaxLifetime);
  std::fprintf(stderr, "crash_appender: not killed within %lld s; exiting\n",
               static_cast<long long>(kMaxLifetime.count()));
  std::_Exit(5);
}
