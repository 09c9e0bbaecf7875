// floe's own types, shared by every layer that speaks of streams, sessions
// and answers: the wire protocol encodes them, the broker core acts on them,
// the bank stores them. No layer's format lives here, only the meaning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "base/codec.h"
#include "base/status.h"

namespace floe {

// A number of one kind: a stream seq can never be passed where a producer
// seq, a session id, an epoch or a byte offset is meant (nor the reverse).
// Explicit in and out (`StreamSeq(7)`, `.value()`); ordered; free at run
// time. Used where these cross a module boundary (the broker core's API).
template <typename Tag>
class Number {
 public:
  constexpr Number() = default;
  constexpr explicit Number(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  friend constexpr bool operator==(Number, Number) = default;
  friend constexpr auto operator<=>(Number, Number) = default;

 private:
  uint64_t v_ = 0;
};
using StreamSeq = Number<struct StreamSeqTag>;      // a slot of a stream's log
using ProducerSeq = Number<struct ProducerSeqTag>;  // a producer's own numbering of its messages
using SessionId = Number<struct SessionIdTag>;      // a session's connection instance id
using Epoch = Number<struct EpochTag>;              // a lock's fencing epoch
using ByteOffset = Number<struct ByteOffsetTag>;    // bytes into a (large) message

enum class SyncMode : uint8_t { kFdatasync = 0, kNone = 1 };

// A stream's settings, fixed at creation (docs/protocol.md STREAM_CREATE).
struct StreamConfig {
  uint64_t retention_bytes = 0;     // 0: keep everything
  uint64_t retention_age_ms = 0;    // 0: keep everything
  uint32_t max_message_bytes = 1u << 20;
  SyncMode sync = SyncMode::kFdatasync;
  uint32_t ack_wait_ms = 30000;     // redeliver an unanswered delivery after this (kMin/kMaxAckWaitMs)
  uint32_t max_deliveries = 5;      // then move it to dead_letter (0: never)
  std::string dead_letter;          // a stream name, or empty: drop
  // MQTT topic filters bound to the stream (docs/mqtt.md "Topics onto
  // streams"): a PUBLISH whose topic they match goes here. Not among the
  // pinned fields below: the bank record (version 2) and the wire messages
  // carry it after them.
  std::vector<std::string> mqtt_topics;
};
// An ack wait shorter than this redelivers faster than a consumer can answer
// (0 would redeliver at once until the message is dead-lettered); longer
// than a week is a mistake, not a setting.
inline constexpr uint32_t kMinAckWaitMs = 100;
inline constexpr uint32_t kMaxAckWaitMs = 7u * 24 * 3600 * 1000;
// The config's fields in their pinned order (the STREAM_CREATE body and the
// bank's stream record both hold them so). Decode fails the decoder on an
// unknown sync mode.
void EncodeStreamConfigFields(Encoder& e, const StreamConfig& c);
StreamConfig DecodeStreamConfigFields(Decoder& d);

enum class Role : uint8_t { kProducer = 1, kConsumer = 2 };

// Where a durable consumer starts when a session creates it.
enum class StartAt : uint8_t {
  kFirst = 0,  // the stream's first seq
  kSeq = 1,    // start_value is a seq
  kTime = 2,   // start_value is a timestamp (µs since the epoch)
  kNew = 3,    // only messages published from now on
};

enum class AnswerKind : uint8_t { kAck = 1, kNak = 2, kInProgress = 3, kTerminate = 4 };

// A consumer's answer to one delivery.
struct AnswerItem {
  uint64_t seq = 0;
  AnswerKind kind = AnswerKind::kAck;
  uint32_t delay_ms = 0;  // NAK: redeliver after this long
};

// Stream and consumer names: 1 to 128 bytes of A-Z a-z 0-9 . _ -, not
// starting with '.' (a name is a directory under the data directory).
Status ValidateStreamName(std::string_view name);

}  // namespace floe
