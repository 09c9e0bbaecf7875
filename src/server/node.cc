#include "server/node.h"

#include <thread>

#include <asio.hpp>
#include <fmt/format.h>

#include "broker/broker.h"
#include "frontend/floe/listener.h"
#include "frontend/mqtt/listener.h"

namespace floe::server {

class Node::Impl {
 public:
  explicit Impl(NodeOptions options) : options_(std::move(options)) {}
  Status Init();
  void Stop();
  void Wait() {
    MutexLock l(&stop_mu_);
    while (!stopped_) stop_cv_.Wait(&stop_mu_);
  }

  const NodeOptions options_;
  asio::io_context io_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<frontend::Listener> listener_;
  std::unique_ptr<frontend::mqtt::Listener> mqtt_listener_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::signal_set> signals_;
  std::atomic<bool> stopping_{false};

  Mutex stop_mu_;
  CondVar stop_cv_;
  bool stopped_ GUARDED_BY(stop_mu_) = false;
};

Status Node::Impl::Init() {
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
  b.session_ttl_ms = options_.session_ttl_ms;
  b.max_large_message_bytes = options_.max_large_message_bytes;
  auto broker = broker::Broker::Open(b);
  if (!broker) return broker.error();
  broker_ = std::move(*broker);
  frontend::ListenerLimits limits{options_.node_id, options_.max_frame_bytes, options_.max_message_bytes,
                                  options_.max_connection_inflight_bytes, options_.max_node_inflight_bytes};
  auto listener = frontend::Listener::Bind(io_, options_.listen, broker_.get(), limits, options_.max_connections);
  if (!listener) return listener.error();
  listener_ = std::move(*listener);
  if (!options_.mqtt_listen.empty()) {
    frontend::mqtt::MqttOptions mo;
    mo.node_id = options_.node_id;
    mo.stream = options_.mqtt_stream;
    auto mqtt = frontend::mqtt::Listener::Bind(io_, options_.mqtt_listen, broker_.get(), std::move(mo),
                                               options_.max_connections);
    if (!mqtt) return mqtt.error();
    mqtt_listener_ = std::move(*mqtt);
  }
  // Join the cluster: heartbeat, then take this node's share of the streams
  // (opening them) before taking connections.
  const std::string address =
      options_.advertise.empty() ? fmt::format("{}:{}", listener_->host(), listener_->port()) : options_.advertise;
  FLOE_RETURN_IF_ERROR(broker_->StartCluster(address));
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
