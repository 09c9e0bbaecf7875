// Fixed-width coding: the byte order on disk and on the wire is little-endian
// whatever the host; values round-trip at their limits.
#include "base/coding.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace floe {
namespace {

TEST(CodingTest, LittleEndianLayout) {
  char b[8];
  EncodeFixed16(b, 0x0201);
  EXPECT_EQ(std::string(b, 2), std::string("\x01\x02", 2));
  EncodeFixed32(b, 0x04030201u);
  EXPECT_EQ(std::string(b, 4), std::string("\x01\x02\x03\x04", 4));
  EncodeFixed64(b, 0x0807060504030201ull);
  EXPECT_EQ(std::string(b, 8), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
}

TEST(CodingTest, DecodeReadsLittleEndian) {
  const char bytes[8] = {'\xef', '\xcd', '\xab', '\x89', '\x67', '\x45', '\x23', '\x01'};
  EXPECT_EQ(DecodeFixed16(bytes), 0xcdefu);
  EXPECT_EQ(DecodeFixed32(bytes), 0x89abcdefu);
  EXPECT_EQ(DecodeFixed64(bytes), 0x0123456789abcdefull);
}

TEST(CodingTest, RoundTripAtLimits) {
  char b[8];
  for (uint16_t v : {uint16_t{0}, uint16_t{1}, uint16_t{0x7fff}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    EncodeFixed16(b, v);
    EXPECT_EQ(DecodeFixed16(b), v);
  }
  for (uint32_t v : {0u, 1u, 0xffu, 0x100u, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    EncodeFixed32(b, v);
    EXPECT_EQ(DecodeFixed32(b), v);
  }
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{0xffffffff}, uint64_t{0x100000000},
                     std::numeric_limits<uint64_t>::max() / 3, std::numeric_limits<uint64_t>::max()}) {
    EncodeFixed64(b, v);
    EXPECT_EQ(DecodeFixed64(b), v);
  }
}

TEST(CodingTest, DecodeFromUnalignedAddress) {
  // Batches are parsed at any offset of a buffer.
  char buf[16] = {};
  for (int off = 0; off < 8; ++off) {
    EncodeFixed64(buf + off, 0x1122334455667788ull + static_cast<uint64_t>(off));
    EXPECT_EQ(DecodeFixed64(buf + off), 0x1122334455667788ull + static_cast<uint64_t>(off));
    EncodeFixed32(buf + off + 1, 0xdeadbeefu);
    EXPECT_EQ(DecodeFixed32(buf + off + 1), 0xdeadbeefu);
  }
}

TEST(CodingTest, PutAppends) {
  std::string s = "x";
  PutFixed16(&s, 0x0201);
  PutFixed32(&s, 0x06050403u);
  PutFixed64(&s, 0x0e0d0c0b0a090807ull);
  ASSERT_EQ(s.size(), 1u + 2 + 4 + 8);
  EXPECT_EQ(s[0], 'x');
  for (int i = 1; i < 15; ++i) EXPECT_EQ(static_cast<int>(s[i]), i) << "byte " << i;
  EXPECT_EQ(DecodeFixed16(s.data() + 1), 0x0201u);
  EXPECT_EQ(DecodeFixed32(s.data() + 3), 0x06050403u);
  EXPECT_EQ(DecodeFixed64(s.data() + 7), 0x0e0d0c0b0a090807ull);
}

}  // namespace
}  // namespace floe
