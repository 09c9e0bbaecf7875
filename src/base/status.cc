#include "base/status.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace floe {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kCorruption: return "Corruption";
    case ErrorCode::kInvalidArgument: return "InvalidArgument";
    case ErrorCode::kIOError: return "IOError";
    case ErrorCode::kOutOfRange: return "OutOfRange";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kAborted: return "Aborted";
    case ErrorCode::kFailedPrecondition: return "FailedPrecondition";
    case ErrorCode::kAlreadyExists: return "AlreadyExists";
    case ErrorCode::kNoSpace: return "NoSpace";
    case ErrorCode::kTimedOut: return "TimedOut";
    case ErrorCode::kInternal: return "Internal";
  }
  return "Unknown";
}

Status::Status(ErrorCode code, std::string_view message) {
  if (code != ErrorCode::kOk) rep_ = std::make_shared<const Rep>(Rep{code, std::string(message)});
}

Status Status::FromErrno(int err, std::string_view context) {
  std::string msg = fmt::format("{}: {}", context, std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return Status(ErrorCode::kNoSpace, msg);
  return Status(ErrorCode::kIOError, msg);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return fmt::format("{}: {}", ErrorCodeName(code()), message());
}

}  // namespace floe
