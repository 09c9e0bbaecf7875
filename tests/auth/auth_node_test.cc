// Users and permissions against real `floe serve --auth` processes on
// loopback (docs/security.md): the C++ client, the floe CLI and mosquitto's
// clients as a user meets them.
//   * a wrong password, an unknown user and no credentials are refused with
//     AUTH_FAILED, the same words for the first two; failures from one
//     address are rate-limited;
//   * a user that may only consume a stream cannot publish to it:
//     NOT_AUTHORIZED, the same refusal whether or not the stream exists, and
//     nothing written (the stream's frontier);
//   * a permission taken away, or a user removed, stops an open connection
//     within seconds (the node reads the users every 2 s);
//   * MQTT: bad credentials get CONNACK refused (mosquitto_pub exits
//     non-zero and says why), good ones publish, a topic the user may not
//     publish stores nothing;
//   * a node listening beyond loopback without --auth refuses to start
//     unless --allow-anonymous.
#include <cctype>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "client/client.h"
#include "support/node_process.h"

#ifndef FLOE_BINARY
#error "FLOE_BINARY must name the floe binary"
#endif

namespace floe {
namespace {

using test::CommandResult;
using test::NodeConfig;
using test::NodeProcess;
using test::RunCommand;
using test::TempDir;
using Clock = std::chrono::steady_clock;

class AuthNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("floe-auth");
    data_ = dir_->path() + "/data";
    bank_ = "sqlite:" + data_ + "/bank.db";
    AddUser("root", "rootpw", "admin,publish:*,consume:*");
    AddUser("reader", "readpw", "consume:orders");
    AddUser("writer", "writepw", "publish:orders,consume:orders");
    AddUser("sensor", "sensorpw", "publish:sensors/#,consume:sensors/#");
    node_ = std::make_unique<NodeProcess>(
        NodeConfig{.binary = FLOE_BINARY, .data_dir = data_, .extra_args = {"--auth"}});
    ASSERT_TRUE(node_->Start().ok()) << node_->output();
  }
  void TearDown() override {
    if (HasFailure() && node_) {
      std::string out = node_->output();
      if (out.size() > 6000) out = "…" + out.substr(out.size() - 6000);
      fmt::print(stderr, "---- node output ----\n{}\n----\n", out);
    }
  }

  CommandResult Floe(std::vector<std::string> args, std::string_view input = {}) {
    args.insert(args.begin(), FLOE_BINARY);
    return RunCommand(args, input, 30000);
  }
  void AddUser(const std::string& name, const std::string& password, const std::string& allow) {
    auto r = Floe({"user", "add", name, "--password-stdin", "--allow", allow, "--bank", bank_}, password + "\n");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  client::ClientOptions As(const std::string& user, const std::string& password) {
    client::ClientOptions o;
    o.servers = {node_->address()};
    o.user = user;
    o.password = password;
    o.reconnect_give_up_ms = 3000;
    return o;
  }
  uint64_t Frontier(const std::string& stream) {
    auto admin = client::Admin::Connect(As("root", "rootpw"));
    EXPECT_TRUE(admin) << admin.error().ToString();
    if (!admin) return ~0ull;
    auto info = (*admin)->Info(stream);
    EXPECT_TRUE(info) << info.error().ToString();
    return info ? info->frontier : ~0ull;
  }
  void CreateStream(const std::string& name) {
    auto admin = client::Admin::Connect(As("root", "rootpw"));
    ASSERT_TRUE(admin) << admin.error().ToString();
    ASSERT_TRUE((*admin)->CreateStream(name, {}).ok());
  }
  static bool Says(const Status& s, std::string_view what) { return s.ToString().find(what) != std::string::npos; }

  std::unique_ptr<TempDir> dir_;
  std::string data_, bank_;
  std::unique_ptr<NodeProcess> node_;
};

TEST_F(AuthNodeTest, WrongPasswordUnknownUserAndNoCredentialsAreRefused) {
  auto good = client::Admin::Connect(As("root", "rootpw"));
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_TRUE((*good)->ListStreams());
  auto wrong = client::Admin::Connect(As("root", "rootpx"));
  ASSERT_FALSE(wrong);
  EXPECT_TRUE(Says(wrong.error(), "AUTH_FAILED")) << wrong.error().ToString();
  auto unknown = client::Admin::Connect(As("nobody", "rootpw"));
  ASSERT_FALSE(unknown);
  // Which of the two was wrong is not said.
  EXPECT_EQ(wrong.error().message(), unknown.error().message());
  auto anonymous = client::Admin::Connect(As("", ""));
  ASSERT_FALSE(anonymous);
  EXPECT_TRUE(Says(anonymous.error(), "AUTH_FAILED")) << anonymous.error().ToString();
  // The CLI as well: --user with FLOE_PASSWORD or --password-file.
  auto cli = Floe({"stream", "list", "--server", node_->address(), "--user", "root", "--password-file",
                   "/dev/null"});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.err.find("AUTH_FAILED"), std::string::npos) << cli.err;
  const std::string pwfile = dir_->path() + "/pw";
  ASSERT_EQ(RunCommand({"/bin/sh", "-c", "printf 'rootpw\\n' > " + pwfile}).exit_code, 0);
  cli = Floe({"stream", "create", "cli-made", "--server", node_->address(), "--user", "root", "--password-file", pwfile});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
}

TEST_F(AuthNodeTest, FailedLoginsAreRateLimitedPerAddress) {
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(client::Admin::Connect(As("root", "guess")));
  auto blocked = client::Admin::Connect(As("root", "rootpw"));  // right, but too late
  ASSERT_FALSE(blocked);
  EXPECT_TRUE(Says(blocked.error(), "too many failed logins")) << blocked.error().ToString();
  // Ends on its own (10 s after the fifth failure).
  const auto until = Clock::now() + std::chrono::seconds(15);
  Result<std::unique_ptr<client::Admin>> again = Err(Status::Internal("not tried"));
  while (Clock::now() < until && !(again = client::Admin::Connect(As("root", "rootpw"))))
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(again) << again.error().ToString();
}

TEST_F(AuthNodeTest, AConsumeOnlyUserCannotPublishAndNothingIsWritten) {
  CreateStream("orders");
  CreateStream("secret");
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = As("reader", "readpw");
  po.stream = "orders";
  auto p = client::Producer::Open(po);
  ASSERT_FALSE(p);
  EXPECT_TRUE(Says(p.error(), "NOT_AUTHORIZED")) << p.error().ToString();
  // A stream that exists and one that does not: refused alike.
  po.stream = "secret";
  auto exists = client::Producer::Open(po);
  po.stream = "no-such-stream";
  auto missing = client::Producer::Open(po);
  ASSERT_FALSE(exists);
  ASSERT_FALSE(missing);
  EXPECT_EQ(exists.error().code(), missing.error().code());
  EXPECT_TRUE(Says(missing.error(), "NOT_AUTHORIZED")) << missing.error().ToString();
  EXPECT_FALSE(Says(missing.error(), "UNKNOWN_STREAM"));
  auto reader = client::Admin::Connect(As("reader", "readpw"));
  ASSERT_TRUE(reader);
  auto info = (*reader)->Info("secret");
  ASSERT_FALSE(info);
  EXPECT_TRUE(Says(info.error(), "NOT_AUTHORIZED"));
  auto list = (*reader)->ListStreams();
  ASSERT_TRUE(list);
  EXPECT_EQ(*list, std::vector<std::string>{"orders"});  // "secret" is not shown
  EXPECT_FALSE((*reader)->CreateStream("mine", {}).ok());
  // And the CLI's produce, with FLOE_PASSWORD.
  auto cli = RunCommand({"/usr/bin/env", "FLOE_PASSWORD=readpw", FLOE_BINARY, "produce", "orders", "--server",
                         node_->address(), "--user", "reader"},
                        "one\ntwo\n", 30000);
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.err.find("NOT_AUTHORIZED"), std::string::npos) << cli.err;
  EXPECT_EQ(Frontier("orders"), 0u);
  EXPECT_EQ(Frontier("secret"), 0u);
}

TEST_F(AuthNodeTest, APermissionTakenAwayStopsAnOpenProducerWithinSeconds) {
  CreateStream("orders");
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = As("writer", "writepw");
  po.stream = "orders";
  auto p = client::Producer::Open(po);
  ASSERT_TRUE(p) << p.error().ToString();
  auto send = [&]() {
    std::promise<client::PublishOutcome> done;
    auto seq = (*p)->Send("m", [&](const client::PublishOutcome& o) { done.set_value(o); });
    EXPECT_TRUE(seq);
    return done.get_future().get();
  };
  ASSERT_TRUE(send().status.ok());
  auto changed = Floe({"user", "add", "writer", "--update", "--allow", "consume:orders", "--bank", bank_});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  const auto start = Clock::now();
  uint64_t acked = 1;
  Status refused;
  while (Clock::now() - start < std::chrono::seconds(10)) {
    auto o = send();
    if (!o.status.ok()) {
      refused = o.status;
      break;
    }
    ++acked;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_FALSE(refused.ok()) << "still publishing after 10 s";
  EXPECT_TRUE(Says(refused, "NOT_AUTHORIZED")) << refused.ToString();
  EXPECT_LT(secs, 5.0);
  fmt::print("permission change took effect after {:.2f} s ({} messages acknowledged before)\n", secs, acked);
  EXPECT_EQ(Frontier("orders"), acked);  // the refused message was not written
  (void)(*p)->Close();
}

TEST_F(AuthNodeTest, AConsumePermissionTakenAwayStopsAnOpenConsumer) {
  CreateStream("orders");
  {
    client::ProducerOptions po;
    static_cast<client::ClientOptions&>(po) = As("writer", "writepw");
    po.stream = "orders";
    auto p = client::Producer::Open(po);
    ASSERT_TRUE(p) << p.error().ToString();
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*p)->Send(fmt::format("m{}", i), [](const client::PublishOutcome&) {}));
    ASSERT_TRUE((*p)->Close().ok());
  }
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = As("writer", "writepw");
  co.stream = "orders";
  co.consumer = "c1";
  auto c = client::Consumer::Open(co);
  ASSERT_TRUE(c) << c.error().ToString();
  auto first = (*c)->Fetch(1, 1 << 20, 1000);
  ASSERT_TRUE(first && first->size() == 1) << (first ? "empty" : first.error().ToString());
  ASSERT_TRUE((*c)->Ack(std::vector<uint64_t>{first->front().seq}).ok());
  auto changed = Floe({"user", "add", "writer", "--update", "--allow", "publish:orders", "--bank", bank_});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  const auto start = Clock::now();
  Status refused;
  while (Clock::now() - start < std::chrono::seconds(10)) {
    auto got = (*c)->Fetch(1, 1 << 20, 200);
    if (!got) {
      refused = got.error();
      break;
    }
    for (const auto& m : *got) ASSERT_TRUE((*c)->Ack(std::vector<uint64_t>{m.seq}).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(refused.ok()) << "still consuming after 10 s";
  EXPECT_TRUE(Says(refused, "NOT_AUTHORIZED")) << refused.ToString();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 5.0);
}

TEST_F(AuthNodeTest, ARemovedUserIsRefusedOnAnOpenConnectionWithinSeconds) {
  auto admin = client::Admin::Connect(As("writer", "writepw"));
  ASSERT_TRUE(admin);
  ASSERT_TRUE((*admin)->ListStreams());
  auto removed = Floe({"user", "remove", "writer", "--bank", bank_});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  const auto start = Clock::now();
  Status last;
  while (Clock::now() - start < std::chrono::seconds(10)) {
    auto l = (*admin)->ListStreams();
    if (!l) {
      last = l.error();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_FALSE(last.ok()) << "the removed user still served after 10 s";
  EXPECT_TRUE(Says(last, "AUTH_FAILED")) << last.ToString();
  EXPECT_LT(secs, 5.0);
  fmt::print("removal took effect after {:.2f} s\n", secs);
  EXPECT_FALSE(client::Admin::Connect(As("writer", "writepw")));
}

TEST_F(AuthNodeTest, MqttCredentialsAndTopicPermissions) {
  const std::string port = std::to_string(node_->mqtt_port());
  auto pub = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {"/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-m", "x"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = RunCommand(argv, {}, 15000);
    for (auto* text : {&r.out, &r.err})
      for (char& c : *text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
  };
  for (const char* v : {"mqttv311", "mqttv5"}) {
    auto bad = pub({"-V", v, "-t", "sensors/a", "-u", "sensor", "-P", "wrong"});
    EXPECT_NE(bad.exit_code, 0) << v;
    EXPECT_NE((bad.out + bad.err).find("bad user name or password"), std::string::npos) << v << bad.out << bad.err;
    auto none = pub({"-V", v, "-t", "sensors/a"});
    EXPECT_NE(none.exit_code, 0) << v;
    EXPECT_NE((none.out + none.err).find("not authori"), std::string::npos) << v << none.out << none.err;
  }
  auto good = pub({"-V", "mqttv5", "-t", "sensors/a", "-u", "sensor", "-P", "sensorpw"});
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  good = pub({"-V", "mqttv311", "-t", "sensors/b", "-u", "sensor", "-P", "sensorpw"});
  EXPECT_EQ(good.exit_code, 0) << good.out << good.err;
  // A topic outside the user's permissions: refused (v5: PUBACK 0x87; 3.1.1:
  // the connection closes), nothing stored.
  pub({"-V", "mqttv5", "-t", "alarms/a", "-u", "sensor", "-P", "sensorpw"});
  pub({"-V", "mqttv311", "-t", "alarms/b", "-u", "sensor", "-P", "sensorpw"});
  EXPECT_EQ(Frontier("mqtt"), 2u);
  // SUBSCRIBE: a filter no consume pattern covers is refused (SUBACK 0x87,
  // 3.1.1 0x80); one that is covered is granted.
  for (const char* v : {"mqttv5", "mqttv311"}) {
    auto sub = RunCommand({"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", v, "-u", "sensor", "-P",
                           "sensorpw", "-t", "alarms/#", "-C", "1", "-W", "3"},
                          {}, 15000);
    EXPECT_NE((sub.out + sub.err).find("subscription requests were denied"), std::string::npos) << v << sub.out << sub.err;
    sub = RunCommand({"/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", v, "-u", "sensor", "-P",
                      "sensorpw", "-t", "sensors/+", "-C", "1", "-W", "2", "-d"},
                     {}, 15000);
    EXPECT_EQ((sub.out + sub.err).find("denied"), std::string::npos) << v << sub.out << sub.err;
    EXPECT_NE(sub.out.find("received SUBACK"), std::string::npos) << v << sub.out << sub.err;
  }
}

// Two --auth nodes: a dead letter moved to the node serving the dead-letter
// stream goes node to node as the nodes' own user ($node, the shared secret
// in the bank), and clients redirected between nodes log in on each.
TEST_F(AuthNodeTest, NodesLogInToEachOtherToMoveDeadLetters) {
  NodeProcess n2(NodeConfig{.binary = FLOE_BINARY, .data_dir = data_,
                            .extra_args = {"--auth", "--node-id", "n2", "--bank", bank_, "--no-auto-balance"}});
  ASSERT_TRUE(n2.Start().ok()) << n2.output();
  CreateStream("dlq");  // on node-1, which owns what it creates
  {
    client::ClientOptions o = As("root", "rootpw");
    o.servers = {n2.address()};
    auto admin = client::Admin::Connect(o);
    ASSERT_TRUE(admin) << admin.error().ToString();
    ASSERT_TRUE((*admin)->CreateStream("src", {.ack_wait_ms = 30000, .max_deliveries = 2, .dead_letter = "dlq"}).ok());
  }
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = As("root", "rootpw");
  po.servers = {n2.address()};
  po.stream = "src";
  auto p = client::Producer::Open(po);
  ASSERT_TRUE(p) << p.error().ToString();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*p)->Send("dead", [](const client::PublishOutcome&) {}));
  ASSERT_TRUE((*p)->Close().ok());
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = As("root", "rootpw");
  co.servers = {n2.address()};
  co.stream = "src";
  co.consumer = "w";
  auto c = client::Consumer::Open(co);
  ASSERT_TRUE(c) << c.error().ToString();
  // NAK every delivery until none comes for a while: each message is
  // delivered max_deliveries (2) times, then moved.
  size_t naked = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  for (auto quiet_since = Clock::now(); Clock::now() - quiet_since < std::chrono::milliseconds(1500) && Clock::now() < deadline;) {
    auto got = (*c)->Fetch(10, 1 << 20, 300);
    ASSERT_TRUE(got) << got.error().ToString();
    for (const auto& m : *got) {
      ASSERT_TRUE((*c)->Nak(m.seq).ok());
      ++naked;
      quiet_since = Clock::now();
    }
  }
  ASSERT_EQ(naked, 6u);
  uint64_t frontier = 0;
  for (auto start = Clock::now(); frontier < 3 && Clock::now() - start < std::chrono::seconds(10);) {
    frontier = Frontier("dlq");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(frontier, 3u) << n2.output();
  (void)(*c)->Close();
  EXPECT_TRUE(n2.Stop().has_value());
}

// Without a node: floe serve's own refusal.
TEST(AuthDefaultsTest, ANonLoopbackListenerWithoutAuthRefusesToStart) {
  TempDir dir("floe-auth-defaults");
  auto r = RunCommand({FLOE_BINARY, "serve", "--data", dir.path() + "/d", "--listen", "0.0.0.0:0", "--mqtt-listen",
                       "127.0.0.1:0"},
                      {}, 15000);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--allow-anonymous"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0.0.0.0:0 (--listen)"), std::string::npos) << r.err;
  // MQTT counts too.
  r = RunCommand({FLOE_BINARY, "serve", "--data", dir.path() + "/d", "--listen", "127.0.0.1:0", "--mqtt-listen",
                  "0.0.0.0:0"},
                 {}, 15000);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("(--mqtt-listen)"), std::string::npos) << r.err;
  // Said on purpose: it starts (and runs until the test stops it).
  r = RunCommand({FLOE_BINARY, "serve", "--data", dir.path() + "/d", "--listen", "0.0.0.0:0", "--mqtt-listen",
                  "127.0.0.1:0", "--allow-anonymous"},
                 {}, 3000);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.out.find("listening on 0.0.0.0:"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace floe
