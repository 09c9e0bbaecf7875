#include "frontend/floe/listener.h"

#include "frontend/acceptor.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

namespace floe::frontend {

using asio::ip::tcp;

Listener::Listener(asio::io_context& io, broker::Broker* broker, ListenerLimits limits, size_t max_connections)
    : io_(io), acceptor_(io), backoff_timer_(io), broker_(broker), limits_(std::move(limits)), max_connections_(max_connections) {}

Result<std::unique_ptr<Listener>> Listener::Bind(asio::io_context& io, const std::string& listen,
                                                 broker::Broker* broker, ListenerLimits limits,
                                                 size_t max_connections) {
  std::unique_ptr<Listener> l(new Listener(io, broker, std::move(limits), max_connections));
  auto host = BindAcceptor(l->acceptor_, listen, "--listen");
  if (!host) return Err(host.error());
  l->host_ = std::move(*host);
  return l;
}

uint16_t Listener::port() const { return acceptor_.local_endpoint().port(); }

void Listener::Start() { asio::co_spawn(io_, AcceptLoop(), asio::detached); }

void Listener::Close() {
  asio::error_code ec;
  acceptor_.close(ec);
  backoff_timer_.cancel();
}

namespace {
// A failed accept that says nothing about the listener's health: the peer
// gave up before we took it, or a signal. Accept again at once.
bool Transient(const asio::error_code& ec) {
  return ec == asio::error::connection_aborted || ec == asio::error::interrupted ||
         ec == asio::error::would_block || ec == std::errc::protocol_error;
}
constexpr auto kMinAcceptBackoff = std::chrono::milliseconds(10);
constexpr auto kMaxAcceptBackoff = std::chrono::milliseconds(1000);
}  // namespace

asio::awaitable<void> Listener::AcceptLoop() {
  constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
  auto backoff = kMinAcceptBackoff;
  while (!broker_->stopping()) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
    if (ec) {
      if (broker_->stopping() || ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      if (Transient(ec)) continue;
      // Out of descriptors or memory: accepting again at once fails again at
      // once (the connection stays in the backlog), so wait; what is open
      // keeps being served on the other strands.
      const std::string why = ec.message();  // (a structured binding is not captured by clang 14)
      accept_log_.Print("connection.accept_failed", [&] {
        return fmt::format(
            "node {}: cannot accept connections: {}; retrying in {} ms (backing off up to {} ms; raise "
            "the descriptor limit, ulimit -n, above --max-connections {})",
            limits_.node_id, why, backoff.count(), kMaxAcceptBackoff.count(), max_connections_);
      });
      backoff_timer_.expires_after(backoff);
      co_await backoff_timer_.async_wait(kNoThrow);
      backoff = std::min(backoff * 2, kMaxAcceptBackoff);
      continue;
    }
    backoff = kMinAcceptBackoff;
    socket.set_option(tcp::no_delay(true), ec);
    const size_t count = broker_->peer_count();
    if (count >= max_connections_) {
      // Say why, then close: the client learns it from its first read.
      asio::error_code pec;
      const auto peer = socket.remote_endpoint(pec);
      limit_log_.Print("connection.refused", [&] {
        return fmt::format("node {}: refused a connection from {}: {} connections open, the limit "
                           "(--max-connections)",
                           limits_.node_id, pec ? std::string("?") : peer.address().to_string(), count);
      });
      std::string f;
      wire::AppendFrame(&f, 0, wire::Error{wire::WireError::kTooManyConnections,
                                           wire::IsRetriable(wire::WireError::kTooManyConnections),
                                           fmt::format("node {} has {} connections, its limit (--max-connections); "
                                                       "try another node or later",
                                                       limits_.node_id, count),
                                           {}});
      asio::error_code wec;
      asio::write(socket, asio::buffer(f), wec);
      socket.close(wec);
      continue;
    }
    auto conn = std::make_shared<Connection>(broker_, &limits_, std::move(socket));
    broker_->Attach(conn);
    conn->Start();
  }
}

}  // namespace floe::frontend
