// Property test of the stream on the fault-injecting file layer: random
// interleavings of concurrent appends whose writes succeed or fail (failed
// fdatasync, short writes, a full disk), random segment rolls, crashes (power
// loss or kill -9, mid-append or between appends) and reopens, against a
// model of what each append's caller was told. At every observation:
//  * a reader never sees a seq above an unresolved one: everything Read
//    returns is contiguous, at or below the frontier, and already resolved;
//  * the frontier only grows, across crashes and reopens too;
//  * every acknowledged seq reads back as its exact message, every failed
//    seq reported as a hole reads back as a gap, forever;
//  * recovery is idempotent: opening the stream twice gives the same stream.
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "log/stream.h"
#include "support/fault_env.h"

namespace floe::test {
std::ostream& operator<<(std::ostream& os, CrashMode mode) { return os << CrashModeName(mode); }
}  // namespace floe::test

namespace floe::log {
namespace {

using test::CrashMode;
using test::CrashOptions;
using test::FaultEnv;
using test::WriteFault;

constexpr char kDir[] = "/prop/stream";
// Cases per run: enough to meet every kind of step many times, few enough to
// stay well under a minute under ThreadSanitizer. RC_PARAMS overrides it.
constexpr int kDefaultCases = 100;

std::string MakePayload(size_t len) {
  static std::atomic<uint64_t> next_id{1};
  std::string p = fmt::format("p{}:", next_id.fetch_add(1));
  for (size_t i = p.size(); i < len; ++i) p.push_back(static_cast<char>('A' + (i * 13 + p.size()) % 26));
  return p;
}

// One step of a generated run.
struct Burst {
  std::vector<std::vector<int>> threads;  // per thread: messages in each append
  uint64_t payload_seed = 0;
};

// What a reader saw of one seq while appends ran.
struct Observation {
  uint64_t seq;
  std::optional<std::string> payload;  // nullopt: a gap
};

// Counts callbacks down to zero.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() {
    std::lock_guard l(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

// The stream under test, its env, and the model. Checks raise RC_ASSERT
// failures on the calling (test) thread only.
class Harness {
 public:
  ~Harness() { stream_.reset(); }  // before env_

  StreamOptions Options() {
    StreamOptions o;
    o.env = &env_;
    o.direct_io = false;
    o.segment_bytes = 16 << 10;  // rolls every few bursts
    o.max_group_bytes = 4 << 10;  // groups of a few appends
    o.max_message_bytes = 2 << 10;
    o.logger = [](const std::string&) {};
    return o;
  }

  // Opens (after a crash or a close) and checks recovery against the model:
  // then opens once more and checks it gives the same stream.
  void OpenAndSettle() {
    auto s = Stream::Open(kDir, Options());
    if (!s) RC_FAIL("open failed: " + s.error().ToString());
    stream_ = std::move(*s);
    Readback first = CheckAgainstModel(/*live=*/false);
    const StreamStats a = stream_->stats();
    stream_.reset();
    auto again = Stream::Open(kDir, Options());
    if (!again) RC_FAIL("second open failed: " + again.error().ToString());
    stream_ = std::move(*again);
    Readback second = ReadAllOrFail();
    const StreamStats b = stream_->stats();
    RC_ASSERT(second.seqs == first.seqs);
    RC_ASSERT(a.frontier == b.frontier);
    RC_ASSERT(a.next_seq == b.next_seq);
    RC_ASSERT(a.first_seq == b.first_seq);
    RC_ASSERT(a.segments == b.segments);
    RC_ASSERT(a.bytes == b.bytes);
    RC_ASSERT(stream_->recovery_report().truncated_bytes == 0u);
  }

  // Runs the appends of `burst` from its threads at once while a reader
  // follows the frontier; returns after every callback ran.
  void RunBurst(const Burst& burst) {
    int total = 0;
    for (const auto& t : burst.threads) total += static_cast<int>(t.size());
    Latch latch(total);
    const uint64_t crashes = env_.crashes();
    std::atomic<bool> done{false};
    std::vector<Observation> seen;
    std::vector<std::string> violations;
    uint64_t frontier_floor;
    {
      std::lock_guard l(mu_);
      frontier_floor = max_frontier_;
    }
    std::thread reader([&] { Follow(crashes, frontier_floor, done, &seen, &violations); });
    std::vector<std::thread> writers;
    for (size_t t = 0; t < burst.threads.size(); ++t) {
      writers.emplace_back([&, t] {
        std::mt19937_64 rng(burst.payload_seed * 7919 + t);
        for (int count : burst.threads[t]) {
          auto payloads = std::make_shared<std::vector<std::string>>();
          for (int i = 0; i < count; ++i) payloads->push_back(MakePayload(1 + rng() % 400));
          std::vector<Message> msgs;
          for (const auto& p : *payloads) msgs.push_back({.payload = p});
          stream_->AppendAsync(msgs, [this, payloads, &latch](const AppendResult& r) {
            Record(r, *payloads);
            latch.CountDown();
          });
        }
      });
    }
    for (auto& w : writers) w.join();
    latch.Wait();
    done = true;
    reader.join();
    for (const auto& v : violations) RC_FAIL(v);
    CheckObservations(seen);
    if (env_.crashes() == crashes) CheckAgainstModel(/*live=*/true);
  }

  // A power loss or kill -9: now, or inside the `at_sync`th fdatasync of a
  // burst run meanwhile. Then restart and reopen.
  void Crash(CrashOptions crash, int at_sync, const Burst& burst) {
    if (at_sync > 0) {
      env_.CrashAtSync(at_sync, crash);
      RunBurst(burst);
      if (!env_.down()) env_.Crash(crash);
    } else {
      env_.Crash(crash);
    }
    stream_.reset();  // the dead process
    env_.Restart();
    OpenAndSettle();
  }

  // Closes cleanly and reopens with every fault cleared.
  void Reopen() {
    stream_.reset();
    env_.ClearFaults();
    OpenAndSettle();
  }

  // The stream works once the faults are gone.
  void Finish() {
    Reopen();
    std::string p = MakePayload(10);
    Message m{.payload = p};
    AppendResult r = stream_->Append(std::span<const Message>(&m, 1));
    RC_ASSERT(r.status.ok());
    Record(r, {p});
    CheckAgainstModel(/*live=*/true);
  }

  FaultEnv& env() { return env_; }
  Stream& stream() { return *stream_; }

 private:
  struct Readback {
    uint64_t frontier = 0;
    std::map<uint64_t, std::optional<std::string>> seqs;
  };

  void Record(const AppendResult& r, const std::vector<std::string>& payloads) {
    std::lock_guard l(mu_);
    for (uint32_t i = 0; i < r.count; ++i) {
      const uint64_t seq = r.first_seq + i;
      unknown_.erase(seq);
      if (r.status.ok()) acked_[seq] = payloads[i];
      else if (r.hole) holes_.insert(seq);
      else unknown_[seq] = payloads[i];
    }
  }

  // Reader thread: follows the stream like a consumer until `done`, noting
  // what it sees and any violation of the reader's invariants.
  void Follow(uint64_t crashes, uint64_t frontier_floor, std::atomic<bool>& done, std::vector<Observation>* seen,
              std::vector<std::string>* violations) {
    uint64_t cursor = stream_->stats().first_seq;
    uint64_t last_frontier = frontier_floor;
    uint64_t reads = 0;
    auto crashed = [&] { return env_.crashes() != crashes; };
    while (true) {
      const bool last_pass = done.load();
      const uint64_t before = stream_->stats().frontier;
      if (before < last_frontier && !crashed())
        violations->push_back(fmt::format("frontier moved back from {} to {}", last_frontier, before));
      last_frontier = std::max(last_frontier, before);
      // Mostly follow on; now and then re-read from the start.
      const uint64_t from = ++reads % 5 == 0 ? stream_->stats().first_seq : cursor;
      auto r = stream_->Read({.from_seq = from, .max_messages = 1 + reads % 23});
      const uint64_t after = stream_->stats().frontier;
      if (!r) {
        if (crashed()) return;  // its files died with the machine
        violations->push_back("read failed: " + r.error().ToString());
        return;
      }
      uint64_t seq = from;
      for (const Entry& e : r->entries) {
        const uint64_t n = e.kind == Entry::Kind::kGap ? e.gap_count : 1;
        if (e.seq != seq || n == 0) {
          violations->push_back(fmt::format("read from {} returned seq {} where {} was due", from, e.seq, seq));
          return;
        }
        if (seq + n - 1 > after) {
          violations->push_back(fmt::format("read returned seq {} above the frontier {}", seq + n - 1, after));
          return;
        }
        for (uint64_t k = 0; k < n; ++k) {
          Observation o{seq + k, std::nullopt};
          if (e.kind == Entry::Kind::kMessage) o.payload = e.payload;
          seen->push_back(std::move(o));
        }
        seq += n;
      }
      if (from == cursor) cursor = seq;
      if (last_pass) return;
      // Long-poll for more: wakes when the frontier moves; the timeout only
      // lets the loop notice the end of the burst.
      if (r->entries.empty()) stream_->WaitFor(cursor, std::chrono::milliseconds(2));
    }
  }

  // Whatever a reader saw was resolved when it saw it, and stays so.
  void CheckObservations(const std::vector<Observation>& seen) {
    std::lock_guard l(mu_);
    for (const Observation& o : seen) {
      if (o.payload) {
        auto it = acked_.find(o.seq);
        if (it == acked_.end()) RC_FAIL(fmt::format("a reader saw seq {} before it was acknowledged", o.seq));
        RC_ASSERT(it->second == *o.payload);
      } else if (!holes_.count(o.seq)) {
        RC_FAIL(fmt::format("a reader saw a gap at seq {}, which is no hole", o.seq));
      }
    }
  }

  Readback ReadAllOrFail() {
    Readback rb;
    uint64_t seq = stream_->stats().first_seq;
    while (true) {
      auto r = stream_->Read({.from_seq = seq, .max_messages = 64});
      if (!r) RC_FAIL("read failed: " + r.error().ToString());
      for (const Entry& e : r->entries) {
        RC_ASSERT(e.seq == seq);
        const uint64_t n = e.kind == Entry::Kind::kGap ? e.gap_count : 1;
        for (uint64_t k = 0; k < n; ++k) {
          if (e.kind == Entry::Kind::kGap) rb.seqs[seq + k] = std::nullopt;
          else rb.seqs[seq + k] = e.payload;
        }
        seq += n;
      }
      if (r->entries.empty()) break;
    }
    rb.frontier = stream_->stats().frontier;
    RC_ASSERT(seq == rb.frontier + 1);
    return rb;
  }

  // Checks a quiescent stream against the model. `live`: the stream has run
  // since it was opened, so what it shows must be exactly what its callbacks
  // said, and the frontier must stop right below the first unresolved seq.
  // Otherwise it was just recovered: seqs whose outcome was unknown may show
  // (as what was appended there, or as gaps); what shows is then settled.
  Readback CheckAgainstModel(bool live) {
    Readback rb = ReadAllOrFail();
    const StreamStats st = stream_->stats();
    std::lock_guard l(mu_);
    if (rb.frontier < max_frontier_)
      RC_FAIL(fmt::format("frontier moved back from {} to {}", max_frontier_, rb.frontier));
    max_frontier_ = rb.frontier;
    for (const auto& [seq, payload] : acked_) {
      if (seq > rb.frontier) {
        if (!live) RC_FAIL(fmt::format("acknowledged seq {} lost: frontier {}", seq, rb.frontier));
        continue;  // pinned behind an unresolved seq; checked below
      }
      const auto& got = rb.seqs.at(seq);
      if (!got) RC_FAIL(fmt::format("acknowledged seq {} reads as a gap", seq));
      if (*got != payload) RC_FAIL(fmt::format("acknowledged seq {} holds other bytes", seq));
    }
    for (uint64_t seq : holes_) {
      if (seq > rb.frontier) {
        if (!live) RC_FAIL(fmt::format("hole {} lost: frontier {}", seq, rb.frontier));
        continue;
      }
      if (rb.seqs.at(seq)) RC_FAIL(fmt::format("hole {} reads as a message", seq));
    }
    for (const auto& [seq, value] : rb.seqs) {
      if (acked_.count(seq) || holes_.count(seq)) continue;
      auto it = unknown_.find(seq);
      if (live || it == unknown_.end())
        RC_FAIL(fmt::format("seq {} is visible but was never resolved there", seq));
      if (value && *value != it->second) RC_FAIL(fmt::format("seq {} holds bytes never appended there", seq));
    }
    if (live) {
      // The frontier stops right below the first unresolved seq, or at the
      // last assigned one.
      const uint64_t next = rb.frontier + 1;
      RC_ASSERT(next == st.next_seq || unknown_.count(next) == 1);
      RC_ASSERT((st.in_doubt > 0) == (next < st.next_seq));
      if (next < st.next_seq) RC_ASSERT(!stream_->health().ok());
    } else {
      for (const auto& [seq, value] : rb.seqs) {
        if (value) acked_[seq] = *value;
        else holes_.insert(seq);
      }
      unknown_.clear();  // lost: those seqs may be assigned again
    }
    return rb;
  }

  FaultEnv env_;
  std::unique_ptr<Stream> stream_;
  std::mutex mu_;  // guards the model (callbacks run on the writer thread)
  std::map<uint64_t, std::string> acked_;    // seq -> message its reader must get
  std::set<uint64_t> holes_;                 // seqs that must read as gaps
  std::map<uint64_t, std::string> unknown_;  // seq -> payload; outcome unknown
  uint64_t max_frontier_ = 0;
};

Burst GenBurst() {
  Burst b;
  const int threads = *rc::gen::inRange(1, 4);
  for (int t = 0; t < threads; ++t)
    b.threads.push_back(*rc::gen::container<std::vector<int>>(*rc::gen::inRange(1, 6), rc::gen::inRange(1, 7)));
  b.payload_seed = *rc::gen::inRange<uint64_t>(0, 1000);
  return b;
}

std::string Describe(const Burst& b) {
  std::string out = "appends from " + std::to_string(b.threads.size()) + " threads:";
  for (const auto& t : b.threads) out += " " + fmt::format("[{}]", fmt::join(t, ","));
  return out;
}

CrashOptions GenCrash() {
  CrashOptions c;
  c.mode = *rc::gen::element(CrashMode::kDropUnsynced, CrashMode::kKeepPrefix, CrashMode::kTearTail,
                             CrashMode::kZeroTail);
  c.seed = *rc::gen::inRange<uint64_t>(0, 1 << 20);
  c.power_loss = *rc::gen::inRange(0, 3) != 0;  // one in three: kill -9 only
  return c;
}

void StreamProperty() {
  Harness h;
  h.OpenAndSettle();
  const int steps = *rc::gen::inRange(1, 12);
  for (int step = 0; step < steps; ++step) {
    switch (*rc::gen::inRange(0, 10)) {
      case 0:
      case 1:
      case 2:
      case 3: {
        const Burst b = GenBurst();
        RC_LOG() << step << ": " << Describe(b) << "\n";
        h.RunBurst(b);
        break;
      }
      case 4: {  // fdatasync fails: once or twice, or from now on
        const int count = *rc::gen::element(1, 2, FaultEnv::kForever);
        const int skip = *rc::gen::inRange(0, 4);
        RC_LOG() << step << ": fail " << count << " syncs after " << skip << "\n";
        h.env().FailSyncs(count, skip);
        break;
      }
      case 5: {  // a write fails after some bytes: EIO, ENOSPC, or a full disk
        WriteFault f;
        f.error = *rc::gen::element(5, 28);
        f.after_bytes = *rc::gen::inRange<uint64_t>(0, 3000);
        f.sticky = *rc::gen::inRange(0, 4) == 0;
        RC_LOG() << step << ": writes fail with errno " << f.error << " after " << f.after_bytes << " bytes"
                 << (f.sticky ? " (full disk)" : "") << "\n";
        h.env().InjectWriteFault(f);
        break;
      }
      case 6:
      case 7: {
        const CrashOptions c = GenCrash();
        const int at_sync = *rc::gen::inRange(0, 5);
        const Burst b = GenBurst();
        RC_LOG() << step << ": " << (c.power_loss ? "power loss " : "kill -9 ") << c.mode << " seed " << c.seed
                 << (at_sync > 0 ? fmt::format(" inside sync {} of {}", at_sync, Describe(b)) : " now") << "\n";
        h.Crash(c, at_sync, b);
        break;
      }
      case 8:
        RC_LOG() << step << ": reopen\n";
        h.Reopen();
        break;
      case 9:
        RC_LOG() << step << ": roll\n";
        (void)h.stream().TEST_RollSegment();  // may fail under an injected fault
        break;
    }
  }
  h.Finish();
}

TEST(StreamPropertyTest, ConcurrentAppendsFaultsAndCrashesKeepTheLogInvariants) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = kDefaultCases;
  rc::detail::TestMetadata metadata;
  metadata.id = "StreamPropertyTest/ConcurrentAppendsFaultsAndCrashesKeepTheLogInvariants";
  metadata.description = metadata.id;
  const auto result = rc::detail::checkTestable(&StreamProperty, metadata, params);
  if (!result.template is<rc::detail::SuccessResult>()) {
    std::ostringstream out;
    rc::detail::printResultMessage(result, out);
    FAIL() << out.str();
  }
}

}  // namespace
}  // namespace floe::log
