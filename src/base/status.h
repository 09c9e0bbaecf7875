// Status and Result<T>: floe's one error mechanism.
//
// A Status is OK (free: no allocation) or an ErrorCode with a message. The
// codes stay distinct because callers branch on them:
//   kUnavailable        retry the call (transient: a full queue, a busy peer)
//   kAborted            retry the whole transaction (a lost race)
//   kFailedPrecondition do not retry until the state changes (read-only
//                       stream after an I/O failure, stream closed)
//   kCorruption         data on disk failed its checksum or framing
//   kIOError            the operating system refused a file operation
// Result<T> is tl::expected<T, Status>, the C++23 std::expected API.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace floe {

enum class ErrorCode : int {
  kOk = 0,
  kNotFound = 1,
  kCorruption = 2,
  kInvalidArgument = 3,
  kIOError = 4,
  kOutOfRange = 5,
  kUnavailable = 6,
  kAborted = 7,
  kFailedPrecondition = 8,
  kAlreadyExists = 9,
  kNoSpace = 10,
  kTimedOut = 11,
  kInternal = 12,
};

std::string_view ErrorCodeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string_view message);

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view m) { return {ErrorCode::kNotFound, m}; }
  static Status Corruption(std::string_view m) { return {ErrorCode::kCorruption, m}; }
  static Status InvalidArgument(std::string_view m) { return {ErrorCode::kInvalidArgument, m}; }
  static Status IOError(std::string_view m) { return {ErrorCode::kIOError, m}; }
  static Status OutOfRange(std::string_view m) { return {ErrorCode::kOutOfRange, m}; }
  static Status Unavailable(std::string_view m) { return {ErrorCode::kUnavailable, m}; }
  static Status Aborted(std::string_view m) { return {ErrorCode::kAborted, m}; }
  static Status FailedPrecondition(std::string_view m) { return {ErrorCode::kFailedPrecondition, m}; }
  static Status AlreadyExists(std::string_view m) { return {ErrorCode::kAlreadyExists, m}; }
  static Status NoSpace(std::string_view m) { return {ErrorCode::kNoSpace, m}; }
  static Status TimedOut(std::string_view m) { return {ErrorCode::kTimedOut, m}; }
  static Status Internal(std::string_view m) { return {ErrorCode::kInternal, m}; }
  // An I/O failure from errno: ENOSPC/EDQUOT become kNoSpace, others kIOError.
  static Status FromErrno(int err, std::string_view context);

  bool ok() const { return rep_ == nullptr; }
  ErrorCode code() const { return rep_ ? rep_->code : ErrorCode::kOk; }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : std::string_view(); }
  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  bool IsNotFound() const { return code() == ErrorCode::kNotFound; }
  bool IsCorruption() const { return code() == ErrorCode::kCorruption; }

 private:
  struct Rep {
    ErrorCode code;
    std::string message;
  };
  // Shared and immutable: copying a Status is cheap and one status can be
  // handed to every waiter of a group commit.
  std::shared_ptr<const Rep> rep_;
};

template <typename T>
using Result = tl::expected<T, Status>;

inline tl::unexpected<Status> Err(Status s) { return tl::unexpected<Status>(std::move(s)); }

}  // namespace floe

// Propagates a non-OK Status from an expression returning Status.
#define FLOE_RETURN_IF_ERROR(expr)      \
  do {                                  \
    ::floe::Status floe_status_ = (expr); \
    if (!floe_status_.ok()) return floe_status_; \
  } while (0)

// The same, from a function returning Result<T>.
#define FLOE_RETURN_ERR_IF_ERROR(expr)           \
  do {                                           \
    ::floe::Status floe_status_ = (expr);          \
    if (!floe_status_.ok()) return ::floe::Err(floe_status_); \
  } while (0)
