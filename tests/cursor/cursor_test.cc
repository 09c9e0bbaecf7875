// A durable consumer's cursor: deliveries, answers (ACK, NAK with a delay,
// IN_PROGRESS, TERMINATE), releases, gaps, and the ack floor that rises over
// everything answered; its bank encoding and every way that encoding can be
// malformed. Then a property test of random operation sequences against a
// plain model, and the stream config encoding the registry keeps in the bank.
#include "broker/cursor.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "base/coding.h"
#include "broker/registry.h"
#include "wire/protocol.h"

namespace floe::broker {
namespace {

using wire::AnswerItem;
using wire::AnswerKind;

constexpr int64_t kAckWait = 30000;

AnswerItem Ack(uint64_t seq) { return {.seq = seq, .kind = AnswerKind::kAck}; }
AnswerItem Term(uint64_t seq) { return {.seq = seq, .kind = AnswerKind::kTerminate}; }
AnswerItem Nak(uint64_t seq, uint32_t delay_ms = 0) {
  return {.seq = seq, .kind = AnswerKind::kNak, .delay_ms = delay_ms};
}
AnswerItem InProgress(uint64_t seq) { return {.seq = seq, .kind = AnswerKind::kInProgress}; }

std::vector<uint64_t> Seqs(std::initializer_list<uint64_t> s) { return s; }

// Every observable part of two cursors is the same, for seqs up to `upto`.
void ExpectSameCursor(const Cursor& want, const Cursor& got, uint64_t upto) {
  EXPECT_EQ(want.ack_floor(), got.ack_floor());
  EXPECT_EQ(want.next_seq(), got.next_seq());
  ASSERT_EQ(want.pending().size(), got.pending().size());
  for (const auto& [seq, p] : want.pending()) {
    const PendingEntry* g = got.Find(seq);
    ASSERT_NE(g, nullptr) << seq;
    EXPECT_EQ(p.delivery_count, g->delivery_count) << seq;
    EXPECT_EQ(p.deadline_ms, g->deadline_ms) << seq;
    EXPECT_EQ(p.session_id, g->session_id) << seq;
  }
  for (uint64_t s = 0; s <= upto; ++s) EXPECT_EQ(want.IsAnswered(s), got.IsAnswered(s)) << s;
  EXPECT_EQ(want.NextDeadline(), got.NextDeadline());
}

// --- A new cursor -------------------------------------------------------------------

TEST(CursorTest, StartsEmptyAtTheFirstSeq) {
  Cursor c;
  EXPECT_EQ(c.ack_floor(), 0u);
  EXPECT_EQ(c.next_seq(), 1u);
  EXPECT_TRUE(c.pending().empty());
  EXPECT_TRUE(c.Due(INT64_MAX, 100).empty());
  EXPECT_EQ(c.NextDeadline(), INT64_MAX);
  EXPECT_FALSE(c.IsAnswered(1));

  Cursor later(500);  // a consumer created at seq 500: 1..499 count as answered
  EXPECT_EQ(later.ack_floor(), 499u);
  EXPECT_EQ(later.next_seq(), 500u);
  EXPECT_TRUE(later.IsAnswered(1));
  EXPECT_TRUE(later.IsAnswered(499));
  EXPECT_FALSE(later.IsAnswered(500));
}

// --- Deliveries --------------------------------------------------------------------

TEST(CursorTest, DeliveredRecordsAPendingEntryAndAdvancesNext) {
  Cursor c;
  c.Delivered(1, 7, 1000);
  c.Delivered(2, 7, 1001);
  EXPECT_EQ(c.next_seq(), 3u);
  ASSERT_EQ(c.pending().size(), 2u);
  const PendingEntry* p = c.Find(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->delivery_count, 1u);
  EXPECT_EQ(p->session_id, 7u);
  EXPECT_EQ(p->deadline_ms, 1000);
  EXPECT_EQ(c.Find(3), nullptr);
  EXPECT_FALSE(c.IsAnswered(1));
  EXPECT_EQ(c.ack_floor(), 0u);
  EXPECT_EQ(c.NextDeadline(), 1000);
}

TEST(CursorTest, RedeliveryCountsUpAndMovesToTheNewSession) {
  Cursor c;
  c.Delivered(1, 7, 1000);
  c.Delivered(1, 8, 5000);
  c.Delivered(1, 9, 9000);
  const PendingEntry* p = c.Find(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->delivery_count, 3u);
  EXPECT_EQ(p->session_id, 9u);
  EXPECT_EQ(p->deadline_ms, 9000);
  EXPECT_EQ(c.next_seq(), 2u);
}

TEST(CursorTest, AdvanceNextNeverMovesBack) {
  Cursor c;
  c.AdvanceNext(10);
  EXPECT_EQ(c.next_seq(), 10u);
  c.AdvanceNext(5);
  EXPECT_EQ(c.next_seq(), 10u);
  c.Delivered(3, 1, 0);  // an older seq delivered again does not pull it back
  EXPECT_EQ(c.next_seq(), 10u);
}

// --- Due ------------------------------------------------------------------------

TEST(CursorTest, DueReturnsExpiredDeliveriesLowestFirst) {
  Cursor c;
  c.Delivered(1, 1, 300);
  c.Delivered(2, 1, 100);
  c.Delivered(3, 1, 200);
  c.Delivered(4, 1, 1000);
  EXPECT_TRUE(c.Due(99, 10).empty());
  EXPECT_EQ(c.Due(100, 10), Seqs({2}));  // a deadline equal to now is due
  EXPECT_EQ(c.Due(250, 10), Seqs({2, 3}));
  EXPECT_EQ(c.Due(999, 10), Seqs({1, 2, 3}));
  EXPECT_EQ(c.Due(1000, 10), Seqs({1, 2, 3, 4}));
  EXPECT_EQ(c.NextDeadline(), 100);
}

TEST(CursorTest, DueReturnsAtMostMax) {
  Cursor c;
  for (uint64_t s = 1; s <= 10; ++s) c.Delivered(s, 1, 0);
  EXPECT_EQ(c.Due(0, 3), Seqs({1, 2, 3}));
  EXPECT_TRUE(c.Due(0, 0).empty());
  EXPECT_EQ(c.Due(0, 100).size(), 10u);
}

TEST(CursorTest, DueSkipsThoseNotYetDueWithoutCountingThem) {
  Cursor c;
  c.Delivered(1, 1, 500);  // not due
  c.Delivered(2, 1, 0);
  c.Delivered(3, 1, 500);
  c.Delivered(4, 1, 0);
  EXPECT_EQ(c.Due(100, 2), Seqs({2, 4}));
}

// --- Answers ------------------------------------------------------------------------

TEST(CursorTest, AckInOrderRaisesTheFloor) {
  Cursor c;
  for (uint64_t s = 1; s <= 3; ++s) c.Delivered(s, 1, 1000);
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 1u);
  EXPECT_EQ(c.Find(1), nullptr);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(3), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 3u);
  EXPECT_TRUE(c.pending().empty());
  EXPECT_EQ(c.NextDeadline(), INT64_MAX);
}

TEST(CursorTest, AckOutOfOrderWaitsForTheLowest) {
  Cursor c;
  for (uint64_t s = 1; s <= 4; ++s) c.Delivered(s, 1, 1000);
  ASSERT_TRUE(c.Apply(Ack(3), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 0u);  // 1 is still pending
  EXPECT_TRUE(c.IsAnswered(2));
  EXPECT_TRUE(c.IsAnswered(3));
  EXPECT_FALSE(c.IsAnswered(1));
  EXPECT_FALSE(c.IsAnswered(4));
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 3u);  // over 1, 2 and 3 at once; 4 still pending
  ASSERT_TRUE(c.Apply(Ack(4), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 4u);
}

TEST(CursorTest, AnAckedSeqIsNeverDueAgain) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(2, 1, 100);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_EQ(c.Due(INT64_MAX, 10), Seqs({1}));
  c.ReleaseAll(0);
  EXPECT_EQ(c.Due(INT64_MAX, 10), Seqs({1}));
}

TEST(CursorTest, ReAckIsIdempotent) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(2, 1, 100);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  // Above the floor, and then at or below it.
  EXPECT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(Term(2), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 2u);
  EXPECT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());  // from another session too
  EXPECT_EQ(c.ack_floor(), 2u);
  EXPECT_TRUE(c.pending().empty());
}

TEST(CursorTest, NakOrInProgressOfAnAnsweredSeqDoesNotReviveIt) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(2, 1, 100);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(Nak(2), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(InProgress(2), 0, kAckWait).ok());
  EXPECT_EQ(c.Find(2), nullptr);
  EXPECT_TRUE(c.IsAnswered(2));
  EXPECT_EQ(c.Due(INT64_MAX, 10), Seqs({1}));
}

TEST(CursorTest, TerminateAnswersForGood) {
  Cursor c;
  c.Delivered(1, 1, 100);
  ASSERT_TRUE(c.Apply(Term(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 1u);
  EXPECT_TRUE(c.Due(INT64_MAX, 10).empty());
  EXPECT_TRUE(c.Apply(Term(1), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
}

TEST(CursorTest, NakReleasesForRedeliveryAfterTheDelay) {
  Cursor c;
  c.Delivered(1, 5, 1000 + kAckWait);
  ASSERT_TRUE(c.Apply(Nak(1, 250), 1000, kAckWait).ok());
  const PendingEntry* p = c.Find(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->session_id, 0u);  // no longer outstanding with session 5
  EXPECT_EQ(p->deadline_ms, 1250);
  EXPECT_EQ(p->delivery_count, 1u);  // counts deliveries, not answers
  EXPECT_FALSE(c.IsAnswered(1));
  EXPECT_EQ(c.ack_floor(), 0u);
  EXPECT_TRUE(c.Due(1249, 10).empty());
  EXPECT_EQ(c.Due(1250, 10), Seqs({1}));
  EXPECT_EQ(c.NextDeadline(), 1250);
  // Redelivered, it counts up and can be ACKed.
  c.Delivered(1, 6, 1250 + kAckWait);
  EXPECT_EQ(c.Find(1)->delivery_count, 2u);
  ASSERT_TRUE(c.Apply(Ack(1), 1300, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 1u);
}

TEST(CursorTest, NakWithoutDelayIsDueAtOnce) {
  Cursor c;
  c.Delivered(1, 5, 1000 + kAckWait);
  ASSERT_TRUE(c.Apply(Nak(1), 1000, kAckWait).ok());
  EXPECT_EQ(c.Due(1000, 10), Seqs({1}));
}

TEST(CursorTest, NakMayPushTheDeadlineLaterThanTheAckTimeout) {
  Cursor c;
  c.Delivered(1, 5, 100);
  ASSERT_TRUE(c.Apply(Nak(1, 60000), 50, kAckWait).ok());
  EXPECT_EQ(c.Find(1)->deadline_ms, 60050);
  EXPECT_TRUE(c.Due(60049, 10).empty());
}

TEST(CursorTest, InProgressRestartsTheAckTimeout) {
  Cursor c;
  c.Delivered(1, 5, 1000);
  ASSERT_TRUE(c.Apply(InProgress(1), 900, kAckWait).ok());
  const PendingEntry* p = c.Find(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->deadline_ms, 900 + kAckWait);
  EXPECT_EQ(p->session_id, 5u);  // still outstanding with the same session
  EXPECT_EQ(p->delivery_count, 1u);
  EXPECT_TRUE(c.Due(1000, 10).empty());
  EXPECT_EQ(c.Due(900 + kAckWait, 10), Seqs({1}));
  EXPECT_FALSE(c.IsAnswered(1));
}

TEST(CursorTest, AnswerForASeqNotPendingIsNotFound) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(3, 1, 100);  // 2 was skipped (never delivered)
  for (AnswerKind kind : {AnswerKind::kAck, AnswerKind::kNak, AnswerKind::kInProgress, AnswerKind::kTerminate}) {
    for (uint64_t seq : {uint64_t{2}, uint64_t{4}, uint64_t{1000}, UINT64_MAX}) {
      Status s = c.Apply({.seq = seq, .kind = kind}, 0, kAckWait);
      EXPECT_EQ(s.code(), ErrorCode::kNotFound) << "seq " << seq << " kind " << int(kind);
    }
  }
  // Nothing changed.
  EXPECT_EQ(c.pending().size(), 2u);
  EXPECT_EQ(c.ack_floor(), 0u);
  EXPECT_EQ(c.next_seq(), 4u);
  EXPECT_FALSE(c.IsAnswered(2));
  EXPECT_FALSE(c.IsAnswered(4));
}

TEST(CursorTest, AnswerOnAFreshCursorIsNotFound) {
  Cursor c(10);
  EXPECT_EQ(c.Apply(Ack(10), 0, kAckWait).code(), ErrorCode::kNotFound);
  EXPECT_TRUE(c.Apply(Ack(9), 0, kAckWait).ok());  // below the start: answered
  EXPECT_EQ(c.ack_floor(), 9u);
  EXPECT_EQ(c.next_seq(), 10u);
}

// --- Done (dead letter) ------------------------------------------------------------

TEST(CursorTest, DoneAnswersAPendingSeq) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(2, 1, 100);
  c.Done(2);  // moved to the dead-letter stream
  EXPECT_EQ(c.Find(2), nullptr);
  EXPECT_TRUE(c.IsAnswered(2));
  EXPECT_EQ(c.ack_floor(), 0u);
  c.Done(1);
  EXPECT_EQ(c.ack_floor(), 2u);
  c.Done(1);  // twice: no effect
  EXPECT_EQ(c.ack_floor(), 2u);
}

// --- Release ----------------------------------------------------------------------

TEST(CursorTest, ReleaseMakesOneSessionsDeliveriesDueNow) {
  Cursor c;
  c.Delivered(1, 7, 5000);
  c.Delivered(2, 8, 5000);
  c.Delivered(3, 7, 5000);
  c.Delivered(4, 7, 50);  // already past its deadline: stays earlier
  c.Release(7, 100);
  EXPECT_EQ(c.Find(1)->session_id, 0u);
  EXPECT_EQ(c.Find(1)->deadline_ms, 100);
  EXPECT_EQ(c.Find(3)->session_id, 0u);
  EXPECT_EQ(c.Find(3)->deadline_ms, 100);
  EXPECT_EQ(c.Find(4)->deadline_ms, 50);
  EXPECT_EQ(c.Find(2)->session_id, 8u);  // another session's: untouched
  EXPECT_EQ(c.Find(2)->deadline_ms, 5000);
  EXPECT_EQ(c.Due(100, 10), Seqs({1, 3, 4}));
  // Release keeps the delivery count: the next delivery is the second.
  EXPECT_EQ(c.Find(1)->delivery_count, 1u);
  c.Delivered(1, 9, 200);
  EXPECT_EQ(c.Find(1)->delivery_count, 2u);
}

TEST(CursorTest, ReleaseOfASessionWithNothingOutstandingChangesNothing) {
  Cursor c;
  c.Delivered(1, 7, 5000);
  c.Release(99, 100);
  EXPECT_EQ(c.Find(1)->session_id, 7u);
  EXPECT_EQ(c.Find(1)->deadline_ms, 5000);
}

TEST(CursorTest, ReleaseAllReleasesEverySessionButKeepsNakDelays) {
  Cursor c;
  c.Delivered(1, 7, 5000);
  c.Delivered(2, 8, 6000);
  c.Delivered(3, 9, 7000);
  ASSERT_TRUE(c.Apply(Nak(3, 9000), 0, kAckWait).ok());  // released, due at 9000
  c.ReleaseAll(100);
  for (uint64_t s : {1, 2, 3}) EXPECT_EQ(c.Find(s)->session_id, 0u) << s;
  EXPECT_EQ(c.Find(1)->deadline_ms, 100);
  EXPECT_EQ(c.Find(2)->deadline_ms, 100);
  EXPECT_EQ(c.Find(3)->deadline_ms, 9000);  // the consumer asked for that delay
  EXPECT_EQ(c.Due(100, 10), Seqs({1, 2}));
  EXPECT_EQ(c.NextDeadline(), 100);
}

// --- Gaps ---------------------------------------------------------------------------

TEST(CursorTest, GapAtTheFloorRaisesIt) {
  Cursor c;
  c.Gap(1, 5);
  EXPECT_EQ(c.ack_floor(), 5u);
  EXPECT_EQ(c.next_seq(), 6u);
  for (uint64_t s = 1; s <= 5; ++s) EXPECT_TRUE(c.IsAnswered(s)) << s;
  EXPECT_FALSE(c.IsAnswered(6));
  c.Gap(6, 0);  // an empty gap: nothing
  EXPECT_EQ(c.ack_floor(), 5u);
  EXPECT_EQ(c.next_seq(), 6u);
}

TEST(CursorTest, GapAboveAPendingDeliveryWaitsForIt) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Gap(2, 3);  // 2..4 are holes
  EXPECT_EQ(c.ack_floor(), 0u);
  EXPECT_EQ(c.next_seq(), 5u);
  for (uint64_t s = 2; s <= 4; ++s) EXPECT_TRUE(c.IsAnswered(s)) << s;
  EXPECT_EQ(c.Due(INT64_MAX, 10), Seqs({1}));  // holes are never due
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 4u);  // over the ACK and the holes
}

TEST(CursorTest, FloorRisesOverInterleavedAcksAndGaps) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Gap(2, 1);
  c.Delivered(3, 1, 100);
  c.Gap(4, 2);
  c.Delivered(6, 1, 100);
  EXPECT_EQ(c.next_seq(), 7u);
  ASSERT_TRUE(c.Apply(Ack(3), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 0u);
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 5u);  // 1 acked, 2 hole, 3 acked, 4-5 holes; 6 pending
  ASSERT_TRUE(c.Apply(Term(6), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 6u);
}

TEST(CursorTest, GapAfterOutOfOrderAcksJoinsThem) {
  Cursor c;
  c.Delivered(1, 1, 100);
  c.Delivered(2, 1, 100);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 2u);
  c.Gap(3, 2);
  EXPECT_EQ(c.ack_floor(), 4u);
  c.Delivered(5, 1, 100);
  c.Delivered(6, 1, 100);
  ASSERT_TRUE(c.Apply(Ack(6), 0, kAckWait).ok());
  c.Gap(7, 1);  // slow path: 6 is done above the floor
  EXPECT_EQ(c.ack_floor(), 4u);
  ASSERT_TRUE(c.Apply(Ack(5), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 7u);
}

TEST(CursorTest, GapBelowTheFloorIsHarmless) {
  Cursor c;
  c.Gap(1, 10);
  c.Gap(3, 4);  // already answered
  EXPECT_EQ(c.ack_floor(), 10u);
  EXPECT_EQ(c.next_seq(), 11u);
  c.Delivered(11, 1, 100);
  c.Gap(5, 8);  // straddles the floor and the pending 11: 11 stays pending
  EXPECT_EQ(c.ack_floor(), 10u);
  ASSERT_NE(c.Find(11), nullptr);
  EXPECT_FALSE(c.IsAnswered(11));
  EXPECT_TRUE(c.IsAnswered(12));
  EXPECT_EQ(c.next_seq(), 13u);
  ASSERT_TRUE(c.Apply(Ack(11), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 12u);
}

TEST(CursorTest, GapOverAPendingSeqLeavesItPending) {
  // A hole never covers a delivered message; if a gap notice claims one, the
  // delivery stays pending and the floor stops below it.
  Cursor c;
  c.Delivered(2, 1, 100);
  c.Gap(1, 3);
  EXPECT_EQ(c.ack_floor(), 1u);
  ASSERT_NE(c.Find(2), nullptr);
  EXPECT_FALSE(c.IsAnswered(2));
  EXPECT_TRUE(c.IsAnswered(3));
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 3u);
}

// --- NextDeadline ---------------------------------------------------------------------

TEST(CursorTest, NextDeadlineIsTheEarliestPending) {
  Cursor c;
  EXPECT_EQ(c.NextDeadline(), INT64_MAX);
  c.Delivered(1, 1, 500);
  c.Delivered(2, 1, 300);
  c.Delivered(3, 1, 900);
  EXPECT_EQ(c.NextDeadline(), 300);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  EXPECT_EQ(c.NextDeadline(), 500);
  ASSERT_TRUE(c.Apply(Nak(3, 50), 100, kAckWait).ok());
  EXPECT_EQ(c.NextDeadline(), 150);
  ASSERT_TRUE(c.Apply(InProgress(3), 200, kAckWait).ok());
  EXPECT_EQ(c.NextDeadline(), 500);
  c.Release(1, 10);
  EXPECT_EQ(c.NextDeadline(), 10);
  ASSERT_TRUE(c.Apply(Ack(1), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(3), 0, kAckWait).ok());
  EXPECT_EQ(c.NextDeadline(), INT64_MAX);
}

// --- Encoding -----------------------------------------------------------------------

Cursor BusyCursor() {
  Cursor c(5);
  c.Delivered(5, 11, 1000);
  c.Delivered(6, 12, -5);  // deadlines are signed
  c.Gap(7, 2);
  c.Delivered(9, 11, INT64_MAX);
  c.Delivered(10, 13, 3000);
  c.Delivered(10, UINT64_MAX, 4000);
  EXPECT_TRUE(c.Apply(Ack(9), 0, kAckWait).ok());
  EXPECT_TRUE(c.Apply(Nak(6, 7), 100, kAckWait).ok());
  c.AdvanceNext(20);
  return c;
}

TEST(CursorEncodingTest, RoundTripsEveryPart) {
  for (const Cursor& c : {Cursor(), Cursor(1000), BusyCursor()}) {
    auto d = Cursor::Decode(c.Encode());
    ASSERT_TRUE(d) << d.error().ToString();
    ExpectSameCursor(c, *d, 30);
    EXPECT_EQ(d->Encode(), c.Encode());
  }
}

TEST(CursorEncodingTest, DecodedCursorKeepsWorking) {
  auto d = Cursor::Decode(BusyCursor().Encode());
  ASSERT_TRUE(d) << d.error().ToString();
  Cursor c = std::move(*d);
  EXPECT_EQ(c.ack_floor(), 4u);
  ASSERT_TRUE(c.Apply(Ack(5), 0, kAckWait).ok());
  ASSERT_TRUE(c.Apply(Ack(6), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 9u);  // 5, 6 acked; 7, 8 holes; 9 acked above the floor
  ASSERT_TRUE(c.Apply(Ack(10), 0, kAckWait).ok());
  EXPECT_EQ(c.ack_floor(), 10u);
}

TEST(CursorEncodingTest, GoldenBytes) {
  Cursor c;
  c.Delivered(1, 3, 100);
  c.Delivered(2, 3, 100);
  ASSERT_TRUE(c.Apply(Ack(2), 0, kAckWait).ok());
  std::string want;
  want.push_back(1);        // version
  PutFixed64(&want, 0);     // ack_floor
  PutFixed64(&want, 3);     // next_seq
  PutFixed32(&want, 1);     // answered ranges above the floor
  PutFixed64(&want, 2);     //   first
  PutFixed64(&want, 3);     //   end (exclusive)
  PutFixed32(&want, 1);     // pending
  PutFixed64(&want, 1);     //   seq
  PutFixed32(&want, 1);     //   delivery_count
  PutFixed64(&want, 100);   //   deadline_ms
  PutFixed64(&want, 3);     //   session_id
  EXPECT_EQ(c.Encode(), want);
}

TEST(CursorEncodingTest, BadVersionIsCorruption) {
  std::string bytes = BusyCursor().Encode();
  for (uint8_t v : {0, 2, 0x7f, 0xff}) {
    bytes[0] = static_cast<char>(v);
    auto d = Cursor::Decode(bytes);
    ASSERT_FALSE(d) << int(v);
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  }
  auto empty = Cursor::Decode("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::kCorruption);
}

TEST(CursorEncodingTest, EveryTruncationIsCorruption) {
  const std::string bytes = BusyCursor().Encode();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto d = Cursor::Decode(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(d) << "cut to " << n << " of " << bytes.size();
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption) << n;
  }
}

TEST(CursorEncodingTest, TrailingBytesAreCorruption) {
  auto d = Cursor::Decode(BusyCursor().Encode() + "x");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
}

TEST(CursorEncodingTest, CountsThatCannotFitAreCorruption) {
  std::string bytes;
  bytes.push_back(1);
  PutFixed64(&bytes, 0);
  PutFixed64(&bytes, 1);
  PutFixed32(&bytes, 0xffffffff);  // done-above count
  auto d = Cursor::Decode(bytes);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);

  bytes.resize(17);
  PutFixed32(&bytes, 0);
  PutFixed32(&bytes, 0x10000000);  // pending count
  bytes.append(28 * 3, '\0');
  d = Cursor::Decode(bytes);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
}

std::string RawCursor(uint64_t ack_floor, uint64_t next_seq, std::vector<uint64_t> done,
                      std::vector<uint64_t> pending) {
  std::string b;
  b.push_back(1);
  PutFixed64(&b, ack_floor);
  PutFixed64(&b, next_seq);
  PutFixed32(&b, static_cast<uint32_t>(done.size()));
  for (uint64_t s : done) PutFixed64(&b, s);
  PutFixed32(&b, static_cast<uint32_t>(pending.size()));
  for (uint64_t s : pending) {
    PutFixed64(&b, s);
    PutFixed32(&b, 1);
    PutFixed64(&b, 0);
    PutFixed64(&b, 1);
  }
  return b;
}

TEST(CursorEncodingTest, NextSeqNotAboveTheFloorIsCorruption) {
  for (auto [floor, next] : {std::pair<uint64_t, uint64_t>{5, 5}, {5, 4}, {5, 0}, {UINT64_MAX, 1}}) {
    auto d = Cursor::Decode(RawCursor(floor, next, {}, {}));
    ASSERT_FALSE(d) << floor << " " << next;
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  }
  EXPECT_TRUE(Cursor::Decode(RawCursor(5, 6, {}, {})));
  EXPECT_TRUE(Cursor::Decode(RawCursor(0, 1, {}, {})));
}

// cursor.h: "Invariant: ack_floor < every seq in done_above and in pending <
// next_seq." The bank stores the encoding without a checksum, so Decode is
// the only check between a damaged value and a cursor that breaks. A done
// seq at or below the floor, for example, sits at the front of done_above
// forever and the floor can never rise again (Raise looks only at the front).
TEST(CursorEncodingTest, SeqsOutsideFloorAndNextAreCorruption) {
  struct Bad {
    const char* why;
    std::string bytes;
  };
  const Bad bad[] = {
      {"done seq equal to the floor", RawCursor(5, 10, {5}, {})},
      {"done seq below the floor", RawCursor(5, 10, {2}, {})},
      {"done seq at next_seq", RawCursor(5, 10, {10}, {})},
      {"pending seq at the floor", RawCursor(5, 10, {}, {5})},
      {"pending seq at next_seq", RawCursor(5, 10, {}, {10})},
      {"a seq both done and pending", RawCursor(5, 10, {7}, {7})},
  };
  for (const Bad& b : bad) {
    auto d = Cursor::Decode(b.bytes);
    EXPECT_FALSE(d) << b.why << " was accepted";
    if (!d) {
      EXPECT_EQ(d.error().code(), ErrorCode::kCorruption) << b.why;
    }
  }
  // And the consequence the check prevents: the floor stuck below an answered seq.
  auto stuck = Cursor::Decode(RawCursor(5, 10, {2}, {6}));
  if (stuck) {
    ASSERT_TRUE(stuck->Apply(Ack(6), 0, kAckWait).ok());
    EXPECT_EQ(stuck->ack_floor(), 6u) << "the floor no longer rises over acked seqs";
  }
}

// --- Stream config in the bank ---------------------------------------------------------

void ExpectSameConfig(const wire::StreamConfig& want, const wire::StreamConfig& got) {
  EXPECT_EQ(want.retention_bytes, got.retention_bytes);
  EXPECT_EQ(want.retention_age_ms, got.retention_age_ms);
  EXPECT_EQ(want.max_message_bytes, got.max_message_bytes);
  EXPECT_EQ(want.sync, got.sync);
  EXPECT_EQ(want.ack_wait_ms, got.ack_wait_ms);
  EXPECT_EQ(want.max_deliveries, got.max_deliveries);
  EXPECT_EQ(want.dead_letter, got.dead_letter);
  EXPECT_EQ(want.mqtt_topics, got.mqtt_topics);
}

TEST(StreamConfigEncodingTest, MqttTopicsAreVersion2AndVersion1StillDecodes) {
  wire::StreamConfig c{.dead_letter = "d"};
  const std::string v1 = EncodeStreamConfig(c);
  ASSERT_EQ(v1[0], 1);  // no filters: the record of before, which older nodes read
  c.mqtt_topics = {"sensors/#", "alerts/+"};
  const std::string v2 = EncodeStreamConfig(c);
  EXPECT_EQ(v2[0], 2);
  EXPECT_EQ(v2.substr(1, v1.size() - 1), v1.substr(1));  // the pinned fields, then the filters
  auto d = DecodeStreamConfig(v2);
  ASSERT_TRUE(d) << d.error().ToString();
  ExpectSameConfig(c, *d);
  auto old = DecodeStreamConfig(v1);
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->mqtt_topics.empty());
  for (size_t n = 1; n < v2.size(); ++n) EXPECT_FALSE(DecodeStreamConfig(v2.substr(0, n))) << n;
  EXPECT_FALSE(DecodeStreamConfig(v2 + '\0'));
}

TEST(StreamConfigEncodingTest, RoundTrips) {
  wire::StreamConfig sample{.retention_bytes = 1 << 30, .retention_age_ms = 86400000, .max_message_bytes = 4096,
                            .sync = wire::SyncMode::kNone, .ack_wait_ms = 1500, .max_deliveries = 0,
                            .dead_letter = "orders.dlq"};
  wire::StreamConfig max{.retention_bytes = UINT64_MAX, .retention_age_ms = UINT64_MAX - 1,
                         .max_message_bytes = UINT32_MAX, .sync = wire::SyncMode::kFdatasync,
                         .ack_wait_ms = UINT32_MAX, .max_deliveries = UINT32_MAX,
                         .dead_letter = std::string(128, 'd')};
  for (const wire::StreamConfig& c : {wire::StreamConfig{}, sample, max}) {
    const std::string bytes = EncodeStreamConfig(c);
    auto d = DecodeStreamConfig(bytes);
    ASSERT_TRUE(d) << d.error().ToString();
    ExpectSameConfig(c, *d);
    EXPECT_EQ(EncodeStreamConfig(*d), bytes);
  }
}

TEST(StreamConfigEncodingTest, StartsWithItsVersionThenTheWireLayout) {
  wire::StreamConfig c{.dead_letter = "d"};
  const std::string bytes = EncodeStreamConfig(c);
  std::string wire_layout;
  wire::Encoder e(&wire_layout);
  EncodeStreamConfigFields(e, c);
  ASSERT_EQ(bytes.size(), 1 + wire_layout.size());
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes.substr(1), wire_layout);
}

TEST(StreamConfigEncodingTest, MalformedIsCorruption) {
  const std::string good = EncodeStreamConfig(wire::StreamConfig{.dead_letter = "dlq"});
  std::vector<std::pair<std::string, std::string>> bad;
  bad.emplace_back("empty", "");
  for (char v : {'\0', '\2', '\xff'}) bad.emplace_back("version " + std::to_string(int(v)), v + good.substr(1));
  for (size_t n = 1; n < good.size(); ++n) bad.emplace_back("cut to " + std::to_string(n), good.substr(0, n));
  bad.emplace_back("trailing byte", good + '\0');
  std::string bad_sync = good;
  bad_sync[1 + 8 + 8 + 4] = 2;
  bad.emplace_back("sync mode 2", bad_sync);
  for (const auto& [why, bytes] : bad) {
    auto d = DecodeStreamConfig(bytes);
    ASSERT_FALSE(d) << why;
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption) << why;
  }
}

// --- Property: random operations against a model ------------------------------------

// The model: what was delivered, what was answered, what is pending; no ack
// floor of its own, it is derived from `answered`.
struct Model {
  uint64_t first;
  uint64_t next;
  std::set<uint64_t> answered;   // above first-1
  std::set<uint64_t> acked;      // by ACK or TERMINATE: must never be due again
  std::set<uint64_t> delivered;  // ever delivered
  std::map<uint64_t, PendingEntry> pending;

  uint64_t Floor() const {
    uint64_t f = first - 1;
    while (answered.count(f + 1)) ++f;
    return f;
  }
  std::vector<uint64_t> Due(int64_t now, size_t max) const {
    std::vector<uint64_t> out;
    for (const auto& [seq, p] : pending) {
      if (out.size() >= max) break;
      if (p.deadline_ms <= now) out.push_back(seq);
    }
    return out;
  }
  int64_t NextDeadline() const {
    int64_t d = INT64_MAX;
    for (const auto& [seq, p] : pending) d = std::min(d, p.deadline_ms);
    return d;
  }
};

void CheckAgainstModel(const Cursor& c, const Model& m, int64_t now, uint64_t* last_floor) {
  RC_ASSERT(c.ack_floor() >= *last_floor);  // the floor never moves back
  *last_floor = c.ack_floor();
  RC_ASSERT(c.ack_floor() == m.Floor());
  RC_ASSERT(c.next_seq() == m.next);
  RC_ASSERT(c.pending().size() == m.pending.size());
  for (const auto& [seq, p] : m.pending) {
    const PendingEntry* got = c.Find(seq);
    RC_ASSERT(got != nullptr);
    RC_ASSERT(got->delivery_count == p.delivery_count);
    RC_ASSERT(got->deadline_ms == p.deadline_ms);
    RC_ASSERT(got->session_id == p.session_id);
    RC_ASSERT(seq > c.ack_floor());
    RC_ASSERT(seq < c.next_seq());
  }
  for (uint64_t s = m.first > 3 ? m.first - 3 : 0; s < m.next + 3; ++s) {
    const bool answered = s < m.first || m.answered.count(s) > 0;
    RC_ASSERT(c.IsAnswered(s) == answered);
  }
  // Nothing delivered is forgotten: answered or pending, never neither.
  for (uint64_t s : m.delivered) RC_ASSERT(m.answered.count(s) > 0 || c.Find(s) != nullptr);
  // An ACKed (or terminated) seq is never due again, however late.
  for (uint64_t s : c.Due(INT64_MAX, SIZE_MAX)) RC_ASSERT(m.acked.count(s) == 0);
  RC_ASSERT(c.Due(now, 4) == m.Due(now, 4));
  RC_ASSERT(c.Due(now, SIZE_MAX) == m.Due(now, SIZE_MAX));
  RC_ASSERT(c.NextDeadline() == m.NextDeadline());
}

RC_GTEST_PROP(CursorProperty, MatchesModelUnderRandomOperations, ()) {
  const uint64_t first = *rc::gen::inRange<uint64_t>(1, 1'000'000);
  const int64_t ack_wait = *rc::gen::inRange<int64_t>(1, 500);
  // Each op is a random word: its low bits pick the operation, the rest its
  // argument, so rapidcheck can shrink failing sequences.
  const auto ops = *rc::gen::container<std::vector<uint32_t>>(rc::gen::arbitrary<uint32_t>());
  Cursor c(first);
  Model m{.first = first, .next = first};
  int64_t now = 1000;
  uint64_t last_floor = c.ack_floor();
  auto pick = [](const auto& container, uint32_t arg) {
    auto it = container.begin();
    std::advance(it, arg % container.size());
    return *it;
  };
  for (uint32_t op : ops) {
    const uint32_t arg = op >> 4;
    const uint64_t session = 1 + arg % 3;
    switch (op & 15) {
      case 0:
      case 1:
      case 2: {  // deliver new seqs, as a FETCH reading the log does
        const uint32_t n = 1 + arg % 3;
        for (uint32_t i = 0; i < n; ++i) {
          const uint64_t seq = m.next;
          c.Delivered(seq, session, now + ack_wait);
          m.pending[seq] = {.delivery_count = 1, .deadline_ms = now + ack_wait, .session_id = session};
          m.delivered.insert(seq);
          m.next = seq + 1;
        }
        break;
      }
      case 3: {  // redeliver what is due
        const size_t max = 1 + arg % 4;
        const auto due = c.Due(now, max);
        RC_ASSERT(due == m.Due(now, max));
        for (uint64_t seq : due) {
          c.Delivered(seq, session, now + ack_wait);
          auto& p = m.pending[seq];
          ++p.delivery_count;
          p.session_id = session;
          p.deadline_ms = now + ack_wait;
        }
        break;
      }
      case 4:
      case 5:
      case 6:
      case 7: {  // answer: a pending seq mostly, else an answered or unknown one
        const AnswerKind kind = static_cast<AnswerKind>(1 + (arg >> 8) % 4);
        const uint32_t delay = (arg >> 10) % 300;
        uint64_t seq;
        const uint32_t which = (arg >> 3) % 8;
        if (which < 5 && !m.pending.empty()) {
          seq = pick(m.pending, arg).first;
        } else if (which < 7 && !m.answered.empty()) {
          seq = pick(m.answered, arg);
        } else {
          seq = m.next + arg % 3;  // never delivered
        }
        Status s = c.Apply({.seq = seq, .kind = kind, .delay_ms = delay}, now, ack_wait);
        auto it = m.pending.find(seq);
        if (it == m.pending.end()) {
          const bool answered = seq < m.first || m.answered.count(seq);
          RC_ASSERT((answered ? s.ok() : s.code() == ErrorCode::kNotFound));
          break;
        }
        RC_ASSERT(s.ok());
        switch (kind) {
          case AnswerKind::kAck:
          case AnswerKind::kTerminate:
            m.pending.erase(it);
            m.answered.insert(seq);
            m.acked.insert(seq);
            break;
          case AnswerKind::kNak:
            it->second.session_id = 0;
            it->second.deadline_ms = now + delay;
            break;
          case AnswerKind::kInProgress:
            it->second.deadline_ms = now + ack_wait;
            break;
        }
        break;
      }
      case 8: {  // the session goes away
        c.Release(session, now);
        for (auto& [seq, p] : m.pending) {
          if (p.session_id == session) {
            p.session_id = 0;
            p.deadline_ms = std::min(p.deadline_ms, now);
          }
        }
        break;
      }
      case 9: {  // restart: no session survives
        c.ReleaseAll(now);
        for (auto& [seq, p] : m.pending) {
          if (p.session_id != 0) p.deadline_ms = std::min(p.deadline_ms, now);
          p.session_id = 0;
        }
        break;
      }
      case 10:
      case 11: {  // holes at the read position
        const uint64_t count = 1 + arg % 5;
        c.Gap(m.next, count);
        for (uint64_t s = m.next; s < m.next + count; ++s) m.answered.insert(s);
        m.next += count;
        break;
      }
      case 12: {  // dead-lettered after max deliveries
        if (m.pending.empty()) break;
        const uint64_t seq = pick(m.pending, arg).first;
        c.Done(seq);
        m.pending.erase(seq);
        m.answered.insert(seq);
        break;
      }
      case 13:
      case 14: {  // time passes
        now += arg % (2 * ack_wait + 1);
        break;
      }
      case 15: {  // persisted to the bank and loaded back
        const std::string bytes = c.Encode();
        auto d = Cursor::Decode(bytes);
        RC_ASSERT(d.has_value());
        RC_ASSERT(d->Encode() == bytes);
        c = std::move(*d);
        break;
      }
    }
    CheckAgainstModel(c, m, now, &last_floor);
  }
  // Encode/Decode preserves the final state too.
  auto d = Cursor::Decode(c.Encode());
  RC_ASSERT(d.has_value());
  CheckAgainstModel(*d, m, now, &last_floor);
}

// Acking everything delivered, in any order, with gaps anywhere, brings the
// floor to the last seq read.
RC_GTEST_PROP(CursorProperty, AnsweringEverythingRaisesTheFloorToTheEnd, ()) {
  const auto layout = *rc::gen::container<std::vector<bool>>(rc::gen::arbitrary<bool>());  // true: a hole
  Cursor c;
  std::vector<uint64_t> messages;
  uint64_t seq = 1;
  for (bool hole : layout) {
    if (hole) {
      c.Gap(seq, 1);
    } else {
      c.Delivered(seq, 1, 0);
      messages.push_back(seq);
    }
    ++seq;
  }
  std::mt19937 rng(*rc::gen::arbitrary<uint32_t>());
  std::shuffle(messages.begin(), messages.end(), rng);
  uint64_t last = c.ack_floor();
  for (uint64_t s : messages) {
    RC_ASSERT(c.Apply(Ack(s), 0, kAckWait).ok());
    RC_ASSERT(c.ack_floor() >= last);
    last = c.ack_floor();
  }
  RC_ASSERT(c.ack_floor() == seq - 1);
  RC_ASSERT(c.pending().empty());
  // Nothing is left above the floor: the encoding is the bare minimum.
  RC_ASSERT(c.Encode().size() == 1 + 8 + 8 + 4 + 4);
}

}  // namespace
}  // namespace floe::broker
