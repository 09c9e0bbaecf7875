// The CLI's validation layer (cli/parse.h) and JSON text (cli/json.h), alone.
#include <gtest/gtest.h>

#include "cli/json.h"
#include "cli/parse.h"

namespace floe::cli {
namespace {

TEST(ParseTest, IntegersTakeDigitsOnlyInRange) {
  EXPECT_EQ(ParseInteger("7", {1, 10}).value(), 7u);
  EXPECT_EQ(ParseInteger("18446744073709551615", {0, UINT64_MAX}).value(), UINT64_MAX);
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "0x1", "1e3", "1.0", "11", "0", "18446744073709551616", "abc"}) {
    auto r = ParseInteger(bad, {1, 10});
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message().find("1 to 10"), std::string::npos) << r.error().message();
  }
  EXPECT_EQ(ParseInteger("0", {5, 10, "off"}).value(), 0u);
  EXPECT_NE(ParseInteger("3", {5, 10, "off"}).error().message().find("0 (off) or 5 to 10"), std::string::npos);
}

TEST(ParseTest, DurationsAndSizesReadTheirUnits) {
  EXPECT_EQ(ParseDurationMs("250", {0, UINT64_MAX}).value(), 250u);
  EXPECT_EQ(ParseDurationMs("30s", {0, UINT64_MAX}).value(), 30000u);
  EXPECT_EQ(ParseDurationMs("2h", {0, UINT64_MAX}).value(), 7200000u);
  EXPECT_EQ(ParseDurationMs("1d", {0, UINT64_MAX}).value(), 86400000u);
  EXPECT_FALSE(ParseDurationMs("5y", {0, UINT64_MAX}));
  EXPECT_FALSE(ParseDurationMs("99999999999999999d", {0, UINT64_MAX})) << "overflow of the unit is refused";
  EXPECT_EQ(ParseBytes("64KiB", {0, UINT64_MAX}).value(), 64u << 10);
  EXPECT_EQ(ParseBytes("1M", {0, UINT64_MAX}).value(), 1u << 20);
  EXPECT_EQ(ParseBytes("16777216B", {0, UINT64_MAX}).value(), 16u << 20);
  EXPECT_FALSE(ParseBytes("1KB", {0, UINT64_MAX})) << "decimal-looking units are not guessed";
  EXPECT_FALSE(ParseBytes("17M", {1, 16u << 20}));
}

TEST(ParseTest, SessionIdsHaveOneForm) {
  EXPECT_EQ(FormatSessionId(0x1234), "0000000000001234");
  EXPECT_EQ(ParseSessionId("0000000000001234").value(), 0x1234u);
  EXPECT_EQ(ParseSessionId("9B11DA5589A676C8").value(), 0x9b11da5589a676c8u);
  for (const char* bad : {"", "0", "0000", "0x12", "12345678901234567", "g", "-1", " 1"})
    EXPECT_FALSE(ParseSessionId(bad)) << bad;
}

TEST(ParseTest, IsoTimesAreExact) {
  EXPECT_EQ(ParseIsoTimeUs("1970-01-01T00:00:00Z").value(), 0);
  EXPECT_EQ(ParseIsoTimeUs("2026-12-01T10:00:00Z").value(), 1796119200ll * 1000000);
  EXPECT_EQ(ParseIsoTimeUs("2026-12-01T12:00:00+02:00").value(), 1796119200ll * 1000000);
  EXPECT_EQ(ParseIsoTimeUs("2026-12-01T05:30:00-0430").value(), 1796119200ll * 1000000);
  EXPECT_EQ(ParseIsoTimeUs("2026-12-01T10:00:00.123456789Z").value(), 1796119200ll * 1000000 + 123456);
  EXPECT_EQ(ParseIsoTimeUs("2026-12-01T10:00Z").value(), 1796119200ll * 1000000);
  EXPECT_EQ(ParseIsoTimeUs("2024-02-29").value(), 1709164800ll * 1000000);
  for (const char* bad : {"2026-12-01T10:00:00", "2025-02-29", "2026-13-01", "2026-12-32", "2026-12-01T24:00:00Z",
                          "1969-12-31T23:59:59Z", "2026-12-01T10:00:00ZZ", "2026-12-01T10:00:00.Z", "26-12-01",
                          "2026-12-01X10:00Z", "2026-12-01T10:00:00+25:00"})
    EXPECT_FALSE(ParseIsoTimeUs(bad)) << bad;
}

TEST(ParseTest, StartPositions) {
  const int64_t now = 1796119200ll * 1000000;
  using K = StartPosition::Kind;
  EXPECT_EQ(ParseStartPosition("first", now)->kind, K::kFirst);
  EXPECT_EQ(ParseStartPosition("last", now)->kind, K::kLast);
  EXPECT_EQ(ParseStartPosition("new", now)->kind, K::kNew);
  EXPECT_EQ(ParseStartPosition("42", now)->value, 42u);
  EXPECT_EQ(ParseStartPosition("-5m", now)->value, static_cast<uint64_t>(now - 300ll * 1000000));
  EXPECT_EQ(ParseStartPosition("-1d", now)->kind, K::kTime);
  EXPECT_EQ(ParseStartPosition("2026-12-01T09:00:00Z", now)->value, static_cast<uint64_t>(now - 3600ll * 1000000));
  EXPECT_EQ(ParseStartPosition("1000us", now)->value, 1000u);
  for (const char* bad : {"", "0", "-5", "-0s", "garbage", "2026-12-01T11:00:00Z", "18446744073709551615", "5x"}) {
    auto r = ParseStartPosition(bad, now);
    ASSERT_FALSE(r) << bad;
  }
  EXPECT_NE(ParseStartPosition("garbage", now).error().message().find("ISO 8601"), std::string::npos);
}

TEST(JsonTest, TextIsAlwaysUtf8AndDataIsExact) {
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9"));
  for (const char* bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80"})
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  EXPECT_EQ(JsonEscape("a\"\\\n\x01\x7f"), "a\\\"\\\\\\n\\u0001\\u007f");
  EXPECT_EQ(JsonEscape("x\xffy"), "x\\ufffdy");
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(JsonBytesField("payload", "ok"), "\"payload\":\"ok\"");
  EXPECT_EQ(JsonBytesField("payload", "\xff"), "\"payload\":\"/w==\",\"payload_encoding\":\"base64\"");
}

TEST(JsonTest, ErrorsCarryTheNodesCode) {
  EXPECT_EQ(ErrorJson(Status::NotFound("UNKNOWN_STREAM: stream x")),
            "{\"error\":{\"code\":\"UNKNOWN_STREAM\",\"retriable\":false,\"message\":\"UNKNOWN_STREAM: stream x\"}}");
  EXPECT_EQ(ErrorCodeName(Status::Unavailable("no usable connection")), "UNAVAILABLE");
  EXPECT_TRUE(IsRetriable(Status::Unavailable("x")));
  EXPECT_EQ(ErrorCodeName(Status::InvalidArgument("line 2: MESSAGE_TOO_LARGE: node refused")), "MESSAGE_TOO_LARGE");
}

}  // namespace
}  // namespace floe::cli
