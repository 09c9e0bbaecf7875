// MQTT in a cluster (docs/mqtt.md "MQTT in a cluster"): a node that does not serve the
// MQTT stream relays the client to the node that does.
//
// After a CONNECT has been read (a bad first packet is answered locally),
// the connection looks up the serving node's MQTT address in the bank
// (Broker::LocateStream), dials it, writes the relay preamble, the CONNECT
// and whatever the client sent after it, and hands both sockets to a Relay,
// which copies bytes both ways until either side closes, then closes the
// other. The serving node reads the preamble, knows the connection was
// relayed, and never relays it again (it answers 0x9C itself: no loops).
//
// The preamble (every integer big-endian):
//
//   0xFF               a fixed header no MQTT client can send first: type 15
//                      (AUTH, which never comes first and does not exist in
//                      3.1.1) with flags 1111, which Table 2-2 forbids
//   "FLOERELAY"        9 bytes of magic
//   0x01               preamble version
//   u8 n, n bytes      the client's address as the relaying node saw it
//                      ("HOST:PORT", at most kMaxRelayAddress bytes)
//
// Threads: a Relay runs on the strand of its sockets (the client
// connection's); broker::Peer calls come from any thread and are posted.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <asio.hpp>

#include "base/status.h"
#include "broker/broker.h"

namespace floe::frontend::mqtt {

inline constexpr char kRelayFirstByte = '\xFF';
inline constexpr std::string_view kRelayMagic = "FLOERELAY";
inline constexpr uint8_t kRelayVersion = 1;
inline constexpr size_t kMaxRelayAddress = 255;
inline constexpr size_t kMaxRelayPreamble = 1 + kRelayMagic.size() + 1 + 1 + kMaxRelayAddress;

// The preamble naming `client_address` (cut to kMaxRelayAddress bytes).
std::string EncodeRelayPreamble(std::string_view client_address);

struct RelayPreamble {
  enum Kind { kNone, kNeedMore, kBad, kComplete } kind = kNone;
  size_t size = 0;             // kComplete: bytes the preamble took
  std::string client_address;  // kComplete
};
// Reads a preamble at the front of `bytes`: kNone if `bytes` does not start
// with kRelayFirstByte (an ordinary client), kNeedMore if it may still
// become one, kBad if it never will.
RelayPreamble ParseRelayPreamble(std::string_view bytes);

// Connects to `address` (HOST:PORT, [v6]:PORT) within `timeout_ms`.
asio::awaitable<Result<asio::ip::tcp::socket>> DialRelay(asio::any_io_executor executor, std::string address,
                                                         int timeout_ms);

// "HOST:PORT" of a socket's peer ("?" when unknown).
std::string PeerAddress(const asio::ip::tcp::socket& socket);

// A relayed connection: the client's socket and the serving node's. Attached
// to the broker as a Peer, so it counts toward the node's connection limit
// and is closed when the node stops.
class Relay final : public broker::Peer, public std::enable_shared_from_this<Relay> {
 public:
  Relay(broker::Broker* broker, asio::ip::tcp::socket client, asio::ip::tcp::socket upstream);
  // Writes `first` (preamble, CONNECT, what followed) upstream, then copies.
  void Start(std::string first);

  // broker::Peer. Nothing of a relay is in flight here: the serving node
  // answers the client; a stopping node closes the relay.
  broker::PeerProtocol protocol() const override { return broker::PeerProtocol::kMqtt; }
  void StopReading() override {}
  void CloseSoon() override;
  void Evict(const std::shared_ptr<broker::StreamEntry>&, const std::string&) override {}

 private:
  asio::awaitable<void> Copy(asio::ip::tcp::socket& from, asio::ip::tcp::socket& to, std::string first);
  void Close();

  broker::Broker* const broker_;
  asio::ip::tcp::socket client_;
  asio::ip::tcp::socket upstream_;
  asio::any_io_executor strand_;
  bool closed_ = false;
};

}  // namespace floe::frontend::mqtt
