// The producer dedup window: what the stream answers when a producer resends
// (session id, producer seq), within a bounded window per producer and a
// bounded number of producers.
#include "log/dedup.h"

#include <cstdint>

#include <gtest/gtest.h>

namespace floe::log {
namespace {

using Found = DedupIndex::Found;

TEST(DedupTest, EmptyKnowsNothing) {
  DedupIndex d(10, 10);
  EXPECT_EQ(d.Find(1, 1).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 0u);
  EXPECT_EQ(d.producers(), 0u);
}

TEST(DedupTest, RecordFindHighest) {
  DedupIndex d(10, 10);
  d.Record(7, 1, 100);
  d.Record(7, 2, 101);
  d.Record(8, 1, 102);
  auto f = d.Find(7, 2);
  EXPECT_EQ(f.found, Found::kKnown);
  EXPECT_EQ(f.seq, 101u);
  EXPECT_EQ(d.Find(7, 1).seq, 100u);
  EXPECT_EQ(d.Find(8, 1).seq, 102u);
  EXPECT_EQ(d.Find(7, 3).found, Found::kNew);
  EXPECT_EQ(d.Find(9, 1).found, Found::kNew);
  uint64_t seq = 0;
  EXPECT_EQ(d.Highest(7, &seq), 2u);
  EXPECT_EQ(seq, 101u);
  EXPECT_EQ(d.Highest(8), 1u);
  EXPECT_EQ(d.producers(), 2u);
}

TEST(DedupTest, AnonymousProducerIsNeverTracked) {
  DedupIndex d(10, 10);
  d.Record(0, 5, 1);
  EXPECT_EQ(d.producers(), 0u);
  EXPECT_EQ(d.Find(0, 5).found, Found::kNew);
  EXPECT_EQ(d.Highest(0), 0u);
}

TEST(DedupTest, WindowTrimsOldestAndSaysBelowWindow) {
  DedupIndex d(3, 10);
  for (uint64_t p = 1; p <= 5; ++p) d.Record(1, p, 100 + p);
  // 3, 4, 5 kept; 1 and 2 dropped: a resend of them cannot be judged.
  EXPECT_EQ(d.Find(1, 1).found, Found::kBelowWindow);
  EXPECT_EQ(d.Find(1, 2).found, Found::kBelowWindow);
  EXPECT_EQ(d.Find(1, 3).found, Found::kKnown);
  EXPECT_EQ(d.Find(1, 3).seq, 103u);
  EXPECT_EQ(d.Find(1, 5).seq, 105u);
  EXPECT_EQ(d.Find(1, 6).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 5u);
}

TEST(DedupTest, UntrimmedWindowSaysNewBelowItsFirstEntry) {
  // Nothing was ever dropped, so a lower producer seq was simply never stored.
  DedupIndex d(3, 10);
  d.Record(1, 10, 1);
  d.Record(1, 11, 2);
  EXPECT_EQ(d.Find(1, 5).found, Found::kNew);
}

TEST(DedupTest, OutOfOrderInsertKeepsOrder) {
  DedupIndex d(10, 10);
  d.Record(1, 5, 50);
  d.Record(1, 2, 20);  // e.g. rebuilt from the log in stream order after a resend
  d.Record(1, 9, 90);
  d.Record(1, 7, 70);
  EXPECT_EQ(d.Find(1, 2).seq, 20u);
  EXPECT_EQ(d.Find(1, 5).seq, 50u);
  EXPECT_EQ(d.Find(1, 7).seq, 70u);
  EXPECT_EQ(d.Find(1, 9).seq, 90u);
  EXPECT_EQ(d.Find(1, 6).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 9u);
  // Recording a known producer seq again points it at the newer seq.
  d.Record(1, 5, 55);
  EXPECT_EQ(d.Find(1, 5).seq, 55u);
  EXPECT_EQ(d.Highest(1), 9u);
}

TEST(DedupTest, OutOfOrderInsertTrimsTheLowest) {
  DedupIndex d(3, 10);
  d.Record(1, 10, 1);
  d.Record(1, 30, 2);
  d.Record(1, 40, 3);
  d.Record(1, 20, 4);  // 4 entries: the lowest (10) goes
  EXPECT_EQ(d.Find(1, 10).found, Found::kBelowWindow);
  EXPECT_EQ(d.Find(1, 20).seq, 4u);
  EXPECT_EQ(d.Find(1, 40).seq, 3u);
}

TEST(DedupTest, ForgetRemovesOnlyTheMatchingEntry) {
  DedupIndex d(10, 10);
  d.Record(1, 1, 10);
  d.Record(1, 2, 11);
  d.Record(1, 3, 12);
  // The write of seq 12 failed: its producer seq must count as new again.
  d.Forget(1, 3, 12);
  EXPECT_EQ(d.Find(1, 3).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 2u);
  // A stale forget (the producer seq was since stored at another seq) is ignored.
  d.Record(1, 2, 20);
  d.Forget(1, 2, 11);
  EXPECT_EQ(d.Find(1, 2).seq, 20u);
  // Unknown producer or producer seq: nothing happens.
  d.Forget(9, 1, 10);
  d.Forget(1, 99, 10);
  EXPECT_EQ(d.Find(1, 1).seq, 10u);
  // Forget the middle entry.
  d.Record(1, 3, 21);
  d.Forget(1, 2, 20);
  EXPECT_EQ(d.Find(1, 2).found, Found::kNew);
  EXPECT_EQ(d.Find(1, 1).seq, 10u);
  EXPECT_EQ(d.Find(1, 3).seq, 21u);
}

TEST(DedupTest, ForgetEverythingLeavesAnEmptyWindow) {
  DedupIndex d(10, 10);
  d.Record(1, 1, 10);
  d.Forget(1, 1, 10);
  EXPECT_EQ(d.Find(1, 1).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 0u);
  d.Record(1, 1, 11);
  EXPECT_EQ(d.Find(1, 1).seq, 11u);
}

TEST(DedupTest, EvictsLeastRecentProducersOverTheCap) {
  DedupIndex d(4, 10);
  // Producer p last wrote at seq 1000 + p; producer 3 writes again last.
  for (uint64_t p = 1; p <= 10; ++p) d.Record(p, 1, 1000 + p);
  d.Record(3, 2, 2000);
  EXPECT_EQ(d.producers(), 10u);
  d.Record(11, 1, 2001);  // the 11th producer: over the cap
  // Down to 90% of the cap: the two that wrote least recently (1 and 2) are gone.
  EXPECT_EQ(d.producers(), 9u);
  EXPECT_EQ(d.Find(1, 1).found, Found::kNew);
  EXPECT_EQ(d.Find(2, 1).found, Found::kNew);
  EXPECT_EQ(d.Highest(1), 0u);
  EXPECT_EQ(d.Find(3, 2).seq, 2000u);  // recently active despite a low id
  EXPECT_EQ(d.Find(4, 1).seq, 1004u);
  EXPECT_EQ(d.Find(11, 1).seq, 2001u);
  // Recording for a producer already present never evicts.
  for (uint64_t s = 2; s < 50; ++s) d.Record(4, s, 3000 + s);
  EXPECT_EQ(d.producers(), 9u);
}

TEST(DedupTest, ProducerCountStaysBounded) {
  DedupIndex d(2, 100);
  for (uint64_t p = 1; p <= 10'000; ++p) {
    d.Record(p, 1, p);
    ASSERT_LE(d.producers(), 100u);
  }
  // The most recent producer is always kept.
  EXPECT_EQ(d.Find(10'000, 1).seq, 10'000u);
}

}  // namespace
}  // namespace floe::log
