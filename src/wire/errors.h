// Wire error codes. Numbers are pinned: they are the protocol (docs/protocol.md).
// The node maps the broker core's codes to these once, at the floe
// protocol's edge (src/frontend/floe/error_map.cc).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/status.h"

namespace floe::wire {

enum class WireError : uint16_t {
  kOk = 0,
  kMalformedFrame = 1,      // the frame could not be decoded; the connection closes
  kUnsupportedVersion = 2,
  kUnknownType = 3,
  kFrameTooLarge = 4,
  kMessageTooLarge = 5,
  kUnknownStream = 6,
  kStreamExists = 7,
  kInvalidArgument = 8,
  kNoSession = 9,           // a request that needs a session came before SESSION_OPEN
  kSessionBusy = 10,        // reserved: never sent (a newer connection takes a session over)
  kNotOwner = 11,           // this node does not own the stream (redirect)
  kUnavailable = 12,        // transient: retry the same request
  kStorageFailed = 13,      // the write failed; the message was not stored: resend it
  kStreamReadOnly = 14,     // a failed precondition; no longer sent for a failed write (the stream heals: UNAVAILABLE)
  kTooManyConnections = 15,
  kTooManyInFlight = 16,
  kShuttingDown = 17,       // the node is stopping: reconnect elsewhere or later
  kInternal = 18,
  kUnknownConsumer = 19,
  kInvalidName = 20,
  kNotDelivered = 21,       // an answer for a seq that is not pending for this consumer
  kOutOfRange = 22,         // a seq below the stream's first seq (retention)
  kDuplicateTooOld = 23,    // a producer seq older than the stream's dedup window
  kDiskFull = 24,           // the node's data disk is full: retry with backoff (the message says the room needed)
  kNotAuthorized = 25,      // v2: the user may not make this request (whether the stream exists is not said)
  kAuthFailed = 26,         // v2: HELLO without valid credentials on a node that needs them (or too many
                            // failed logins from the address); the connection closes
};

std::string_view WireErrorName(WireError e);
// Whether resending the same request can succeed.
bool IsRetriable(WireError e);

}  // namespace floe::wire
