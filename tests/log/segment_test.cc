// Segment files on real files in a temporary directory: the header block, file
// names, the appender (buffered and O_DIRECT) and the scan recovery runs.
#include "log/segment.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/env.h"
#include "log/batch.h"
#include "log/format.h"
#include "support/temp_dir.h"

namespace floe::log {
namespace {

using ::testing::HasSubstr;

using ::floe::test::TempDir;

constexpr uint64_t AlignUp(uint64_t v) { return (v + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment; }

// A data batch of `n` records with seqs [base_seq, base_seq+n), timestamps
// ts, ts+1, ..., payloads of `payload_size` bytes derived from the seq.
std::string DataBatch(uint64_t base_seq, uint32_t n, int64_t ts, size_t payload_size = 20) {
  std::string buf(kBatchHeaderSize, '\0');
  for (uint32_t i = 0; i < n; ++i) {
    std::string payload(payload_size, static_cast<char>('a' + (base_seq + i) % 26));
    Message m;
    m.payload = payload;
    AppendRecord(&buf, m, i, ts + i);
  }
  FinishBatch(buf, BatchType::kData, base_seq, n, ts, ts + n - 1);
  return buf;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() | 1);  // never zero: zeros are padding
  return s;
}

class SegmentTest : public ::testing::Test {
 protected:
  // Writes `bytes` as a whole new file and opens it for reading.
  std::unique_ptr<File> MakeFile(const std::string& bytes, const std::string& name = "seg") {
    const std::string path = dir_.path() + "/" + name;
    {
      auto w = env_->Open(path, {.create = true, .writable = true});
      EXPECT_TRUE(w.has_value());
      EXPECT_TRUE((*w)->Truncate(0).ok());
      EXPECT_TRUE((*w)->WriteAt(0, bytes).ok());
    }
    auto r = env_->Open(path, {});
    EXPECT_TRUE(r.has_value());
    return std::move(*r);
  }

  std::string ReadFile(const std::string& path) {
    auto f = env_->Open(path, {});
    EXPECT_TRUE(f.has_value());
    std::string out(*(*f)->Size(), '\0');
    auto n = (*f)->ReadAt(0, out);
    EXPECT_TRUE(n.has_value());
    out.resize(*n);
    return out;
  }

  Result<SegmentScan> Scan(const std::string& bytes, uint64_t base_seq, ScanOptions o = {}) {
    file_ = MakeFile(bytes);
    return ScanSegment(file_.get(), base_seq, o);
  }

  std::string Header(uint64_t base_seq, uint64_t id = 1) { return EncodeSegmentHeader({id, base_seq, 1234}); }

  Env* env_ = Env::Default();
  TempDir dir_;
  std::unique_ptr<File> file_;
};

// --- header and file names -------------------------------------------------

TEST_F(SegmentTest, HeaderRoundTrip) {
  const SegmentHeader h{42, 1000, 1'700'000'000'000'000};
  const std::string block = EncodeSegmentHeader(h);
  ASSERT_EQ(block.size(), kSegmentHeaderSize);
  EXPECT_EQ(std::string(block.data(), 4), "FLSG");
  EXPECT_EQ(DecodeFixed16(block.data() + kSegVersionOff), kSegmentVersion);
  EXPECT_EQ(DecodeFixed16(block.data() + kSegFlagsOff), 0u);
  EXPECT_EQ(DecodeFixed64(block.data() + kSegIdOff), 42u);
  EXPECT_EQ(DecodeFixed64(block.data() + kSegBaseSeqOff), 1000u);
  EXPECT_EQ(DecodeFixed32(block.data() + kSegCrcOff), crc32c::Value(block.data(), kSegCrcOff));
  // Everything past the used fields is zero (one aligned block for direct I/O).
  EXPECT_EQ(block.find_first_not_of('\0', kSegmentHeaderUsed), std::string::npos);

  auto d = DecodeSegmentHeader(block);
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->id, 42u);
  EXPECT_EQ(d->base_seq, 1000u);
  EXPECT_EQ(d->created_us, 1'700'000'000'000'000);
  // Only the used bytes are needed to decode it.
  auto used = DecodeSegmentHeader(std::span<const char>(block.data(), kSegmentHeaderUsed));
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, 42u);
}

TEST_F(SegmentTest, HeaderCrcCoversEveryField) {
  const std::string block = EncodeSegmentHeader({7, 8, 9});
  for (size_t i = 0; i < kSegmentHeaderUsed; ++i) {
    std::string b = block;
    b[i] ^= 0x04;
    auto d = DecodeSegmentHeader(b);
    ASSERT_FALSE(d.has_value()) << "flipped byte " << i << " went unnoticed";
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  }
}

TEST_F(SegmentTest, HeaderDecodeErrors) {
  const std::string block = EncodeSegmentHeader({7, 8, 9});
  auto reseal = [](std::string* b) { EncodeFixed32(b->data() + kSegCrcOff, crc32c::Value(b->data(), kSegCrcOff)); };

  auto short_block = DecodeSegmentHeader(std::span<const char>(block.data(), kSegmentHeaderUsed - 1));
  ASSERT_FALSE(short_block.has_value());
  EXPECT_THAT(std::string(short_block.error().message()), HasSubstr("truncated"));

  std::string magic = block;
  magic[0] = 'X';
  reseal(&magic);
  auto m = DecodeSegmentHeader(magic);
  ASSERT_FALSE(m.has_value());
  EXPECT_THAT(std::string(m.error().message()), HasSubstr("magic"));

  std::string version = block;
  EncodeFixed16(version.data() + kSegVersionOff, kSegmentVersion + 1);
  reseal(&version);
  auto v = DecodeSegmentHeader(version);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), ErrorCode::kCorruption);
  EXPECT_THAT(std::string(v.error().message()), HasSubstr("version"));

  std::string zero_seq = block;
  EncodeFixed64(zero_seq.data() + kSegBaseSeqOff, 0);
  reseal(&zero_seq);
  auto z = DecodeSegmentHeader(zero_seq);
  ASSERT_FALSE(z.has_value());
  EXPECT_EQ(z.error().code(), ErrorCode::kCorruption);

  auto zeros = DecodeSegmentHeader(std::string(kSegmentHeaderSize, '\0'));
  ASSERT_FALSE(zeros.has_value());
  EXPECT_EQ(zeros.error().code(), ErrorCode::kCorruption);
}

TEST_F(SegmentTest, FileNames) {
  EXPECT_EQ(SegmentFileName(1), "00000000000000000001.seg");
  EXPECT_EQ(SegmentFileName(1234567), "00000000000001234567.seg");
  EXPECT_EQ(SegmentFileName(UINT64_MAX), "18446744073709551615.seg");
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{99}, uint64_t{1} << 40, UINT64_MAX}) {
    uint64_t parsed = 12345;
    ASSERT_TRUE(ParseSegmentFileName(SegmentFileName(id), &parsed)) << id;
    EXPECT_EQ(parsed, id);
  }
  // Sorting names sorts ids: the zero padding makes ListDir order usable.
  EXPECT_LT(SegmentFileName(9), SegmentFileName(10));

  uint64_t id = 777;
  for (const char* bad : {"", "LOCK", "1.seg", "0000000000000000001.seg", "000000000000000000001.seg",
                          "00000000000000000001.SEG", "00000000000000000001.se", "0000000000000000000a.seg",
                          "-0000000000000000001.seg", "00000000000000000001.seg.tmp", "00000000000000000001xseg"}) {
    EXPECT_FALSE(ParseSegmentFileName(bad, &id)) << bad;
  }
  EXPECT_EQ(id, 777u);  // untouched on failure
}

// --- SegmentAppender ----------------------------------------------------------

// Wraps a real file and checks every write the appender makes: in direct mode
// aligned in offset, length and memory, and rewriting only bytes identical to
// those already in the file below the appender's end (so a torn rewrite of
// the last block cannot damage acknowledged bytes).
class CheckingFile final : public File {
 public:
  // `reader` is a buffered handle on the same file: reads need no alignment.
  CheckingFile(std::unique_ptr<File> inner, std::unique_ptr<File> reader)
      : inner_(std::move(inner)), reader_(std::move(reader)) {}

  Result<size_t> ReadAt(uint64_t offset, std::span<char> buf) override { return inner_->ReadAt(offset, buf); }
  Status WriteAt(uint64_t offset, std::span<const char> data) override {
    ++writes;
    if (inner_->direct()) {
      EXPECT_EQ(offset % kDirectIoAlignment, 0u);
      EXPECT_EQ(data.size() % kDirectIoAlignment, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(data.data()) % kDirectIoAlignment, 0u);
    }
    if (offset < committed_end) {
      const size_t overlap = std::min<uint64_t>(committed_end - offset, data.size());
      std::string existing(overlap, '\0');
      auto n = reader_->ReadAt(offset, existing);
      EXPECT_TRUE(n.has_value());
      EXPECT_EQ(*n, overlap);
      EXPECT_TRUE(std::string_view(data.data(), overlap) == existing)
          << "a write at " << offset << " changed bytes below the end " << committed_end;
      ++rewrites;
    }
    return inner_->WriteAt(offset, data);
  }
  Status Sync() override { return inner_->Sync(); }
  Status Truncate(uint64_t size) override { return inner_->Truncate(size); }
  Status Allocate(uint64_t offset, uint64_t len) override { return inner_->Allocate(offset, len); }
  Result<uint64_t> Size() override { return inner_->Size(); }
  bool direct() const override { return inner_->direct(); }

  uint64_t committed_end = 0;  // the test sets it to the appender's end after each append
  int writes = 0;
  int rewrites = 0;

 private:
  std::unique_ptr<File> inner_;
  std::unique_ptr<File> reader_;
};

class AppenderTest : public SegmentTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool direct() const { return GetParam(); }
  std::shared_ptr<CheckingFile> OpenForAppend(const std::string& path) {
    auto f = env_->Open(path, {.create = true, .writable = true, .direct = direct()});
    EXPECT_TRUE(f.has_value()) << f.error().ToString();
    if (!direct()) {
      EXPECT_FALSE((*f)->direct());
    }
    auto reader = env_->Open(path, {});
    EXPECT_TRUE(reader.has_value());
    return std::make_shared<CheckingFile>(std::move(*f), std::move(*reader));
  }
  // Appends the pieces, checks the file holds `expected` (plus, in direct
  // mode, zero padding to the block) and the end moved.
  void AppendAndCheck(SegmentAppender* a, CheckingFile* f, const std::vector<std::string>& pieces,
                      std::string* expected, const std::string& path) {
    std::vector<std::string_view> views(pieces.begin(), pieces.end());
    ASSERT_TRUE(a->Append(views).ok());
    for (const auto& p : pieces) *expected += p;
    EXPECT_EQ(a->end(), expected->size());
    f->committed_end = a->end();
    const std::string on_disk = ReadFile(path);
    ASSERT_GE(on_disk.size(), expected->size());
    EXPECT_TRUE(on_disk.compare(0, expected->size(), *expected) == 0) << "file differs from what was appended";
    if (f->direct()) {
      EXPECT_EQ(on_disk.size(), AlignUp(expected->size()));
      EXPECT_EQ(on_disk.find_first_not_of('\0', expected->size()), std::string::npos) << "padding is not zeros";
    } else {
      EXPECT_EQ(on_disk.size(), expected->size());
    }
  }
};

TEST_P(AppenderTest, BytesWrittenEqualBytesAppended) {
  const std::string path = dir_.path() + "/a.seg";
  auto file = OpenForAppend(path);
  SCOPED_TRACE(file->direct() ? "O_DIRECT" : "buffered");
  SegmentAppender a(file, 0, "");
  EXPECT_EQ(a.end(), 0u);
  EXPECT_EQ(a.file(), file.get());
  std::string expected;
  AppendAndCheck(&a, file.get(), {Header(1)}, &expected, path);
  // Small unaligned appends that share blocks, several pieces at once, an
  // append crossing many blocks, and one past the staging buffer's first size.
  AppendAndCheck(&a, file.get(), {DataBatch(1, 1, 10)}, &expected, path);
  AppendAndCheck(&a, file.get(), {DataBatch(2, 3, 20), DataBatch(5, 2, 30)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(3 * kDirectIoAlignment + 17, 1)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(1, 2)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(kDirectIoAlignment - 1, 3)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes((1 << 20) + 5000, 4), RandomBytes(100, 5)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(10, 6)}, &expected, path);
  if (file->direct()) {
    EXPECT_GT(file->rewrites, 0);  // the tail block was rewritten, unchanged
  }

  // Nothing to write: no write at all.
  const int writes = file->writes;
  std::vector<std::string_view> none = {std::string_view()};
  ASSERT_TRUE(a.Append(none).ok());
  ASSERT_TRUE(a.Append({}).ok());
  EXPECT_EQ(file->writes, writes);
  EXPECT_EQ(a.end(), expected.size());
  ASSERT_TRUE(a.Sync().ok());
}

TEST_P(AppenderTest, ResumesAtAnUnalignedEndKeepingEarlierBytes) {
  // What the stream does after reopening: a new appender at the old end,
  // given the bytes of the last partial block.
  const std::string path = dir_.path() + "/b.seg";
  std::string expected;
  {
    auto file = OpenForAppend(path);
    SegmentAppender a(file, 0, "");
    AppendAndCheck(&a, file.get(), {Header(1), DataBatch(1, 5, 100)}, &expected, path);
  }
  ASSERT_NE(expected.size() % kDirectIoAlignment, 0u);
  auto file = OpenForAppend(path);
  file->committed_end = expected.size();
  std::string tail;
  if (file->direct()) {
    const uint64_t start = expected.size() / kDirectIoAlignment * kDirectIoAlignment;
    tail = expected.substr(start);
  }
  SegmentAppender a(file, expected.size(), tail);
  AppendAndCheck(&a, file.get(), {DataBatch(6, 2, 200)}, &expected, path);
  AppendAndCheck(&a, file.get(), {DataBatch(8, 40, 300)}, &expected, path);

  // The result is a segment a scan reads to the end.
  auto r = env_->Open(path, {});
  ASSERT_TRUE(r.has_value());
  auto scan = ScanSegment(r->get(), 1, {});
  ASSERT_TRUE(scan.has_value()) << scan.error().ToString();
  EXPECT_FALSE(scan->bad_tail) << scan->tail_error.ToString();
  EXPECT_EQ(scan->end_offset, expected.size());
  EXPECT_EQ(scan->end_seq, 48u);
  EXPECT_EQ(scan->batches, 3u);
}

TEST_P(AppenderTest, AppendAtABlockBoundary) {
  const std::string path = dir_.path() + "/c.seg";
  auto file = OpenForAppend(path);
  SegmentAppender a(file, 0, "");
  std::string expected;
  AppendAndCheck(&a, file.get(), {RandomBytes(kDirectIoAlignment, 9)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(2 * kDirectIoAlignment, 10)}, &expected, path);
  AppendAndCheck(&a, file.get(), {RandomBytes(7, 11)}, &expected, path);
}

INSTANTIATE_TEST_SUITE_P(Modes, AppenderTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Direct" : "Buffered"; });

// --- ScanSegment --------------------------------------------------------------

TEST_F(SegmentTest, ScanEmptySegment) {
  auto s = Scan(Header(50), 50);
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(s->end_offset, kSegmentHeaderSize);
  EXPECT_EQ(s->end_seq, 50u);
  EXPECT_EQ(s->batches, 0u);
  EXPECT_TRUE(s->index.empty());
  EXPECT_FALSE(s->bad_tail);
}

TEST_F(SegmentTest, ScanCleanEnd) {
  const std::string b1 = DataBatch(10, 3, 1000), b2 = EncodeHoleBatch(13, 2, 2000), b3 = DataBatch(15, 4, 3000);
  auto s = Scan(Header(10) + b1 + b2 + b3, 10, {.index_interval = 1});
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_FALSE(s->bad_tail);
  EXPECT_FALSE(s->good_after_bad);
  EXPECT_TRUE(s->tail_error.ok());
  EXPECT_EQ(s->end_offset, kSegmentHeaderSize + b1.size() + b2.size() + b3.size());
  EXPECT_EQ(s->end_seq, 19u);
  EXPECT_EQ(s->batches, 3u);
  EXPECT_EQ(s->first_ts, 1000);
  EXPECT_EQ(s->last_ts, 3003);
  // Every batch indexed with an interval of one byte.
  ASSERT_EQ(s->index.size(), 3u);
  EXPECT_EQ(s->index[0].seq, 10u);
  EXPECT_EQ(s->index[0].offset, kSegmentHeaderSize);
  EXPECT_EQ(s->index[0].first_ts, 1000);
  EXPECT_EQ(s->index[1].seq, 13u);
  EXPECT_EQ(s->index[1].offset, kSegmentHeaderSize + b1.size());
  EXPECT_EQ(s->index[2].seq, 15u);
  EXPECT_EQ(s->index[2].offset, kSegmentHeaderSize + b1.size() + b2.size());
  EXPECT_EQ(s->index[2].first_ts, 3000);
}

TEST_F(SegmentTest, ScanIndexIsSparse) {
  std::string seg = Header(1);
  uint64_t seq = 1;
  for (int i = 0; i < 100; ++i, seq += 2) seg += DataBatch(seq, 2, 100 * i, 100);  // ~340 bytes each
  auto s = Scan(seg, 1, {.index_interval = 4096});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->batches, 100u);
  // ~34 KB of batches: about one entry per 4 KB, the first batch always.
  ASSERT_GE(s->index.size(), 5u);
  EXPECT_LE(s->index.size(), 12u);
  EXPECT_EQ(s->index[0].offset, kSegmentHeaderSize);
  for (size_t i = 1; i < s->index.size(); ++i) {
    EXPECT_GE(s->index[i].offset - s->index[i - 1].offset, 4096u);
    EXPECT_GT(s->index[i].seq, s->index[i - 1].seq);
    EXPECT_GE(s->index[i].first_ts, s->index[i - 1].first_ts);
  }
}

TEST_F(SegmentTest, ZeroPaddingIsACleanEnd) {
  const std::string b1 = DataBatch(1, 2, 10);
  for (size_t zeros : {size_t{1}, size_t{47}, size_t{48}, size_t{5000}, size_t{(1 << 20) + 3}}) {
    SCOPED_TRACE(zeros);
    auto s = Scan(Header(1) + b1 + std::string(zeros, '\0'), 1);
    ASSERT_TRUE(s.has_value());
    EXPECT_FALSE(s->bad_tail) << s->tail_error.ToString();
    EXPECT_EQ(s->end_offset, kSegmentHeaderSize + b1.size());
    EXPECT_EQ(s->end_seq, 3u);
  }
}

TEST_F(SegmentTest, TornTail) {
  const std::string b1 = DataBatch(1, 2, 10), b2 = DataBatch(3, 5, 20, 500);
  const std::string good = Header(1) + b1;
  // Cut inside the header of the second batch, inside its records, one byte short.
  for (size_t keep : {size_t{5}, kBatchHeaderSize + 10, b2.size() - 1}) {
    SCOPED_TRACE(keep);
    auto s = Scan(good + b2.substr(0, keep), 1);
    ASSERT_TRUE(s.has_value());
    EXPECT_TRUE(s->bad_tail);
    EXPECT_FALSE(s->good_after_bad);
    EXPECT_EQ(s->tail_error.code(), ErrorCode::kCorruption);
    EXPECT_THAT(std::string(s->tail_error.message()), HasSubstr("offset " + std::to_string(good.size())));
    EXPECT_EQ(s->end_offset, good.size());
    EXPECT_EQ(s->end_seq, 3u);
    EXPECT_EQ(s->batches, 1u);
  }
  // A torn direct-I/O write: the batch's last bytes never reached the disk
  // and read as the zeros of the padded block.
  std::string torn = b2;
  std::fill(torn.begin() + static_cast<long>(torn.size() / 2), torn.end(), '\0');
  auto s = Scan(good + torn + std::string(3000, '\0'), 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->bad_tail);
  EXPECT_FALSE(s->good_after_bad);
  EXPECT_EQ(s->end_offset, good.size());
}

TEST_F(SegmentTest, GarbageTail) {
  const std::string good = Header(1) + DataBatch(1, 2, 10);
  auto s = Scan(good + RandomBytes(777, 3), 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->bad_tail);
  EXPECT_FALSE(s->good_after_bad);
  EXPECT_EQ(s->end_offset, good.size());
  // Garbage at the very start of the batches.
  auto first = Scan(Header(1) + RandomBytes(100, 4), 1);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->bad_tail);
  EXPECT_EQ(first->end_offset, kSegmentHeaderSize);
  EXPECT_EQ(first->end_seq, 1u);
}

TEST_F(SegmentTest, DamageFollowedByAGoodBatch) {
  const std::string b1 = DataBatch(1, 2, 10), b2 = DataBatch(3, 2, 20), b3 = DataBatch(5, 2, 30);
  std::string damaged = b2;
  damaged[damaged.size() - 5] ^= 0x40;  // a payload byte: only the CRC sees it
  auto s = Scan(Header(1) + b1 + damaged + b3, 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->bad_tail);
  EXPECT_TRUE(s->good_after_bad);
  EXPECT_THAT(std::string(s->tail_error.message()), HasSubstr("checksum"));
  EXPECT_EQ(s->end_offset, kSegmentHeaderSize + b1.size());
  EXPECT_EQ(s->end_seq, 3u);

  // A good batch far behind the damage, past the scanner's 1 MiB window.
  auto far = Scan(Header(1) + b1 + RandomBytes((1 << 20) + 999, 5) + b3, 1);
  ASSERT_TRUE(far.has_value());
  EXPECT_TRUE(far->bad_tail);
  EXPECT_TRUE(far->good_after_bad);

  // A leftover batch with an older seq after the damage is not evidence of
  // later good data (it can be the tail of a superseded write).
  auto stale = Scan(Header(1) + b1 + RandomBytes(50, 6) + DataBatch(1, 2, 10), 1);
  ASSERT_TRUE(stale.has_value());
  EXPECT_TRUE(stale->bad_tail);
  EXPECT_FALSE(stale->good_after_bad);
}

TEST_F(SegmentTest, SeqGapIsBad) {
  const std::string b1 = DataBatch(1, 2, 10);
  auto s = Scan(Header(1) + b1 + DataBatch(4, 1, 20), 1);  // seq 3 missing
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->bad_tail);
  EXPECT_THAT(std::string(s->tail_error.message()), HasSubstr("expected 3"));
  EXPECT_EQ(s->end_seq, 3u);
  // The first batch must start at the segment's base seq.
  auto wrong_base = Scan(Header(1) + b1, 2);
  ASSERT_TRUE(wrong_base.has_value());
  EXPECT_TRUE(wrong_base->bad_tail);
  EXPECT_EQ(wrong_base->batches, 0u);
}

TEST_F(SegmentTest, BatchPastEndOfFileIsBad) {
  // A batch header whose length runs past the file: a torn write, even when
  // the CRC is not being checked.
  const std::string b1 = DataBatch(1, 2, 10), b2 = DataBatch(3, 10, 20, 100);
  for (bool verify : {true, false}) {
    auto s = Scan(Header(1) + b1 + b2.substr(0, 200), 1, {.verify_crc = verify});
    ASSERT_TRUE(s.has_value());
    EXPECT_TRUE(s->bad_tail);
    EXPECT_EQ(s->end_offset, kSegmentHeaderSize + b1.size());
  }
}

TEST_F(SegmentTest, StopSeq) {
  const std::string b1 = DataBatch(1, 2, 10), b2 = DataBatch(3, 2, 20), b3 = DataBatch(5, 2, 30);
  const std::string seg = Header(1) + b1 + b2 + b3;
  // A batch starting at or above stop_seq was superseded by the next segment
  // (a write that failed after reaching the disk): the scan ends before it.
  auto s = Scan(seg, 1, {.stop_seq = 3});
  ASSERT_TRUE(s.has_value());
  EXPECT_FALSE(s->bad_tail);
  EXPECT_EQ(s->end_seq, 3u);
  EXPECT_EQ(s->batches, 1u);
  EXPECT_EQ(s->end_offset, kSegmentHeaderSize + b1.size());
  auto superseded = Scan(seg, 1, {.stop_seq = 5});
  ASSERT_TRUE(superseded.has_value());
  EXPECT_FALSE(superseded->bad_tail);
  EXPECT_EQ(superseded->end_seq, 5u);
  EXPECT_EQ(superseded->batches, 2u);
  // Debris of a torn superseded write is reported, but the scan still
  // reached stop_seq, which is what a sealed segment must do.
  auto debris = Scan(Header(1) + b1 + b2 + RandomBytes(300, 7), 1, {.stop_seq = 5});
  ASSERT_TRUE(debris.has_value());
  EXPECT_TRUE(debris->bad_tail);
  EXPECT_EQ(debris->end_seq, 5u);
}

TEST_F(SegmentTest, HeadersOnlyScanSkipsTheCrc) {
  const std::string b1 = DataBatch(1, 2, 10), b2 = DataBatch(3, 2, 20);
  std::string damaged = b2;
  damaged[damaged.size() - 3] ^= 0x01;
  const std::string seg = Header(1) + b1 + damaged;
  auto fast = Scan(seg, 1, {.verify_crc = false});
  ASSERT_TRUE(fast.has_value());
  EXPECT_FALSE(fast->bad_tail);
  EXPECT_EQ(fast->end_seq, 5u);
  auto full = Scan(seg, 1, {.verify_crc = true});
  ASSERT_TRUE(full.has_value());
  EXPECT_TRUE(full->bad_tail);
  EXPECT_EQ(full->end_seq, 3u);
}

TEST_F(SegmentTest, ShortFileIsEmpty) {
  // A file shorter than its header block has no batches to scan.
  auto s = Scan(Header(1).substr(0, 100), 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->batches, 0u);
  EXPECT_EQ(s->end_seq, 1u);
  EXPECT_FALSE(s->bad_tail);
}

}  // namespace
}  // namespace floe::log
