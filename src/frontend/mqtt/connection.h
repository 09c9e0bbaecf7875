// One MQTT 5.0 or 3.1.1 client connection over the broker core
// (docs/mqtt.md). The packet layer (src/mqtt/) finds and decodes packets;
// this file turns them into core calls and the core's outcomes into packets:
//
//   PUBLISH    -> the session's producer Session on the MQTT stream; PUBACK /
//                 PUBREC only once the message is durable (fdatasync'd), a
//                 failure reason code (0x80 range) when it is not stored
//   SUBSCRIBE  -> the MQTT session record in the bank (before SUBACK), and a
//                 durable consumer on the MQTT stream whose deliveries are
//                 filtered by the session's topic filters
//   PUBACK, PUBCOMP from the client -> ACK of the delivered seq (persisted)
//
// The MQTT session floats as floe's own sessions do: its producer and
// consumer Sessions are locked by the node that serves the MQTT stream (a
// second CONNECT with the same client identifier takes them over: the old
// connection gets DISCONNECT 0x8E), its subscriptions live in the bank, its
// unanswered deliveries in the consumer's cursor (resent with DUP on
// reconnect).
//
// Threads: everything but the broker::Peer calls runs on the connection's
// strand. Core callbacks post back to it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include "broker/broker.h"
#include "frontend/await_core.h"
#include "mqtt/codec.h"
#include "mqtt/frame.h"

namespace floe::frontend::mqtt {

namespace codec = ::floe::mqtt;

struct MqttOptions {
  std::string node_id;
  // The stream every PUBLISH goes to and every subscription reads.
  std::string stream = "mqtt";
  // The largest packet this node accepts (announced as Maximum Packet Size).
  uint32_t max_packet_size = (1u << 20) + 65536;
  // QoS 1 and 2 PUBLISHes a client may have unacknowledged (Receive Maximum).
  uint16_t receive_maximum = 1024;
  // Topic aliases a client may use (Topic Alias Maximum).
  uint16_t topic_alias_maximum = 64;
  // A connection that sends no CONNECT within this is closed.
  int connect_timeout_ms = 10000;
  // A CONNECT reaching a node that does not serve the stream: relayed to the
  // node that does (docs/mqtt-cluster.md), or with `redirect` answered
  // CONNACK 0x9C with that node's MQTT address as Server Reference.
  bool redirect = false;
  int relay_connect_timeout_ms = 2000;
};

// An MQTT session's durable state (bank record "frontend/mqtt/<id>").
struct SessionRecord {
  std::string client_id;
  uint64_t generation = 1;  // grows at each clean start: names the consumer
  uint32_t expiry_s = 0;    // Session Expiry Interval (0: ends with the connection)
  struct Sub {
    std::string filter;
    codec::SubscriptionOptions options;
    uint32_t identifier = 0;  // Subscription Identifier, 0 = none
    int64_t since_us = 0;     // made then: older messages are not its to deliver
  };
  std::vector<Sub> subscriptions;
};
std::string EncodeSessionRecord(const SessionRecord& r);
Result<SessionRecord> DecodeSessionRecord(std::string_view bytes);
// The key of a client identifier's record and the stable hash of it that
// names its core sessions and its durable consumer.
uint64_t ClientHash(std::string_view client_id);

class Connection final : public broker::Peer, public std::enable_shared_from_this<Connection> {
 public:
  Connection(broker::Broker* broker, const MqttOptions* options, asio::ip::tcp::socket socket);
  void Start();

  // broker::Peer: any thread.
  void StopReading() override;
  void CloseSoon() override;
  void Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) override;

 private:
  template <typename T, typename Start>
  asio::awaitable<T> AwaitCore(Start start) {
    return AwaitOnStrand<T>(strand_, shared_from_this(), std::move(start));
  }

  asio::awaitable<void> ReadLoop();
  asio::awaitable<bool> Handle(codec::Packet& packet);
  asio::awaitable<bool> OnConnect(const codec::Connect& c);
  // Opens (or resumes) the session's producer and consumer Sessions; on
  // failure answers CONNACK with the reason and closes.
  asio::awaitable<bool> OpenCoreSessions();
  bool OnPublish(codec::Publish& p);
  void OnPubrel(const codec::Pubrel& p);
  void OnDeliveryAnswer(uint16_t packet_id, codec::PacketType type, codec::ReasonCode reason);
  asio::awaitable<bool> OnSubscribe(const codec::Subscribe& s);
  asio::awaitable<void> OnUnsubscribe(const codec::Unsubscribe& u);
  asio::awaitable<Status> SaveRecord();

  // MQTT in a cluster (relay.cc). Reads a relay preamble at the start of the
  // connection (consuming it from *in); false: a bad one, closed.
  bool TakeRelayPreamble(std::span<const char>* in);
  // The MQTT stream is served by another node (`why` says which): relay
  // the client there, or redirect it, or refuse it (0x88; a relayed
  // connection 0x9C). Ends this connection either way.
  asio::awaitable<void> MoveToOwner(std::string why);
  // This node no longer serves the MQTT stream: DISCONNECT 0x9C (with a
  // Server Reference when the bank already names the new owner) and close.
  void MoveOn(std::string why);

  // Delivery: pushes what the consumer Session gives, filtered by the
  // subscriptions, within the client's Receive Maximum.
  asio::awaitable<void> PushLoop();
  void WakePush();
  asio::awaitable<void> KeepAliveLoop();
  void Ack(uint64_t seq);

  void Send(const codec::Packet& packet);
  void Enqueue(std::string bytes);
  void StartWrite();
  // MQTT 5: DISCONNECT with `reason` first; then close once written.
  void Disconnect(codec::ReasonCode reason, std::string_view why);
  // Closes once what is queued is written, or after kCloseGraceMs at the
  // latest (a peer that stopped reading).
  void CloseAfterWrite();
  void FinishClose();

  broker::Broker* const broker_;
  const MqttOptions* const options_;
  asio::ip::tcp::socket socket_;
  asio::any_io_executor strand_;
  codec::FrameSplitter splitter_;
  asio::steady_timer keep_alive_timer_;
  asio::steady_timer push_wake_;
  std::chrono::steady_clock::time_point last_packet_;
  std::chrono::steady_clock::time_point accepted_at_;
  bool change_armed_ = false;  // an OnStreamChange callback is registered
  bool wake_ = false;          // WakePush came while PushLoop was not waiting
  std::string outbox_, sending_;
  bool writing_ = false;
  bool reading_ = true;
  bool close_after_write_ = false;
  bool closed_ = false;
  // Relaying (relay.cc).
  bool preamble_checked_ = false;  // the first bytes were looked at
  std::string preamble_;           // a relay preamble still arriving
  bool relayed_ = false;           // came through another node: never relayed again
  std::string relayed_for_;        // the client's address, as the preamble names it
  std::span<const char>* unread_ = nullptr;  // bytes read after the packet being handled
  bool moving_on_ = false;         // MoveOn runs

  // After CONNECT.
  bool connected_ = false;
  codec::Version version_ = codec::Version::kV5;
  std::string client_id_;
  std::string client_key_;  // Hex(ClientHash(client_id_)): the record's key, the No Local mark
  std::string RecordKey() const { return "mqtt/" + client_key_; }
  uint16_t keep_alive_s_ = 0;
  bool taken_over_ = false;        // a newer connection has the session: leave its records alone
  std::string assigned_id_;
  struct Will {
    std::string topic;
    std::string payload;
    uint8_t qos = 0;
    bool retain = false;
  };
  std::optional<Will> will_;
  uint32_t client_max_packet_ = codec::kMaxPacketSize;
  uint16_t client_receive_maximum_ = 65535;
  SessionRecord record_;
  std::shared_ptr<broker::Session> producer_;
  uint64_t next_producer_seq_ = 1;
  std::shared_ptr<broker::Session> consumer_;
  std::map<uint16_t, std::string> topic_aliases_;  // the client's, inbound
  // Inbound QoS 2: packet ids PUBRECed and not yet released, and QoS 1/2
  // publishes awaiting durability (counted against our Receive Maximum).
  std::map<uint16_t, bool> inbound_qos2_;  // packet id -> stored (false: being written)
  uint32_t inbound_inflight_ = 0;
  // Outbound QoS 1/2 deliveries awaiting the client's answer.
  struct Outgoing {
    uint64_t seq = 0;
    uint8_t qos = 1;
    bool released = false;  // QoS 2: PUBREC came, PUBREL sent
  };
  std::map<uint16_t, Outgoing> outgoing_;
  std::map<uint64_t, uint16_t> packet_of_seq_;
  uint16_t next_packet_id_ = 1;
};

}  // namespace floe::frontend::mqtt
