#include "frontend/floe/error_map.h"

#include "wire/protocol.h"

namespace floe::frontend {

wire::WireError ToWire(broker::Code code) {
  using broker::Code;
  using wire::WireError;
  switch (code) {
    case Code::kOk: return WireError::kOk;
    case Code::kInvalidArgument: return WireError::kInvalidArgument;
    case Code::kInvalidName: return WireError::kInvalidName;
    case Code::kMessageTooLarge: return WireError::kMessageTooLarge;
    case Code::kUnknownStream: return WireError::kUnknownStream;
    case Code::kStreamExists: return WireError::kStreamExists;
    case Code::kNoSession: return WireError::kNoSession;
    case Code::kNotOwner: return WireError::kNotOwner;
    case Code::kUnavailable: return WireError::kUnavailable;
    case Code::kStorageFailed: return WireError::kStorageFailed;
    case Code::kStreamReadOnly: return WireError::kStreamReadOnly;
    case Code::kNoSpace: return WireError::kDiskFull;
    case Code::kTooManyInFlight: return WireError::kTooManyInFlight;
    case Code::kShuttingDown: return WireError::kShuttingDown;
    case Code::kInternal: return WireError::kInternal;
    case Code::kNotDelivered: return WireError::kNotDelivered;
    case Code::kOutOfRange: return WireError::kOutOfRange;
    case Code::kDuplicateTooOld: return WireError::kDuplicateTooOld;
  }
  return WireError::kInternal;
}

wire::WireError ToWire(const broker::Failure& f) {
  if (f.code == broker::Code::kNotOwner && f.redirect.empty()) return wire::WireError::kUnavailable;
  return ToWire(f.code);
}

std::string ErrorFrame(uint64_t request_id, const broker::Failure& f) {
  const wire::WireError code = ToWire(f);
  std::string out;
  wire::AppendFrame(&out, request_id, wire::Error{code, wire::IsRetriable(code), f.message, f.redirect});
  return out;
}

}  // namespace floe::frontend
