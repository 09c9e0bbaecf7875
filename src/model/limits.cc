#include "model/limits.h"

#include <fmt/format.h>

namespace floe {

Status ValidateStreamSettings(const StreamConfig& c) {
  if (c.retention_bytes > kMaxRetentionBytes)
    return Status::InvalidArgument(fmt::format(
        "retention bytes must be 0 (keep everything) or 1 to {} (1 PiB), got {}", kMaxRetentionBytes,
        c.retention_bytes));
  if (c.retention_age_ms != 0 && (c.retention_age_ms < kMinRetentionAgeMs || c.retention_age_ms > kMaxRetentionAgeMs))
    return Status::InvalidArgument(fmt::format(
        "retention age must be 0 (keep everything) or {} to {} ms (1 s to 100 years), got {}", kMinRetentionAgeMs,
        kMaxRetentionAgeMs, c.retention_age_ms));
  if (c.max_message_bytes == 0 || c.max_message_bytes > kMaxMessageBytesCeiling)
    return Status::InvalidArgument(fmt::format(
        "max message bytes must be 1 to {} (16 MiB; larger bodies are sent as large messages), got {}",
        kMaxMessageBytesCeiling, c.max_message_bytes));
  if (c.ack_wait_ms < kMinAckWaitMs || c.ack_wait_ms > kMaxAckWaitMs)
    return Status::InvalidArgument(
        fmt::format("ack wait must be {} to {} ms, got {}", kMinAckWaitMs, kMaxAckWaitMs, c.ack_wait_ms));
  if (c.max_deliveries > kMaxMaxDeliveries)
    return Status::InvalidArgument(fmt::format(
        "max deliveries must be 0 (never dead-letter) to {}, got {}", kMaxMaxDeliveries, c.max_deliveries));
  if (c.sync != SyncMode::kFdatasync && c.sync != SyncMode::kNone)
    return Status::InvalidArgument("sync must be fdatasync or none");
  return Status::OK();
}

}  // namespace floe
