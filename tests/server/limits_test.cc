// A node's limits and resources, against real `floe serve` processes on
// loopback (tests/support/node_process.h), raw sockets and the client:
//   * connections that send no HELLO, stop inside a frame, or fall silent
//     are closed (with an ERROR saying why), so silent sockets cannot hold
//     the connection limit; the node PINGs an idle connection and one that
//     answers (as the C++ client does) stays open;
//   * past --max-connections a client gets TOO_MANY_CONNECTIONS as its
//     first frame, and the node logs it, once for a burst;
//   * accept failing for want of descriptors (the node's RLIMIT_NOFILE
//     lowered under it with prlimit) does not spin a core, is logged, and
//     open connections are served; new ones are let in once descriptors
//     free up;
//   * a second node with one node id is refused: on the same data directory
//     (a lock file), and on another directory sharing the bank (a live
//     heartbeat in the bank); a node killed with -9 restarts at once.
#include <sys/resource.h>

#include <fstream>

#include "broker/e2e_support.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>("floe-limits"); }
  void TearDown() override {
    if (HasFailure()) {
      for (auto* n : {node_.get(), other_.get()}) {
        if (!n) continue;
        std::string out = n->output();
        if (out.size() > 6000) out = "…" + out.substr(out.size() - 6000);
        fmt::print(stderr, "---- node output ----\n{}\n----\n", out);
      }
    }
  }

  std::unique_ptr<NodeProcess> MakeNode(const std::string& data, std::vector<std::string> extra = {}) {
    return std::make_unique<NodeProcess>(
        NodeConfig{.binary = FLOE_BINARY, .data_dir = data, .extra_args = std::move(extra)});
  }

  // Lines of the node's output containing `what`.
  static size_t CountLines(const std::string& output, std::string_view what) {
    size_t n = 0;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos;
    return n;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<NodeProcess> node_;
  std::unique_ptr<NodeProcess> other_;
};

std::string ErrorMessageOf(const RawFrame& f) {
  auto e = wire::DecodeBodyAs<wire::Error>(std::span<const char>(f.body.data(), f.body.size()));
  return e ? std::string(e->message) : std::string("(not an ERROR)");
}

// --- Handshake, stalled frames, silence -------------------------------------------

TEST_F(LimitsTest, SilentConnectionsAreClosedAndReleaseTheLimit) {
  node_ = MakeNode(dir_->path() + "/data", {"--max-connections", "4", "--handshake-timeout-ms", "300"});
  ASSERT_OK(node_->Start());
  const uint16_t port = node_->port();
  // Four sockets that never speak, one that sends half a HELLO: they hold
  // every slot...
  std::vector<std::unique_ptr<RawConn>> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(RawConn::Connect(port));
  auto half = RawConn::Connect(port);
  ASSERT_TRUE(half && half->Send(HelloFrame().substr(0, 7)));
  for (auto& c : silent) ASSERT_TRUE(c);
  {
    auto over = RawConn::Connect(port);
    ASSERT_TRUE(over);
    RawFrame f;
    ASSERT_EQ(over->ReadFrame(5000, &f), RawConn::Read::kFrame);
    EXPECT_EQ(ErrorCodeOf(f), C(wire::WireError::kTooManyConnections));
  }
  // ...until the handshake timeout: each is told why and closed.
  silent.push_back(std::move(half));
  for (auto& c : silent) {
    std::vector<RawFrame> frames;
    ASSERT_TRUE(c->ReadUntilClosed(5000, &frames)) << "a connection without HELLO was left open";
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(ErrorCodeOf(frames[0]), C(wire::WireError::kUnavailable));
    EXPECT_NE(ErrorMessageOf(frames[0]).find("no HELLO within 300 ms"), std::string::npos) << ErrorMessageOf(frames[0]);
    EXPECT_EQ(frames[0].request_id, 0u);
  }
  // The slots are free again: a real client gets in at once.
  client::ClientOptions o;
  o.servers = {node_->address()};
  o.reconnect_give_up_ms = 2000;
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
  auto names = admin->ListStreams();
  EXPECT_TRUE(names.has_value()) << names.error().ToString();
  EXPECT_GE(CountLines(node_->output(), "no HELLO within 300 ms"), 1u);
}

TEST_F(LimitsTest, StalledFramesAndSilenceAreClosedWhilePingKeepsAConnectionOpen) {
  node_ = MakeNode(dir_->path() + "/data", {"--frame-timeout-ms", "300", "--idle-timeout-ms", "1200"});
  ASSERT_OK(node_->Start());
  const uint16_t port = node_->port();

  // Half a frame after the handshake, then nothing.
  auto stalled = RawConn::Connect(port);
  ASSERT_TRUE(stalled && stalled->Handshake());
  ASSERT_TRUE(stalled->Send(FrameOf(2, wire::Ping{}).substr(0, 5)));
  // Silent after the handshake: PINGed halfway, closed at the idle timeout.
  auto quiet = RawConn::Connect(port);
  ASSERT_TRUE(quiet && quiet->Handshake());

  {
    std::vector<RawFrame> frames;
    ASSERT_TRUE(stalled->ReadUntilClosed(5000, &frames)) << "a stalled frame kept its connection open";
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(ErrorCodeOf(frames[0]), C(wire::WireError::kUnavailable));
    EXPECT_NE(ErrorMessageOf(frames[0]).find("frame stalled"), std::string::npos) << ErrorMessageOf(frames[0]);
  }
  {
    std::vector<RawFrame> frames;
    ASSERT_TRUE(quiet->ReadUntilClosed(8000, &frames)) << "a silent connection was left open";
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].type, T(wire::FrameType::kPing)) << "no keep-alive PING before the close";
    EXPECT_EQ(ErrorCodeOf(frames[1]), C(wire::WireError::kUnavailable));
    EXPECT_NE(ErrorMessageOf(frames[1]).find("silent for 1200 ms"), std::string::npos) << ErrorMessageOf(frames[1]);
  }
  // A connection that answers the node's PINGs stays open through three idle
  // timeouts, and is still served.
  auto alive = RawConn::Connect(port);
  ASSERT_TRUE(alive && alive->Handshake());
  int pings = 0;
  for (auto start = Clock::now(); MsSince(start) < 3600;) {
    RawFrame f;
    const auto r = alive->ReadFrame(200, &f);
    if (r == RawConn::Read::kTimeout) continue;
    ASSERT_EQ(r, RawConn::Read::kFrame) << "the connection answering PING was closed";
    ASSERT_EQ(f.type, T(wire::FrameType::kPing)) << ErrorMessageOf(f);
    ++pings;
    ASSERT_TRUE(alive->Send(FrameOf(f.request_id, wire::Pong{})));
  }
  EXPECT_GE(pings, 2);
  ASSERT_TRUE(alive->Send(FrameOf(9, wire::Ping{})));
  RawFrame pong;
  // The node's own next PING may cross ours: answered, and read past.
  do {
    ASSERT_EQ(alive->ReadFrame(5000, &pong), RawConn::Read::kFrame);
    if (pong.type == T(wire::FrameType::kPing)) ASSERT_TRUE(alive->Send(FrameOf(pong.request_id, wire::Pong{})));
  } while (pong.type == T(wire::FrameType::kPing));
  EXPECT_EQ(pong.type, T(wire::FrameType::kPong));
  EXPECT_EQ(pong.request_id, 9u);

  // The C++ client answers PING by itself: an idle producer keeps its
  // connection through several idle timeouts.
  client::ClientOptions o;
  o.servers = {node_->address()};
  ASSERT_OK_AND_ASSIGN(auto admin, client::Admin::Connect(o));
  ASSERT_OK(admin->CreateStream("idle", {}));
  client::ProducerOptions po;
  po.servers = o.servers;
  po.stream = "idle";
  ASSERT_OK_AND_ASSIGN(auto producer, client::Producer::Open(po));
  std::atomic<int> acked{0};
  auto count = [&](const client::PublishOutcome& out) { acked += out.status.ok(); };
  ASSERT_TRUE(producer->Send("before", count).has_value());
  ASSERT_OK(producer->Flush());
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  ASSERT_TRUE(producer->Send("after", count).has_value());
  ASSERT_OK(producer->Flush());
  EXPECT_EQ(acked.load(), 2);
  EXPECT_EQ(producer->reconnects(), 0u) << "the idle producer's connection was closed";
  EXPECT_OK(producer->Close());
}

// --- The connection limit -------------------------------------------------------------

TEST_F(LimitsTest, OverTheConnectionLimitTheErrorComesAtOnceAndIsLogged) {
  node_ = MakeNode(dir_->path() + "/data", {"--max-connections", "2"});
  ASSERT_OK(node_->Start());
  const uint16_t port = node_->port();
  auto a = RawConn::Connect(port);
  auto b = RawConn::Connect(port);
  ASSERT_TRUE(a && a->Handshake());
  ASSERT_TRUE(b && b->Handshake());
  for (int i = 0; i < 20; ++i) {
    auto c = RawConn::Connect(port);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Send(HelloFrame()));
    const auto start = Clock::now();
    std::vector<RawFrame> frames;
    ASSERT_TRUE(c->ReadUntilClosed(5000, &frames));
    EXPECT_LT(MsSince(start), 1000) << "the refusal was not at once";
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(ErrorCodeOf(frames[0]), C(wire::WireError::kTooManyConnections));
    EXPECT_NE(ErrorMessageOf(frames[0]).find("--max-connections"), std::string::npos) << ErrorMessageOf(frames[0]);
  }
  // One line for the burst, not twenty (and not none).
  for (auto start = Clock::now(); CountLines(node_->output(), "refused a connection") == 0 && MsSince(start) < 2000;)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(CountLines(node_->output(), "refused a connection"), 1u) << node_->output();
  EXPECT_EQ(CountLines(node_->output(), "2 connections open, the limit (--max-connections)"), 1u);
}

// The client library gives the error at once too: a first connection whose
// every server is at its limit fails in well under its give-up time.
TEST_F(LimitsTest, AClientRefusedByEveryServerHearsItAtOnce) {
  node_ = MakeNode(dir_->path() + "/data", {"--max-connections", "1"});
  ASSERT_OK(node_->Start());
  auto held = RawConn::Connect(node_->port());
  ASSERT_TRUE(held && held->Handshake());
  client::ClientOptions o;
  o.servers = {node_->address()};
  o.reconnect_give_up_ms = 30000;
  const auto start = Clock::now();
  auto admin = client::Admin::Connect(o);
  ASSERT_FALSE(admin.has_value());
  EXPECT_LT(MsSince(start), 5000) << "the client retried instead of reporting the limit";
  EXPECT_NE(admin.error().ToString().find("connection limit"), std::string::npos) << admin.error().ToString();
}

// --- Out of file descriptors ------------------------------------------------------------

// utime + stime of `pid`, in clock ticks (/proc/PID/stat fields 14 and 15).
uint64_t CpuTicks(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return utime + stime;
}

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) ++n;
  return n;
}

TEST_F(LimitsTest, AcceptOutOfDescriptorsBacksOffAndKeepsServing) {
  node_ = MakeNode(dir_->path() + "/data");
  ASSERT_OK(node_->Start());
  const uint16_t port = node_->port();
  auto existing = RawConn::Connect(port);
  ASSERT_TRUE(existing && existing->Handshake());
  // Leave the node a few descriptors more than it holds now.
  const pid_t pid = node_->pid();
  const rlim_t limit = OpenFds(pid) + 6;
  const rlimit lowered{limit, limit};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &lowered, nullptr), 0) << strerror(errno);
  // More connections than descriptors: the rest wait in the backlog.
  std::vector<std::unique_ptr<RawConn>> flood;
  for (int i = 0; i < 40; ++i) {
    flood.push_back(RawConn::Connect(port));
    ASSERT_TRUE(flood.back());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const uint64_t ticks0 = CpuTicks(pid);
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const double cores =
      double(CpuTicks(pid) - ticks0) / double(sysconf(_SC_CLK_TCK)) / (double(MsSince(start)) / 1000.0);
  fmt::print("node CPU while accept fails with EMFILE: {:.3f} cores\n", cores);
  EXPECT_LT(cores, 0.2) << "the accept loop spins";
  // The connection that was open is served.
  ASSERT_TRUE(existing->Send(FrameOf(7, wire::Ping{})));
  RawFrame f;
  ASSERT_EQ(existing->ReadFrame(5000, &f), RawConn::Read::kFrame);
  EXPECT_EQ(f.type, T(wire::FrameType::kPong));
  EXPECT_GE(CountLines(node_->output(), "cannot accept connections"), 1u);
  EXPECT_LE(CountLines(node_->output(), "cannot accept connections"), 2u) << "the log line is not rate-limited";
  // Descriptors free up: a new connection gets in.
  flood.clear();
  bool admitted = false;
  for (auto t = Clock::now(); !admitted && MsSince(t) < 10000;) {
    auto c = RawConn::Connect(port);
    admitted = c && c->Handshake();
  }
  EXPECT_TRUE(admitted) << "no connection was accepted after descriptors freed up";
}

// --- Options ---------------------------------------------------------------------------

TEST_F(LimitsTest, LimitOptionsAreRangeChecked) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--idle-timeout-ms", "0"}, "--idle-timeout-ms"},
      {{"--handshake-timeout-ms", "99999999999"}, "--handshake-timeout-ms"},
      {{"--frame-timeout-ms", "-5"}, "--frame-timeout-ms"},
      {{"--max-connections", "0"}, "--max-connections"},
      {{"--max-connections", "-1"}, "--max-connections"},
      {{"--node-id", "../elsewhere"}, "--node-id"},
  };
  for (const auto& [args, named] : bad) {
    std::vector<std::string> argv = {FLOE_BINARY, "serve", "--data", dir_->path() + "/data", "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCommand(argv, {}, 10000);
    ASSERT_FALSE(r.timed_out) << args[0] << " " << args[1] << " was accepted: the node served";
    EXPECT_NE(r.exit_code, 0) << args[0] << " " << args[1];
    EXPECT_NE((r.out + r.err).find(named), std::string::npos) << r.out << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_->path() + "/elsewhere")) << "--node-id escaped the data directory";
}

// --- One node id, one live node ---------------------------------------------------------

TEST_F(LimitsTest, ASecondNodeWithTheSameIdIsRefused) {
  const std::string data = dir_->path() + "/data";
  node_ = MakeNode(data);  // --node-id defaults to node-1
  ASSERT_OK(node_->Start());

  // Same data directory, same (default) id: refused at once, naming the holder.
  auto same_dir = RunCommand({FLOE_BINARY, "serve", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, {}, 15000);
  ASSERT_FALSE(same_dir.timed_out) << "a second node-1 is serving on " << data << ":\n" << same_dir.out;
  EXPECT_EQ(same_dir.exit_code, 1);
  EXPECT_NE(same_dir.err.find("node id node-1 is in use"), std::string::npos) << same_dir.err;
  EXPECT_NE(same_dir.err.find(fmt::format("pid {}", node_->pid())), std::string::npos) << same_dir.err;

  // Another directory sharing the bank, same id: the bank shows node-1 alive.
  const std::string bank = "sqlite:" + data + "/bank.db";
  auto shared_bank = RunCommand(
      {FLOE_BINARY, "serve", "--data", dir_->path() + "/other", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
       "--bank", bank}, {},
      15000);
  ASSERT_FALSE(shared_bank.timed_out) << "a second node-1 is serving on the same bank:\n" << shared_bank.out;
  EXPECT_EQ(shared_bank.exit_code, 1);
  EXPECT_NE(shared_bank.err.find("the bank shows a live node node-1"), std::string::npos) << shared_bank.err;

  // A distinct id on the same directory is a cluster, and welcome.
  other_ = MakeNode(data, {"--node-id", "node-2"});
  ASSERT_OK(other_->Start());
  auto stopped = other_->Stop();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().ToString();
  EXPECT_EQ(*stopped, 0);

  // Killed with -9, node-1 comes back at once: the kernel dropped its lock,
  // and its bank record is at its own address.
  node_->Kill();
  const auto restarted = Clock::now();
  ASSERT_OK(node_->Restart());
  EXPECT_LT(MsSince(restarted), 2500) << "a restart after kill -9 waited out the old heartbeat";
}

}  // namespace
}  // namespace floe
