#include "server/node.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <asio.hpp>
#include <fmt/format.h>

#include "auth/directory.h"
#include "bank/bank.h"
#include "base/logging.h"
#include "broker/broker.h"
#include "broker/registry.h"
#include "cluster/cluster.h"
#include "frontend/floe/listener.h"
#include "frontend/mqtt/listener.h"
#include "http/server.h"
#include "model/types.h"
#include "server/forwarder.h"

namespace floe::server {

namespace {

Status CheckRange(const char* what, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v >= lo && v <= hi) return Status::OK();
  return Status::InvalidArgument(fmt::format("{} must be {}-{}, got {}", what, lo, hi, v));
}

Status ValidateLimits(const NodeOptions& o) {
  FLOE_RETURN_IF_ERROR(CheckRange("--handshake-timeout-ms", o.handshake_timeout_ms, kMinHandshakeTimeoutMs,
                                  kMaxHandshakeTimeoutMs));
  FLOE_RETURN_IF_ERROR(CheckRange("--frame-timeout-ms", o.frame_timeout_ms, kMinFrameTimeoutMs, kMaxFrameTimeoutMs));
  FLOE_RETURN_IF_ERROR(CheckRange("--idle-timeout-ms", o.idle_timeout_ms, kMinIdleTimeoutMs, kMaxIdleTimeoutMs));
  FLOE_RETURN_IF_ERROR(CheckRange("--max-connections", o.max_connections, 1, kMaxMaxConnections));
  // The id names a lock file and bank keys: the naming rule of streams.
  if (Status s = ValidateStreamName(o.node_id); !s.ok())
    return Status::InvalidArgument(fmt::format("--node-id '{}': {}", o.node_id, s.message()));
  return Status::OK();
}

// Holds <data_dir>/node-<id>.lock with flock for the process's life (the
// kernel drops it when the process dies, kill -9 included), so a second
// `floe serve` with this id on this directory is refused at once. Nodes
// with other ids share the directory freely. The file holds the holder's
// pid, for the message only.
Result<int> LockNodeId(const std::string& data_dir, const std::string& node_id) {
  std::error_code fec;
  std::filesystem::create_directories(data_dir, fec);
  if (fec) return Err(Status::IOError(fmt::format("creating {}: {}", data_dir, fec.message())));
  const std::string path = fmt::format("{}/node-{}.lock", data_dir, node_id);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Err(Status::FromErrno(errno, "opening " + path));
  // A peer's probe (NodeLockIsFree) holds the lock for microseconds: a few
  // short retries tell it from a live holder.
  bool locked = false;
  for (int attempt = 0; attempt < 20 && !locked; ++attempt) {
    locked = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!locked && errno != EWOULDBLOCK) break;
    if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!locked) {
    const int err = errno;
    char pid[32] = {};
    const ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) return Err(Status::FromErrno(err, "locking " + path));
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return Err(Status::FailedPrecondition(fmt::format(
        "node id {} is in use: another floe serve (pid {}) runs with --node-id {} on data directory {} (it holds "
        "{}); stop it, or give this node its own --node-id (nodes sharing a data directory need distinct ids)",
        node_id, holder, node_id, data_dir, path)));
  }
  const std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock is what matters; the pid is a courtesy.
  }
  return fd;
}

// Whether the node `node_id` of `data_dir` is dead: its lock file exists
// (it ran here) and its flock can be taken, which the kernel allows only
// once the process that held it is gone. Taken and let go at once; a node
// starting with that id meanwhile retries (LockNodeId).
bool NodeLockIsFree(const std::string& data_dir, const std::string& node_id) {
  const std::string path = fmt::format("{}/node-{}.lock", data_dir, node_id);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);  // lets go of the lock too
  return free;
}

// Where this node keeps its data: the host and the data directory whose
// node lock it holds (cluster::ClusterOptions::home, the successor rule).
std::string NodeHome(const std::string& data_dir) {
  char host[256] = {};
  (void)::gethostname(host, sizeof host - 1);
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::canonical(data_dir, ec);
  return fmt::format("{}:{}", host, ec ? data_dir : dir.string());
}

// The bank's view, for nodes that share a bank but not a data directory
// (another host, another --data): refuses if nodes/<id> belongs to a live
// node. A record at our own address is our previous life (we hold its
// port now, so it is dead), and so is one naming our home (we hold its
// node lock now: the successor rule). A record whose heartbeat is older
// than its lease period is dead by the cluster's own rule. Otherwise the record may
// be fresh only because its node just died: watch it until its lease period
// has passed: a heartbeat that advances meanwhile (live nodes heartbeat
// every third of a lease) is another live node with this id. Two nodes
// started at the same instant on different directories both see no record:
// that race is not closed here.
Status CheckNodeIdUnused(const std::string& bank_url, const std::string& node_id, const std::string& address,
                         const std::string& home) {
  auto bank = bank::OpenBank(bank_url);
  if (!bank) return bank.error();
  const std::string key = cluster::NodeKey(node_id);
  auto read = [&]() -> Result<std::optional<cluster::NodeInfo>> {
    auto v = (*bank)->Get(key);
    if (!v) {
      if (v.error().IsNotFound()) return std::optional<cluster::NodeInfo>();
      return Err(v.error());
    }
    auto n = cluster::DecodeNodeInfo(v->value);
    if (!n) return std::optional<cluster::NodeInfo>();  // unreadable: the heartbeat overwrites it
    return std::optional<cluster::NodeInfo>(*n);
  };
  auto first = read();
  if (!first) return first.error();
  if (!*first) return Status::OK();
  const cluster::NodeInfo seen = **first;
  if (seen.address == address || seen.home == home) return Status::OK();
  const int64_t lease = std::max<int64_t>(seen.lease_ms, 30);
  const int64_t left_ms = seen.heartbeat_ms + lease - cluster::WallMs();
  if (left_ms <= 0) return Status::OK();
  // Bounded by steady time too, whatever the clocks say.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::min(left_ms, 2 * lease) + 50);
  const auto poll = std::chrono::milliseconds(std::clamp<int64_t>(lease / 10, 5, 200));
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(poll);
    auto now = read();
    if (!now) return now.error();
    if (!*now) return Status::OK();  // it stopped and removed its record
    if ((*now)->heartbeat_ms != seen.heartbeat_ms || (*now)->address != seen.address)
      return Status::FailedPrecondition(fmt::format(
          "node id {} is in use: the bank shows a live node {} at {} (heartbeat {} ms ago); two live nodes with "
          "one id are never allowed: give this node its own --node-id",
          node_id, node_id, (*now)->address, std::max<int64_t>(0, cluster::WallMs() - (*now)->heartbeat_ms)));
  }
  return Status::OK();
}

// Every connection holds a descriptor, and so does every stream (its lock
// and its writer's segment file), plus the bounded cache of segment read
// handles and the node's own files (the bank, the event loop): raise the
// soft RLIMIT_NOFILE to the hard limit, which needs no privilege, so that
// the node runs out of streams or connections no sooner than it must. Says
// once, at start, what limit it runs with, and warns if even that is short
// of the connection limit, since accept would then fail before
// --max-connections bites.
void RaiseDescriptorLimit(const std::string& node_id, size_t max_connections) {
  constexpr rlim_t kOwnFiles = 256;
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) != 0) {
    logging::Warn("node.fd_limit", fmt::format("reading the descriptor limit failed: {}", std::strerror(errno)),
                  {{"node", node_id}});
    return;
  }
  const rlim_t was = nofile.rlim_cur;
  if (nofile.rlim_cur != nofile.rlim_max) {
    rlimit r{nofile.rlim_max, nofile.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &r) == 0) {
      nofile.rlim_cur = nofile.rlim_max;
    } else {
      logging::Warn("node.fd_limit",
                    fmt::format("raising the descriptor limit from {} to the hard limit {} failed: {}", nofile.rlim_cur,
                                nofile.rlim_max, std::strerror(errno)),
                    {{"node", node_id}});
    }
  }
  auto show = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v); };
  logging::Info("node.fd_limit",
                fmt::format("descriptor limit {} (soft, was {}; hard {})", show(nofile.rlim_cur), show(was),
                            show(nofile.rlim_max)),
                {{"node", node_id}});
  const rlim_t want = static_cast<rlim_t>(max_connections) + kOwnFiles;
  if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < want)
    logging::Warn("node.fd_limit",
                  fmt::format("the descriptor limit ({}, ulimit -n) is below --max-connections {} plus {} for the "
                              "node's own files: accept will fail before the connection limit bites",
                              nofile.rlim_cur, max_connections, kOwnFiles),
                  {{"node", node_id}});
}

// Whether HOST of a HOST:PORT listen address is a loopback address (or
// "localhost"); a host name, 0.0.0.0 and :: are not.
bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  asio::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

// Safe defaults (docs/security.md): anonymous access only where nobody but
// this host can reach the node, unless the operator says otherwise.
Status CheckAnonymous(const NodeOptions& o) {
  // The HTTP listener has no login yet: it shows every stream and session,
  // so off loopback it needs --allow-anonymous, --auth or not.
  if (!o.allow_anonymous && !o.http_listen.empty() && !IsLoopbackListen(o.http_listen))
    return Status::FailedPrecondition(fmt::format(
        "refusing to start: node {} would serve HTTP (/metrics, /api/v1) on {}, not loopback, and the HTTP "
        "listener has no login: anyone who can reach it sees every stream and session; keep --http-listen on "
        "loopback (scrape through a proxy), or give --allow-anonymous to expose it on purpose",
        o.node_id, o.http_listen));
  if (o.auth || o.allow_anonymous) return Status::OK();
  std::vector<std::string> open;
  if (!IsLoopbackListen(o.listen)) open.push_back(fmt::format("{} (--listen)", o.listen));
  if (!o.mqtt_listen.empty() && !IsLoopbackListen(o.mqtt_listen))
    open.push_back(fmt::format("{} (--mqtt-listen)", o.mqtt_listen));
  if (open.empty()) return Status::OK();
  std::string where;
  for (const auto& w : open) where += (where.empty() ? "" : ", ") + w;
  return Status::FailedPrecondition(fmt::format(
      "refusing to start: node {} would listen on {}, not loopback, without --auth, so anyone who can reach it "
      "could read, write and delete every stream; start it with --auth (add users with floe user add), or give "
      "--allow-anonymous to run it open on purpose",
      o.node_id, where));
}

}  // namespace

class Node::Impl {
 public:
  explicit Impl(NodeOptions options) : options_(std::move(options)) {}
  ~Impl() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }
  Status Init();
  void Stop();
  void Wait() {
    MutexLock l(&stop_mu_);
    while (!stopped_) stop_cv_.Wait(&stop_mu_);
  }

  const NodeOptions options_;
  asio::io_context io_;
  std::unique_ptr<auth::Directory> users_;  // with --auth; outlives the listeners
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<frontend::Listener> listener_;
  std::unique_ptr<frontend::mqtt::Listener> mqtt_listener_;
  std::unique_ptr<http::Server> http_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::signal_set> signals_;
  std::atomic<bool> stopping_{false};
  int lock_fd_ = -1;  // node-<id>.lock in data_dir, flock'd while the node lives

  Mutex stop_mu_;
  CondVar stop_cv_;
  bool stopped_ GUARDED_BY(stop_mu_) = false;
};

Status Node::Impl::Init() {
  FLOE_RETURN_IF_ERROR(ValidateLimits(options_));
  FLOE_RETURN_IF_ERROR(CheckAnonymous(options_));
  auto lock = LockNodeId(options_.data_dir, options_.node_id);
  if (!lock) return lock.error();
  lock_fd_ = *lock;
  RaiseDescriptorLimit(options_.node_id, options_.max_connections);
  broker::BrokerOptions b;
  b.node_id = options_.node_id;
  b.data_dir = options_.data_dir;
  b.bank = options_.bank;
  b.max_message_bytes = options_.max_message_bytes;
  b.max_read_bytes = options_.max_frame_bytes / 2;
  b.max_ack_pending = options_.max_ack_pending;
  b.direct_io = options_.direct_io;
  b.lease_ms = options_.lease_ms;
  b.auto_balance = options_.auto_balance;
  b.home = NodeHome(options_.data_dir);  // the node lock is held
  b.peer_dead = [dir = options_.data_dir](const std::string& id) { return NodeLockIsFree(dir, id); };
  // A stream bound to MQTT topics is served where the MQTT stream is: that
  // node answers every PUBLISH and reads them for its subscribers. Set with
  // MQTT off too, so that every node of a cluster places alike.
  b.placed_with = [mqtt = options_.mqtt_stream](const std::string& name, std::string_view record) {
    auto config = broker::DecodeStreamConfig(record);
    return config && !config->mqtt_topics.empty() && name != mqtt ? mqtt : std::string();
  };
  b.session_ttl_ms = options_.session_ttl_ms;
  b.max_large_message_bytes = options_.max_large_message_bytes;
  if (options_.auth) {
    // A bank handle of its own: the users' reads never wait behind the core's.
    auto users_bank = bank::OpenBank(options_.bank.empty() ? "sqlite:" + options_.data_dir + "/bank.db" : options_.bank);
    if (!users_bank) return users_bank.error();
    auth::Directory::Options ao;
    ao.refresh = std::chrono::milliseconds(std::max<int64_t>(options_.auth_refresh_ms, 10));
    auto users = auth::Directory::Open(std::move(*users_bank), ao);
    if (!users) return Status(users.error().code(), fmt::format("reading the users: {}", users.error().message()));
    users_ = std::move(*users);
  }
  b.forwarder = std::make_shared<Forwarder>(options_.node_id, users_ ? users_->node_secret() : std::string());
  auto broker = broker::Broker::Open(b);
  if (!broker) return broker.error();
  broker_ = std::move(*broker);
  frontend::ListenerLimits limits{.node_id = options_.node_id,
                                  .max_frame_bytes = options_.max_frame_bytes,
                                  .max_message_bytes = options_.max_message_bytes,
                                  .max_connection_inflight_bytes = options_.max_connection_inflight_bytes,
                                  .max_node_inflight_bytes = options_.max_node_inflight_bytes,
                                  .handshake_timeout_ms = options_.handshake_timeout_ms,
                                  .frame_timeout_ms = options_.frame_timeout_ms,
                                  .idle_timeout_ms = options_.idle_timeout_ms,
                                  .auth = users_.get()};
  auto listener = frontend::Listener::Bind(io_, options_.listen, broker_.get(), limits, options_.max_connections);
  if (!listener) return listener.error();
  listener_ = std::move(*listener);
  if (!options_.mqtt_listen.empty()) {
    frontend::mqtt::MqttOptions mo;
    mo.node_id = options_.node_id;
    mo.stream = options_.mqtt_stream;
    mo.redirect = options_.mqtt_redirect;
    mo.auth = users_.get();
    auto mqtt = frontend::mqtt::Listener::Bind(io_, options_.mqtt_listen, broker_.get(), std::move(mo),
                                               options_.max_connections);
    if (!mqtt) return mqtt.error();
    mqtt_listener_ = std::move(*mqtt);
  }
  // Join the cluster: heartbeat, then take this node's share of the streams
  // (opening them) before taking connections.
  const std::string address =
      options_.advertise.empty() ? fmt::format("{}:{}", listener_->host(), listener_->port()) : options_.advertise;
  FLOE_RETURN_IF_ERROR(CheckNodeIdUnused(options_.bank.empty() ? "sqlite:" + options_.data_dir + "/bank.db" : options_.bank,
                                         options_.node_id, address, b.home));
  std::string mqtt_address = options_.mqtt_advertise;
  if (mqtt_address.empty() && mqtt_listener_) {
    const std::string& host = mqtt_listener_->host();
    mqtt_address = host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, mqtt_listener_->port())
                                                       : fmt::format("{}:{}", host, mqtt_listener_->port());
  }
  if (!mqtt_listener_) mqtt_address.clear();  // MQTT off: nobody is sent here
  // HTTP before joining, so /healthz answers and /readyz says "not ready"
  // while the node takes its streams (it has its own threads).
  if (!options_.http_listen.empty()) {
    auto h = http::Server::Start({.listen = options_.http_listen}, broker_.get());
    if (!h) return h.error();
    http_ = std::move(*h);
  }
  FLOE_RETURN_IF_ERROR(broker_->StartCluster(address, mqtt_address));
  listener_->Start();
  if (mqtt_listener_) mqtt_listener_->Start();
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) threads_.emplace_back([this] { io_.run(); });
  return Status::OK();
}

void Node::Impl::Stop() {
  if (stopping_.exchange(true)) {
    Wait();
    return;
  }
  if (http_) http_->Stop();  // first: its requests read the broker
  if (broker_) {
    broker_->BeginStop();
    asio::post(io_, [this] {
      listener_->Close();
      if (mqtt_listener_) mqtt_listener_->Close();
      asio::error_code ec;
      if (signals_) signals_->cancel(ec);
    });
    auto peers = broker_->Peers();
    for (auto& p : peers) p->StopReading();
    // In-flight publishes finish (written, synced, acknowledged) before we close.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (broker_->inflight_bytes() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    broker_->Flush();  // answers persisted and confirmed
    for (auto& p : peers) p->CloseSoon();
    peers.clear();
    const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (broker_->peer_count() > 0 && std::chrono::steady_clock::now() < close_deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  io_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (broker_) broker_->Finish();
  // Notify under the lock: a waiter may destroy the node as soon as it wakes.
  MutexLock l(&stop_mu_);
  stopped_ = true;
  stop_cv_.SignalAll();
}

Result<std::unique_ptr<Node>> Node::Start(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  Status s = impl->Init();
  if (!s.ok()) return Err(s);
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Node::~Node() { Stop(); }
uint16_t Node::port() const { return impl_->listener_->port(); }
uint16_t Node::http_port() const { return impl_->http_ ? impl_->http_->port() : 0; }
uint16_t Node::mqtt_port() const { return impl_->mqtt_listener_ ? impl_->mqtt_listener_->port() : 0; }
void Node::Stop() { impl_->Stop(); }
void Node::Wait() { impl_->Wait(); }

Node::Stats Node::stats() const {
  auto b = impl_->broker_->stats();
  return Stats{b.published, b.bank_commits, b.bank_records, b.takeovers};
}

void Node::HandleSignals() {
  impl_->signals_ = std::make_unique<asio::signal_set>(impl_->io_, SIGINT, SIGTERM);
  impl_->signals_->async_wait([this](const asio::error_code& ec, int) {
    if (ec) return;
    std::thread([this] { impl_->Stop(); }).detach();
  });
}

}  // namespace floe::server
