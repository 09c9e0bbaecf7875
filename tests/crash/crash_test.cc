// The real crash test (issue 2, DESIGN.md invariants 1-4): a child process
// (crash_appender.cc) appends to a stream with the default, durable options
// and reports each acknowledgement; we SIGKILL it at random moments, many
// times over the same directory, and after each kill reopen the stream here
// and check:
//   * every acknowledged message is stored at the seq it was acknowledged
//     with, and its payload is intact (it carries its own checksum);
//   * visible seqs are dense from 1 to the frontier, each a message or a gap,
//     and Read returns them in order;
//   * no (writer, counter) is stored twice;
//   * the frontier never moves backward from one reopen to the next, and
//     every seq that was visible keeps meaning the same message.
// SIGKILL loses no page-cache data, so this checks the process-crash half of
// invariant 2; the fault-injecting file layer covers lost unsynced writes.
//
// FLOE_CRASH_SEED=<n> replays a run; FLOE_CRASH_ROUNDS=<n> changes the count.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "log/stream.h"

#ifndef FLOE_CRASH_APPENDER
#error "FLOE_CRASH_APPENDER must name the crash_appender binary"
#endif

namespace floe::log {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

// Keep in step with crash_appender.cc.
constexpr uint32_t kWritersPerRound = 16;
constexpr size_t kPayloadHeader = 20;

constexpr int kDefaultRounds = 30;
// Rounds stop starting after this long, so a slow (sanitized, loaded) build
// still finishes well inside the ctest timeout. Not an assertion.
constexpr auto kBudget = std::chrono::seconds(80);
// How long to wait for the child's first acknowledgement before killing it
// anyway. Only bounds a round; a round without acks is legal.
constexpr auto kFirstAckPatience = std::chrono::seconds(20);

struct Ack {
  uint64_t seq;
  uint32_t writer;
  uint64_t counter;
};

// What the stream holds at one seq.
struct Slot {
  static constexpr uint32_t kGap = UINT32_MAX;
  uint32_t writer = kGap;
  uint64_t counter = 0;
  bool operator==(const Slot&) const = default;
};

uint64_t PairKey(uint32_t writer, uint64_t counter) { return (uint64_t{writer} << 40) ^ counter; }

struct ChildOutcome {
  std::vector<Ack> acks;
  int wait_status = 0;
  size_t partial_bytes = 0;  // an unfinished last line: not an acknowledgement
  bool saw_first_ack = false;
  double first_ack_ms = 0;  // since the spawn, when saw_first_ack
};

// Parses complete "seq writer counter" lines; a malformed complete line fails
// the test (the child writes whole lines only).
void ParseAcks(std::string_view text, ChildOutcome* out) {
  while (true) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    Ack a{};
    const char* p = line.data();
    const char* end = line.data() + line.size();
    auto r1 = std::from_chars(p, end, a.seq);
    auto r2 = r1.ec == std::errc() && r1.ptr < end ? std::from_chars(r1.ptr + 1, end, a.writer) : r1;
    auto r3 = r2.ec == std::errc() && r2.ptr < end ? std::from_chars(r2.ptr + 1, end, a.counter) : r2;
    if (r1.ec != std::errc() || r2.ec != std::errc() || r3.ec != std::errc() || r3.ptr != end) {
      ADD_FAILURE() << "malformed ack line: '" << line << "'";
      continue;
    }
    out->acks.push_back(a);
  }
  out->partial_bytes = text.size();
}

// Runs the child on `dir` and kills it: `early` rounds at `delay` after the
// spawn (during startup and recovery), the others at `delay` after its first
// acknowledgement. Collects every line the child wrote, including those still
// in the pipe when it died.
ChildOutcome RunAndKill(const std::string& dir, uint32_t round, uint64_t seed, bool early, microseconds delay) {
  ChildOutcome out;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return out;
  }
  // Built before fork: the child may only make async-signal-safe calls.
  std::string path = FLOE_CRASH_APPENDER, round_arg = std::to_string(round), seed_arg = std::to_string(seed);
  std::string dir_arg = dir;
  char* argv[] = {path.data(), dir_arg.data(), round_arg.data(), seed_arg.data(), nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return out;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    ::dup2(fds[1], 1);                   // clears O_CLOEXEC on fd 1
    ::execv(argv[0], argv);
    ::_exit(127);
  }
  ::close(fds[1]);

  std::string text;
  char buf[1 << 16];
  const auto start = Clock::now();
  auto deadline = early ? start + delay : start + kFirstAckPatience;
  bool eof = false;
  while (!eof) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
    struct timespec ts = {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    struct pollfd pfd = {fds[0], POLLIN, 0};
    const int rc = ::ppoll(&pfd, 1, &ts, nullptr);
    if (rc < 0 && errno != EINTR) {
      ADD_FAILURE() << "ppoll: " << std::strerror(errno);
      break;
    }
    if (rc <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) {
      eof = n == 0 || errno != EINTR;
      continue;
    }
    if (!early && !out.saw_first_ack && std::memchr(buf, '\n', static_cast<size_t>(n)) != nullptr) {
      out.saw_first_ack = true;
      out.first_ack_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      deadline = Clock::now() + delay;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::kill(pid, SIGKILL);
  // What the child wrote before it died was written after an OK callback:
  // those are acknowledgements too. EOF comes once the child is gone.
  while (true) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) text.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(fds[0]);
  while (::waitpid(pid, &out.wait_status, 0) < 0 && errno == EINTR) {
  }
  ParseAcks(text, &out);
  return out;
}

// Checks a payload describes itself consistently; returns an error message,
// empty when intact.
std::string CheckPayload(const Entry& e, uint32_t* writer, uint64_t* counter) {
  const std::string_view p = e.payload;
  if (p.size() < kPayloadHeader) return fmt::format("payload of {} bytes is too short", p.size());
  *counter = DecodeFixed64(p.data());
  *writer = DecodeFixed32(p.data() + 8);
  if (DecodeFixed32(p.data() + 12) != p.size())
    return fmt::format("payload says {} bytes, holds {}", DecodeFixed32(p.data() + 12), p.size());
  uint32_t crc = crc32c::Value(p.data(), 16);
  crc = crc32c::Extend(crc, p.data() + kPayloadHeader, p.size() - kPayloadHeader);
  if (crc != DecodeFixed32(p.data() + 16)) return "payload checksum mismatch";
  if (e.producer_id != uint64_t{*writer} + 1 || e.producer_seq != *counter + 1)
    return fmt::format("producer ({}, {}) does not match payload (writer {}, counter {})", e.producer_id,
                       e.producer_seq, *writer, *counter);
  return {};
}

struct Totals {
  uint64_t rounds = 0;
  uint64_t killed_early = 0;        // killed at a time counted from the spawn
  uint64_t rounds_with_acks = 0;
  uint64_t acks = 0;                // acknowledgements received over all rounds
  uint64_t ack_checks = 0;          // (ack, reopen) pairs checked
  uint64_t records_checked = 0;     // records read back and verified, all reopens
  uint64_t gaps = 0;                // hole seqs seen at the last reopen
  uint64_t truncations = 0;         // reopens that cut a torn tail
  uint64_t truncated_bytes = 0;
  uint64_t partial_lines = 0;
};

TEST(CrashTest, AcknowledgedMessagesSurviveSigkill) {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("FLOE_CRASH_SEED")) seed = std::strtoull(s, nullptr, 10);
  int rounds = kDefaultRounds;
  if (const char* s = std::getenv("FLOE_CRASH_ROUNDS")) rounds = std::atoi(s);
  SCOPED_TRACE(fmt::format("FLOE_CRASH_SEED={}", seed));
  std::printf("crash test: seed %llu (FLOE_CRASH_SEED to replay), up to %d rounds\n",
              static_cast<unsigned long long>(seed), rounds);
  std::mt19937_64 rng(seed);

  std::string root = (std::filesystem::temp_directory_path() / "floe-crash-XXXXXX").string();
  ASSERT_NE(::mkdtemp(root.data()), nullptr);
  const std::string dir = root + "/stream";
  SCOPED_TRACE("stream directory (kept when the test fails): " + dir);

  std::vector<Ack> all_acks;
  std::vector<Slot> visible;  // what seq i+1 meant at the last reopen
  Totals t;
  uint64_t final_bytes = 0;
  const auto test_start = Clock::now();

  for (int round = 0; round < rounds; ++round) {
    if (Clock::now() - test_start > kBudget) {
      std::printf("crash test: time budget spent after %d rounds\n", round);
      break;
    }
    SCOPED_TRACE(fmt::format("round {}", round));
    // A quarter of the kills are timed from the spawn, so they also land while
    // the child opens the stream: recovering the previous kill's tail,
    // rebuilding its producer window (its first ack comes 100-300 ms after the
    // spawn once the stream holds a few hundred MB). The rest are timed from
    // the first ack, to land among appends in flight.
    const bool early = rng() % 4 == 0;
    const microseconds delay(rng() % 200000);
    ChildOutcome child = RunAndKill(dir, static_cast<uint32_t>(round), rng(), early, delay);
    ASSERT_TRUE(WIFSIGNALED(child.wait_status) && WTERMSIG(child.wait_status) == SIGKILL)
        << "the child ended by itself (status " << child.wait_status
        << "); its stderr above says why";
    ++t.rounds;
    t.killed_early += early;
    t.rounds_with_acks += !child.acks.empty();
    t.acks += child.acks.size();
    t.partial_lines += child.partial_bytes > 0;
    for (const Ack& a : child.acks) {
      ASSERT_EQ(a.writer / kWritersPerRound, static_cast<uint32_t>(round)) << "ack names a writer of another round";
    }
    all_acks.insert(all_acks.end(), child.acks.begin(), child.acks.end());

    // Reopen as the next owner would, and check everything it serves.
    std::vector<std::string> events;
    StreamOptions options;
    options.logger = [&events](const std::string& line) { events.push_back(line); };
    auto opened = Stream::Open(dir, options);
    ASSERT_TRUE(opened.has_value()) << "reopen failed: " << opened.error().ToString();
    Stream& stream = **opened;
    const RecoveryReport& report = stream.recovery_report();
    if (report.truncated_bytes > 0) {
      ++t.truncations;
      t.truncated_bytes += report.truncated_bytes;
    }
    const StreamStats stats = stream.stats();
    ASSERT_EQ(stats.first_seq, 1u) << "nothing configures retention, yet the first seq moved";
    ASSERT_EQ(report.frontier, stats.frontier);
    ASSERT_GE(stats.frontier, visible.size())
        << "the frontier moved backward across a crash and reopen";

    std::vector<Slot> now;
    now.reserve(stats.frontier);
    std::unordered_set<uint64_t> pairs;
    uint64_t next = 1;
    uint64_t gaps = 0;
    while (true) {
      auto r = stream.Read({.from_seq = next, .max_messages = 1000, .max_bytes = 8 << 20});
      ASSERT_TRUE(r.has_value()) << "read from seq " << next << ": " << r.error().ToString();
      if (r->entries.empty()) {
        ASSERT_EQ(r->next_seq, next);
        break;
      }
      for (const Entry& e : r->entries) {
        ASSERT_EQ(e.seq, next) << "read skipped or repeated a seq";
        if (e.kind == Entry::Kind::kGap) {
          ASSERT_GE(e.gap_count, 1u);
          for (uint64_t i = 0; i < e.gap_count; ++i) now.push_back(Slot{});
          gaps += e.gap_count;
          next += e.gap_count;
          continue;
        }
        Slot s;
        const std::string bad = CheckPayload(e, &s.writer, &s.counter);
        ASSERT_TRUE(bad.empty()) << "seq " << e.seq << ": " << bad;
        ASSERT_TRUE(pairs.insert(PairKey(s.writer, s.counter)).second)
            << "seq " << e.seq << ": (writer " << s.writer << ", counter " << s.counter << ") is stored twice";
        now.push_back(s);
        ++t.records_checked;
        ++next;
      }
      ASSERT_EQ(r->next_seq, next);
    }
    ASSERT_EQ(next - 1, stats.frontier) << "reads stopped short of the frontier";

    // A seq that was visible keeps its meaning (invariant 3).
    for (size_t i = 0; i < visible.size(); ++i) {
      ASSERT_EQ(now[i], visible[i]) << "seq " << i + 1 << " changed meaning across a crash and reopen";
    }
    // Every acknowledgement, of this round and all before, is there.
    for (const Ack& a : all_acks) {
      ASSERT_GE(a.seq, 1u);
      ASSERT_LE(a.seq, now.size()) << "acknowledged seq " << a.seq << " is past the recovered frontier "
                                   << now.size();
      const Slot& s = now[a.seq - 1];
      ASSERT_EQ(s, (Slot{a.writer, a.counter}))
          << "acknowledged seq " << a.seq << " (writer " << a.writer << ", counter " << a.counter
          << ") holds " << (s.writer == Slot::kGap ? std::string("a gap")
                                                   : fmt::format("(writer {}, counter {})", s.writer, s.counter));
      ++t.ack_checks;
    }
    visible = std::move(now);
    t.gaps = gaps;
    final_bytes = stats.bytes;
    std::printf("round %2d: killed %6.1f ms after %s, %5zu acks, frontier %7zu, %6.1f MB; %s\n", round,
                delay.count() / 1000.0,
                early ? "the spawn    " : fmt::format("ack 1 ({:4.0f} ms)", child.first_ack_ms).c_str(),
                child.acks.size(), visible.size(), stats.bytes / 1e6,
                events.empty() ? "clean reopen" : events.back().c_str());
  }

  std::printf(
      "crash test: %llu rounds (%llu killed at a time from the spawn), %llu with acks; %llu acks, %llu ack checks over all "
      "reopens; %llu records verified; final frontier %zu (%.1f MB), %llu gap seqs; %llu reopens cut a torn tail "
      "(%llu bytes); %llu unfinished ack lines ignored\n",
      static_cast<unsigned long long>(t.rounds), static_cast<unsigned long long>(t.killed_early),
      static_cast<unsigned long long>(t.rounds_with_acks), static_cast<unsigned long long>(t.acks),
      static_cast<unsigned long long>(t.ack_checks), static_cast<unsigned long long>(t.records_checked),
      visible.size(), final_bytes / 1e6, static_cast<unsigned long long>(t.gaps), static_cast<unsigned long long>(t.truncations),
      static_cast<unsigned long long>(t.truncated_bytes), static_cast<unsigned long long>(t.partial_lines));
  // The test is only meaningful if kills landed while acknowledged appends
  // were happening.
  EXPECT_GT(t.rounds_with_acks, 0u);
  EXPECT_GT(t.acks, 0u);

  if (!HasFailure()) {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  } else {
    std::printf("crash test: stream kept at %s for inspection\n", dir.c_str());
  }
}

}  // namespace
}  // namespace floe::log
