// Internal to the MQTT front end: what its files share — the headers an
// MQTT message is stored with (docs/mqtt.md "Topics onto streams"), the
// core outcome's reason code, the ids a client identifier's core sessions
// get, and the connection's limits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include "broker/outcome.h"
#include "mqtt/codec.h"

namespace floe::frontend::mqtt {

namespace codec = ::floe::mqtt;

inline constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bytes queued for a client before delivery waits for its socket.
inline constexpr size_t kMaxOutbox = 1 << 20;
// A closing connection whose peer does not read is cut after this.
inline constexpr int kCloseGraceMs = 2000;

int64_t WallMs();  // ms since the epoch
std::string Hex(uint64_t v);  // 16 hex digits

// What a PUBLISH (or a will) is stored with.
struct MessageMeta {
  std::string_view topic;
  uint8_t qos = 0;
  bool retain = false;
  std::string_view client;  // the publisher's client key (No Local)
  const codec::Properties* properties = nullptr;  // MQTT 5
};
// The floe headers (docs/format.md encoding) that carry `meta`.
std::string EncodeMessageHeaders(const MessageMeta& meta);

// A stored message, read back from its headers (views into them).
struct Stored {
  std::string_view topic;
  uint8_t qos = 0;
  bool retain = false;
  std::string_view client;
  codec::Properties properties;
  int64_t expires_at_ms = 0;
};
// A message without a topic header (written through the floe protocol) is
// on the topic `stream`.
Stored ParseStored(std::string_view headers, std::string_view stream);

// Whether a subscription's filter is a shared one ("$share/GROUP/filter",
// in both versions).
bool IsShared(std::string_view filter);

// The reason a PUBACK / PUBREC carries for a core outcome (one of those
// Tables 3-4 and 3-5 allow).
codec::ReasonCode ReasonOf(broker::Code c);
// An outcome no PUBACK / PUBREC may carry ends the connection with this
// DISCONNECT reason instead: too large (0x95), the node lost the stream
// (0x9C), the node is stopping (0x8B).
std::optional<codec::ReasonCode> DisconnectFor(broker::Code c);


}  // namespace floe::frontend::mqtt
