// An MQTT session's bank record (docs/mqtt.md "Sessions": its format) and
// the hash of a client identifier that names it. Depends on floe_base and
// the packet layer's types only: the fuzz target compiles it alone.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "mqtt/codec.h"

namespace floe::frontend::mqtt {

namespace codec = ::floe::mqtt;

// An MQTT session's durable state (bank record "frontend/mqtt/<id>",
// docs/mqtt.md "Sessions"): what another connection, on this node or
// another, needs to resume it exactly where it stood.
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
  // The node whose connection holds the session ("" once it left, at
  // left_at_ms). A record naming a node that no longer holds it is an
  // orphan: its will and expiry are then the serving node's to carry out.
  std::string node;
  int64_t left_at_ms = 0;
  struct Will {
    std::string topic;
    std::string headers;  // stored with it, as EncodeMessageHeaders makes them
    std::string payload;
    uint8_t qos = 0;
    bool retain = false;
    uint32_t delay_s = 0;        // Will Delay Interval
    uint64_t producer_seq = 0;   // != 0: being published with this seq (a resend is stored once)
  };
  std::optional<Will> will;
  // Inbound QoS 2: packet id -> the producer seq its message is (being)
  // stored with; kept from before the store until PUBCOMP may be sent, so a
  // resend after any reconnect is stored once (the stream's dedup).
  std::map<uint16_t, uint64_t> qos2_in;
  // The bound stream (docs/mqtt.md "Topics onto streams") such a message goes
  // to, for the packet ids of qos2_in whose stream is not the default one:
  // the producer seq is that stream's producer's.
  std::map<uint16_t, std::string> qos2_in_stream;
  // Outbound QoS 2: (stream, seq) -> packet id, from before the PUBLISH is
  // sent until PUBCOMP; `released`: PUBREC came (PUBREL is what to resend).
  // The stream is "" for the default MQTT stream, else a bound stream's name:
  // a session reads several streams, each with its own seqs.
  struct Out {
    uint16_t packet_id = 0;
    bool released = false;
  };
  using DeliveryKey = std::pair<std::string, uint64_t>;
  std::map<DeliveryKey, Out> qos2_out;
  // Outbound QoS 2 deliveries in no cursor of this session (a shared
  // subscription's, a retained message sent on SUBSCRIBE): packet id ->
  // released (PUBREC came: PUBREL is resent after a reconnect).
  std::map<uint16_t, bool> qos2_held;
};
std::string EncodeSessionRecord(const SessionRecord& r);
Result<SessionRecord> DecodeSessionRecord(std::string_view bytes);
// The key of a client identifier's record and the stable hash of it that
// names its core sessions and its durable consumer.
uint64_t ClientHash(std::string_view client_id);
// The core session id of a client identifier's consumer of one generation
// (even; its producer's is ClientHash | 1, odd), stable across nodes.
uint64_t ConsumerSessionId(std::string_view client_id, uint64_t generation);

}  // namespace floe::frontend::mqtt
