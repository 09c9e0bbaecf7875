// Topic names, topic filters and matching, from the examples of MQTT 5.0
// sections 4.7 and 4.8.2 (the same in 3.1.1 section 4.7).
#include "mqtt/topic.h"

#include <string>

#include <gtest/gtest.h>

#include "test_util.h"

namespace floe::mqtt {
namespace {

using testing::Hex;

bool ValidFilter(std::string_view f, Version v = Version::kV5) { return ValidateTopicFilter(f, v).ok(); }

TEST(TopicName, ValidNames) {
  for (const char* name : {"sport/tennis/player1", "/", "/finance", "finance/", "Accounts payable", "$SYS/broker",
                           "a//b", " "}) {
    EXPECT_TRUE(ValidateTopicName(name).ok()) << name;
  }
  EXPECT_TRUE(ValidateTopicName(std::string(65'535, 'a')).ok());
}

TEST(TopicName, InvalidNames) {
  EXPECT_FALSE(ValidateTopicName("").ok());                          // [MQTT-4.7.3-1]
  EXPECT_FALSE(ValidateTopicName("sport/+").ok());                   // [MQTT-4.7.0-1]
  EXPECT_FALSE(ValidateTopicName("sport/#").ok());
  EXPECT_FALSE(ValidateTopicName("a+b").ok());
  EXPECT_FALSE(ValidateTopicName(std::string("a\0b", 3)).ok());     // [MQTT-4.7.3-2]
  EXPECT_FALSE(ValidateTopicName(Hex("'a/' ed a0 80")).ok());         // a surrogate
  EXPECT_FALSE(ValidateTopicName(std::string(65'536, 'a')).ok());   // [MQTT-4.7.3-3]
  Status s = ValidateTopicName("sport/+");
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("wildcard"), std::string_view::npos);
}

TEST(TopicFilter, SpecExamplesOfValidity) {
  // 4.7.1.2
  EXPECT_TRUE(ValidFilter("sport/tennis/player1/#"));
  EXPECT_TRUE(ValidFilter("sport/#"));
  EXPECT_TRUE(ValidFilter("#"));
  EXPECT_TRUE(ValidFilter("sport/tennis/#"));
  EXPECT_FALSE(ValidFilter("sport/tennis#"));
  EXPECT_FALSE(ValidFilter("sport/tennis/#/ranking"));
  // 4.7.1.3
  EXPECT_TRUE(ValidFilter("+"));
  EXPECT_TRUE(ValidFilter("+/tennis/#"));
  EXPECT_FALSE(ValidFilter("sport+"));
  EXPECT_TRUE(ValidFilter("sport/+/player1"));
  EXPECT_TRUE(ValidFilter("/+"));
  EXPECT_TRUE(ValidFilter("+/+"));
  // Others.
  EXPECT_FALSE(ValidFilter(""));
  EXPECT_FALSE(ValidFilter("#/"));
  EXPECT_FALSE(ValidFilter("a/b#"));
  EXPECT_FALSE(ValidFilter("a/++"));
  EXPECT_FALSE(ValidFilter("a/+b/c"));
  EXPECT_FALSE(ValidFilter("##"));
  EXPECT_TRUE(ValidFilter("//"));
  EXPECT_TRUE(ValidFilter("$SYS/#"));
  EXPECT_FALSE(ValidFilter(std::string("a/\0", 3)));
}

TEST(TopicFilter, SharedSubscriptionForm) {
  EXPECT_TRUE(ValidFilter("$share/consumer1/sport/tennis/+"));
  EXPECT_TRUE(ValidFilter("$share/consumer1//finance"));
  EXPECT_TRUE(ValidFilter("$share/g/#"));
  EXPECT_FALSE(ValidFilter("$share/"));               // no ShareName [MQTT-4.8.2-1]
  EXPECT_FALSE(ValidFilter("$share//a"));             // empty ShareName
  EXPECT_FALSE(ValidFilter("$share/group"));          // no "/" and filter [MQTT-4.8.2-2]
  EXPECT_FALSE(ValidFilter("$share/group/"));         // empty filter
  EXPECT_FALSE(ValidFilter("$share/gr+oup/a"));       // wildcard in ShareName
  EXPECT_FALSE(ValidFilter("$share/#/a"));
  EXPECT_FALSE(ValidFilter("$share/g/a#"));           // the filter part follows 4.7
  EXPECT_TRUE(ValidFilter("$shared/g"));              // not "$share/": an ordinary filter
  EXPECT_TRUE(ValidFilter("$share"));
  // MQTT 3.1.1 has no shared subscriptions: an ordinary filter.
  EXPECT_TRUE(ValidFilter("$share/group", Version::kV311));
  EXPECT_TRUE(ValidFilter("$share//a", Version::kV311));
  EXPECT_FALSE(ValidFilter("$share/g/a#", Version::kV311));

  auto s = SplitSharedFilter("$share/consumer1/sport/tennis/+");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->share_name, "consumer1");
  EXPECT_EQ(s->filter, "sport/tennis/+");
  auto f = SplitSharedFilter("$share/consumer1//finance");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->filter, "/finance");
  EXPECT_FALSE(SplitSharedFilter("sport/#").has_value());
}

TEST(TopicMatches, MultiLevelWildcardExamples) {
  // 4.7.1.2: "sport/tennis/player1/#"
  EXPECT_TRUE(TopicMatches("sport/tennis/player1/#", "sport/tennis/player1"));
  EXPECT_TRUE(TopicMatches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(TopicMatches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  EXPECT_FALSE(TopicMatches("sport/tennis/player1/#", "sport/tennis/player2"));
  EXPECT_TRUE(TopicMatches("sport/#", "sport"));  // "#" includes the parent level
  EXPECT_TRUE(TopicMatches("#", "sport/tennis"));
  EXPECT_TRUE(TopicMatches("#", "/"));
  EXPECT_FALSE(TopicMatches("sport/#", "sports"));
}

TEST(TopicMatches, SingleLevelWildcardExamples) {
  // 4.7.1.3
  EXPECT_TRUE(TopicMatches("sport/tennis/+", "sport/tennis/player1"));
  EXPECT_TRUE(TopicMatches("sport/tennis/+", "sport/tennis/player2"));
  EXPECT_FALSE(TopicMatches("sport/tennis/+", "sport/tennis/player1/ranking"));
  EXPECT_FALSE(TopicMatches("sport/+", "sport"));
  EXPECT_TRUE(TopicMatches("sport/+", "sport/"));
  EXPECT_TRUE(TopicMatches("+/+", "/finance"));
  EXPECT_TRUE(TopicMatches("/+", "/finance"));
  EXPECT_FALSE(TopicMatches("+", "/finance"));
  EXPECT_TRUE(TopicMatches("+/tennis/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(TopicMatches("sport/+/player1", "sport/tennis/player1"));
  EXPECT_FALSE(TopicMatches("sport/+/player1", "sport/tennis/player2"));
  EXPECT_TRUE(TopicMatches("+/+/#", "a/b"));
  EXPECT_TRUE(TopicMatches("a/+/#", "a/b"));
  EXPECT_FALSE(TopicMatches("a/+/+", "a/b"));
}

TEST(TopicMatches, DollarTopicsAreNotMatchedByARootWildcard) {
  // 4.7.2 [MQTT-4.7.2-1]
  EXPECT_FALSE(TopicMatches("#", "$SYS/monitor/Clients"));
  EXPECT_FALSE(TopicMatches("+/monitor/Clients", "$SYS/monitor/Clients"));
  EXPECT_TRUE(TopicMatches("$SYS/#", "$SYS/monitor/Clients"));
  EXPECT_TRUE(TopicMatches("$SYS/monitor/+", "$SYS/monitor/Clients"));
  EXPECT_TRUE(TopicMatches("$SYS/#", "$SYS"));
  EXPECT_FALSE(TopicMatches("+", "$SYS"));
  // Only the root: a '$' further down is an ordinary character.
  EXPECT_TRUE(TopicMatches("a/+", "a/$b"));
  EXPECT_TRUE(TopicMatches("a/#", "a/$b/c"));
}

TEST(TopicMatches, ExactAndCaseSensitive) {
  // 4.7.3 [MQTT-4.7.3-4]: no normalisation.
  EXPECT_TRUE(TopicMatches("ACCOUNTS", "ACCOUNTS"));
  EXPECT_FALSE(TopicMatches("ACCOUNTS", "Accounts"));
  EXPECT_FALSE(TopicMatches("/finance", "finance"));
  EXPECT_FALSE(TopicMatches("finance", "finance/"));
  EXPECT_TRUE(TopicMatches("Accounts payable", "Accounts payable"));
  EXPECT_TRUE(TopicMatches("/", "/"));
  EXPECT_TRUE(TopicMatches("a//b", "a//b"));
  EXPECT_TRUE(TopicMatches("a/+/b", "a//b"));
  EXPECT_FALSE(TopicMatches("a/b", "a/b/c"));
  EXPECT_FALSE(TopicMatches("a/b/c", "a/b"));
  EXPECT_FALSE(TopicMatches("a/bc", "a/b"));
}

// FiltersOverlap: the stream bindings' "can this subscription's filter
// and this binding's filter both match one topic".
TEST(FiltersOverlap, Examples) {
  EXPECT_TRUE(FiltersOverlap("sensors/#", "#"));
  EXPECT_TRUE(FiltersOverlap("sensors/#", "sensors/+/temp"));
  EXPECT_TRUE(FiltersOverlap("sensors/#", "sensors"));      // "sensors/#" matches "sensors"
  EXPECT_TRUE(FiltersOverlap("+/temp", "sensors/+"));       // sensors/temp
  EXPECT_TRUE(FiltersOverlap("a/b", "a/b"));
  EXPECT_TRUE(FiltersOverlap("a/+", "a/"));                 // an empty level
  EXPECT_FALSE(FiltersOverlap("sensors/#", "alerts/+"));
  EXPECT_FALSE(FiltersOverlap("a/+", "a"));                 // '+' needs a level
  EXPECT_FALSE(FiltersOverlap("a/+/c", "a/b"));
  EXPECT_FALSE(FiltersOverlap("a/b", "a/c"));
  EXPECT_FALSE(FiltersOverlap("a/+", "a/b/c"));
  // [MQTT-4.7.2-1]: a leading wildcard matches no '$' topic.
  EXPECT_FALSE(FiltersOverlap("#", "$SYS/#"));
  EXPECT_FALSE(FiltersOverlap("+/x", "$SYS/x"));
  EXPECT_TRUE(FiltersOverlap("$SYS/#", "$SYS/+"));
  EXPECT_TRUE(FiltersOverlap("#", "a/$x"));                 // '$' only counts first
}

// Against the definition: some name matches both. Every filter of up to 3
// levels over {x, $s, +, #} against every name of up to 4 levels over
// {x, $s, z} (z: a literal neither filter names, which any '+' takes).
TEST(FiltersOverlap, AgreesWithTopicMatchesExhaustively) {
  auto all = [](const std::vector<std::string>& alphabet, size_t depth, bool filters) {
    std::vector<std::string> out, frontier{""};
    for (size_t d = 1; d <= depth; ++d) {
      std::vector<std::string> next;
      for (const auto& prefix : frontier)
        for (const auto& level : alphabet) {
          if (!prefix.empty() && prefix.ends_with("#")) continue;
          std::string f = prefix.empty() && d == 1 ? level : prefix + "/" + level;
          next.push_back(f);
        }
      for (auto& f : next) out.push_back(f);
      frontier = next;
    }
    (void)filters;
    return out;
  };
  const auto filters = all({"x", "$s", "+", "#"}, 3, true);
  const auto names = all({"x", "$s", "z"}, 4, false);
  size_t overlapping = 0;
  for (const auto& a : filters)
    for (const auto& b : filters) {
      bool some = false;
      for (const auto& n : names)
        if (TopicMatches(a, n) && TopicMatches(b, n)) {
          some = true;
          break;
        }
      overlapping += some;
      ASSERT_EQ(FiltersOverlap(a, b), some) << a << " and " << b;
    }
  EXPECT_GT(overlapping, 100u);  // the cases are not all one way
}

TEST(CompareSpecificity, LiteralBeatsPlusBeatsHash) {
  EXPECT_LT(CompareSpecificity("sensors/kitchen/temp", "sensors/+/temp"), 0);
  EXPECT_LT(CompareSpecificity("sensors/+/temp", "sensors/#"), 0);
  EXPECT_LT(CompareSpecificity("sensors/#", "+/kitchen/temp"), 0);  // the first level decides
  EXPECT_GT(CompareSpecificity("#", "sensors/#"), 0);
  EXPECT_GT(CompareSpecificity("a/b/#", "a/b"), 0);                  // both match "a/b": the exact end wins
  EXPECT_LT(CompareSpecificity("a/b", "a/b/#"), 0);
  EXPECT_LT(CompareSpecificity("a/+/+", "a/+"), 0);                  // same kinds: more levels
  EXPECT_EQ(CompareSpecificity("a/+", "b/+"), 0);
  EXPECT_EQ(CompareSpecificity("a/b", "a/b"), 0);
}

}  // namespace
}  // namespace floe::mqtt
