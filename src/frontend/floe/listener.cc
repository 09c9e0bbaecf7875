#include "frontend/floe/listener.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

namespace floe::frontend {

using asio::ip::tcp;

Listener::Listener(asio::io_context& io, broker::Broker* broker, ListenerLimits limits, size_t max_connections)
    : io_(io), acceptor_(io), broker_(broker), limits_(std::move(limits)), max_connections_(max_connections) {}

Result<std::unique_ptr<Listener>> Listener::Bind(asio::io_context& io, const std::string& listen,
                                                 broker::Broker* broker, ListenerLimits limits,
                                                 size_t max_connections) {
  std::unique_ptr<Listener> l(new Listener(io, broker, std::move(limits), max_connections));
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Err(Status::InvalidArgument("--listen wants HOST:PORT, got " + listen));
  asio::error_code ec;
  auto addr = asio::ip::make_address(listen.substr(0, colon), ec);
  if (ec) return Err(Status::InvalidArgument(fmt::format("--listen: bad address '{}'", listen)));
  const int port = std::atoi(listen.c_str() + colon + 1);
  if (port < 0 || port > 65535) return Err(Status::InvalidArgument("--listen: bad port"));
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  l->acceptor_.open(ep.protocol(), ec);
  if (!ec) l->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(ep, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Err(Status::Unavailable(fmt::format("listen on {}: {}", listen, ec.message())));
  l->host_ = listen.substr(0, colon);
  return l;
}

uint16_t Listener::port() const { return acceptor_.local_endpoint().port(); }

void Listener::Start() { asio::co_spawn(io_, AcceptLoop(), asio::detached); }

void Listener::Close() {
  asio::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> Listener::AcceptLoop() {
  constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
  while (!broker_->stopping()) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
    if (ec) {
      if (broker_->stopping() || ec == asio::error::operation_aborted) break;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    const size_t count = broker_->peer_count();
    if (count >= max_connections_) {
      // Say why, then close.
      std::string f;
      wire::AppendFrame(&f, 0, wire::Error{wire::WireError::kTooManyConnections,
                                           wire::IsRetriable(wire::WireError::kTooManyConnections),
                                           fmt::format("node has {} connections, the limit", count), {}});
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
