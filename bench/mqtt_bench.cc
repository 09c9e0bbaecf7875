// mqtt_bench: MQTT publish and subscribe throughput, and PUBACK latency, against
// any MQTT broker (floe's MQTT front end, mosquitto), through a real client
// library (libmosquitto). Workload M1 of BENCHMARKS.md, and its parts:
//
//   --publish              QoS 1 (--qos) publish of --messages of --size bytes over
//                          --connections, at most --inflight unacknowledged in total;
//                          first PUBLISH to last PUBACK: msgs/s, MB/s, PUBACK p50/p99
//   --subscribe            a QoS 1 subscriber on a persistent session counts --messages
//                          on --topic (each exactly once: bytes 0-7 hold the index)
//   --publish --subscribe  both at once: the subscriber is subscribed first; adds the
//                          end-to-end rate, first PUBLISH to last message received
//   --register             subscribe a persistent session and leave: the broker queues
//                          for it, and a later --subscribe reads the queue (M1's offline
//                          subscriber)
//
// Everything runs on one thread: the clients' sockets are polled here and handed
// to libmosquitto (mosquitto_loop_read/_write), so no lock is taken and a PUBACK
// callback never races the PUBLISH it answers. The client shares the machine with
// the broker; one thread keeps its share small and the same for every broker.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace {

using Clock = std::chrono::steady_clock;

// A run keeps a few bytes per message (latency, seen flag): this bounds its memory.
constexpr uint64_t kMaxMessages = 10'000'000;
// libmosquitto refuses a payload above 256 MB; floe's MQTT Maximum Packet Size is
// 1 MiB + 64 KiB. 1 MiB covers both with room for the topic.
constexpr uint64_t kMaxSize = 1 << 20;
constexpr uint64_t kMaxInflight = 65535;  // MQTT packet ids are 16 bits
constexpr uint64_t kMaxConnections = 64;
constexpr int kKeepAliveSeconds = 60;
constexpr uint32_t kSessionExpirySeconds = 3600;  // a persistent session outlives its connection

struct Args {
  bool publish = false;
  bool subscribe = false;
  bool register_only = false;
  std::string host = "127.0.0.1";
  uint64_t port = 1883;
  std::string version = "5";
  uint64_t qos = 1;
  uint64_t messages = 100'000;
  uint64_t size = 100;
  uint64_t inflight = 1000;
  uint64_t connections = 1;
  uint64_t receive_maximum = 1000;
  uint64_t timeout_s = 30;
  std::string topic = "bench/m1";
  std::string client_id = "mqtt-bench-sub";
  bool json = false;

  int protocol() const { return version == "5" || version == "mqttv5" ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311; }
  bool v5() const { return protocol() == MQTT_PROTOCOL_V5; }
  std::string broker() const { return fmt::format("{}:{}", host, port); }
};

uint32_t Micros(Clock::duration d) {
  return static_cast<uint32_t>(std::min<int64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(d).count(), UINT32_MAX));
}

uint32_t Percentile(std::vector<uint32_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * double(v.size() - 1))];
}

void PutIndex(std::string* payload, uint64_t index) {
  for (int i = 0; i < 8; ++i) (*payload)[i] = static_cast<char>(index >> (8 * i));
}

uint64_t GetIndex(const void* payload) {
  const auto* p = static_cast<const unsigned char*>(payload);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

// What an on_disconnect or a loop call's rc means: a libmosquitto error below
// 0x80, an MQTT 5 reason code from the broker's DISCONNECT at or above it.
std::string Why(int rc) {
  if (rc >= 0x80) return fmt::format("{} (reason 0x{:02X})", mosquitto_reason_string(rc), rc);
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

// Counters one run shares between its clients. Only the polling thread touches them.
struct Run {
  explicit Run(const Args& a) : args(a), latency_us(a.publish ? a.messages : 0), seen(a.subscribe ? a.messages : 0) {}
  const Args& args;
  std::vector<uint32_t> latency_us;  // by message index
  uint64_t acked = 0;                // PUBACKs (QoS 1), PUBCOMPs (QoS 2), writes (QoS 0)
  uint64_t failures = 0;             // PUBACKs with a reason of 0x80 or above
  std::string first_failure;
  std::vector<uint8_t> seen;         // by message index, for the subscriber
  uint64_t received = 0, distinct = 0, duplicates = 0, foreign = 0, below_qos = 0;
  Clock::time_point start, last_ack, first_received, last_received;
  uint64_t progress() const { return acked + received; }
};

// One libmosquitto connection, driven by the caller's poll loop. The callbacks
// run inside Read/Write on the polling thread, with `this` as libmosquitto's
// user data; the Client outlives its mosquitto handle.
class Client {
 public:
  enum class Role { kPublisher, kSubscriber };

  Client(Run* run, Role role, std::string client_id, uint64_t first, uint64_t stride, uint64_t window)
      : run_(run), role_(role), client_id_(std::move(client_id)), first_(first), next_(first), stride_(stride),
        window_(window),
        payload_(run->args.size, 'x') {}
  ~Client() {
    if (mosq_) mosquitto_destroy(mosq_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Opens the TCP connection and sends CONNECT; CONNACK arrives through the poll loop.
  std::optional<std::string> Connect(bool clean_start) {
    const Args& a = run_->args;
    mosq_ = mosquitto_new(client_id_.c_str(), clean_start, this);
    if (!mosq_) return fmt::format("mosquitto_new failed: {}", std::strerror(errno));
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, a.protocol());
    mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
    // The library's own window (20 by default) must not be the limit: ours is.
    const int window = static_cast<int>(std::max<uint64_t>(window_, 1));
    mosquitto_max_inflight_messages_set(mosq_, static_cast<unsigned>(window));
    if (a.v5()) {
      mosquitto_int_option(mosq_, MOSQ_OPT_SEND_MAXIMUM, window);
      mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, static_cast<int>(a.receive_maximum));
    }
    mosquitto_connect_v5_callback_set(mosq_, &Client::OnConnect);
    mosquitto_disconnect_v5_callback_set(mosq_, &Client::OnDisconnect);
    mosquitto_publish_v5_callback_set(mosq_, &Client::OnPublish);
    mosquitto_subscribe_v5_callback_set(mosq_, &Client::OnSubscribe);
    mosquitto_message_v5_callback_set(mosq_, &Client::OnMessage);
    mosquitto_property* props = nullptr;
    if (a.v5() && role_ == Role::kSubscriber)
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, kSessionExpirySeconds);
    errno = 0;
    const int rc = mosquitto_connect_bind_v5(mosq_, a.host.c_str(), static_cast<int>(a.port), kKeepAliveSeconds,
                                             nullptr, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) return fmt::format("cannot reach the broker at {}: {}", a.broker(), Why(rc));
    return std::nullopt;
  }

  int fd() const { return mosquitto_socket(mosq_); }
  bool want_write() const { return mosquitto_want_write(mosq_); }
  bool connected() const { return connacked_; }
  bool subscribed() const { return subscribed_; }
  bool session_present() const { return session_present_; }
  bool closed() const { return closed_; }
  int server_receive_maximum() const { return server_receive_maximum_; }
  const std::optional<std::string>& error() const { return error_; }
  bool done() const { return role_ == Role::kPublisher && sent_ == quota() && inflight_ == 0; }

  void Pump(short revents) {
    int rc = MOSQ_ERR_SUCCESS;
    if (revents & (POLLIN | POLLERR | POLLHUP)) rc = mosquitto_loop_read(mosq_, 1);
    if (rc == MOSQ_ERR_SUCCESS && (revents & POLLOUT)) rc = mosquitto_loop_write(mosq_, 1);
    if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(mosq_);
    if (rc != MOSQ_ERR_SUCCESS && !closing_ && !error_) Fail(fmt::format("connection lost: {}", Why(rc)));
  }

  void Subscribe() {
    int mid = 0;
    const int rc = mosquitto_subscribe_v5(mosq_, &mid, run_->args.topic.c_str(), 1, 0, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) Fail(fmt::format("SUBSCRIBE failed: {}", Why(rc)));
  }

  // Sends PUBLISHes until this connection's window is full or its share is sent.
  void TopUp() {
    if (role_ != Role::kPublisher) return;
    const Args& a = run_->args;
    while (!error_ && inflight_ < window_ && sent_ < quota()) {
      const uint64_t index = next_;
      PutIndex(&payload_, index);
      ++inflight_;
      publishing_ = true;
      early_ = false;
      publish_time_ = Clock::now();
      int mid = 0;
      const int rc = mosquitto_publish_v5(mosq_, &mid, a.topic.c_str(), static_cast<int>(a.size), payload_.data(),
                                          static_cast<int>(a.qos), false, nullptr);
      publishing_ = false;
      if (rc != MOSQ_ERR_SUCCESS) {
        --inflight_;
        if (rc == MOSQ_ERR_OVERSIZE_PACKET)
          Fail(fmt::format("a PUBLISH of {} bytes is above the broker's Maximum Packet Size", a.size));
        else if (rc == MOSQ_ERR_QOS_NOT_SUPPORTED)
          Fail(fmt::format("the broker's Maximum QoS is below --qos {}", a.qos));
        else
          Fail(fmt::format("PUBLISH failed: {}", Why(rc)));
        return;
      }
      // A QoS 0 PUBLISH may be written, and reported, inside mosquitto_publish.
      if (!early_) pending_[static_cast<uint16_t>(mid)] = Pending{publish_time_, index, true};
      ++sent_;
      next_ += stride_;
    }
  }

  // DISCONNECT; a subscriber's session ends with it unless it is to be kept
  // (MQTT 5: Session Expiry 0; a 3.1.1 CleanSession 0 session stays either way).
  void Close(bool keep_session) {
    if (!mosq_ || closed_) return;
    closing_ = true;
    mosquitto_property* props = nullptr;
    if (run_->args.v5() && role_ == Role::kSubscriber && !keep_session)
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0);
    if (mosquitto_disconnect_v5(mosq_, 0, props) != MOSQ_ERR_SUCCESS) closed_ = true;
    mosquitto_property_free_all(&props);
  }

 private:
  struct Pending {
    Clock::time_point sent;
    uint64_t index = 0;
    bool armed = false;
  };

  // How many messages this connection publishes: indices first, first + stride, ... below --messages.
  uint64_t quota() const {
    const uint64_t n = run_->args.messages;
    return n > first_ ? (n - first_ + stride_ - 1) / stride_ : 0;
  }

  void Fail(std::string why) {
    if (!error_) error_ = fmt::format("{} ({}): {}", client_id_, run_->args.broker(), why);
  }

  static Client* Self(void* obj) { return static_cast<Client*>(obj); }

  static void OnConnect(mosquitto*, void* obj, int rc, int flags, const mosquitto_property* props) {
    Client* c = Self(obj);
    if (rc != 0) {
      c->Fail(c->run_->args.v5()
                  ? fmt::format("CONNACK refused: {} (reason 0x{:02X})", mosquitto_reason_string(rc), rc)
                  : fmt::format("CONNACK refused: {} (return code {})", mosquitto_connack_string(rc), rc));
      return;
    }
    c->connacked_ = true;
    c->session_present_ = (flags & 1) != 0;
    uint16_t receive_maximum = 0;
    if (props && mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &receive_maximum, false))
      c->server_receive_maximum_ = receive_maximum;
  }

  static void OnDisconnect(mosquitto*, void* obj, int rc, const mosquitto_property*) {
    Client* c = Self(obj);
    c->closed_ = true;
    if (!c->closing_)
      c->Fail(fmt::format("the broker closed the connection with {} of {} unacknowledged: {}", c->inflight_,
                          c->sent_, Why(rc == 0 ? MOSQ_ERR_CONN_LOST : rc)));
  }

  static void OnPublish(mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
    Client* c = Self(obj);
    Run& r = *c->run_;
    const auto now = Clock::now();
    Pending& p = c->pending_[static_cast<uint16_t>(mid)];
    uint64_t index = 0;
    if (p.armed) {
      index = p.index;
      r.latency_us[index] = Micros(now - p.sent);
      p.armed = false;
    } else if (c->publishing_) {
      c->early_ = true;
      index = c->next_;
      r.latency_us[index] = Micros(now - c->publish_time_);
    } else {
      return;  // not one of ours (cannot happen: each mid is armed before its answer is read)
    }
    --c->inflight_;
    ++r.acked;
    r.last_ack = now;
    if (reason >= 0x80) {
      ++r.failures;
      if (r.first_failure.empty())
        r.first_failure = fmt::format("message {}: PUBACK {} (reason 0x{:02X})", index, mosquitto_reason_string(reason),
                                      reason);
    }
  }

  static void OnSubscribe(mosquitto*, void* obj, int, int count, const int* granted, const mosquitto_property*) {
    Client* c = Self(obj);
    if (count < 1 || granted[0] >= 0x80) {
      const int reason = count < 1 ? 0x80 : granted[0];
      c->Fail(fmt::format("SUBACK refused {}: {} (reason 0x{:02X})", c->run_->args.topic,
                          mosquitto_reason_string(reason), reason));
      return;
    }
    if (granted[0] < 1) c->Fail(fmt::format("SUBACK granted QoS {}, not the QoS 1 asked for", granted[0]));
    c->subscribed_ = true;
  }

  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property*) {
    Client* c = Self(obj);
    Run& r = *c->run_;
    const auto now = Clock::now();
    if (m->payloadlen < 8 || r.args.topic != m->topic) {
      ++r.foreign;
      return;
    }
    const uint64_t index = GetIndex(m->payload);
    if (index >= r.seen.size()) {
      ++r.foreign;
      return;
    }
    if (r.received++ == 0) r.first_received = now;
    r.last_received = now;
    if (m->qos < 1) ++r.below_qos;
    if (r.seen[index]) {
      ++r.duplicates;
    } else {
      r.seen[index] = 1;
      ++r.distinct;
    }
  }

  Run* run_;
  Role role_;
  std::string client_id_;
  mosquitto* mosq_ = nullptr;
  uint64_t first_;         // index of the first message this connection publishes
  uint64_t next_;          // index of the next one
  uint64_t stride_;        // indices of this connection: first, first + stride, ...
  uint64_t window_;        // its share of --inflight
  uint64_t sent_ = 0, inflight_ = 0;
  std::string payload_;
  std::array<Pending, 65536> pending_{};  // by packet id
  bool publishing_ = false, early_ = false;
  Clock::time_point publish_time_;
  bool connacked_ = false, subscribed_ = false, session_present_ = false, closing_ = false, closed_ = false;
  int server_receive_maximum_ = 0;  // 0: the broker announced none (3.1.1: none exists; MQTT 5: 65,535)
  std::optional<std::string> error_;
};

// Polls the clients and lets libmosquitto read and write until `done` holds, a
// client fails, or nothing progresses for --timeout seconds. Returns the error.
template <typename Done>
std::optional<std::string> Drive(Run& run, const std::vector<Client*>& clients, Done done, const char* waiting_for,
                                 bool top_up) {
  std::vector<pollfd> fds;
  uint64_t last_progress = run.progress();
  auto last_change = Clock::now();
  while (true) {
    for (Client* c : clients)
      if (c->error()) return c->error();
    if (done()) return std::nullopt;
    if (top_up)
      for (Client* c : clients) c->TopUp();
    fds.clear();
    for (Client* c : clients) {
      if (c->closed() || c->fd() < 0) continue;
      fds.push_back(pollfd{c->fd(), static_cast<short>(POLLIN | (c->want_write() ? POLLOUT : 0)), 0});
    }
    if (fds.empty()) return done() ? std::nullopt : std::optional<std::string>("every connection is closed");
    if (poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) return fmt::format("poll: {}", std::strerror(errno));
    size_t i = 0;
    for (Client* c : clients) {
      if (c->closed() || c->fd() < 0) continue;
      c->Pump(fds[i++].revents);
    }
    const auto now = Clock::now();
    if (run.progress() != last_progress) {
      last_progress = run.progress();
      last_change = now;
    } else if (now - last_change > std::chrono::seconds(run.args.timeout_s)) {
      return fmt::format("{}: nothing for {} s ({} of {} acknowledged, {} of {} received)", waiting_for,
                         run.args.timeout_s, run.acked, run.args.publish ? run.args.messages : 0, run.distinct,
                         run.args.subscribe ? run.args.messages : 0);
    }
  }
}

void CloseAll(Run& run, const std::vector<Client*>& clients, bool keep_session) {
  for (Client* c : clients) c->Close(keep_session);
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < deadline) {
    bool open = false;
    for (Client* c : clients) open |= !c->closed();
    if (!open) break;
    std::vector<pollfd> fds;
    std::vector<Client*> live;
    for (Client* c : clients) {
      if (c->closed() || c->fd() < 0) continue;
      fds.push_back(pollfd{c->fd(), static_cast<short>(POLLIN | (c->want_write() ? POLLOUT : 0)), 0});
      live.push_back(c);
    }
    if (fds.empty()) break;
    (void)poll(fds.data(), fds.size(), 50);
    for (size_t i = 0; i < live.size(); ++i) live[i]->Pump(fds[i].revents);
  }
  (void)run;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(ch));
      continue;
    }
    out += ch;
  }
  return out + "\"";
}

int Fail(const Args& a, const std::string& why) {
  if (a.json)
    fmt::print("{{\"error\":{}}}\n", JsonString(why));
  else
    fmt::print(stderr, "mqtt_bench: {}\n", why);
  return 1;
}

int Bench(const Args& a) {
  Run run(a);
  std::vector<std::unique_ptr<Client>> publishers;
  std::unique_ptr<Client> subscriber;
  std::vector<Client*> all;

  if (a.subscribe || a.register_only) {
    subscriber = std::make_unique<Client>(&run, Client::Role::kSubscriber, a.client_id, 0, 1, a.receive_maximum);
    // --register starts the session anew; --subscribe resumes it (MQTT 5: Clean Start 0 with
    // a Session Expiry; 3.1.1: CleanSession 0, the only persistent kind).
    const bool clean = a.register_only && a.v5();
    if (auto e = subscriber->Connect(clean)) return Fail(a, *e);
    std::vector<Client*> s{subscriber.get()};
    if (auto e = Drive(run, s, [&] { return subscriber->connected(); }, "waiting for CONNACK", false)) return Fail(a, *e);
    if (a.register_only || !subscriber->session_present()) {
      subscriber->Subscribe();
      if (auto e = Drive(run, s, [&] { return subscriber->subscribed(); }, "waiting for SUBACK", false))
        return Fail(a, *e);
    }
    all.push_back(subscriber.get());
  }
  if (a.register_only) {
    CloseAll(run, all, /*keep_session=*/true);
    if (a.json)
      fmt::print("{{\"workload\":\"mqtt_register\",\"broker\":{},\"client_id\":{},\"topic\":{}}}\n",
                 JsonString(a.broker()), JsonString(a.client_id), JsonString(a.topic));
    else
      fmt::print("registered {} on {} at {}: the broker queues for it until --subscribe\n", a.client_id, a.topic,
                 a.broker());
    return 0;
  }
  if (a.publish) {
    const std::string tag = fmt::format("{:x}", Clock::now().time_since_epoch().count() & 0xffffffff);
    for (uint64_t c = 0; c < a.connections; ++c) {
      const uint64_t window = a.inflight / a.connections + (c < a.inflight % a.connections ? 1 : 0);
      publishers.push_back(std::make_unique<Client>(&run, Client::Role::kPublisher,
                                                    fmt::format("mqtt-bench-pub-{}-{}", tag, c), c, a.connections,
                                                    window));
      if (auto e = publishers.back()->Connect(/*clean_start=*/true)) return Fail(a, *e);
      all.push_back(publishers.back().get());
    }
    if (auto e = Drive(run, all, [&] {
          return std::all_of(publishers.begin(), publishers.end(), [](auto& p) { return p->connected(); });
        }, "waiting for CONNACK", false))
      return Fail(a, *e);
  }

  run.start = Clock::now();
  auto finished = [&] {
    const bool pub_done = std::all_of(publishers.begin(), publishers.end(), [](auto& p) { return p->done(); });
    return pub_done && (!a.subscribe || run.distinct == a.messages);
  };
  if (auto e = Drive(run, all, finished, a.publish ? "publishing" : "receiving", a.publish)) {
    CloseAll(run, all, false);
    return Fail(a, *e);
  }
  CloseAll(run, all, false);

  const int receive_maximum = publishers.empty() ? 0 : publishers[0]->server_receive_maximum();
  std::string out;
  if (a.publish) {
    const double secs = std::chrono::duration<double>(run.last_ack - run.start).count();
    const double rate = a.messages / secs;
    const uint32_t p50 = Percentile(run.latency_us, 0.5), p99 = Percentile(run.latency_us, 0.99);
    if (a.json)
      out += fmt::format("\"secs\":{:.3f},\"msgs_per_s\":{:.0f},\"mb_per_s\":{:.1f},\"p50_us\":{},\"p99_us\":{},"
                         "\"failures\":{},\"server_receive_maximum\":{},",
                         secs, rate, rate * double(a.size) / 1e6, p50, p99, run.failures, receive_maximum);
    else
      out += fmt::format("publish: {} msgs of {} B at QoS {} (MQTT {}), {} in flight over {} connection(s), in {:.3f} s\n"
                         "         {:.0f} msgs/s, {:.1f} MB/s; {} latency p50 {} us, p99 {} us; failures {}{}\n",
                         a.messages, a.size, a.qos, a.v5() ? "5" : "3.1.1", a.inflight, a.connections, secs, rate,
                         rate * double(a.size) / 1e6, a.qos == 0 ? "write" : a.qos == 1 ? "PUBACK" : "PUBCOMP", p50,
                         p99, run.failures,
                         receive_maximum && uint64_t(receive_maximum) < a.inflight / a.connections
                             ? fmt::format(" (the broker's Receive Maximum {} is below the window)", receive_maximum)
                             : "");
  }
  const bool exact = !a.subscribe || (run.distinct == a.messages && run.duplicates == 0);
  if (a.subscribe) {
    // Alone: first to last message received. With the publisher: first PUBLISH to last received.
    const auto from = a.publish ? run.start : run.first_received;
    const double secs = std::max(std::chrono::duration<double>(run.last_received - from).count(), 1e-9);
    const double rate = run.distinct / secs;
    if (a.json)
      out += fmt::format("\"{}secs\":{:.3f},\"{}msgs_per_s\":{:.0f},\"received\":{},\"duplicates\":{},"
                         "\"below_qos1\":{},\"exactly_once\":{},",
                         a.publish ? "e2e_" : "", secs, a.publish ? "e2e_" : "", rate, run.distinct, run.duplicates,
                         run.below_qos, exact);
    else
      out += fmt::format("{}: {} msgs in {:.3f} s: {:.0f} msgs/s; {}\n",
                         a.publish ? "end to end (first PUBLISH to last received)" : "subscribe", run.distinct, secs,
                         rate,
                         exact ? "each message exactly once"
                               : fmt::format("MISMATCH: {} duplicates, {} missing", run.duplicates,
                                             a.messages - run.distinct));
  }
  if (a.json) {
    fmt::print("{{\"workload\":\"mqtt_{}\",\"broker\":{},\"version\":{},\"qos\":{},\"messages\":{},\"size\":{},"
               "\"inflight\":{},\"connections\":{},{}\"ok\":{}}}\n",
               a.publish && a.subscribe ? "publish_subscribe" : a.publish ? "publish" : "subscribe",
               JsonString(a.broker()), a.v5() ? 5 : 311, a.qos, a.messages, a.size, a.inflight, a.connections, out,
               run.failures == 0 && exact);
  } else {
    fmt::print("{}", out);
    if (run.failures) fmt::print("first failure: {}\n", run.first_failure);
  }
  return run.failures == 0 && exact ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"MQTT publish/subscribe benchmark over libmosquitto (workload M1 of BENCHMARKS.md)", "mqtt_bench"};
  app.add_flag("--publish", a.publish, "Publish --messages and measure first PUBLISH to last PUBACK");
  app.add_flag("--subscribe", a.subscribe,
               "Count --messages on --topic with a QoS 1 persistent-session subscriber (with --publish: "
               "subscribed first, adds the end-to-end rate)");
  app.add_flag("--register", a.register_only,
               "Subscribe a persistent session (--client-id) to --topic and disconnect, keeping it; "
               "a later --subscribe reads what was queued");
  app.add_option("-H,--host", a.host, "Broker host")->capture_default_str();
  app.add_option("-p,--port", a.port, "Broker port (1 to 65535)")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("-V,--protocol-version", a.version, "MQTT version: 5 or 311")
      ->check(CLI::IsMember({"5", "311", "mqttv5", "mqttv311"}))
      ->capture_default_str();
  app.add_option("--qos", a.qos, "QoS of each PUBLISH (0, 1 or 2)")->check(CLI::Range(0, 2))->capture_default_str();
  app.add_option("--messages", a.messages, fmt::format("Messages (1 to {})", kMaxMessages))
      ->check(CLI::Range(uint64_t{1}, kMaxMessages))
      ->capture_default_str();
  app.add_option("--size", a.size, fmt::format("Payload bytes (8 to {}; bytes 0-7 hold the index)", kMaxSize))
      ->check(CLI::Range(uint64_t{8}, kMaxSize))
      ->capture_default_str();
  app.add_option("--inflight", a.inflight, "Unacknowledged PUBLISHes at most, over all connections (1 to 65535)")
      ->check(CLI::Range(uint64_t{1}, kMaxInflight))
      ->capture_default_str();
  app.add_option("--connections", a.connections, fmt::format("Publishing connections (1 to {})", kMaxConnections))
      ->check(CLI::Range(uint64_t{1}, kMaxConnections))
      ->capture_default_str();
  app.add_option("--receive-maximum", a.receive_maximum,
                 "The subscriber's Receive Maximum (MQTT 5; 1 to 65535): deliveries unacknowledged at most")
      ->check(CLI::Range(uint64_t{1}, kMaxInflight))
      ->capture_default_str();
  app.add_option("--timeout", a.timeout_s, "Give up after this many seconds without progress (1 to 3600)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_option("--topic", a.topic, "Topic name (no wildcards)")->capture_default_str();
  app.add_option("--client-id", a.client_id, "The subscriber's client identifier")->capture_default_str();
  app.add_flag("--json", a.json, "One JSON object on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints the help, or the error
    return rc == 0 ? 0 : 2;
  }

  auto usage = [&](const std::string& why) {
    fmt::print(stderr, "mqtt_bench: {}\nRun with --help for more information.\n", why);
    return 2;
  };
  if ((!a.publish && !a.subscribe && !a.register_only) || (a.register_only && (a.publish || a.subscribe)))
    return usage("give --publish, --subscribe, both, or --register alone");
  if (a.inflight < a.connections)
    return usage(fmt::format("--inflight {} is below --connections {}: each connection needs one in flight",
                             a.inflight, a.connections));
  if (a.topic.empty() || a.topic.find_first_of("+#") != std::string::npos || a.topic.size() > 65535)
    return usage(fmt::format("--topic '{}' is not a topic name: 1 to 65,535 bytes without + or #", a.topic));
  if (a.client_id.empty() || a.client_id.size() > 65535)
    return usage("--client-id must be 1 to 65,535 bytes");
  if (a.host.empty()) return usage("--host is empty");

  mosquitto_lib_init();
  const int rc = Bench(a);
  mosquitto_lib_cleanup();
  return rc;
}
