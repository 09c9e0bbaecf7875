#include "broker/outcome.h"

namespace floe::broker {

std::string_view CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kInvalidName: return "invalid name";
    case Code::kMessageTooLarge: return "message too large";
    case Code::kUnknownStream: return "unknown stream";
    case Code::kStreamExists: return "stream exists";
    case Code::kNoSession: return "no session";
    case Code::kNotOwner: return "not owner";
    case Code::kUnavailable: return "unavailable";
    case Code::kStorageFailed: return "storage failed";
    case Code::kStreamReadOnly: return "stream read-only";
    case Code::kNoSpace: return "no space";
    case Code::kTooManyInFlight: return "too many in flight";
    case Code::kShuttingDown: return "shutting down";
    case Code::kInternal: return "internal";
    case Code::kNotDelivered: return "not delivered";
    case Code::kOutOfRange: return "out of range";
    case Code::kDuplicateTooOld: return "duplicate too old";
  }
  return "unknown";
}

Code CodeOf(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kOk: return Code::kOk;
    // A generic NotFound is not a stream's absence: the callers that look a
    // stream up say kUnknownStream themselves.
    case ErrorCode::kNotFound: return Code::kInternal;
    case ErrorCode::kInvalidArgument: return Code::kInvalidArgument;
    case ErrorCode::kAlreadyExists: return Code::kStreamExists;
    case ErrorCode::kOutOfRange: return Code::kOutOfRange;
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimedOut:
    case ErrorCode::kAborted: return Code::kUnavailable;
    case ErrorCode::kFailedPrecondition: return Code::kStreamReadOnly;
    case ErrorCode::kIOError: return Code::kStorageFailed;
    case ErrorCode::kNoSpace: return Code::kNoSpace;
    case ErrorCode::kCorruption:
    case ErrorCode::kInternal: return Code::kInternal;
  }
  return Code::kInternal;
}

Failure FailureOf(const Status& s) { return Failure{CodeOf(s), std::string(s.message()), {}}; }

}  // namespace floe::broker
