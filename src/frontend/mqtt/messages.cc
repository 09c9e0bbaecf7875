// The headers an MQTT message is stored with, and back (docs/mqtt.md
// "Topics onto streams"); the reason code of a core outcome.
#include <charconv>
#include <chrono>

#include <fmt/format.h>

#include "base/coding.h"
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/internal.h"
#include "log/batch.h"

namespace floe::frontend::mqtt {

using codec::ReasonCode;

namespace {

// A user property whose name begins with "mqtt." or "floe." is stored as
// "mqtt.user." + name, so it cannot pass for one of these.
constexpr std::string_view kTopic = "mqtt.topic";
constexpr std::string_view kQos = "mqtt.qos";
constexpr std::string_view kRetain = "mqtt.retain";
constexpr std::string_view kClient = "mqtt.client";
constexpr std::string_view kPayloadFormat = "mqtt.payload-format";
constexpr std::string_view kContentType = "mqtt.content-type";
constexpr std::string_view kResponseTopic = "mqtt.response-topic";
constexpr std::string_view kCorrelation = "mqtt.correlation-data";
constexpr std::string_view kExpiresAt = "mqtt.expires-at-ms";  // wall clock, ms since the epoch
constexpr std::string_view kUserEscape = "mqtt.user.";

void PutHeader(std::string* out, std::string_view name, std::string_view value) {
  PutFixed16(out, static_cast<uint16_t>(name.size()));
  out->append(name);
  PutFixed32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}

std::string_view QosText(uint8_t qos) { return qos == 2 ? "2" : qos == 1 ? "1" : "0"; }

}  // namespace

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hex(uint64_t v) { return fmt::format("{:016x}", v); }

std::string EncodeMessageHeaders(const MessageMeta& meta) {
  std::string headers;
  PutHeader(&headers, kTopic, meta.topic);
  PutHeader(&headers, kQos, QosText(meta.qos));
  if (meta.retain) PutHeader(&headers, kRetain, "1");
  PutHeader(&headers, kClient, meta.client);
  if (!meta.properties) return headers;
  const codec::Properties& pr = *meta.properties;
  if (pr.payload_format_indicator) PutHeader(&headers, kPayloadFormat, *pr.payload_format_indicator ? "1" : "0");
  if (pr.content_type) PutHeader(&headers, kContentType, *pr.content_type);
  if (pr.response_topic) PutHeader(&headers, kResponseTopic, *pr.response_topic);
  if (pr.correlation_data) PutHeader(&headers, kCorrelation, *pr.correlation_data);
  if (pr.message_expiry_interval)
    PutHeader(&headers, kExpiresAt, std::to_string(WallMs() + int64_t{*pr.message_expiry_interval} * 1000));
  for (const auto& up : pr.user_properties) {
    if (up.name.starts_with("mqtt.") || up.name.starts_with("floe."))
      PutHeader(&headers, std::string(kUserEscape) + std::string(up.name), up.value);
    else
      PutHeader(&headers, up.name, up.value);
  }
  return headers;
}

Stored ParseStored(std::string_view headers, std::string_view stream) {
  Stored s;
  s.topic = stream;
  (void)log::ParseHeaders(
      headers,
      [](void* c, std::string_view name, std::string_view value) {
        Stored& s = *static_cast<Stored*>(c);
        if (name == kTopic) s.topic = value;
        else if (name == kQos) s.qos = value == "2" ? 2 : value == "1" ? 1 : 0;
        else if (name == kRetain) s.retain = value == "1";
        else if (name == kClient) s.client = value;
        else if (name == kPayloadFormat) s.properties.payload_format_indicator = value == "1" ? 1 : 0;
        else if (name == kContentType) s.properties.content_type = value;
        else if (name == kResponseTopic) s.properties.response_topic = value;
        else if (name == kCorrelation) s.properties.correlation_data = value;
        else if (name == kExpiresAt) std::from_chars(value.data(), value.data() + value.size(), s.expires_at_ms);
        else if (name.starts_with(kUserEscape)) s.properties.user_properties.push_back({name.substr(kUserEscape.size()), value});
        else if (!name.starts_with("mqtt.") && !name.starts_with("floe.")) s.properties.user_properties.push_back({name, value});
      },
      &s);
  return s;
}

std::optional<ReasonCode> DisconnectFor(broker::Code c) {
  switch (c) {
    case broker::Code::kMessageTooLarge: return ReasonCode::kPacketTooLarge;
    case broker::Code::kNotOwner: return ReasonCode::kUseAnotherServer;
    case broker::Code::kShuttingDown: return ReasonCode::kServerShuttingDown;
    default: return std::nullopt;
  }
}

ReasonCode ReasonOf(broker::Code c) {
  switch (c) {
    case broker::Code::kOk: return ReasonCode::kSuccess;
    case broker::Code::kInvalidArgument: return ReasonCode::kPayloadFormatInvalid;
    case broker::Code::kTooManyInFlight: return ReasonCode::kQuotaExceeded;
    case broker::Code::kUnavailable:
    case broker::Code::kStorageFailed:
    case broker::Code::kStreamReadOnly:
    case broker::Code::kNoSpace: return ReasonCode::kImplementationSpecificError;
    default: return ReasonCode::kUnspecifiedError;
  }
}

}  // namespace floe::frontend::mqtt
