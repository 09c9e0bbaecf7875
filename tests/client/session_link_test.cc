// The session link that producers and consumers share (src/client/
// session_link.h), against real `floe serve` processes on loopback
// (tests/support/node_process.h). A recording SessionRole stands in for the
// producer: it opens a producer session and publishes by hand on the link's
// connection, so each test sees what the link did (which session it asked
// for, where it connected, what it gave up with):
//   * SIGKILL and restart of the node: the link reconnects by itself and
//     resumes the same session id, which the node proves by answering a
//     resent producer seq as a duplicate of the first;
//   * a node that does not own the stream redirects (NOT_OWNER + address),
//     at the handshake and when the owner is drained mid-session: the link
//     follows to the owner;
//   * a server list with no node on it fails Start with a clear Unavailable
//     naming the last error, within the give-up deadline; a node that stays
//     down ends the link with GaveUp, and Stop never waits out a backoff.
#include "client/session_link.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/mutex.h"
#include "support/node_process.h"
#include "client/client.h"
#include "wire/protocol.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe::client {
namespace {

using internal::Connection;
using internal::SessionLink;
using test::NodeConfig;
using test::NodeProcess;
using test::TempDir;
using std::chrono::milliseconds;

#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const ::floe::Status _s = (expr);                          \
    ASSERT_TRUE(_s.ok()) << #expr << " -> " << _s.ToString();  \
  } while (0)

int64_t MsSince(internal::SteadyClock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(internal::SteadyClock::now() - t).count();
}

// A producer-role session that records every hook the link calls. mu is the
// link's mutex too (the link shares its owner's).
class RecordingRole final : public internal::SessionRole {
 public:
  explicit RecordingRole(std::string stream) : stream_(std::move(stream)) {}

  wire::SessionOpen SessionRequest(uint64_t session_id) override {
    MutexLock lk(&mu);
    asked.push_back(session_id);
    return {.session_id = session_id, .role = wire::Role::kProducer, .stream = stream_};
  }
  void SessionOpened(const wire::SessionOk& ok) override { opened.push_back(ok.session_id); }  // mu held
  std::string Connected(Connection& conn) override {  // mu held
    servers.push_back(conn.server());
    cv.SignalAll();
    return {};
  }
  void Disconnected() override { ++disconnects; }  // mu held
  void GaveUp(const Status& why) override {
    MutexLock lk(&mu);
    gave_up = why;
    gave_up_called = true;
    cv.SignalAll();
  }
  void HandleFrame(Connection&, const internal::Frame& frame) override {
    if (frame.header.type != wire::FrameType::kPublishAck) return;
    auto ack = wire::DecodeBodyAs<wire::PublishAck>(frame.body);
    MutexLock lk(&mu);
    if (ack) acks.insert(acks.end(), ack->results.begin(), ack->results.end());
    cv.SignalAll();
  }

  // Waits (mu not held) until pred() holds, with mu held while it is tested.
  template <typename Pred>
  bool WaitFor(Pred pred, int timeout_ms = 30000) {
    const auto deadline = internal::SteadyClock::now() + milliseconds(timeout_ms);
    MutexLock lk(&mu);
    while (!pred() && cv.WaitUntil(&mu, deadline)) {}
    return pred();
  }

  Mutex mu;
  CondVar cv;
  // Guarded by mu.
  std::vector<uint64_t> asked;   // the session id of each SESSION_OPEN
  std::vector<uint64_t> opened;  // the session id each SESSION_OK gave
  std::vector<std::string> servers;  // where each installed connection went
  int disconnects = 0;
  std::vector<wire::PublishResult> acks;
  bool gave_up_called = false;
  Status gave_up;

 private:
  const std::string stream_;
};

ClientOptions Options(std::vector<std::string> servers) {
  ClientOptions o;
  o.servers = std::move(servers);
  o.client_name = "session-link-test";
  o.connect_timeout_ms = 2000;
  o.reconnect_max_backoff_ms = 200;
  o.reconnect_give_up_ms = 60000;
  return o;
}

void CreateStream(const ClientOptions& options, const std::string& name) {
  auto admin = Admin::Connect(options);
  ASSERT_TRUE(admin.has_value()) << admin.error().ToString();
  ASSERT_OK((*admin)->CreateStream(name, {}));
}

// Publishes one message with `producer_seq` on the link's current connection.
Status PublishOne(SessionLink& link, Mutex& mu, uint64_t producer_seq) {
  std::shared_ptr<Connection> conn;
  {
    MutexLock lk(&mu);
    FLOE_RETURN_IF_ERROR(link.WaitForConnection());
    conn = link.conn();
  }
  wire::Publish publish;
  publish.messages.push_back({.producer_seq = producer_seq, .payload = "resumed or not"});
  return conn->Send(conn->NextRequestId(), publish);
}

// A loopback port bound but not listening: connecting to it is refused.
class DeadPort {
 public:
  DeadPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~DeadPort() { close(fd_); }
  std::string address() const { return fmt::format("127.0.0.1:{}", port_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

class SessionLinkTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>("floe-client"); }

  void TearDown() override {
    for (auto& n : nodes_) {
      if (!n->Alive()) continue;
      auto code = n->Stop();
      EXPECT_TRUE(code.has_value()) << "stopping the node: " << (code ? "" : code.error().ToString());
    }
    if (HasFailure())
      for (auto& n : nodes_) fmt::print(stderr, "---- node output ----\n{}\n----\n", n->output());
  }

  // A node of its own (id empty), or one of a cluster sharing one data
  // directory and SQLite bank.
  NodeProcess* AddNode(const std::string& id = "") {
    std::vector<std::string> extra;
    if (!id.empty())
      extra = {"--node-id", id, "--bank", "sqlite:" + dir_->path() + "/data/bank.db", "--lease-ms", "1000"};
    nodes_.push_back(std::make_unique<NodeProcess>(
        NodeConfig{.binary = FLOE_BINARY, .data_dir = dir_->path() + "/data", .extra_args = std::move(extra)}));
    return nodes_.back().get();
  }

  std::unique_ptr<TempDir> dir_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(SessionLinkTest, ResumesTheSameSessionAfterTheNodeIsKilledAndRestarted) {
  NodeProcess* node = AddNode();
  ASSERT_OK(node->Start());
  const ClientOptions options = Options(node->servers());
  CreateStream(options, "s");
  RecordingRole role("s");
  SessionLink link(options, 0, role.mu, &role, "test");
  ASSERT_OK(link.Start());
  const uint64_t session = link.session_id();
  ASSERT_NE(session, 0u);
  ASSERT_OK(PublishOne(link, role.mu, 1));
  ASSERT_TRUE(role.WaitFor([&] { return role.acks.size() == 1; }));

  node->Kill();
  ASSERT_OK(node->Restart());
  // The link notices the break, reconnects and reopens the session alone.
  ASSERT_TRUE(role.WaitFor([&] { return role.servers.size() == 2; })) << "no reconnect after the restart";
  EXPECT_EQ(link.session_id(), session);
  EXPECT_EQ(link.reconnects(), 1u);
  {
    MutexLock lk(&role.mu);
    // Asked for a new session once, then for the same one on every try (the
    // restarted node refuses it until it took the dead instance's lease over).
    ASSERT_GE(role.asked.size(), 2u);
    EXPECT_EQ(role.asked[0], 0u);
    for (size_t i = 1; i < role.asked.size(); ++i) EXPECT_EQ(role.asked[i], session) << "SESSION_OPEN " << i;
    EXPECT_EQ(role.opened, (std::vector<uint64_t>{session, session}));
    EXPECT_EQ(role.disconnects, 1);
  }
  // The node knows the session: the same producer seq is a duplicate.
  ASSERT_OK(PublishOne(link, role.mu, 1));
  ASSERT_TRUE(role.WaitFor([&] { return role.acks.size() == 2; }));
  {
    MutexLock lk(&role.mu);
    ASSERT_EQ(role.acks[0].code, wire::WireError::kOk);
    ASSERT_EQ(role.acks[1].code, wire::WireError::kOk);
    EXPECT_TRUE(role.acks[1].duplicate) << "a new session would have stored it again";
    EXPECT_EQ(role.acks[1].seq, role.acks[0].seq);
  }
  ASSERT_TRUE(link.BeginStop());
  EXPECT_FALSE(link.BeginStop()) << "stopping twice";
  link.FinishStop(/*graceful=*/true);
  MutexLock lk(&role.mu);
  EXPECT_FALSE(role.gave_up_called);
}

TEST_F(SessionLinkTest, FollowsRedirectsToTheStreamOwner) {
  NodeProcess* n1 = AddNode("n1");
  NodeProcess* n2 = AddNode("n2");
  ASSERT_OK(n1->Start());
  ASSERT_OK(n2->Start());
  const ClientOptions only_n1 = Options(n1->servers());
  const ClientOptions only_n2 = Options(n2->servers());
  CreateStream(only_n1, "r");  // the creating node owns it

  // Given only n2, the handshake is redirected to the owner, n1.
  RecordingRole at_start("r");
  SessionLink redirected(only_n2, 0, at_start.mu, &at_start, "test");
  ASSERT_OK(redirected.Start());
  EXPECT_GE(redirected.redirects(), 1u);
  {
    MutexLock lk(&at_start.mu);
    ASSERT_EQ(at_start.servers.size(), 1u);
    EXPECT_EQ(at_start.servers[0], n1->address()) << "connected to the owner";
  }

  // Given only n1, the owner: no redirect until n1 is drained and the
  // stream moves to n2 mid-session. Then n2 is reachable only through the
  // redirect n1 sends (on the live connection, or answering the reconnect).
  RecordingRole moving_role("r");
  SessionLink moving(only_n1, 0, moving_role.mu, &moving_role, "test");
  ASSERT_OK(moving.Start());
  EXPECT_EQ(moving.redirects(), 0u);
  const uint64_t session = moving.session_id();
  auto drain = test::RunCommand(
      {FLOE_BINARY, "node", "drain", "n1", "--bank", "sqlite:" + dir_->path() + "/data/bank.db"});
  ASSERT_EQ(drain.exit_code, 0) << drain.err;
  ASSERT_TRUE(moving_role.WaitFor([&] { return moving_role.servers.back() == n2->address(); }))
      << "the link never reached n2";
  EXPECT_GE(moving.redirects(), 1u);
  EXPECT_EQ(moving.session_id(), session) << "the session moved with the stream";
  ASSERT_OK(PublishOne(moving, moving_role.mu, 1));
  ASSERT_TRUE(moving_role.WaitFor([&] { return !moving_role.acks.empty(); }));
  {
    MutexLock lk(&moving_role.mu);
    EXPECT_EQ(moving_role.acks.back().code, wire::WireError::kOk);
  }
  // The first link, on n1 too, ends up on n2 as well (its own list).
  ASSERT_TRUE(at_start.WaitFor([&] { return at_start.servers.back() == n2->address(); }));
  for (SessionLink* link : {&redirected, &moving}) {
    ASSERT_TRUE(link->BeginStop());
    link->FinishStop(/*graceful=*/true);
  }
}

TEST_F(SessionLinkTest, AServerListWithNoNodeFailsClearlyWithinTheDeadline) {
  DeadPort a, b;
  ASSERT_NE(a.port(), 0);
  ClientOptions options = Options({a.address(), b.address()});
  options.reconnect_give_up_ms = 1500;
  RecordingRole role("s");
  SessionLink link(options, 0, role.mu, &role, "test");
  const auto start = internal::SteadyClock::now();
  const Status s = link.Start();
  const int64_t took = MsSince(start);
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("no usable connection for 1500 ms"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("Connection refused"), std::string::npos) << "names the last error: " << s.ToString();
  EXPECT_GE(took, 1000) << "it retried with backoff before giving up";
  EXPECT_LT(took, 1500 + options.connect_timeout_ms + 2000) << "it gave up near the deadline";
  {
    MutexLock lk(&role.mu);
    EXPECT_TRUE(role.servers.empty());
    EXPECT_FALSE(role.gave_up_called) << "Start's failure is the caller's, not GaveUp's";
  }
  ASSERT_TRUE(link.BeginStop());
  link.FinishStop(false);

  // An entry that is no address at all fails at once, with what is wrong.
  const ClientOptions bad_options = Options({"no-port-here"});
  SessionLink bad(bad_options, 0, role.mu, &role, "test");
  const Status invalid = bad.Start();
  EXPECT_EQ(invalid.code(), ErrorCode::kInvalidArgument) << invalid.ToString();
  EXPECT_NE(invalid.message().find("no-port-here"), std::string::npos) << invalid.ToString();
  ASSERT_TRUE(bad.BeginStop());
  bad.FinishStop(false);
}

TEST_F(SessionLinkTest, GivesUpWhenTheNodeStaysDownAndStopsWithoutWaitingOutTheBackoff) {
  NodeProcess* node = AddNode();
  ASSERT_OK(node->Start());
  ClientOptions options = Options(node->servers());
  CreateStream(options, "s");

  // Gives up: reconnect_give_up_ms after the break, every caller learns why.
  options.reconnect_give_up_ms = 1500;
  RecordingRole role("s");
  SessionLink link(options, 0, role.mu, &role, "test");
  ASSERT_OK(link.Start());
  node->Kill();
  const auto killed = internal::SteadyClock::now();
  ASSERT_TRUE(role.WaitFor([&] { return role.gave_up_called; }, 30000)) << "never gave up";
  EXPECT_LT(MsSince(killed), 1500 + options.connect_timeout_ms + 2000);
  {
    MutexLock lk(&role.mu);
    EXPECT_EQ(role.gave_up.code(), ErrorCode::kUnavailable) << role.gave_up.ToString();
    EXPECT_EQ(link.broken().code(), ErrorCode::kUnavailable);
    EXPECT_EQ(link.WaitForConnection().code(), ErrorCode::kUnavailable) << "a broken link stays broken";
  }
  ASSERT_TRUE(link.BeginStop());
  link.FinishStop(false);

  // Stops at once while reconnecting with a long give-up time.
  ASSERT_OK(node->Restart());
  options.reconnect_give_up_ms = 60000;
  options.reconnect_min_backoff_ms = 5000;
  options.reconnect_max_backoff_ms = 5000;
  RecordingRole patient("s");
  SessionLink waiting(options, 0, patient.mu, &patient, "test");
  ASSERT_OK(waiting.Start());
  node->Kill();
  std::this_thread::sleep_for(milliseconds(300));  // into the reconnect backoff
  const auto stop = internal::SteadyClock::now();
  ASSERT_TRUE(waiting.BeginStop());
  waiting.FinishStop(true);
  EXPECT_LT(MsSince(stop), 2500) << "Stop waited out a 5 s backoff";
  MutexLock lk(&patient.mu);
  EXPECT_EQ(waiting.WaitForConnection().code(), ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(patient.gave_up_called) << "stopping is not giving up";
}

}  // namespace
}  // namespace floe::client
