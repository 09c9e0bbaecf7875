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

static bool Clock(const BankBackend& b) { return b.clock_leases; }

TEST_P(BankConformanceTest, FirstHolderGetsAnEpoch) {
  auto l = bank_->AcquireLease("streams/a", "node-1", kTtl, kT0);
  ASSERT_TRUE(l.has_value()) << l.error().ToString();
  EXPECT_GT(l->epoch, 0u);
  EXPECT_EQ(l->owner, "node-1");
  if (Clock(GetParam())) {
    EXPECT_EQ(l->epoch, 1u);
    EXPECT_EQ(l->expires_ms, kT0 + kTtl);
  }
  auto read = bank_->GetLease("streams/a");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->owner, "node-1");
  EXPECT_EQ(read->epoch, l->epoch);
  EXPECT_TRUE(bank_->GetLease("streams/never").error().IsNotFound());
}

TEST_P(BankConformanceTest, ALiveLeaseKeepsOtherOwnersOut) {
  ASSERT_TRUE(bank_->AcquireLease("s", "node-1", kTtl, kT0).has_value());
  auto other = bank_->AcquireLease("s", "node-2", kTtl, kT0 + kTtl - 1);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(bank_->GetLease("s")->owner, "node-1");
  // Also from another handle (another process, on etcd another etcd lease).
  auto second = Open();
  ASSERT_NE(second, nullptr);
  auto from_second = second->AcquireLease("s", "node-2", kTtl, kT0 + 1);
  ASSERT_FALSE(from_second.has_value());
  EXPECT_EQ(from_second.error().code(), ErrorCode::kUnavailable);
}

TEST_P(BankConformanceTest, TheSameOwnerRenewsWithTheSameEpoch) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  auto b = bank_->AcquireLease("s", "node-1", kTtl, kT0 + 500);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->epoch, a->epoch);
  auto c = bank_->RenewLease(*b, kTtl, kT0 + 900);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->epoch, a->epoch);
  if (Clock(GetParam())) {
    EXPECT_EQ(b->expires_ms, kT0 + 500 + kTtl);
    EXPECT_EQ(c->expires_ms, kT0 + 900 + kTtl);
  }
  // The renewed lease still fences writes.
  std::vector<Op> write{bank_->FencedBy(*c), Op::Put("cursor", "x")};
  EXPECT_TRUE(bank_->Commit(write).has_value());
}

TEST_P(BankConformanceTest, AnExpiredLeaseGoesToANewHolderWithAHigherEpoch) {
  if (!Clock(GetParam())) GTEST_SKIP() << "expiry is the bank's own: see the backend's tests";
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
  std::vector<Op> write{bank_->FencedBy(*old), Op::Put("cursor", "from node-1")};
  ASSERT_TRUE(bank_->Commit(write).has_value());
  // Lost: by expiry where the test drives the clock; else released (as a
  // node does that gave the stream up) and taken by another handle.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  Result<Lease> taken = Err(Status::Unavailable("not yet"));
  if (Clock(GetParam())) {
    taken = other->AcquireLease("s", "node-2", kTtl, kT0 + 2 * kTtl);
  } else {
    ASSERT_TRUE(bank_->ReleaseLease(*old).ok());
    taken = other->AcquireLease("s", "node-2", kTtl, kT0);
  }
  ASSERT_TRUE(taken.has_value()) << taken.error().ToString();
  EXPECT_GT(taken->epoch, old->epoch);
  // The paused node wakes up and tries to write with its old lease.
  std::vector<Op> stale{bank_->FencedBy(*old), Op::Put("cursor", "stale")};
  auto r = bank_->Commit(stale);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kAborted);
  EXPECT_EQ(bank_->Get("cursor")->value, "from node-1");
  auto renew = bank_->RenewLease(*old, kTtl, kT0 + 2 * kTtl + 1);
  ASSERT_FALSE(renew.has_value());
  EXPECT_EQ(renew.error().code(), ErrorCode::kAborted);
  std::vector<Op> fresh{other->FencedBy(*taken), Op::Put("cursor", "from node-2")};
  ASSERT_TRUE(other->Commit(fresh).has_value());
  EXPECT_EQ(bank_->Get("cursor")->value, "from node-2");
}

// A node renews all its leases at once; one of them lost (taken by another
// node) is reported lost and the others are renewed, with records that
// fenced writes accept.
TEST_P(BankConformanceTest, RenewingManyAtOnceKeepsAllButTheLostOne) {
  constexpr int kLeases = 200;
  std::vector<Lease> held;
  for (int i = 0; i < kLeases; ++i) {
    auto l = bank_->AcquireLease("stream/s" + std::to_string(i), "node-1", kTtl, kT0);
    ASSERT_TRUE(l.has_value()) << l.error().ToString();
    held.push_back(*l);
  }
  // Lease 7 goes to node-2: by expiry where the test drives the clock, else
  // released and taken.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  Result<Lease> taken = Err(Status::Unavailable("not yet"));
  int64_t now = kT0 + kTtl / 2;
  if (Clock(GetParam())) {
    // Renew all but 7 first, so that only 7 expires.
    std::vector<Lease> others;
    for (int i = 0; i < kLeases; ++i)
      if (i != 7) others.push_back(held[i]);
    auto r = bank_->RenewLeases(others, kTtl, now);
    ASSERT_EQ(r.size(), others.size());
    for (int i = 0, k = 0; i < kLeases; ++i) {
      if (i == 7) continue;
      ASSERT_TRUE(r[k].has_value()) << r[k].error().ToString();
      held[i] = *r[k++];
    }
    now = kT0 + kTtl;  // lease 7 expires now; the others hold until kT0 + 1.5 TTL
    taken = other->AcquireLease("stream/s7", "node-2", kTtl, now);
  } else {
    ASSERT_TRUE(bank_->ReleaseLease(held[7]).ok());
    taken = other->AcquireLease("stream/s7", "node-2", kTtl, now);
  }
  ASSERT_TRUE(taken.has_value()) << taken.error().ToString();

  auto renewed = bank_->RenewLeases(held, kTtl, now + 1);
  ASSERT_EQ(renewed.size(), held.size());
  for (int i = 0; i < kLeases; ++i) {
    if (i == 7) {
      ASSERT_FALSE(renewed[i].has_value()) << "the lost lease was renewed";
      EXPECT_EQ(renewed[i].error().code(), ErrorCode::kAborted);
      continue;
    }
    ASSERT_TRUE(renewed[i].has_value()) << i << ": " << renewed[i].error().ToString();
    EXPECT_EQ(renewed[i]->epoch, held[i].epoch);
    EXPECT_EQ(renewed[i]->owner, "node-1");
  }
  // The renewed records fence writes; the lost one does not.
  std::vector<Op> ok{bank_->FencedBy(*renewed[3]), bank_->FencedBy(*renewed[150]), Op::Put("c", "renewed")};
  EXPECT_TRUE(bank_->Commit(ok).has_value());
  std::vector<Op> stale{bank_->FencedBy(held[7]), Op::Put("c", "stale")};
  EXPECT_FALSE(bank_->Commit(stale).has_value());
  EXPECT_EQ(bank_->GetLease("stream/s7")->owner, "node-2");
  if (Clock(GetParam())) {
    // Still held by node-1 after the batch: nobody else may take one.
    auto refused = other->AcquireLease("stream/s150", "node-2", kTtl, now + 2);
    EXPECT_FALSE(refused.has_value());
  }
}

// One read lists a prefix's leases as GetLease gives them one by one.
TEST_P(BankConformanceTest, ListLeasesReadsAPrefixAsGetLeaseDoes) {
  for (const char* name : {"stream/a", "stream/b", "stream/c", "other/x"})
    ASSERT_TRUE(bank_->AcquireLease(name, std::string("node-") + name[7], kTtl, kT0).has_value());
  auto b = bank_->GetLease("stream/b");
  ASSERT_TRUE(b.has_value());
  ASSERT_TRUE(bank_->ReleaseLease(*b).ok());
  auto listed = bank_->ListLeases("stream/");
  ASSERT_TRUE(listed.has_value()) << listed.error().ToString();
  std::vector<std::string> names;
  for (const Lease& l : *listed) {
    names.push_back(l.name);
    auto one = bank_->GetLease(l.name);
    ASSERT_TRUE(one.has_value()) << l.name;
    EXPECT_EQ(l.owner, one->owner);
    EXPECT_EQ(l.epoch, one->epoch);
    EXPECT_EQ(l.expires_ms, one->expires_ms);
    EXPECT_EQ(l.version, one->version);
  }
  // A released lease is a released record (records) or absent (native).
  if (Clock(GetParam())) EXPECT_EQ(names, (std::vector<std::string>{"stream/a", "stream/b", "stream/c"}));
  else EXPECT_EQ(names, (std::vector<std::string>{"stream/a", "stream/c"}));
}

// A restarted process of the same owner (another handle: on etcd another
// etcd lease) takes its predecessor's live lease at once with a higher
// epoch; the predecessor's Lease is fenced from then on, the successor's
// fences writes and keeps other owners out, and it does not depend on the
// predecessor's handle (closing that one does not free it).
TEST_P(BankConformanceTest, ASuccessorTakesItsPredecessorsLiveLeaseWithAHigherEpoch) {
  auto before = bank_->AcquireLease("stream/s", "node-1", kTtl, kT0);
  ASSERT_TRUE(before.has_value()) << before.error().ToString();
  auto next = Open();
  ASSERT_NE(next, nullptr);
  auto seen = next->GetLease("stream/s");
  ASSERT_TRUE(seen.has_value()) << seen.error().ToString();
  auto taken = next->SucceedLease(*seen, kTtl, kT0 + 1);  // long before the predecessor's expires
  ASSERT_TRUE(taken.has_value()) << taken.error().ToString();
  EXPECT_EQ(taken->owner, "node-1");
  EXPECT_GT(taken->epoch, before->epoch);
  if (Clock(GetParam())) {
    EXPECT_EQ(taken->epoch, before->epoch + 1);
    EXPECT_EQ(taken->expires_ms, kT0 + 1 + kTtl);
  }
  EXPECT_EQ(next->GetLease("stream/s")->epoch, taken->epoch);

  // The predecessor is fenced: its renewal and fenced writes fail.
  auto renewed = bank_->RenewLease(*before, kTtl, kT0 + 2);
  ASSERT_FALSE(renewed.has_value()) << "the predecessor renewed a lease its successor took";
  EXPECT_EQ(renewed.error().code(), ErrorCode::kAborted);
  std::vector<Op> stale{bank_->FencedBy(*before), Op::Put("cursor", "from the predecessor")};
  EXPECT_FALSE(bank_->Commit(stale).has_value());
  std::vector<Op> fresh{next->FencedBy(*taken), Op::Put("cursor", "from the successor")};
  ASSERT_TRUE(next->Commit(fresh).has_value());
  // The same proof twice is refused: the lease moved since it was read.
  auto again = next->SucceedLease(*seen, kTtl, kT0 + 3);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kAborted);
  // Held: other owners stay out, and the successor renews it.
  auto other = bank_->AcquireLease("stream/s", "node-2", kTtl, kT0 + 4);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code(), ErrorCode::kUnavailable);
  auto kept = next->RenewLease(*taken, kTtl, kT0 + 5);
  ASSERT_TRUE(kept.has_value()) << kept.error().ToString();
  EXPECT_EQ(kept->epoch, taken->epoch);
  // The predecessor's handle closes (etcd: its etcd lease is revoked): the
  // successor's lock is not attached to it.
  Reopen();
  auto after = bank_->GetLease("stream/s");
  ASSERT_TRUE(after.has_value()) << after.error().ToString();
  EXPECT_EQ(after->epoch, taken->epoch);
  EXPECT_EQ(bank_->Get("cursor")->value, "from the successor");
}

TEST_P(BankConformanceTest, ReleaseLetsTheNextHolderInAtOnceWithAHigherEpoch) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(bank_->ReleaseLease(*a).ok());
  auto released = bank_->GetLease("s");
  if (released) {
    EXPECT_EQ(released->expires_ms, 0);
  } else {
    EXPECT_TRUE(released.error().IsNotFound()) << released.error().ToString();
  }
  auto b = bank_->AcquireLease("s", "node-2", kTtl, kT0 + 1);  // long before the TTL
  ASSERT_TRUE(b.has_value()) << b.error().ToString();
  EXPECT_GT(b->epoch, a->epoch);
  if (Clock(GetParam())) EXPECT_EQ(b->epoch, a->epoch + 1);
  auto c = bank_->AcquireLease("s", "node-1", kTtl, kT0 + 2);
  EXPECT_FALSE(c.has_value());
  EXPECT_EQ(bank_->ReleaseLease(*a).code(), ErrorCode::kAborted) << "released twice";
}

TEST_P(BankConformanceTest, EpochsSurviveReopen) {
  auto a = bank_->AcquireLease("s", "node-1", kTtl, kT0);
  ASSERT_TRUE(a.has_value());
  Reopen();  // etcd: a closed handle revokes its leases; records: the lease runs out
  auto b = bank_->AcquireLease("s", "node-2", kTtl, kT0 + 5 * kTtl);
  ASSERT_TRUE(b.has_value()) << b.error().ToString();
  EXPECT_GT(b->epoch, a->epoch);
  if (Clock(GetParam())) EXPECT_EQ(b->epoch, 2u);
}

TEST_P(BankConformanceTest, TwoProcessesRacingForOneLeaseHaveOneWinner) {
  // Each round both processes try to take lease r and, if they got it, record
  // themselves as winner with a fenced write that must find no winner yet.
  // The child stays alive (its leases held) until the parent has checked.
  constexpr int kRounds = 40;
  auto race = [&](Bank& b, const std::string& me) -> int {
    for (int r = 0; r < kRounds; ++r) {
      const std::string name = "race/" + std::to_string(r);
      auto l = b.AcquireLease(name, me, 60'000, kT0);
      if (!l) {
        if (l.error().code() != ErrorCode::kUnavailable) return 31;
        continue;
      }
      std::vector<Op> win{b.FencedBy(*l), Op::Put("winner/" + std::to_string(r), me, 0)};
      if (!b.Commit(win)) return 32;
    }
    return 0;
  };
  if (InChild()) {
    auto b = GetParam().open(location_);
    if (!b) ::_exit(30);
    char c;
    if (::read(ChildFd(0), &c, 1) != 1) ::_exit(29);
    c = static_cast<char>(race(**b, "child"));
    if (::write(ChildFd(1), &c, 1) != 1) ::_exit(28);
    if (::read(ChildFd(0), &c, 1) != 1) ::_exit(27);  // the parent has checked
    ::_exit(0);
  }
  int go[2];
  int done[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t pid = SpawnChild({go[0], done[1]});
  ASSERT_GE(pid, 0);
  ::close(go[0]);
  ::close(done[1]);
  char c = 1;
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  const int mine = race(*bank_, "parent");
  char theirs = -1;
  EXPECT_EQ(::read(done[0], &theirs, 1), 1);
  EXPECT_EQ(mine, 0);
  EXPECT_EQ(theirs, 0) << "the child's race failed";
  for (int r = 0; r < kRounds; ++r) {
    auto winner = bank_->Get("winner/" + std::to_string(r));
    ASSERT_TRUE(winner.has_value()) << "round " << r << " has no winner";
    auto lease = bank_->GetLease("race/" + std::to_string(r));
    ASSERT_TRUE(lease.has_value());
    EXPECT_EQ(lease->owner, winner->value) << "round " << r;
    EXPECT_GT(lease->epoch, 0u) << "round " << r;
  }
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(go[1]);
  ::close(done[0]);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace floe::bank::conformance
