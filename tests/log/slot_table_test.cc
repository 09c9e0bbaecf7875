// The in-doubt slot table: seqs are assigned in doubt, resolved in any order
// to committed or hole, and the visible frontier passes a slot only once it
// and every slot below it are resolved. Example tests, then a property test of
// random assign/resolve sequences against a plain model.
#include "log/slot_table.h"

#include <cstdint>
#include <map>
#include <vector>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace floe::log {
namespace {

TEST(SlotTableTest, StartsEmptyAtNextSeq) {
  SlotTable t(1);
  EXPECT_EQ(t.frontier(), 0u);
  EXPECT_EQ(t.next_seq(), 1u);
  EXPECT_EQ(t.in_doubt_ranges(), 0u);
  SlotTable resumed(501);  // after recovery: 1..500 are on disk
  EXPECT_EQ(resumed.frontier(), 500u);
  EXPECT_EQ(resumed.next_seq(), 501u);
  EXPECT_EQ(resumed.StateOf(500), SlotState::kCommitted);
}

TEST(SlotTableTest, AssignMarksInDoubtAndHidesFromFrontier) {
  SlotTable t(1);
  EXPECT_EQ(t.Assign(3), 1u);  // seqs 1..3
  EXPECT_EQ(t.Assign(1), 4u);  // seq 4
  EXPECT_EQ(t.next_seq(), 5u);
  EXPECT_EQ(t.frontier(), 0u);  // nothing resolved, nothing visible
  EXPECT_EQ(t.in_doubt_ranges(), 2u);
  for (uint64_t s = 1; s <= 4; ++s) EXPECT_EQ(t.StateOf(s), SlotState::kInDoubt) << s;

  EXPECT_TRUE(t.Resolve(1, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 3u);
  EXPECT_EQ(t.in_doubt_ranges(), 1u);
  EXPECT_EQ(t.StateOf(4), SlotState::kInDoubt);
  EXPECT_TRUE(t.Resolve(4, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 4u);
  EXPECT_EQ(t.in_doubt_ranges(), 0u);
}

TEST(SlotTableTest, OutOfOrderResolutionWaitsForTheLowest) {
  SlotTable t(10);
  const uint64_t a = t.Assign(2);  // 10, 11
  const uint64_t b = t.Assign(2);  // 12, 13
  const uint64_t c = t.Assign(1);  // 14
  EXPECT_TRUE(t.Resolve(c, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 9u);  // 14 is resolved but 10..13 are not
  EXPECT_EQ(t.StateOf(14), SlotState::kCommitted);
  EXPECT_EQ(t.StateOf(12), SlotState::kInDoubt);
  EXPECT_TRUE(t.Resolve(b, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 9u);
  EXPECT_EQ(t.in_doubt_ranges(), 1u);
  EXPECT_TRUE(t.Resolve(a, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 14u);  // jumps over everything resolved at once
  EXPECT_EQ(t.in_doubt_ranges(), 0u);
}

TEST(SlotTableTest, HolesResolveAndLetTheFrontierPass) {
  SlotTable t(1);
  const uint64_t a = t.Assign(1);
  const uint64_t b = t.Assign(5);
  const uint64_t c = t.Assign(1);
  EXPECT_TRUE(t.Resolve(b, SlotState::kHole));
  EXPECT_EQ(t.StateOf(2), SlotState::kHole);
  EXPECT_EQ(t.StateOf(6), SlotState::kHole);
  EXPECT_EQ(t.StateOf(7), SlotState::kInDoubt);
  EXPECT_EQ(t.frontier(), 0u);
  EXPECT_TRUE(t.Resolve(a, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 6u);  // a hole is resolved: the frontier passes it
  EXPECT_TRUE(t.Resolve(c, SlotState::kHole));
  EXPECT_EQ(t.frontier(), 7u);
}

TEST(SlotTableTest, ARangeInDoubtPinsTheFrontier) {
  // A write whose outcome could not be recorded stays in doubt: nothing
  // above it may become visible, however much else resolves.
  SlotTable t(1);
  t.Assign(1);
  const uint64_t stuck = t.Assign(1);
  for (int i = 0; i < 100; ++i) {
    const uint64_t s = t.Assign(1 + i % 3);
    EXPECT_TRUE(t.Resolve(s, i % 4 == 0 ? SlotState::kHole : SlotState::kCommitted));
  }
  EXPECT_TRUE(t.Resolve(1, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 1u);
  EXPECT_EQ(t.in_doubt_ranges(), 1u);
  EXPECT_EQ(t.StateOf(stuck), SlotState::kInDoubt);
  EXPECT_EQ(t.StateOf(t.next_seq() - 1), SlotState::kCommitted);
  EXPECT_TRUE(t.Resolve(stuck, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), t.next_seq() - 1);
}

TEST(SlotTableTest, ResolveTwiceOrUnknownReturnsFalse) {
  SlotTable t(1);
  const uint64_t a = t.Assign(3);
  const uint64_t b = t.Assign(1);
  EXPECT_TRUE(t.Resolve(b, SlotState::kCommitted));
  EXPECT_FALSE(t.Resolve(b, SlotState::kHole));  // above the frontier, already resolved
  EXPECT_EQ(t.StateOf(b), SlotState::kCommitted);  // and unchanged
  EXPECT_FALSE(t.Resolve(a + 1, SlotState::kCommitted));  // inside a range, not its start
  EXPECT_FALSE(t.Resolve(100, SlotState::kCommitted));    // never assigned
  EXPECT_EQ(t.frontier(), 0u);
  EXPECT_TRUE(t.Resolve(a, SlotState::kCommitted));
  EXPECT_EQ(t.frontier(), 4u);
  EXPECT_FALSE(t.Resolve(a, SlotState::kCommitted));  // at or below the frontier
  EXPECT_EQ(t.frontier(), 4u);
}

TEST(SlotTableTest, LargeRangeCounts) {
  SlotTable t(1);
  const uint64_t a = t.Assign(UINT32_MAX);
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(t.next_seq(), uint64_t{UINT32_MAX} + 1);
  EXPECT_EQ(t.StateOf(uint64_t{UINT32_MAX}), SlotState::kInDoubt);
  EXPECT_TRUE(t.Resolve(a, SlotState::kHole));
  EXPECT_EQ(t.frontier(), uint64_t{UINT32_MAX});
}

// --- property ---------------------------------------------------------------

// The model: every assigned range and its state; the frontier is computed
// from scratch as the highest seq with every seq at or below it resolved.
struct Model {
  struct Range {
    uint32_t count;
    SlotState state;
  };
  uint64_t start;
  std::map<uint64_t, Range> ranges;  // by first seq

  uint64_t Frontier() const {
    uint64_t f = start - 1;
    for (const auto& [first, r] : ranges) {
      if (r.state == SlotState::kInDoubt) break;
      f = first + r.count - 1;
    }
    return f;
  }
  size_t InDoubt() const {
    size_t n = 0;
    for (const auto& [first, r] : ranges) n += r.state == SlotState::kInDoubt;
    return n;
  }
};

RC_GTEST_PROP(SlotTableProperty, FrontierMatchesModelAndNeverDecreases, ()) {
  const uint64_t start = *rc::gen::inRange<uint64_t>(1, 1'000'000);
  // Each op is a random word: its low bits pick the operation, the rest its
  // argument, so rapidcheck can shrink failing sequences.
  const auto ops = *rc::gen::container<std::vector<uint32_t>>(rc::gen::arbitrary<uint32_t>());
  SlotTable t(start);
  Model m{start, {}};
  uint64_t next = start;
  uint64_t last_frontier = t.frontier();
  for (uint32_t op : ops) {
    const uint32_t arg = op >> 3;
    switch (op & 7) {
      case 0:
      case 1:
      case 2: {  // assign
        const uint32_t count = 1 + arg % 4;
        const uint64_t first = t.Assign(count);
        RC_ASSERT(first == next);
        m.ranges[first] = {count, SlotState::kInDoubt};
        next += count;
        break;
      }
      case 3:
      case 4:
      case 5: {  // resolve a range that is in doubt
        std::vector<uint64_t> open;
        for (const auto& [first, r] : m.ranges)
          if (r.state == SlotState::kInDoubt) open.push_back(first);
        if (open.empty()) break;
        const uint64_t first = open[arg % open.size()];
        const SlotState state = (arg / 7) % 2 ? SlotState::kHole : SlotState::kCommitted;
        RC_ASSERT(t.Resolve(first, state));
        m.ranges[first].state = state;
        break;
      }
      case 6: {  // resolve one that is not in doubt or not a range start
        if (m.ranges.empty()) {
          RC_ASSERT(!t.Resolve(start + arg % 10, SlotState::kCommitted));
          break;
        }
        auto it = m.ranges.begin();
        std::advance(it, arg % m.ranges.size());
        if (it->second.state != SlotState::kInDoubt) {
          RC_ASSERT(!t.Resolve(it->first, SlotState::kCommitted));
        } else if (it->second.count > 1) {
          RC_ASSERT(!t.Resolve(it->first + 1, SlotState::kCommitted));
        }
        break;
      }
      case 7:  // a seq never assigned
        RC_ASSERT(!t.Resolve(next + arg % 10, SlotState::kCommitted));
        break;
    }
    const uint64_t f = t.frontier();
    RC_ASSERT(f == m.Frontier());
    RC_ASSERT(f >= last_frontier);
    RC_ASSERT(t.next_seq() == next);
    RC_ASSERT(t.in_doubt_ranges() == m.InDoubt());
    last_frontier = f;
  }
  // Every assigned seq above the frontier reports its model state.
  for (const auto& [first, r] : m.ranges) {
    for (uint64_t s = first; s < first + r.count; ++s) {
      if (s <= t.frontier()) {
        RC_ASSERT(t.StateOf(s) == SlotState::kCommitted);
      } else {
        RC_ASSERT(t.StateOf(s) == r.state);
      }
    }
  }
}

}  // namespace
}  // namespace floe::log
