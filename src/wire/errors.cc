#include "wire/errors.h"

namespace floe::wire {

std::string_view WireErrorName(WireError e) {
  switch (e) {
    case WireError::kOk: return "OK";
    case WireError::kMalformedFrame: return "MALFORMED_FRAME";
    case WireError::kUnsupportedVersion: return "UNSUPPORTED_VERSION";
    case WireError::kUnknownType: return "UNKNOWN_TYPE";
    case WireError::kFrameTooLarge: return "FRAME_TOO_LARGE";
    case WireError::kMessageTooLarge: return "MESSAGE_TOO_LARGE";
    case WireError::kUnknownStream: return "UNKNOWN_STREAM";
    case WireError::kStreamExists: return "STREAM_EXISTS";
    case WireError::kInvalidArgument: return "INVALID_ARGUMENT";
    case WireError::kNoSession: return "NO_SESSION";
    case WireError::kSessionBusy: return "SESSION_BUSY";
    case WireError::kNotOwner: return "NOT_OWNER";
    case WireError::kUnavailable: return "UNAVAILABLE";
    case WireError::kStorageFailed: return "STORAGE_FAILED";
    case WireError::kStreamReadOnly: return "STREAM_READ_ONLY";
    case WireError::kTooManyConnections: return "TOO_MANY_CONNECTIONS";
    case WireError::kTooManyInFlight: return "TOO_MANY_IN_FLIGHT";
    case WireError::kShuttingDown: return "SHUTTING_DOWN";
    case WireError::kInternal: return "INTERNAL";
    case WireError::kUnknownConsumer: return "UNKNOWN_CONSUMER";
    case WireError::kInvalidName: return "INVALID_NAME";
    case WireError::kNotDelivered: return "NOT_DELIVERED";
    case WireError::kOutOfRange: return "OUT_OF_RANGE";
    case WireError::kDuplicateTooOld: return "DUPLICATE_TOO_OLD";
    case WireError::kDiskFull: return "DISK_FULL";
    case WireError::kNotAuthorized: return "NOT_AUTHORIZED";
    case WireError::kAuthFailed: return "AUTH_FAILED";
  }
  return "UNKNOWN_ERROR";
}

bool IsRetriable(WireError e) {
  switch (e) {
    case WireError::kSessionBusy:
    case WireError::kNotOwner:
    case WireError::kUnavailable:
    case WireError::kStorageFailed:
    case WireError::kTooManyConnections:
    case WireError::kTooManyInFlight:
    case WireError::kShuttingDown:
    case WireError::kDiskFull:
      return true;
    default:
      return false;
  }
}

}  // namespace floe::wire
