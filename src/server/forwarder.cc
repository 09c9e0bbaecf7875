#include "server/forwarder.h"

#include <chrono>

#include <fmt/format.h>

#include "client/connection.h"

namespace floe::server {

namespace {
constexpr int kConnectTimeoutMs = 1000;
constexpr int kReplyTimeoutMs = 3000;
constexpr int64_t kDownMs = 1000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Forwarder::Forwarder(std::string node_id, std::string secret)
    : node_id_(std::move(node_id)), secret_(std::move(secret)) {}
Forwarder::~Forwarder() = default;

broker::Outcome<broker::DeadLetterStored> Forwarder::ForwardDeadLetter(const std::string& address,
                                                                       const broker::DeadLetterMove& move) {
  using broker::Code;
  MutexLock l(&mu_);
  if (auto down = down_until_.find(address); down != down_until_.end()) {
    if (SteadyMs() < down->second)
      return broker::Fail(Code::kUnavailable, fmt::format("{} was unreachable a moment ago; retry", address));
    down_until_.erase(down);
  }
  auto& link = links_[address];
  if (!link || link->broken()) {
    client::ClientOptions options;
    options.client_name = "floe-node " + node_id_;
    options.connect_timeout_ms = kConnectTimeoutMs;
    if (!secret_.empty()) {
      options.user = "$node";  // auth::kNodeUser
      options.password = secret_;
    }
    auto c = client::internal::Connection::Open(address, options, nullptr);
    if (!c) {
      link.reset();
      down_until_[address] = SteadyMs() + kDownMs;
      return broker::Fail(Code::kUnavailable, fmt::format("connecting to {}: {}", address, c.error().ToString()));
    }
    link = std::move(*c);
  }
  wire::DeadLetter frame{.stream = move.stream, .source_stream = move.source_stream, .consumer = move.consumer,
                         .source_seq = move.source_seq.value(), .key = move.key, .headers = move.headers,
                         .payload = move.payload};
  auto ack = link->Call<wire::PublishAck>(frame, kReplyTimeoutMs);
  if (!ack) {
    const Status& s = ack.error();
    if (link->broken()) {
      link.reset();
      down_until_[address] = SteadyMs() + kDownMs;
    }
    // The node says the stream is gone (deleted since this node looked it
    // up); anything else is worth another try.
    if (s.IsNotFound()) return broker::Fail(Code::kUnknownStream, s.ToString());
    return broker::Fail(Code::kUnavailable, fmt::format("forwarding to {}: {}", address, s.ToString()));
  }
  if (ack->results.size() != 1 || ack->results[0].code != wire::WireError::kOk)
    return broker::Fail(Code::kUnavailable, fmt::format("forwarding to {}: the node refused the move", address));
  return broker::DeadLetterStored{StreamSeq(ack->results[0].seq), ack->results[0].duplicate};
}

}  // namespace floe::server
