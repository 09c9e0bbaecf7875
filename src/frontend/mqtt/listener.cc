#include "frontend/mqtt/listener.h"

#include "frontend/acceptor.h"
#include "frontend/mqtt/keeper.h"

#include <asio/experimental/as_tuple.hpp>
#include <fmt/format.h>

namespace floe::frontend::mqtt {

using asio::ip::tcp;

Listener::Listener(asio::io_context& io, broker::Broker* broker, MqttOptions options, size_t max_connections)
    : io_(io),
      acceptor_(io),
      broker_(broker),
      options_(std::move(options)),
      retained_(std::make_shared<RetainedStore>(broker, options_.stream)),
      max_connections_(max_connections),
      keeper_(std::make_shared<Keeper>(io, broker, &options_, retained_)),
      bindings_(std::make_shared<Bindings>(io, broker)),
      shared_(io, broker, &options_) {}

Result<std::unique_ptr<Listener>> Listener::Bind(asio::io_context& io, const std::string& listen,
                                                 broker::Broker* broker, MqttOptions options,
                                                 size_t max_connections) {
  std::unique_ptr<Listener> l(new Listener(io, broker, std::move(options), max_connections));
  auto host = BindAcceptor(l->acceptor_, listen, "--mqtt-listen");
  if (!host) return Err(host.error());
  l->host_ = std::move(*host);
  return l;
}

uint16_t Listener::port() const { return acceptor_.local_endpoint().port(); }

void Listener::Start() {
  keeper_->Start();
  bindings_->Start();
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
}

void Listener::Close() {
  asio::error_code ec;
  acceptor_.close(ec);
  keeper_->Stop();
  bindings_->Stop();
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
    auto conn = std::make_shared<Connection>(broker_, &options_, NodeServices{keeper_, &shared_, retained_, bindings_}, std::move(socket));
    broker_->Attach(conn);
    conn->Start();
  }
}

}  // namespace floe::frontend::mqtt
