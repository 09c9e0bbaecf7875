// Recovery on real files: the bytes of a closed stream are damaged the ways a
// crash or a bad disk damages them, then the stream is reopened. A torn tail
// of the last segment is cut and reported, and the stream goes on; damage
// that is not a torn tail is refused or reported as Corruption, never served.
// Every test runs with O_DIRECT writes and with buffered writes.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/env.h"
#include "log/format.h"
#include "log/sealed_index.h"
#include "log/segment.h"
#include "log/stream.h"
#include "support/temp_dir.h"

namespace floe::log {
namespace {

using ::testing::HasSubstr;

using ::floe::test::TempDir;

std::string PayloadFor(uint64_t i, size_t size = 150) {
  std::string p = "message-" + std::to_string(i) + "-";
  while (p.size() < size) p += static_cast<char>('a' + (i + p.size()) % 26);
  p.resize(size);
  return p;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() | 1);  // never zero: zeros are padding
  return s;
}

// Raw file surgery, bypassing the stream.
std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteAt(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  ASSERT_TRUE(f.good()) << path;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good());
}
uint64_t FileSize(const std::string& path) { return std::filesystem::file_size(path); }

class RecoveryTest : public ::testing::TestWithParam<bool> {
 protected:
  StreamOptions Options() {
    StreamOptions o;
    o.direct_io = GetParam();
    o.segment_bytes = 256 << 10;
    o.logger = [this](const std::string& line) {
      std::lock_guard l(log_mu_);
      log_.push_back(line);
    };
    return o;
  }

  std::string StreamDir() const { return dir_.path() + "/s"; }
  std::string SegmentPath(uint64_t id) const { return StreamDir() + "/" + SegmentFileName(id); }

  Result<std::unique_ptr<Stream>> Open(const StreamOptions& o) { return Stream::Open(StreamDir(), o); }
  std::unique_ptr<Stream> OpenOrDie(const StreamOptions& o) {
    auto s = Open(o);
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
    return s ? std::move(*s) : nullptr;
  }

  // Appends `batches` calls of `per_batch` messages (each call is written as
  // its own batch, since each waits for the last) with PayloadFor(seq) and
  // producer 9, producer seq = seq. Returns the segment's logical end after
  // each call (single-segment streams only).
  std::vector<uint64_t> AppendBatches(Stream* s, int batches, int per_batch) {
    std::vector<uint64_t> ends;
    for (int b = 0; b < batches; ++b) {
      const uint64_t first = s->stats().next_seq;
      std::vector<std::string> payloads;
      std::vector<Message> msgs(per_batch);
      for (int j = 0; j < per_batch; ++j) payloads.push_back(PayloadFor(first + j));
      for (int j = 0; j < per_batch; ++j) {
        msgs[j].payload = payloads[j];
        msgs[j].producer_id = 9;
        msgs[j].producer_seq = first + j;
      }
      AppendResult r = s->Append(msgs);
      EXPECT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(r.first_seq, first);
      ends.push_back(s->stats().bytes);
    }
    return ends;
  }

  // Checks the stream holds exactly seqs 1..n with their payloads.
  void ExpectIntact(Stream* s, uint64_t n) {
    EXPECT_EQ(s->stats().frontier, n);
    uint64_t next = 1;
    while (next <= n) {
      auto r = s->Read({.from_seq = next, .max_messages = 500, .max_bytes = 16 << 20});
      ASSERT_TRUE(r.has_value()) << r.error().ToString();
      ASSERT_FALSE(r->entries.empty()) << "nothing at " << next;
      for (const Entry& e : r->entries) {
        ASSERT_EQ(e.kind, Entry::Kind::kMessage);
        ASSERT_EQ(e.seq, next);
        ASSERT_EQ(e.payload, PayloadFor(next)) << next;
        ++next;
      }
    }
    auto past = s->Read({.from_seq = n + 1});
    ASSERT_TRUE(past.has_value());
    EXPECT_TRUE(past->entries.empty());
  }

  // After a cut: the stream takes new appends at the next seq, keeps them
  // across another reopen, and that reopen finds nothing to cut.
  void ExpectContinues(std::unique_ptr<Stream> s, uint64_t n) {
    ASSERT_NE(s, nullptr);
    AppendBatches(s.get(), 2, 3);
    ExpectIntact(s.get(), n + 6);
    s.reset();
    auto again = OpenOrDie(Options());
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again->recovery_report().truncated_bytes, 0u);
    ExpectIntact(again.get(), n + 6);
  }

  bool Logged(const std::string& what) {
    std::lock_guard l(log_mu_);
    for (const auto& line : log_)
      if (line.find(what) != std::string::npos) return true;
    return false;
  }

  static bool HasEvent(const Stream& s, const std::string& what) {
    for (const auto& e : s.recovery_report().events)
      if (e.find(what) != std::string::npos) return true;
    return false;
  }

  TempDir dir_;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

// Where the payload of `seq` lies in a file (the payloads are unique).
uint64_t OffsetOfPayload(const std::string& path, uint64_t seq) {
  const std::string bytes = ReadFile(path);
  const size_t pos = bytes.find(PayloadFor(seq));
  EXPECT_NE(pos, std::string::npos) << "payload of " << seq << " not in " << path;
  return pos;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::string bytes = ReadFile(path);
  ASSERT_LT(offset, bytes.size());
  WriteAt(path, offset, std::string(1, static_cast<char>(bytes[offset] ^ 0x20)));
}

TEST_P(RecoveryTest, GarbageAfterTheLastBatchIsCut) {
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 4, 5);
  }
  const std::string seg = SegmentPath(1);
  const uint64_t size = FileSize(seg);
  ASSERT_GE(size, ends.back());
  WriteAt(seg, size, RandomBytes(1000, 1));

  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  const RecoveryReport& rep = s->recovery_report();
  EXPECT_EQ(rep.truncated_bytes, size + 1000 - ends.back());
  EXPECT_EQ(rep.frontier, 20u);
  EXPECT_TRUE(HasEvent(*s, "truncated"));
  EXPECT_TRUE(Logged("truncated"));
  EXPECT_EQ(FileSize(seg), ends.back());  // cut at the end of the last good batch
  ExpectIntact(s.get(), 20);
  ExpectContinues(std::move(s), 20);
}

TEST_P(RecoveryTest, BatchCutMidwayIsCut) {
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 4, 5);
  }
  const std::string seg = SegmentPath(1);
  const uint64_t cut_at = ends[2] + (ends[3] - ends[2]) / 2;
  std::filesystem::resize_file(seg, cut_at);

  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().truncated_bytes, cut_at - ends[2]);
  EXPECT_EQ(s->recovery_report().frontier, 15u);
  EXPECT_EQ(s->stats().next_seq, 16u);  // seqs of the cut batch were never acknowledged
  EXPECT_TRUE(HasEvent(*s, "truncated"));
  ExpectIntact(s.get(), 15);
  // The producer window forgets what was cut: a resend is new, not a duplicate.
  EXPECT_EQ(s->LookupProducer(9, 15).state, Stream::ProducerLookup::State::kCommitted);
  EXPECT_EQ(s->LookupProducer(9, 16).state, Stream::ProducerLookup::State::kNew);
  EXPECT_EQ(s->HighestProducerSeq(9), 15u);
  ExpectContinues(std::move(s), 15);
}

TEST_P(RecoveryTest, BatchHeaderCutIsCut) {
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 3, 2);
  }
  std::filesystem::resize_file(SegmentPath(1), ends[1] + 20);  // inside the third batch's header
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().truncated_bytes, 20u);
  ExpectIntact(s.get(), 4);
  ExpectContinues(std::move(s), 4);
}

TEST_P(RecoveryTest, ZeroedEndOfTheLastBatchIsCut) {
  // A torn write: the last batch's second half never reached the disk.
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 4, 5);
  }
  const std::string seg = SegmentPath(1);
  const uint64_t size = FileSize(seg);
  const uint64_t from = ends[2] + (ends[3] - ends[2]) / 2;
  WriteAt(seg, from, std::string(ends[3] - from, '\0'));

  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().truncated_bytes, size - ends[2]);
  EXPECT_TRUE(HasEvent(*s, "truncated"));
  ExpectIntact(s.get(), 15);
  ExpectContinues(std::move(s), 15);
}

TEST_P(RecoveryTest, ZerosAfterTheLastBatchAreACleanEnd) {
  // Zero padding (direct-I/O blocks, preallocated space) is not damage:
  // nothing is cut and nothing is reported.
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 4, 5);
  }
  const std::string seg = SegmentPath(1);
  WriteAt(seg, FileSize(seg), std::string(3 * kDirectIoAlignment + 5, '\0'));
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().truncated_bytes, 0u);
  EXPECT_FALSE(HasEvent(*s, "truncated"));
  ExpectIntact(s.get(), 20);
  ExpectContinues(std::move(s), 20);
}

TEST_P(RecoveryTest, WholeStreamOfGarbageAfterTheHeader) {
  {
    auto s = OpenOrDie(Options());
    AppendBatches(s.get(), 1, 1);
  }
  const std::string seg = SegmentPath(1);
  WriteAt(seg, kSegmentHeaderSize, RandomBytes(5000, 2));  // over the only batch
  const uint64_t size = FileSize(seg);
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().frontier, 0u);
  EXPECT_EQ(s->recovery_report().truncated_bytes, size - kSegmentHeaderSize);
  EXPECT_EQ(FileSize(seg), kSegmentHeaderSize);
  ExpectContinues(std::move(s), 0);
}

TEST_P(RecoveryTest, AbsoluteConsistencyRefusesATornTail) {
  std::vector<uint64_t> ends;
  {
    auto s = OpenOrDie(Options());
    ends = AppendBatches(s.get(), 3, 5);
  }
  const std::string seg = SegmentPath(1);
  const uint64_t cut_at = ends[1] + 30;
  std::filesystem::resize_file(seg, cut_at);

  StreamOptions strict = Options();
  strict.recovery = RecoveryPolicy::kAbsoluteConsistency;
  auto refused = Open(strict);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruption) << refused.error().ToString();
  EXPECT_EQ(FileSize(seg), cut_at);  // nothing was cut
  // The refusal released the directory lock; the default policy then cuts.
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().truncated_bytes, 30u);
  ExpectIntact(s.get(), 10);
}

TEST_P(RecoveryTest, AbsoluteConsistencyOpensACleanStream) {
  {
    auto s = OpenOrDie(Options());
    AppendBatches(s.get(), 3, 5);
  }
  StreamOptions strict = Options();
  strict.recovery = RecoveryPolicy::kAbsoluteConsistency;
  auto s = OpenOrDie(strict);
  ASSERT_NE(s, nullptr);
  ExpectIntact(s.get(), 15);
}

TEST_P(RecoveryTest, DamageFollowedByAGoodBatchIsCorruption) {
  // Bad bytes with a good batch after them are not a torn tail: cutting
  // there would drop acknowledged records, so Open refuses.
  {
    auto s = OpenOrDie(Options());
    AppendBatches(s.get(), 5, 4);
  }
  const std::string seg = SegmentPath(1);
  const uint64_t size = FileSize(seg);
  FlipByte(seg, OffsetOfPayload(seg, 6) + 75);  // inside the second batch
  for (RecoveryPolicy policy : {RecoveryPolicy::kTruncateTornTail, RecoveryPolicy::kAbsoluteConsistency}) {
    StreamOptions o = Options();
    o.recovery = policy;
    auto s = Open(o);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
    EXPECT_EQ(FileSize(seg), size);  // nothing was cut
  }
}

TEST_P(RecoveryTest, CorruptSealedSegmentIsNeverServed) {
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 1;  // every batch indexed: a read starts at its own batch
  o.dedup_window_bytes = 1;    // open re-reads only the active segment
  constexpr uint64_t kN = 1000;
  {
    auto s = OpenOrDie(o);
    for (uint64_t i = 0; i < kN / 10; ++i) AppendBatches(s.get(), 1, 10);
    ASSERT_GE(s->stats().segments, 3u);
  }
  // Seq 100 is in the first segment, which is sealed.
  const std::string seg = SegmentPath(1);
  const uint64_t off = OffsetOfPayload(seg, 100);
  ASSERT_GT(off, 0u);
  FlipByte(seg, off + 75);

  // Sealed segments are not verified at open (only walked by their batch
  // headers, which are intact): the damage shows when the batch is read.
  auto opened = Open(o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  auto& s = *opened;
  // The damaged batch holds seqs 91..100.
  for (uint64_t from : {uint64_t{91}, uint64_t{95}, uint64_t{100}, uint64_t{1}}) {
    auto r = s->Read({.from_seq = from, .max_messages = 1000, .max_bytes = 16 << 20});
    ASSERT_FALSE(r.has_value()) << "served a corrupt batch reading from " << from;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorruption) << r.error().ToString();
  }
  // Everything outside that batch is served intact.
  auto before = s->Read({.from_seq = 1, .max_messages = 90, .max_bytes = 16 << 20});
  ASSERT_TRUE(before.has_value()) << before.error().ToString();
  ASSERT_EQ(before->entries.size(), 90u);
  for (const Entry& e : before->entries) EXPECT_EQ(e.payload, PayloadFor(e.seq));
  auto after = s->Read({.from_seq = 101, .max_messages = 1000, .max_bytes = 16 << 20});
  ASSERT_TRUE(after.has_value()) << after.error().ToString();
  ASSERT_FALSE(after->entries.empty());
  for (const Entry& e : after->entries) EXPECT_EQ(e.payload, PayloadFor(e.seq));
  // The log itself still works.
  EXPECT_EQ(s->stats().frontier, kN);
  AppendBatches(s.get(), 1, 1);
  EXPECT_EQ(s->stats().frontier, kN + 1);
}

TEST_P(RecoveryTest, TornHeaderOfTheLastSegmentIsRemoved) {
  // A crash while creating a segment leaves a file whose header block never
  // became durable; no batch is ever written before the header is synced,
  // so the file holds nothing and is removed.
  StreamOptions o = Options();
  {
    auto s = OpenOrDie(o);
    AppendBatches(s.get(), 3, 5);
  }
  struct Case {
    const char* name;
    std::string bytes;
  };
  const Case cases[] = {
      {"garbage", RandomBytes(100, 3)},
      {"garbage block", RandomBytes(kSegmentHeaderSize, 4)},
      {"zero block", std::string(kSegmentHeaderSize, '\0')},
      {"empty", std::string()},
      {"half a header", EncodeSegmentHeader({2, 16, 1}).substr(0, 20)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string torn = SegmentPath(2);
    { std::ofstream(torn, std::ios::binary) << c.bytes; }
    ASSERT_EQ(FileSize(torn), c.bytes.size());
    auto s = OpenOrDie(o);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(std::filesystem::exists(torn));
    EXPECT_TRUE(HasEvent(*s, "removed"));
    EXPECT_EQ(s->stats().segments, 1u);
    ExpectIntact(s.get(), 15);
  }
  auto s = OpenOrDie(o);
  ExpectContinues(std::move(s), 15);
}

TEST_P(RecoveryTest, TornHeaderOfALongSegmentIsCorruption) {
  // More than a header block behind a bad header: it may hold records, so it
  // is not quietly removed.
  {
    auto s = OpenOrDie(Options());
    AppendBatches(s.get(), 2, 5);
  }
  const std::string bad = SegmentPath(2);
  { std::ofstream(bad, std::ios::binary) << RandomBytes(kSegmentHeaderSize + 100, 5); }
  auto s = Open(Options());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorruption) << s.error().ToString();
  EXPECT_TRUE(std::filesystem::exists(bad));
}

TEST_P(RecoveryTest, EmptyActiveSegmentAfterARoll) {
  {
    auto s = OpenOrDie(Options());
    AppendBatches(s.get(), 2, 5);
    ASSERT_TRUE(s->TEST_RollSegment().ok());
    ASSERT_EQ(s->stats().segments, 2u);
  }
  auto s = OpenOrDie(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().segments, 2u);
  EXPECT_EQ(s->recovery_report().truncated_bytes, 0u);
  ExpectIntact(s.get(), 10);
  ExpectContinues(std::move(s), 10);
}

TEST_P(RecoveryTest, TornTailOfTheLastOfManySegments) {
  StreamOptions o = Options();
  o.segment_bytes = 32 << 10;
  {
    auto s = OpenOrDie(o);
    for (int i = 0; i < 60; ++i) AppendBatches(s.get(), 1, 5);
    ASSERT_GE(s->stats().segments, 3u);
  }
  // The newest segment file gets garbage at its end.
  uint64_t last = 0;
  for (const auto& e : std::filesystem::directory_iterator(StreamDir())) {
    uint64_t id;
    if (ParseSegmentFileName(e.path().filename(), &id)) last = std::max(last, id);
  }
  const std::string seg = SegmentPath(last);
  WriteAt(seg, FileSize(seg), RandomBytes(333, 6));
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_GE(s->recovery_report().truncated_bytes, 333u);
  ExpectIntact(s.get(), 300);
  ExpectContinues(std::move(s), 300);
}

TEST_P(RecoveryTest, CorruptSealedSegmentInsideTheDedupWindow) {
  // Open re-reads the tail of the log to rebuild the producer window; damage
  // there is reported (by Open or by the read), and its bytes never served.
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  {
    auto s = OpenOrDie(o);
    for (int i = 0; i < 60; ++i) AppendBatches(s.get(), 1, 10);
    ASSERT_GE(s->stats().segments, 2u);
  }
  const std::string seg = SegmentPath(1);
  FlipByte(seg, OffsetOfPayload(seg, 100) + 75);
  auto opened = Open(o);
  if (!opened.has_value()) {
    EXPECT_EQ(opened.error().code(), ErrorCode::kCorruption) << opened.error().ToString();
    return;
  }
  auto r = (*opened)->Read({.from_seq = 91, .max_messages = 10});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
}

TEST_P(RecoveryTest, ReadPastADamagedBatchInTheSameSegment) {
  // A reader whose seq lies after a damaged batch, in the same sparse-index
  // interval, has to walk past that batch to reach its own. The damaged bytes
  // must not be served, but the intact records after them must be: whether
  // they can be read may not depend on where the index happens to point.
  StreamOptions o = Options();
  o.segment_bytes = 64 << 10;
  o.index_interval_bytes = 1 << 20;  // one index entry per segment
  o.dedup_window_bytes = 1;          // open re-reads only the active segment
  {
    auto s = OpenOrDie(o);
    for (int i = 0; i < 60; ++i) AppendBatches(s.get(), 1, 10);
    ASSERT_GE(s->stats().segments, 2u);  // segment 1 is sealed
  }
  const std::string seg = SegmentPath(1);
  FlipByte(seg, OffsetOfPayload(seg, 50) + 75);  // batch 41..50
  auto opened = Open(o);
  ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
  auto& s = *opened;
  auto bad = s->Read({.from_seq = 45, .max_messages = 10});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorruption);
  auto r = s->Read({.from_seq = 51, .max_messages = 10});
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  ASSERT_EQ(r->entries.size(), 10u);
  EXPECT_EQ(r->entries[0].seq, 51u);
  EXPECT_EQ(r->entries[0].payload, PayloadFor(51));
}

// --- Sealed segment index (log/sealed_index.h) --------------------------------------------

TEST(SealedIndexCodecTest, RoundTripsAndRefusesEveryDamagedByte) {
  SealedIndex x{7, 100, 250, 9000, 11, 22, {{100, 4096, 11}, {180, 6000, 15}, {249, 8000, 22}}};
  const std::string bytes = EncodeSealedIndex(x);
  auto back = DecodeSealedIndex(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().ToString();
  EXPECT_EQ(back->id, 7u);
  EXPECT_EQ(back->end_seq, 250u);
  EXPECT_EQ(back->size, 9000u);
  ASSERT_EQ(back->index.size(), 3u);
  EXPECT_EQ(back->index[1].offset, 6000u);
  EXPECT_EQ(back->index[2].first_ts, 22);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x01;
    EXPECT_FALSE(DecodeSealedIndex(bad).has_value()) << "byte " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_FALSE(DecodeSealedIndex(bytes.substr(0, n)).has_value()) << n;
  // Well-formed but inconsistent: an entry past the end seq.
  x.index.push_back({250, 8500, 22});
  EXPECT_FALSE(DecodeSealedIndex(EncodeSealedIndex(x)).has_value());
}

TEST_P(RecoveryTest, SealedSegmentsAreTakenFromTheirIndexNotWalked) {
  StreamOptions o = Options();
  o.segment_bytes = 32 << 10;
  o.dedup_window_bytes = 1;  // open re-reads only the active segment
  uint64_t segments;
  {
    auto s = OpenOrDie(o);
    for (int i = 0; i < 120; ++i) AppendBatches(s.get(), 1, 5);
    segments = s->stats().segments;
    ASSERT_GE(segments, 4u);
  }
  for (uint64_t id = 1; id < segments; ++id)
    EXPECT_TRUE(std::filesystem::exists(StreamDir() + "/" + SealedIndexFileName(id))) << "sealed segment " << id;
  EXPECT_FALSE(std::filesystem::exists(StreamDir() + "/" + SealedIndexFileName(segments))) << "the active one has none";
  // Proof that a sealed segment is not walked: a batch header in segment 1
  // damaged so that a walk would refuse the stream (the segment would end
  // short of the next one) ...
  const std::string seg1 = SegmentPath(1);
  WriteAt(seg1, kSegmentHeaderSize, std::string(8, '\x55'));
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().segments_from_index, segments - 1);
  EXPECT_EQ(s->stats().frontier, 600u);
  // ... and the damaged batch is still never served (its checksum), while
  // every other sealed segment reads intact through its index.
  auto first = s->Read({.from_seq = 1, .max_messages = 5, .max_bytes = 16 << 20});
  ASSERT_FALSE(first.has_value());
  EXPECT_EQ(first.error().code(), ErrorCode::kCorruption);
  auto rest = s->Read({.from_seq = 150, .max_messages = 451, .max_bytes = 16 << 20});
  ASSERT_TRUE(rest.has_value()) << rest.error().ToString();
  for (const Entry& e : rest->entries) EXPECT_EQ(e.payload, PayloadFor(e.seq));
  s.reset();
  // Without the index the walk finds the damage at open.
  std::filesystem::remove(StreamDir() + "/" + SealedIndexFileName(1));
  auto walked = Open(o);
  ASSERT_FALSE(walked.has_value());
  EXPECT_EQ(walked.error().code(), ErrorCode::kCorruption) << walked.error().ToString();
}

TEST_P(RecoveryTest, ADamagedOrForeignIndexIsIgnoredAndWrittenAgain) {
  StreamOptions o = Options();
  o.segment_bytes = 32 << 10;
  uint64_t segments;
  {
    auto s = OpenOrDie(o);
    for (int i = 0; i < 120; ++i) AppendBatches(s.get(), 1, 5);
    segments = s->stats().segments;
    ASSERT_GE(segments, 4u);
  }
  const std::string idx1 = StreamDir() + "/" + SealedIndexFileName(1);
  const std::string idx2 = StreamDir() + "/" + SealedIndexFileName(2);
  FlipByte(idx1, 30);                                                   // damaged
  std::filesystem::copy_file(StreamDir() + "/" + SealedIndexFileName(3), idx2,
                             std::filesystem::copy_options::overwrite_existing);  // another segment's
  {
    auto s = OpenOrDie(o);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->recovery_report().segments_from_index, segments - 3);
    EXPECT_TRUE(HasEvent(*s, "ignored the index of segment 1 (sealed segment index: checksum mismatch)"));
    EXPECT_TRUE(HasEvent(*s, "ignored the index of segment 2 (it names another segment)"));
    ExpectIntact(s.get(), 600);
  }
  // Walked once, written again: the next open takes every sealed one from its index.
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().segments_from_index, segments - 1);
  ExpectIntact(s.get(), 600);
}

TEST_P(RecoveryTest, ASegmentActiveAgainLosesItsIndex) {
  StreamOptions o = Options();
  {
    auto s = OpenOrDie(o);
    AppendBatches(s.get(), 2, 5);
    ASSERT_TRUE(s->TEST_RollSegment().ok());
  }
  ASSERT_TRUE(std::filesystem::exists(StreamDir() + "/" + SealedIndexFileName(1)));
  // Segment 2's header torn (a crash while creating it): segment 1 is the
  // active one again and grows; its index must not survive to be stale.
  std::filesystem::resize_file(SegmentPath(2), 10);
  {
    auto s = OpenOrDie(o);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(std::filesystem::exists(StreamDir() + "/" + SealedIndexFileName(1)));
    AppendBatches(s.get(), 1, 5);
    ASSERT_TRUE(s->TEST_RollSegment().ok());
    AppendBatches(s.get(), 1, 5);
  }
  auto s = OpenOrDie(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->recovery_report().segments_from_index, 1u);
  ExpectIntact(s.get(), 20);
}

TEST_P(RecoveryTest, NoIndexUnderSyncNone) {
  StreamOptions o = Options();
  o.sync = SyncMode::kNone;
  {
    auto s = OpenOrDie(o);
    AppendBatches(s.get(), 2, 5);
    ASSERT_TRUE(s->TEST_RollSegment().ok());
  }
  // Its sealed bytes may never have reached the disk: walked at every open.
  EXPECT_FALSE(std::filesystem::exists(StreamDir() + "/" + SealedIndexFileName(1)));
}

TEST_P(RecoveryTest, RetentionRemovesTheIndexWithItsSegment) {
  StreamOptions o = Options();
  o.segment_bytes = 32 << 10;
  o.retention_bytes = 64 << 10;
  auto s = OpenOrDie(o);
  for (int i = 0; i < 120; ++i) AppendBatches(s.get(), 1, 5);
  ASSERT_TRUE(s->EnforceRetention().ok());
  ASSERT_GT(s->stats().first_seq, 1u) << "retention removed segments";
  size_t seg_files = 0, idx_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(StreamDir())) {
    uint64_t id;
    if (ParseSegmentFileName(e.path().filename(), &id)) ++seg_files;
    if (ParseSealedIndexFileName(e.path().filename(), &id)) {
      ++idx_files;
      EXPECT_TRUE(std::filesystem::exists(SegmentPath(id))) << "the index of removed segment " << id;
    }
  }
  EXPECT_EQ(idx_files, seg_files - 1);
}

INSTANTIATE_TEST_SUITE_P(Modes, RecoveryTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Direct" : "Buffered"; });

}  // namespace
}  // namespace floe::log
