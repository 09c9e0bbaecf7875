// Many streams on one node, against a real `floe serve` process: a thousand
// streams (FLOE_MANY_STREAMS to change it) created and written through the
// floe protocol run on a fixed number of node threads and a bounded number
// of descriptors (both read from /proc; an idle stream holds one), use
// (almost) no CPU while idle,
// lose no lease while held, and after kill -9 are all served again with
// every acknowledged message.
#include <cstdlib>
#include <fstream>

#include "broker/e2e_support.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

size_t Entries(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    ++n;
  return n;
}
size_t Threads(pid_t pid) { return Entries(fmt::format("/proc/{}/task", pid)); }
size_t Descriptors(pid_t pid) { return Entries(fmt::format("/proc/{}/fd", pid)); }

// User + system CPU seconds of `pid` (/proc/PID/stat fields 14 and 15).
double CpuSeconds(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && in >> field; ++i)
    if (i >= 14) ticks += std::stod(field);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

size_t CountLines(const std::string& output, std::string_view what) {
  size_t n = 0;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos;
  return n;
}

TEST(ManyStreamsTest, AThousandStreamsRunOnFixedThreadsAndComeBackAfterKill9) {
  const int streams = std::getenv("FLOE_MANY_STREAMS") ? std::atoi(std::getenv("FLOE_MANY_STREAMS")) : 1000;
  constexpr int kPerStream = 3;
  TempDir dir("floe-many");
  NodeProcess node(NodeConfig{.binary = FLOE_BINARY, .data_dir = dir.path() + "/data"});
  ASSERT_OK(node.Start());
  const size_t threads_idle = Threads(node.pid());

  // Create and write every stream: kPerStream messages each, round robin.
  test::CommandResult r = RunCommand({FLOE_BINARY, "bench", "publish", "--server", node.address(), "--stream", "many",
                                "--streams", std::to_string(streams), "--messages",
                                std::to_string(streams * kPerStream), "--inflight", "1000", "--json"},
                               {}, 600000);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  fmt::print("{}", r.out);

  // A fixed number of threads: the writer pool (at most 64) and the node's
  // own, whatever the number of streams.
  const size_t threads = Threads(node.pid());
  fmt::print("node threads: {} idle, {} with {} streams\n", threads_idle, threads, streams);
  EXPECT_LE(threads, threads_idle + 64 + 8);
  // Descriptors in proportion to the streams with a small factor, not to
  // their segments (each stream has one here).
  const size_t fds = Descriptors(node.pid());
  fmt::print("node descriptors: {} ({:.2f} per stream)\n", fds, double(fds) / streams);
  EXPECT_LE(fds, 2u * streams + 300);
  // Idle for a while, each stream's writer lets its segment file go: the
  // stream's LOCK is all it holds.
  const auto idle_deadline = Clock::now() + std::chrono::seconds(30);
  size_t idle_fds = Descriptors(node.pid());
  while (idle_fds > streams + 300u && Clock::now() < idle_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    idle_fds = Descriptors(node.pid());
  }
  fmt::print("node descriptors once idle: {} ({:.2f} per stream)\n", idle_fds, double(idle_fds) / streams);
  EXPECT_LE(idle_fds, streams + 300u);

  // Idle: no polling per stream.
  const double cpu0 = CpuSeconds(node.pid());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double idle_cpu = (CpuSeconds(node.pid()) - cpu0) / 3;
  fmt::print("idle CPU with {} streams: {:.3f} cores\n", streams, idle_cpu);
  EXPECT_LT(idle_cpu, 0.05);

  // No lease lapsed while the node held them all (renewals keep up).
  EXPECT_EQ(CountLines(node.output(), "lost stream"), 0u) << node.output().substr(0, 4000);

  // kill -9, restart: every stream served again, with every message.
  node.Kill();
  const auto restarted = Clock::now();
  ASSERT_OK(node.Restart());
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(client::ClientOptions{.servers = node.servers()}));
  std::vector<int> missing(streams);
  for (int k = 0; k < streams; ++k) missing[k] = k;
  const auto deadline = restarted + std::chrono::seconds(120);
  while (!missing.empty() && Clock::now() < deadline) {
    std::vector<int> still;
    for (int k : missing) {
      auto info = admin->Info(fmt::format("many-{}", k));
      if (!info || info->frontier < kPerStream) still.push_back(k);
      else EXPECT_EQ(info->frontier, static_cast<uint64_t>(kPerStream)) << "many-" << k;
    }
    missing.swap(still);
    if (!missing.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - restarted).count();
  fmt::print("after kill -9: {} streams served with every message in {:.2f} s\n", streams, secs);
  EXPECT_TRUE(missing.empty()) << missing.size() << " streams not served after " << secs << " s, e.g. many-"
                               << missing.front();
}

}  // namespace
}  // namespace floe
