// The stream bindings' choices (docs/mqtt.md "Topics onto streams"): which
// stream a topic goes to when several filters match (the tie rule), and
// which streams a subscription reads.
#include <gtest/gtest.h>

#include "frontend/mqtt/bindings.h"

namespace floe::frontend::mqtt {
namespace {

const std::string kDefault = "mqtt";

TEST(RouteTopic, NoneMatchesGoesToTheDefault) {
  const std::vector<Binding> b{{"sensors/#", "sensors"}, {"alerts/+", "alerts"}};
  EXPECT_EQ(RouteTopic(b, "other/x", kDefault), "mqtt");
  EXPECT_EQ(RouteTopic(b, "alerts/a/b", kDefault), "mqtt");  // '+' is one level
  EXPECT_EQ(RouteTopic({}, "sensors/1", kDefault), "mqtt");
  EXPECT_EQ(RouteTopic(b, "sensors/1/temp", kDefault), "sensors");
  EXPECT_EQ(RouteTopic(b, "sensors", kDefault), "sensors");  // "sensors/#" matches its parent
  EXPECT_EQ(RouteTopic(b, "alerts/fire", kDefault), "alerts");
}

TEST(RouteTopic, TheMostSpecificFilterWins) {
  // The order the bindings come in never matters: every permutation.
  std::vector<Binding> b{{"#", "all"}, {"sensors/#", "sensors"}, {"sensors/+/temp", "temps"},
                         {"sensors/kitchen/temp", "kitchen"}, {"+/kitchen/#", "rooms"}};
  std::sort(b.begin(), b.end(), [](const Binding& x, const Binding& y) { return x.stream < y.stream; });
  do {
    EXPECT_EQ(RouteTopic(b, "sensors/kitchen/temp", kDefault), "kitchen");  // all literal
    EXPECT_EQ(RouteTopic(b, "sensors/hall/temp", kDefault), "temps");       // '+' beats '#' at level 2
    EXPECT_EQ(RouteTopic(b, "sensors/kitchen/humidity", kDefault), "sensors");  // literal first level beats '+'
    EXPECT_EQ(RouteTopic(b, "garage/kitchen/x", kDefault), "rooms");        // '+' beats '#' at level 1
    EXPECT_EQ(RouteTopic(b, "other", kDefault), "all");
    EXPECT_EQ(RouteTopic(b, "$SYS/x", kDefault), "mqtt");                  // '#' matches no '$' topic
  } while (std::next_permutation(b.begin(), b.end(), [](const Binding& x, const Binding& y) { return x.stream < y.stream; }));
}

TEST(RouteTopic, ThenTheLongerFilterThenTheStreamName) {
  // "a/+/#" and "a/+" both match "a/b" and tie level by level ("a/+/#"
  // continues with '#': the shorter, exact one wins).
  EXPECT_EQ(RouteTopic({{"a/+/#", "x"}, {"a/+", "y"}}, "a/b", kDefault), "y");
  // "a/+" and "+/b" both match "a/b": literal first beats '+' first.
  EXPECT_EQ(RouteTopic({{"+/b", "p"}, {"a/+", "q"}}, "a/b", kDefault), "q");
  // One filter bound to two streams: the smaller name.
  EXPECT_EQ(RouteTopic({{"t/#", "zeta"}, {"t/#", "alpha"}}, "t/1", kDefault), "alpha");
  EXPECT_EQ(RouteTopic({{"t/#", "alpha"}, {"t/#", "zeta"}}, "t/1", kDefault), "alpha");
  // '+' beats '#' at the second level.
  EXPECT_EQ(RouteTopic({{"+/+", "two"}, {"+/#", "rest"}}, "a/b", kDefault), "two");
}

TEST(StreamsFor, TheStreamsASubscriptionCanRead) {
  const std::vector<Binding> b{{"sensors/#", "sensors"}, {"alerts/+", "alerts"}, {"$SYS/#", "sys"}};
  EXPECT_EQ(StreamsFor(b, {"#"}), (std::vector<std::string>{"alerts", "sensors"}));  // not "$SYS"
  EXPECT_EQ(StreamsFor(b, {"sensors/1/temp"}), (std::vector<std::string>{"sensors"}));
  EXPECT_EQ(StreamsFor(b, {"+/fire"}), (std::vector<std::string>{"alerts", "sensors"}));
  EXPECT_EQ(StreamsFor(b, {"other/#"}), (std::vector<std::string>{}));
  EXPECT_EQ(StreamsFor(b, {"$SYS/+", "alerts/x"}), (std::vector<std::string>{"alerts", "sys"}));
}

}  // namespace
}  // namespace floe::frontend::mqtt
