// Status and Result: the codes stay distinct (recovery and retry logic branch
// on them), an OK status is free, and the propagation macros return early.
#include "base/status.h"

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace floe {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kOk);
  EXPECT_TRUE(s.message().empty());
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(StatusTest, OkCodeWithMessageIsStillOk) {
  // The message of an OK status is dropped: OK never allocates.
  Status s(ErrorCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(s.message().empty());
}

TEST(StatusTest, FactoriesSetCodeAndMessage) {
  struct Case {
    Status status;
    ErrorCode code;
    const char* name;
  };
  const Case cases[] = {
      {Status::NotFound("m"), ErrorCode::kNotFound, "NotFound"},
      {Status::Corruption("m"), ErrorCode::kCorruption, "Corruption"},
      {Status::InvalidArgument("m"), ErrorCode::kInvalidArgument, "InvalidArgument"},
      {Status::IOError("m"), ErrorCode::kIOError, "IOError"},
      {Status::OutOfRange("m"), ErrorCode::kOutOfRange, "OutOfRange"},
      {Status::Unavailable("m"), ErrorCode::kUnavailable, "Unavailable"},
      {Status::Aborted("m"), ErrorCode::kAborted, "Aborted"},
      {Status::FailedPrecondition("m"), ErrorCode::kFailedPrecondition, "FailedPrecondition"},
      {Status::AlreadyExists("m"), ErrorCode::kAlreadyExists, "AlreadyExists"},
      {Status::NoSpace("m"), ErrorCode::kNoSpace, "NoSpace"},
      {Status::TimedOut("m"), ErrorCode::kTimedOut, "TimedOut"},
      {Status::Internal("m"), ErrorCode::kInternal, "Internal"},
  };
  std::set<std::string> names;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.message(), "m");
    EXPECT_EQ(ErrorCodeName(c.code), c.name);
    EXPECT_EQ(c.status.ToString(), std::string(c.name) + ": m");
    names.insert(std::string(ErrorCodeName(c.code)));
  }
  EXPECT_EQ(names.size(), std::size(cases));  // every code has its own name
  EXPECT_TRUE(Status::NotFound("x").IsNotFound());
  EXPECT_FALSE(Status::NotFound("x").IsCorruption());
  EXPECT_TRUE(Status::Corruption("x").IsCorruption());
  EXPECT_FALSE(Status::OK().IsCorruption());
}

TEST(StatusTest, FromErrnoSeparatesNoSpace) {
  Status full = Status::FromErrno(ENOSPC, "write f");
  EXPECT_EQ(full.code(), ErrorCode::kNoSpace);
  EXPECT_NE(full.message().find("write f"), std::string_view::npos);
  EXPECT_NE(full.message().find(std::strerror(ENOSPC)), std::string_view::npos);
  EXPECT_EQ(Status::FromErrno(EDQUOT, "q").code(), ErrorCode::kNoSpace);
  Status io = Status::FromErrno(EIO, "fdatasync f");
  EXPECT_EQ(io.code(), ErrorCode::kIOError);
  EXPECT_EQ(io.message(), std::string("fdatasync f: ") + std::strerror(EIO));
}

TEST(StatusTest, CopiesShareTheSameOutcome) {
  Status a = Status::IOError("disk");
  Status b = a;
  Status c;
  c = b;
  EXPECT_EQ(b.code(), ErrorCode::kIOError);
  EXPECT_EQ(c.message(), "disk");
  // The copy outlives the original.
  {
    Status tmp = Status::Aborted("race");
    a = tmp;
  }
  EXPECT_EQ(a.code(), ErrorCode::kAborted);
  EXPECT_EQ(a.message(), "race");
  EXPECT_EQ(b.code(), ErrorCode::kIOError);
}

Status FailIf(bool fail) { return fail ? Status::Unavailable("busy") : Status::OK(); }

Status Twice(bool first, bool second, int* reached) {
  FLOE_RETURN_IF_ERROR(FailIf(first));
  ++*reached;
  FLOE_RETURN_IF_ERROR(FailIf(second));
  ++*reached;
  return Status::OK();
}

Result<int> Half(int v) {
  FLOE_RETURN_ERR_IF_ERROR(v % 2 == 0 ? Status::OK() : Status::InvalidArgument("odd"));
  return v / 2;
}

TEST(StatusTest, ReturnIfErrorStopsAtTheFirstFailure) {
  int reached = 0;
  EXPECT_TRUE(Twice(false, false, &reached).ok());
  EXPECT_EQ(reached, 2);
  reached = 0;
  Status s = Twice(false, true, &reached);
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable);
  EXPECT_EQ(reached, 1);
  reached = 0;
  EXPECT_EQ(Twice(true, false, &reached).code(), ErrorCode::kUnavailable);
  EXPECT_EQ(reached, 0);
}

TEST(StatusTest, ResultCarriesValueOrStatus) {
  Result<int> ok = Half(8);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, 4);
  Result<int> bad = Half(7);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message(), "odd");
  Result<std::string> err = Err(Status::NotFound("gone"));
  EXPECT_FALSE(err);
  EXPECT_TRUE(err.error().IsNotFound());
}

}  // namespace
}  // namespace floe
