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

}  // namespace
}  // namespace floe::mqtt
