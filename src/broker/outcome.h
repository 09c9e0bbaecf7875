// What a broker-core call answers, in the core's own terms. The core knows
// no wire format: each front end maps a Code once, at its edge, to what its
// protocol says (the floe protocol: src/frontend/floe/error_map.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "base/status.h"

namespace floe::broker {

enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument,   // the request can never succeed as sent
  kInvalidName,       // a stream or consumer name breaks the naming rule
  kMessageTooLarge,
  kUnknownStream,
  kStreamExists,
  kNoSession,         // a request that needs a session of another kind
  kNotOwner,          // this node does not serve the stream: go to Failure::redirect ("" = unknown yet)
  kUnavailable,       // transient: retry the same request
  kStorageFailed,     // the write failed and the message was not stored: resend it
  kStreamReadOnly,    // a failed precondition: the stream refuses the request as it stands
  kNoSpace,           // the data disk is full: retry with backoff once space is freed
  kTooManyInFlight,
  kShuttingDown,
  kInternal,
  kNotDelivered,      // an answer for a seq that is not pending for this consumer
  kOutOfRange,
  kDuplicateTooOld,   // a producer seq older than the stream's dedup window
};

std::string_view CodeName(Code c);

struct Failure {
  Code code = Code::kInternal;
  std::string message;
  std::string redirect;  // kNotOwner: the serving node's HOST:PORT, if known
};

template <typename T>
using Outcome = tl::expected<T, Failure>;

inline tl::unexpected<Failure> Fail(Code code, std::string message, std::string redirect = {}) {
  return tl::unexpected<Failure>(Failure{code, std::move(message), std::move(redirect)});
}

// The core's one mapping from a Status (of the log, the bank, a blob file)
// to a Code. Callers that know more (a missing blob file is not an unknown
// stream) say so themselves instead of calling this.
Code CodeOf(const Status& s);
Failure FailureOf(const Status& s);

}  // namespace floe::broker
