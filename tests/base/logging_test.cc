// The node's log lines (base/logging.h): both formats exactly, escaping,
// the level filter, and that a line never spans two lines.
#include "base/logging.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace floe::logging {
namespace {

constexpr int64_t kNoon = 1764676800123;  // 2025-12-02T12:00:00.123Z

TEST(LoggingTest, TextLineHasTimeLevelEventFieldsAndSentence) {
  EXPECT_EQ(FormatLine(Format::kText, kNoon, Level::kWarn, "lease.lost", "lost stream s: taken",
                       {{"node", "n1"}, {"stream", "s"}, {"epoch", uint64_t{7}}}),
            "2025-12-02T12:00:00.123Z WARN  lease.lost node=n1 stream=s epoch=7: lost stream s: taken");
}

TEST(LoggingTest, TextValuesWithSpacesOrQuotesAreQuotedAndNewlinesFlattened) {
  EXPECT_EQ(FormatLine(Format::kText, kNoon, Level::kInfo, "e", "two\nlines", {{"dir", "a b"}, {"q", "x\"y"}, {"e", ""}}),
            "2025-12-02T12:00:00.123Z INFO  e dir=\"a b\" q=\"x\\\"y\" e=\"\": two lines");
}

TEST(LoggingTest, JsonLineIsOneObjectWithNumbersKept) {
  EXPECT_EQ(FormatLine(Format::kJson, kNoon, Level::kError, "stream.write_failed", "write \"x\" failed",
                       {{"dir", "/d"}, {"epoch", int64_t{-3}}}),
            "{\"ts\":\"2025-12-02T12:00:00.123Z\",\"level\":\"error\",\"event\":\"stream.write_failed\","
            "\"msg\":\"write \\\"x\\\" failed\",\"dir\":\"/d\",\"epoch\":-3}");
}

TEST(LoggingTest, JsonEscapesControlBytesAndReplacesWhatIsNotUtf8) {
  const std::string line = FormatLine(Format::kJson, kNoon, Level::kInfo, "e", std::string("a\x01\n\xff", 4),
                                      {{"client", std::string("\xc0\xaf")}});
  EXPECT_NE(line.find("\"msg\":\"a\\u0001\\n\\ufffd\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"client\":\"\\ufffd\\ufffd\""), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LoggingTest, AFieldNamedLikeAMemberIsRenamedNotDuplicated) {
  const std::string line = FormatLine(Format::kJson, kNoon, Level::kInfo, "e", "m", {{"msg", "x"}, {"level", "y"}});
  EXPECT_NE(line.find("\"field.msg\":\"x\",\"field.level\":\"y\""), std::string::npos) << line;
  EXPECT_EQ(line.find("\"msg\":\"x\""), std::string::npos) << line;
}

TEST(LoggingTest, LinesBelowTheLevelAreNotWritten) {
  std::vector<std::string> lines;
  TEST_SetSink([&](std::string_view l) { lines.emplace_back(l); });
  Configure(Level::kWarn, Format::kJson);
  Info("quiet", "not written");
  Debug("quiet", "not written");
  Warn("loud", "written", {{"n", 1}});
  Error("louder", "written too");
  Configure(Level::kInfo, Format::kText);
  TEST_SetSink(nullptr);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("\"event\":\"loud\""), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].back(), '\n');
  EXPECT_NE(lines[1].find("\"level\":\"error\""), std::string::npos) << lines[1];
}

TEST(LoggingTest, ParsesOnlyTheNamedLevelsAndFormats) {
  EXPECT_EQ(*ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(*ParseLevel("error"), Level::kError);
  EXPECT_FALSE(ParseLevel("INFO"));
  EXPECT_FALSE(ParseLevel(""));
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  EXPECT_FALSE(ParseFormat("xml"));
}

}  // namespace
}  // namespace floe::logging
