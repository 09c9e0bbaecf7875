// MQTT in a cluster (docs/mqtt.md "MQTT in a cluster"): the relay preamble, dialing the
// serving node, the byte copy, and the Connection's side of it — moving a
// client to the node that serves the MQTT stream at CONNECT (relay,
// redirect, or refusal) and when this node stops serving it (DISCONNECT
// 0x9C with a Server Reference).
#include "frontend/mqtt/relay.h"

#include <fmt/format.h>

#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"

namespace floe::frontend::mqtt {

using asio::awaitable;
using asio::ip::tcp;
using codec::ReasonCode;
using codec::Version;

std::string EncodeRelayPreamble(std::string_view client_address) {
  client_address = client_address.substr(0, kMaxRelayAddress);
  std::string out;
  out.push_back(kRelayFirstByte);
  out.append(kRelayMagic);
  out.push_back(static_cast<char>(kRelayVersion));
  out.push_back(static_cast<char>(client_address.size()));
  out.append(client_address);
  return out;
}

RelayPreamble ParseRelayPreamble(std::string_view bytes) {
  RelayPreamble p;
  if (bytes.empty()) return {RelayPreamble::kNeedMore};
  if (bytes[0] != kRelayFirstByte) return p;  // kNone
  // The fixed part, byte by byte as far as it came: a mismatch is final.
  const size_t fixed = 1 + kRelayMagic.size() + 1;
  for (size_t i = 1; i < std::min(bytes.size(), fixed); ++i) {
    const char want = i <= kRelayMagic.size() ? kRelayMagic[i - 1] : static_cast<char>(kRelayVersion);
    if (bytes[i] != want) return {RelayPreamble::kBad};
  }
  if (bytes.size() < fixed + 1) return {RelayPreamble::kNeedMore};
  const size_t n = static_cast<uint8_t>(bytes[fixed]);
  if (bytes.size() < fixed + 1 + n) return {RelayPreamble::kNeedMore};
  p.kind = RelayPreamble::kComplete;
  p.size = fixed + 1 + n;
  p.client_address = std::string(bytes.substr(fixed + 1, n));
  return p;
}

std::string PeerAddress(const tcp::socket& socket) {
  asio::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  const auto a = ep.address();
  return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), ep.port()) : fmt::format("{}:{}", a.to_string(), ep.port());
}

awaitable<Result<tcp::socket>> DialRelay(asio::any_io_executor executor, std::string address, int timeout_ms) {
  std::string host, port;
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
      co_return Err(Status::InvalidArgument(fmt::format("'{}' is not [HOST]:PORT", address)));
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0)
      co_return Err(Status::InvalidArgument(fmt::format("'{}' is not HOST:PORT", address)));
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  // The timer closes the socket if the connect takes too long; both share
  // this state, which outlives whichever finishes last.
  struct Dial {
    Dial(asio::any_io_executor ex, int ms) : socket(ex), timer(ex, std::chrono::milliseconds(ms)) {}
    tcp::socket socket;
    asio::steady_timer timer;
    bool timed_out = false;
  };
  auto d = std::make_shared<Dial>(executor, timeout_ms);
  d->timer.async_wait([d](const asio::error_code& ec) {
    if (ec) return;
    d->timed_out = true;
    asio::error_code ignored;
    d->socket.close(ignored);
  });
  tcp::resolver resolver(executor);
  auto [rec, endpoints] = co_await resolver.async_resolve(host, port, kNoThrow);
  if (rec) {
    d->timer.cancel();
    co_return Err(Status::Unavailable(fmt::format("resolving {}: {}", address, rec.message())));
  }
  auto [cec, ep] = co_await asio::async_connect(d->socket, endpoints, kNoThrow);
  d->timer.cancel();
  if (cec || d->timed_out)
    co_return Err(Status::Unavailable(fmt::format("connecting to {}: {}", address,
                                                  d->timed_out ? fmt::format("no answer within {} ms", timeout_ms)
                                                               : cec.message())));
  asio::error_code ignored;
  d->socket.set_option(tcp::no_delay(true), ignored);
  d->socket.set_option(asio::socket_base::keep_alive(true), ignored);
  co_return std::move(d->socket);
}

Relay::Relay(broker::Broker* broker, tcp::socket client, tcp::socket upstream)
    : broker_(broker), client_(std::move(client)), upstream_(std::move(upstream)), strand_(client_.get_executor()) {}

void Relay::Start(std::string first) {
  auto self = shared_from_this();
  asio::co_spawn(
      strand_, [self, first = std::move(first)]() mutable -> awaitable<void> {
        co_await self->Copy(self->client_, self->upstream_, std::move(first));
      },
      asio::detached);
  asio::co_spawn(
      strand_, [self]() -> awaitable<void> { co_await self->Copy(self->upstream_, self->client_, {}); },
      asio::detached);
}

void Relay::CloseSoon() {
  asio::post(strand_, [self = shared_from_this()] { self->Close(); });
}

awaitable<void> Relay::Copy(tcp::socket& from, tcp::socket& to, std::string first) {
  if (!first.empty()) {
    auto [ec, n] = co_await asio::async_write(to, asio::buffer(first), kNoThrow);
    if (ec) co_return Close();
  }
  std::vector<char> buf(64 * 1024);
  while (!closed_) {
    auto [rec, n] = co_await from.async_read_some(asio::buffer(buf), kNoThrow);
    if (rec || closed_) break;
    auto [wec, w] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kNoThrow);
    if (wec) break;
  }
  Close();
}

void Relay::Close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  client_.shutdown(tcp::socket::shutdown_both, ec);
  client_.close(ec);
  upstream_.shutdown(tcp::socket::shutdown_both, ec);
  upstream_.close(ec);
  broker_->Detach(this);
}

// --- the Connection's side ----------------------------------------------------

bool Connection::TakeRelayPreamble(std::span<const char>* in) {
  preamble_.append(in->data(), in->size());
  const RelayPreamble p = ParseRelayPreamble(preamble_);
  switch (p.kind) {
    case RelayPreamble::kNone:
      preamble_checked_ = true;  // an ordinary client: *in goes to the splitter as it is
      preamble_.clear();
      return true;
    case RelayPreamble::kNeedMore:
      if (preamble_.size() > kMaxRelayPreamble) break;
      *in = {};
      return true;
    case RelayPreamble::kComplete: {
      preamble_checked_ = true;
      relayed_ = true;
      relayed_for_ = p.client_address;
      // What followed the preamble (the CONNECT) is the tail of *in.
      const size_t rest = preamble_.size() - p.size;
      *in = in->last(rest);
      preamble_.clear();
      return true;
    }
    case RelayPreamble::kBad:
      break;
  }
  FinishClose();  // neither MQTT nor a relay: nothing to answer
  return false;
}

awaitable<void> Connection::MoveToOwner(std::string why) {
  // The producer may have opened before the consumer found the stream gone.
  if (producer_) {
    producer_->Close();
    producer_.reset();
  }
  auto refuse = [&](ReasonCode reason, const std::string& text, const std::string& reference) {
    codec::Connack ack{.reason = reason};
    if (version_ == Version::kV5) {
      ack.properties.reason_string = text;
      if (!reference.empty()) ack.properties.server_reference = reference;
    }
    Send(ack);
    CloseAfterWrite();
  };
  auto place = co_await AwaitCore<broker::Outcome<broker::Broker::Placement>>(
      [&](auto done) { broker_->LocateStream(options_->stream, std::move(done)); });
  if (closed_) co_return;
  const bool elsewhere = place && !place->here && !place->node.empty();
  if (relayed_) {
    // Relayed here by a node that took this one for the owner: no second hop.
    co_return refuse(ReasonCode::kUseAnotherServer,
                     fmt::format("relayed for {}, but this node does not serve the MQTT stream either ({})",
                                 relayed_for_, why),
                     elsewhere ? place->mqtt_address : std::string());
  }
  if (!place) co_return refuse(ReasonCode::kServerUnavailable, place.error().message, {});
  if (!elsewhere)
    co_return refuse(ReasonCode::kServerUnavailable, "no node serves the MQTT stream right now; retry", {});
  if (place->mqtt_address.empty())
    co_return refuse(ReasonCode::kServerUnavailable,
                     fmt::format("node {} serves the MQTT stream but advertises no MQTT address", place->node), {});
  if (options_->redirect)
    co_return refuse(ReasonCode::kUseAnotherServer, fmt::format("node {} serves the MQTT stream", place->node),
                     place->mqtt_address);
  auto upstream = co_await DialRelay(strand_, place->mqtt_address, options_->relay_connect_timeout_ms);
  if (closed_) co_return;  // the socket, if any, closes with `upstream`
  if (!upstream)
    co_return refuse(ReasonCode::kServerUnavailable,
                     fmt::format("node {} serves the MQTT stream: {}", place->node, upstream.error().message()), {});
  std::string first = EncodeRelayPreamble(PeerAddress(socket_));
  const auto connect = splitter_.packet();  // still the CONNECT: nothing was fed since
  first.append(connect.data(), connect.size());
  if (unread_) {
    first.append(unread_->data(), unread_->size());  // what the client sent after its CONNECT
    *unread_ = {};
  }
  auto relay = std::make_shared<Relay>(broker_, std::move(socket_), std::move(*upstream));
  broker_->Attach(relay);
  relay->Start(std::move(first));
  FinishClose();  // this connection ends here; the relay carries the client
}

void Connection::MoveOn(std::string why) {
  if (moving_on_ || closed_ || close_after_write_) return;
  moving_on_ = true;
  reading_ = false;  // nothing more is taken from the client
  if (version_ != Version::kV5 || !connected_) return Disconnect(ReasonCode::kUseAnotherServer, why);
  auto self = shared_from_this();
  // The lease ran out (rather than a drain or a rebalance handing the
  // stream on): this node may not have closed the stream yet, so its own
  // view says "here" for a moment while the bank already names the new owner.
  const bool lease_lost = consumer_ && !consumer_->serving();
  asio::co_spawn(
      strand_,
      [self, why = std::move(why), lease_lost]() -> awaitable<void> {
        // A look at the bank: after a lost lease it names the new owner
        // (looked at again for up to 1 s while this node still counts
        // itself the owner); after a drain or a rebalance nobody holds the
        // stream yet (this node gives the lease up once its connections let
        // go of the stream, so waiting here would only delay the new owner).
        auto locate = [&]() {
          return self->AwaitCore<broker::Outcome<broker::Broker::Placement>>(
              [&](auto done) { self->broker_->LocateStream(self->options_->stream, std::move(done)); });
        };
        auto place = co_await locate();
        for (int i = 0; lease_lost && i < 10 && place && place->here && !self->closed_; ++i) {
          asio::steady_timer pause(self->strand_, std::chrono::milliseconds(100));
          co_await pause.async_wait(kNoThrow);
          place = co_await locate();
        }
        if (self->closed_ || self->close_after_write_) co_return;
        codec::Disconnect d{.reason = ReasonCode::kUseAnotherServer};
        d.properties.reason_string = why;
        if (place && !place->here && !place->node.empty() && !place->mqtt_address.empty())
          d.properties.server_reference = place->mqtt_address;
        self->Send(d);
        self->CloseAfterWrite();
      },
      asio::detached);
}

}  // namespace floe::frontend::mqtt
