// The accepted range of every stream setting, in one place: the broker core
// refuses a STREAM_CREATE outside them (whoever sends it) and the CLI refuses
// the same values before it connects, with the same bounds in its message.
// The ack wait's bounds (kMinAckWaitMs, kMaxAckWaitMs) live beside the field
// in model/types.h.
#pragma once

#include <cstdint>

#include "base/status.h"
#include "model/types.h"

namespace floe {

// retention_bytes: 0 keeps everything; else at most 1 PiB (a larger figure is
// a unit slip, and -1 read as 2^64-1 must not pass as "keep").
inline constexpr uint64_t kMaxRetentionBytes = 1ull << 50;
// retention_age_ms: 0 keeps everything; else 1 s to 100 years (the log
// counts the age in µs: this bound keeps ms × 1000 far from overflow).
inline constexpr uint64_t kMinRetentionAgeMs = 1000;
inline constexpr uint64_t kMaxRetentionAgeMs = 100ull * 365 * 24 * 3600 * 1000;
// max_message_bytes: 1 byte to 16 MiB. One message travels in one frame
// (16 MiB + 64 KiB at most, docs/protocol.md); a larger body is a large
// message, sent in chunks (`floe produce --large`). A node may allow less
// (its --max-message-bytes): the stream may not allow more than its node.
inline constexpr uint32_t kMaxMessageBytesCeiling = 16u << 20;
// max_deliveries: 0 never dead-letters; else at most 10,000 deliveries.
inline constexpr uint32_t kMaxMaxDeliveries = 10000;

// OK if every field of `c` is inside its range above (and the ack wait inside
// kMinAckWaitMs..kMaxAckWaitMs); else InvalidArgument naming the field, the
// accepted range and the value given. Names (the dead-letter stream's) and
// the node's own limits are checked by the caller.
Status ValidateStreamSettings(const StreamConfig& c);

}  // namespace floe
