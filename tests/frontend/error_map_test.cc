// Errors are mapped once: a Status becomes a broker::Code in the core
// (broker/error_map.cc), a Code becomes a wire code at the floe protocol's
// edge (frontend/floe/error_map.cc). These tables are the protocol.
#include <set>

#include <gtest/gtest.h>

#include "broker/outcome.h"
#include "frontend/floe/error_map.h"
#include "wire/protocol.h"

namespace floe::frontend {
namespace {

using broker::Code;
using wire::WireError;

TEST(ErrorMapTest, EveryStatusCodeMapsToItsCoreCodeAndWireCode) {
  struct Row {
    ErrorCode status;
    Code core;
    WireError wire;
  };
  const Row rows[] = {
      {ErrorCode::kOk, Code::kOk, WireError::kOk},
      // A generic NotFound (a blob file, a record) is not a missing stream:
      // the core says kUnknownStream itself where it looked a stream up.
      {ErrorCode::kNotFound, Code::kInternal, WireError::kInternal},
      {ErrorCode::kCorruption, Code::kInternal, WireError::kInternal},
      {ErrorCode::kInvalidArgument, Code::kInvalidArgument, WireError::kInvalidArgument},
      {ErrorCode::kIOError, Code::kStorageFailed, WireError::kStorageFailed},
      {ErrorCode::kOutOfRange, Code::kOutOfRange, WireError::kOutOfRange},
      {ErrorCode::kUnavailable, Code::kUnavailable, WireError::kUnavailable},
      {ErrorCode::kAborted, Code::kUnavailable, WireError::kUnavailable},
      {ErrorCode::kFailedPrecondition, Code::kStreamReadOnly, WireError::kStreamReadOnly},
      {ErrorCode::kAlreadyExists, Code::kStreamExists, WireError::kStreamExists},
      {ErrorCode::kNoSpace, Code::kNoSpace, WireError::kDiskFull},
      {ErrorCode::kTimedOut, Code::kUnavailable, WireError::kUnavailable},
      {ErrorCode::kInternal, Code::kInternal, WireError::kInternal},
  };
  for (const Row& r : rows) {
    const Status s = r.status == ErrorCode::kOk ? Status::OK() : Status(r.status, "x");
    EXPECT_EQ(broker::CodeOf(s), r.core) << ErrorCodeName(r.status);
    EXPECT_EQ(ToWire(broker::CodeOf(s)), r.wire) << ErrorCodeName(r.status);
  }
  // Every ErrorCode is in the table above.
  EXPECT_EQ(std::size(rows), static_cast<size_t>(ErrorCode::kInternal) + 1);
  EXPECT_EQ(broker::CodeOf(Status(static_cast<ErrorCode>(99), "from the future")), Code::kInternal);
}

TEST(ErrorMapTest, EveryCoreCodeHasItsOwnWireCode) {
  std::set<WireError> seen;
  for (int c = 0; c <= static_cast<int>(Code::kDuplicateTooOld); ++c) {
    const Code code = static_cast<Code>(c);
    const WireError w = ToWire(code);
    EXPECT_NE(wire::WireErrorName(w), "UNKNOWN_ERROR") << broker::CodeName(code);
    EXPECT_TRUE(seen.insert(w).second) << broker::CodeName(code) << " shares a wire code";
  }
  // A full disk has its own retriable code (24), not a failed write's.
  EXPECT_EQ(ToWire(Code::kNoSpace), WireError::kDiskFull);
  EXPECT_TRUE(wire::IsRetriable(WireError::kDiskFull));
}

TEST(ErrorMapTest, RetriabilityFollowsTheStatusRetryRules) {
  // status.h: unavailable = retry the call, aborted = retry the transaction,
  // failed precondition = do not retry; an I/O failure left a hole: resend.
  auto retriable = [](const Status& s) { return wire::IsRetriable(ToWire(broker::CodeOf(s))); };
  EXPECT_TRUE(retriable(Status::Unavailable("busy")));
  EXPECT_TRUE(retriable(Status::Aborted("lost a race")));
  EXPECT_TRUE(retriable(Status::TimedOut("slow")));
  EXPECT_TRUE(retriable(Status::IOError("eio")));
  EXPECT_TRUE(retriable(Status::NoSpace("enospc")));
  EXPECT_FALSE(retriable(Status::FailedPrecondition("read-only")));
  EXPECT_FALSE(retriable(Status::InvalidArgument("bad")));
  EXPECT_FALSE(retriable(Status::Corruption("crc")));
  EXPECT_FALSE(retriable(Status::Internal("bug")));
  EXPECT_FALSE(retriable(Status::OK()));
}

TEST(ErrorMapTest, NotOwnerWithoutAnAddressIsRetryLater) {
  EXPECT_EQ(ToWire(broker::Failure{Code::kNotOwner, "moved", "127.0.0.1:7651"}), WireError::kNotOwner);
  EXPECT_EQ(ToWire(broker::Failure{Code::kNotOwner, "moving", ""}), WireError::kUnavailable);
  // The ERROR frame carries the address to go to.
  const std::string f = ErrorFrame(7, broker::Failure{Code::kNotOwner, "moved", "127.0.0.1:7651"});
  auto h = wire::DecodeFrameHeader({f.data(), wire::kFrameHeaderSize}, 1 << 20);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->request_id, 7u);
  auto e = wire::DecodeBodyAs<wire::Error>({f.data() + wire::kFrameHeaderSize, f.size() - wire::kFrameHeaderSize});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, WireError::kNotOwner);
  EXPECT_EQ(e->redirect, "127.0.0.1:7651");
  EXPECT_EQ(e->message, "moved");
}

}  // namespace
}  // namespace floe::frontend
