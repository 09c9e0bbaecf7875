// CRC32C: both implementations against the standard test vectors (RFC 3720
// B.4 and the iSCSI vector LevelDB uses), incremental use, and hardware ==
// portable on every length and alignment a batch can have in memory.
#include "base/crc32c.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace floe::crc32c {
namespace {

using ExtendFn = uint32_t (*)(uint32_t, const char*, size_t);

struct Impl {
  const char* name;
  ExtendFn extend;
};

// The implementations this machine can run; the portable one always.
std::vector<Impl> Implementations() {
  std::vector<Impl> impls = {{"portable", &ExtendPortable}};
  if (HasHardware()) impls.push_back({"hardware", &ExtendHardware});
  return impls;
}

uint32_t Whole(ExtendFn fn, const std::string& s) { return fn(0, s.data(), s.size()); }

TEST(Crc32cTest, StandardVectors) {
  std::string zeros(32, '\0');
  std::string ones(32, '\xff');
  std::string ascending(32, '\0');
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  // An iSCSI SCSI Read (10) command PDU (RFC 3720 B.4).
  const unsigned char iscsi[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
      0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  for (const Impl& impl : Implementations()) {
    SCOPED_TRACE(impl.name);
    EXPECT_EQ(Whole(impl.extend, ""), 0u);
    EXPECT_EQ(Whole(impl.extend, "123456789"), 0xE3069283u);
    EXPECT_EQ(Whole(impl.extend, zeros), 0x8A9136AAu);
    EXPECT_EQ(Whole(impl.extend, ones), 0x62A8AB43u);
    EXPECT_EQ(Whole(impl.extend, ascending), 0x46DD794Eu);
    EXPECT_EQ(Whole(impl.extend, descending), 0x113FDB5Cu);
    EXPECT_EQ(impl.extend(0, reinterpret_cast<const char*>(iscsi), sizeof(iscsi)), 0xD9963A56u);
  }
}

TEST(Crc32cTest, ValueAndExtendUseAWorkingImplementation) {
  EXPECT_EQ(Value("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Extend(Value("1234", 4), "56789", 5), 0xE3069283u);
}

TEST(Crc32cTest, HardwareMatchesCpuid) {
#if defined(__x86_64__)
  EXPECT_EQ(HasHardware(), static_cast<bool>(__builtin_cpu_supports("sse4.2")));
#else
  EXPECT_FALSE(HasHardware());
#endif
}

// Extend must continue a CRC exactly, whatever the split: the log computes one
// CRC over a header and records that are not contiguous in every caller.
TEST(Crc32cTest, ExtendInPiecesEqualsWhole) {
  std::mt19937 rng(42);
  std::string data(300, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (const Impl& impl : Implementations()) {
    SCOPED_TRACE(impl.name);
    const uint32_t whole = Whole(impl.extend, data);
    for (size_t split = 0; split <= data.size(); ++split) {
      uint32_t crc = impl.extend(0, data.data(), split);
      crc = impl.extend(crc, data.data() + split, data.size() - split);
      ASSERT_EQ(crc, whole) << "split at " << split;
    }
    // Three pieces, byte by byte at the end.
    uint32_t crc = impl.extend(0, data.data(), 17);
    crc = impl.extend(crc, data.data() + 17, 100);
    for (size_t i = 117; i < data.size(); ++i) crc = impl.extend(crc, data.data() + i, 1);
    EXPECT_EQ(crc, whole);
  }
}

TEST(Crc32cTest, DifferentDataDifferentCrc) {
  // Single-bit flips in a batch must change its CRC (a CRC detects every one).
  std::string data(64, 'a');
  const uint32_t base = Value(data.data(), data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = data;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      ASSERT_NE(Value(flipped.data(), flipped.size()), base) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(Crc32cTest, HardwareEqualsPortableOnAllLengthsAndAlignments) {
  if (!HasHardware()) GTEST_SKIP() << "no CRC32C instruction on this CPU";
  std::mt19937_64 rng(7);
  std::vector<char> buf(1000 + 16);
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t align = 0; align < 16; ++align) {
    for (size_t len = 0; len + align <= buf.size() && len <= 1000; ++len) {
      const char* p = buf.data() + align;
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(ExtendHardware(0, p, len), ExtendPortable(0, p, len)) << "align " << align << " len " << len;
      ASSERT_EQ(ExtendHardware(seed, p, len), ExtendPortable(seed, p, len))
          << "align " << align << " len " << len << " seed " << seed;
    }
  }
}

}  // namespace
}  // namespace floe::crc32c
