// Leases and fenced writes: part of the bank conformance suite (every
// backend runs these through BankConformanceTest).
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "bank/bank_conformance.h"

namespace floe::bank::conformance {
namespace {

constexpr int64_t kTtl = 1000;
constexpr int64_t kT0 = 1'000'000;  // a wall-clock time, ms (tests pass time explicitly)

}  // namespace

TEST_P(BankConformanceTest, FirstHolderGetsEpochOne) {
  auto l = bank_->AcquireLease("streams/a", "node-1", kTtl, kT0);
  ASSERT_TRUE(l.has_value()) << l.error().ToString();
  EXPECT_EQ(l->epoch, 1u);
  EXPECT_EQ(l->owner, "node-1");
  EXPECT_EQ(l->expires_ms, kT0 + kTtl);
  auto read = bank_->GetLease("streams/a");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->owner, "node-1");
  EXPECT_EQ(read->epoch, 1u);
  EXPECT_TRUE(bank_->GetLease("streams/never").error().IsNotFound());
}

TEST_P(BankConformanceTest, ALiveLeaseKeepsOtherOwnersOut) {
  ASSERT_TRUE(bank_->AcquireLease("s", "node-1", kTtl, kT0).has_value());
  auto other = bank_->AcquireLease("s", "node-2", kTtl, kT0 + kTtl - 1);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(bank_->GetLease("s")->owner, "node-1");
}

TEST_P(BankConformanceTest, TheSameOwnerRenewsWithTheSameEpoch) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  auto b = bank_->AcquireLease("s", "node-1", kTtl, kT0 + 500);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->epoch, a->epoch);
  EXPECT_EQ(b->expires_ms, kT0 + 500 + kTtl);
  auto c = bank_->RenewLease(*b, kTtl, kT0 + 900);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->epoch, a->epoch);
  EXPECT_EQ(c->expires_ms, kT0 + 900 + kTtl);
}

TEST_P(BankConformanceTest, AnExpiredLeaseGoesToANewHolderWithAHigherEpoch) {
  auto old = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(old.has_value());
  auto taken = bank_->AcquireLease("s", "node-2", kTtl, kT0 + kTtl);  // expired exactly now
  ASSERT_TRUE(taken.has_value()) << taken.error().ToString();
  EXPECT_EQ(taken->epoch, old->epoch + 1);
  // The old holder (paused past its lease) learns it lost it...
  auto renew = bank_->RenewLease(*old, kTtl, kT0 + kTtl + 1);
  ASSERT_FALSE(renew.has_value());
  EXPECT_EQ(renew.error().code(), ErrorCode::kAborted);
  EXPECT_EQ(bank_->ReleaseLease(*old).code(), ErrorCode::kAborted);
  // ...and the new holder still holds it.
  EXPECT_EQ(bank_->GetLease("s")->owner, "node-2");
  EXPECT_EQ(bank_->GetLease("s")->epoch, taken->epoch);
}

TEST_P(BankConformanceTest, FencedWritesFailOnceTheLeaseIsLost) {
  auto old = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(old.has_value());
  std::vector<Op> write{Bank::FencedBy(*old), Op::Put("cursor", "from node-1")};
  ASSERT_TRUE(bank_->Commit(write).has_value());
  auto taken = bank_->AcquireLease("s", "node-2", kTtl, kT0 + 2 * kTtl);
  ASSERT_TRUE(taken.has_value());
  // The paused node wakes up and tries to write with its old lease.
  std::vector<Op> stale{Bank::FencedBy(*old), Op::Put("cursor", "stale")};
  auto r = bank_->Commit(stale);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_EQ(bank_->Get("cursor")->value, "from node-1");
  std::vector<Op> fresh{Bank::FencedBy(*taken), Op::Put("cursor", "from node-2")};
  ASSERT_TRUE(bank_->Commit(fresh).has_value());
  EXPECT_EQ(bank_->Get("cursor")->value, "from node-2");
}

TEST_P(BankConformanceTest, ReleaseLetsTheNextHolderInAtOnceWithAHigherEpoch) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(bank_->ReleaseLease(*a).ok());
  EXPECT_EQ(bank_->GetLease("s")->expires_ms, 0);
  auto b = bank_->AcquireLease("s", "node-2", kTtl, kT0 + 1);  // long before the TTL
  ASSERT_TRUE(b.has_value()) << b.error().ToString();
  EXPECT_EQ(b->epoch, a->epoch + 1);
  auto c = bank_->AcquireLease("s", "node-1", kTtl, kT0 + 2);
  EXPECT_FALSE(c.has_value());
}

TEST_P(BankConformanceTest, EpochsSurviveReopen) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  Reopen();
  auto b = bank_->AcquireLease("s", "node-2", kTtl, kT0 + 5 * kTtl);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->epoch, 2u);
}

TEST_P(BankConformanceTest, TwoProcessesRacingForOneLeaseHaveOneWinner) {
  // Each round both processes try to take lease r and, if they got it, record
  // themselves as winner with a fenced write that must find no winner yet.
  constexpr int kRounds = 40;
  bank_.reset();  // no handle crosses fork()
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  auto race = [&](const std::string& me) -> int {
    auto b = GetParam().open(location_);
    if (!b) return 30;
    for (int r = 0; r < kRounds; ++r) {
      const std::string name = "race/" + std::to_string(r);
      auto l = (*b)->AcquireLease(name, me, 60'000, kT0);
      if (!l) {
        if (l.error().code() != ErrorCode::kUnavailable) return 31;
        continue;
      }
      std::vector<Op> win{Bank::FencedBy(*l), Op::Put("winner/" + std::to_string(r), me, 0)};
      if (!(*b)->Commit(win)) return 32;
    }
    return 0;
  };
  const pid_t pid = Fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(go[1]);
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(29);
    ::_exit(race("child"));
  }
  ::close(go[0]);
  char c = 1;
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  const int mine = race("parent");
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(mine, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  bank_ = Open();
  for (int r = 0; r < kRounds; ++r) {
    auto winner = bank_->Get("winner/" + std::to_string(r));
    ASSERT_TRUE(winner.has_value()) << "round " << r << " has no winner";
    auto lease = bank_->GetLease("race/" + std::to_string(r));
    ASSERT_TRUE(lease.has_value());
    EXPECT_EQ(lease->owner, winner->value) << "round " << r;
    EXPECT_EQ(lease->epoch, 1u) << "round " << r;
  }
}

}  // namespace floe::bank::conformance
