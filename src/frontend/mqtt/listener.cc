#include "frontend/mqtt/listener.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

namespace floe::frontend::mqtt {

using asio::ip::tcp;

Listener::Listener(asio::io_context& io, broker::Broker* broker, MqttOptions options, size_t max_connections)
    : io_(io), acceptor_(io), broker_(broker), options_(std::move(options)), max_connections_(max_connections) {}

Result<std::unique_ptr<Listener>> Listener::Bind(asio::io_context& io, const std::string& listen,
                                                 broker::Broker* broker, MqttOptions options,
                                                 size_t max_connections) {
  std::unique_ptr<Listener> l(new Listener(io, broker, std::move(options), max_connections));
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) return Err(Status::InvalidArgument("--mqtt-listen wants HOST:PORT, got " + listen));
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return Err(Status::InvalidArgument(fmt::format("--mqtt-listen: bad address '{}'", listen)));
  char* end = nullptr;
  const long port = std::strtol(listen.c_str() + colon + 1, &end, 10);
  if (end == listen.c_str() + colon + 1 || *end != '\0' || port < 0 || port > 65535)
    return Err(Status::InvalidArgument(fmt::format("--mqtt-listen: bad port in '{}' (0 to 65535)", listen)));
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  l->acceptor_.open(ep.protocol(), ec);
  if (!ec) l->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(ep, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Err(Status::Unavailable(fmt::format("MQTT listen on {}: {}", listen, ec.message())));
  l->host_ = host;
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
  asio::steady_timer backoff(io_);
  auto pause = std::chrono::milliseconds(10);
  while (!broker_->stopping()) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
    if (ec) {
      if (broker_->stopping() || ec == asio::error::operation_aborted) break;
      // Out of descriptors (or another resource): wait, do not spin.
      backoff.expires_after(pause);
      co_await backoff.async_wait(kNoThrow);
      pause = std::min(pause * 2, std::chrono::milliseconds(1000));
      continue;
    }
    pause = std::chrono::milliseconds(10);
    socket.set_option(tcp::no_delay(true), ec);
    if (broker_->peer_count() >= max_connections_) {
      socket.close(ec);  // MQTT has no word for it before CONNECT: closed
      continue;
    }
    auto conn = std::make_shared<Connection>(broker_, &options_, std::move(socket));
    broker_->Attach(conn);
    conn->Start();
  }
}

}  // namespace floe::frontend::mqtt
