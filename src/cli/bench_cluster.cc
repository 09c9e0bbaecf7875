// `floe bench failover|rebalance`: what moving a stream between nodes costs,
// on a two-node cluster this command starts itself (child `floe serve`
// processes on loopback sharing a temporary data directory and bank).
//   failover:  the owner is SIGKILLed while a producer publishes one message
//              at a time; reports the time from the kill to the first ACK
//              from the new owner, against the lease period.
//   rebalance: two pipelined producers on two streams of one node; a
//              rebalance moves one stream to the other node; reports each
//              stream's publish rate before, the moved stream's pause, and
//              the rate after.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/mutex.h"
#include "bank/bank.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "client/client.h"
#include "cluster/cluster.h"

namespace floe::cli {
namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct ClusterBenchArgs {
  int64_t lease_ms = 3000;
  int runs = 5;
  int base_port = 7760;
  int seconds = 4;
  std::string dir;
  bool json = false;
  bool keep = false;  // keep the data directory (and the nodes' logs)
  std::string bank;   // etcd://… : the nodes' bank (a fresh prefix per run); default SQLite in the data dir
};

// The bank URL for run `run`: an etcd URL gets a prefix of its own.
std::string BankFor(const ClusterBenchArgs& a, const char* what, int run) {
  if (a.bank.empty()) return {};
  std::string url = a.bank;
  if (url.find('/', 7) == std::string::npos) url += "/";
  return fmt::format("{}floe-bench-{}-{}-{}/", url, what, getpid(), run);
}

// A `floe serve` child.
class Child {
 public:
  Child(const std::string& data, const std::string& id, int port, int64_t lease_ms, bool auto_balance,
        const std::string& bank = {}) {
    args_ = {"floe", "serve", "--data", data, "--node-id", id, "--listen", fmt::format("127.0.0.1:{}", port),
             "--lease-ms", std::to_string(lease_ms), "--mqtt-listen", "", "--http-listen", ""};
    if (!bank.empty()) args_.insert(args_.end(), {"--bank", bank});
    if (!auto_balance) args_.push_back("--no-auto-balance");
    log_ = fmt::format("{}/{}.log", data, id);
    address_ = fmt::format("127.0.0.1:{}", port);
  }
  ~Child() { Kill(); }
  Status Start() {
    std::fflush(stdout);  // or the child's freopen writes our unflushed lines a second time
    std::fflush(stderr);
    pid_ = fork();
    if (pid_ < 0) return Status::IOError("fork failed");
    if (pid_ == 0) {
      const std::string log = log_;
      if (!freopen(log.c_str(), "a", stdout) || !freopen(log.c_str(), "a", stderr)) _exit(126);
      std::vector<char*> argv;
      for (auto& a : args_) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    // Ready once it answers.
    client::ClientOptions o;
    o.servers = {address_};
    o.reconnect_give_up_ms = 20000;
    auto admin = client::Admin::Connect(o);
    return admin ? Status::OK() : admin.error();
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  const std::string& address() const { return address_; }

 private:
  std::vector<std::string> args_;
  std::string address_;
  std::string log_;  // the node's output, in its data directory
  pid_t pid_ = -1;
};

std::string TempDir(const ClusterBenchArgs& a, const char* what, int run) {
  std::string base = a.dir.empty() ? std::filesystem::temp_directory_path().string() : a.dir;
  std::string d = fmt::format("{}/floe-bench-{}-{}-{}", base, what, getpid(), run);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

client::ClientOptions Fast(std::vector<std::string> servers) {
  client::ClientOptions o;
  o.servers = std::move(servers);
  o.client_name = "floe-bench";
  o.reconnect_min_backoff_ms = 5;
  o.reconnect_max_backoff_ms = 50;
  return o;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Failover(const ClusterBenchArgs& a) {
  std::vector<double> times;
  for (int run = 0; run < a.runs; ++run) {
    const std::string dir = TempDir(a, "failover", run);
    const std::string bank = BankFor(a, "failover", run);
    Child n1(dir, "n1", a.base_port, a.lease_ms, false, bank), n2(dir, "n2", a.base_port + 1, a.lease_ms, false, bank);
    Status s = n1.Start();
    if (s.ok()) s = n2.Start();
    if (!s.ok()) return fmt::print(stderr, "error: {}\n", s.ToString()), 1;
    {
      auto admin = client::Admin::Connect(Fast({n1.address()}));  // the creating node owns the stream
      if (!admin || !(*admin)->CreateStream("fo", {}).ok()) return fmt::print(stderr, "error: create\n"), 1;
    }
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = Fast({n1.address(), n2.address()});
    po.stream = "fo";
    auto producer = client::Producer::Open(po);
    if (!producer) return fmt::print(stderr, "error: {}\n", producer.error().ToString()), 1;
    Mutex mu;  // killed_at, failover (locals: GUARDED_BY names members only)
    Clock::time_point killed_at{};
    double failover = -1;
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));
      MutexLock l(&mu);
      killed_at = Clock::now();
      n1.Kill();
    });
    // One message at a time: the first ACK of a message sent after the kill
    // is the new owner's (an ACK of one sent before may still arrive).
    while (!stop) {
      bool after_kill;
      {
        MutexLock l(&mu);
        after_kill = killed_at != Clock::time_point{};
      }
      auto sent = (*producer)->Send("failover-bench", [&, after_kill](const client::PublishOutcome& o) {
        MutexLock l(&mu);
        if (o.status.ok() && after_kill && failover < 0) {
          failover = MsBetween(killed_at, Clock::now());
          stop = true;
        }
      });
      if (!sent || !(*producer)->Flush().ok()) break;
    }
    killer.join();
    (void)(*producer)->Close();
    n2.Kill();
    std::filesystem::remove_all(dir);
    if (failover < 0) return fmt::print(stderr, "error: no ACK after the kill\n"), 1;
    times.push_back(failover);
    if (!a.json) fmt::print("run {}: owner SIGKILLed -> first ACK from the new owner: {:.0f} ms\n", run + 1, failover);
  }
  const double med = Median(times);
  if (a.json)
    fmt::print("{{\"lease_ms\":{},\"runs\":{},\"failover_ms_median\":{:.1f},\"ratio_to_lease\":{:.2f}}}\n", a.lease_ms,
               a.runs, med, med / double(a.lease_ms));
  else
    fmt::print("failover median {:.0f} ms over {} runs, lease {} ms: {:.2f}x the lease period\n", med, a.runs,
               a.lease_ms, med / double(a.lease_ms));
  return 0;
}

int Rebalance(const ClusterBenchArgs& a) {
  const std::string dir = TempDir(a, "rebalance", 0);
  Child n1(dir, "n1", a.base_port, a.lease_ms, false), n2(dir, "n2", a.base_port + 1, a.lease_ms, false);
  Status s = n1.Start();
  if (s.ok()) s = n2.Start();
  if (!s.ok()) return fmt::print(stderr, "error: {}\n", s.ToString()), 1;
  {
    auto admin = client::Admin::Connect(Fast({n1.address()}));
    if (!admin || !(*admin)->CreateStream("rb0", {}).ok() || !(*admin)->CreateStream("rb1", {}).ok())
      return fmt::print(stderr, "error: create\n"), 1;
  }
  // ACK counts per 100 ms bucket, per stream.
  const int buckets = a.seconds * 3 * 10;
  std::vector<std::vector<std::atomic<uint64_t>>> acked(2);
  for (auto& v : acked) v = std::vector<std::atomic<uint64_t>>(buckets);
  const auto start = Clock::now();
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      client::ProducerOptions po;
      static_cast<client::ClientOptions&>(po) = Fast({n1.address(), n2.address()});
      po.stream = fmt::format("rb{}", i);
      po.max_inflight = 1000;
      auto p = client::Producer::Open(po);
      if (!p) return;
      const std::string payload(100, 'r');
      while (!stop) {
        (void)(*p)->Send(payload, [&, i](const client::PublishOutcome& o) {
          const auto b = static_cast<size_t>(MsBetween(start, Clock::now()) / 100);
          if (o.status.ok() && b < acked[i].size()) ++acked[i][b];
        });
      }
      (void)(*p)->Close();
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(a.seconds));
  const double asked_at = MsBetween(start, Clock::now());
  {
    auto bank = bank::OpenBank("sqlite:" + dir + "/bank.db");
    if (!bank || !(*bank)->Put(std::string(cluster::kRebalanceKey), "bench")) {
      stop = true;
      for (auto& t : threads) t.join();
      return fmt::print(stderr, "error: asking for a rebalance\n"), 1;
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(a.seconds * 2));
  stop = true;
  for (auto& t : threads) t.join();
  n1.Kill();
  n2.Kill();
  if (!a.keep) std::filesystem::remove_all(dir);
  else fmt::print("node logs in {}\n", dir);
  // Which stream moved: the one with a run of empty buckets after the ask.
  const int ask = static_cast<int>(asked_at / 100);
  auto rate = [&](int i, int from, int to) {  // msgs/s, median of the buckets
    std::vector<double> v;
    for (int b = std::max(from, 0); b < std::min(to, buckets); ++b) v.push_back(double(acked[i][b]) * 10);
    return Median(v);
  };
  for (int i = 0; i < 2; ++i) {
    int empty = 0;
    for (int b = ask; b < buckets - 1; ++b) empty += acked[i][b] == 0;
    const double before = rate(i, 5, ask);
    const double after = rate(i, ask + 10 + empty, buckets - 1);
    if (a.json)
      fmt::print("{{\"stream\":\"rb{}\",\"before_msgs_s\":{:.0f},\"paused_ms\":{},\"after_msgs_s\":{:.0f}}}\n", i,
                 before, empty * 100, after);
    else
      fmt::print("stream rb{}: {:.0f} msgs/s before the rebalance, {} ms without an ACK during it, {:.0f} msgs/s "
                 "after\n",
                 i, before, empty * 100, after);
  }
  return 0;
}

}  // namespace

void RegisterClusterBenchCommands(CLI::App* bench, int* exit_code) {
  {
    auto a = std::make_shared<ClusterBenchArgs>();
    auto* c = bench->add_subcommand("failover", "Owner SIGKILLed to the first ACK from the new owner (2-node cluster)");
    AddNumber(c, "--lease-ms", &a->lease_ms, Kind::kDurationMs, Range{30, 600000},
              "Lease period of the nodes (30 ms to 10 min)");
    AddNumber(c, "--runs", &a->runs, Kind::kInteger, Range{1, 100}, "Repetitions (the median is reported; 1 to 100)");
    c->add_option("--bank", a->bank, "etcd://HOST:PORT[,…]: run the nodes on this etcd (default: SQLite)");
    AddNumber(c, "--base-port", &a->base_port, Kind::kInteger, Range{1024, 65534},
              "Nodes listen on this port and the next (1024 to 65534)");
    c->add_option("--dir", a->dir, "Where the temporary data directories go (default: the temp dir)");
    c->add_flag("--json", a->json, "JSON output");
    c->callback([a, exit_code] { *exit_code = Failover(*a); });
  }
  {
    auto a = std::make_shared<ClusterBenchArgs>();
    auto* c = bench->add_subcommand("rebalance", "Publish rates before, during and after moving a stream");
    AddNumber(c, "--lease-ms", &a->lease_ms, Kind::kDurationMs, Range{30, 600000},
              "Lease period of the nodes (30 ms to 10 min)");
    AddNumber(c, "--seconds", &a->seconds, Kind::kInteger, Range{1, 600},
              "Seconds of publishing before the rebalance (twice that after; 1 to 600)");
    AddNumber(c, "--base-port", &a->base_port, Kind::kInteger, Range{1024, 65534},
              "Nodes listen on this port and the next (1024 to 65534)");
    c->add_option("--dir", a->dir, "Where the temporary data directory goes (default: the temp dir)");
    c->add_flag("--keep", a->keep, "Keep the data directory and the nodes' logs");
    c->add_flag("--json", a->json, "JSON output");
    c->callback([a, exit_code] { *exit_code = Rebalance(*a); });
  }
}

}  // namespace floe::cli
