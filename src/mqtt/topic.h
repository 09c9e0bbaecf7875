// MQTT Topic Names and Topic Filters (MQTT 5.0 section 4.7, 4.8.2; 3.1.1
// section 4.7): what is valid, and whether a filter matches a name. Pure
// functions with no state; the session layer and the stream bindings
// (`--mqtt-topics`) use the same rules as the packet decoder.
#pragma once

#include <optional>
#include <string_view>

#include "base/status.h"
#include "mqtt/types.h"

namespace floe::mqtt {

// A Topic Name as a PUBLISH (or a Will, or a Response Topic) carries it: at
// least one character [MQTT-4.7.3-1], valid UTF-8 without U+0000
// [MQTT-4.7.3-2], at most 65,535 bytes [MQTT-4.7.3-3], and no wildcard
// '+' or '#' [MQTT-3.3.2-2, MQTT-4.7.0-1]. InvalidArgument says which rule.
Status ValidateTopicName(std::string_view name);

// A Topic Filter as SUBSCRIBE or UNSUBSCRIBE carries it: the rules for names
// above except wildcards, which must stand alone in their level ('+'
// [MQTT-4.7.1-2]), and '#' also last [MQTT-4.7.1-1]. In MQTT 5 a filter that
// begins "$share/" is a Shared Subscription and must be
// "$share/{ShareName}/{filter}" with a non-empty ShareName free of '/', '+'
// and '#', and a valid non-empty {filter} [MQTT-4.8.2-1, MQTT-4.8.2-2]. MQTT
// 3.1.1 has no shared subscriptions: there "$share/..." is an ordinary filter.
Status ValidateTopicFilter(std::string_view filter, Version version);

// "$share/{ShareName}/{filter}" split in two (views into `filter`); nothing
// if `filter` does not begin with "$share/". Valid only for a filter
// ValidateTopicFilter accepted for MQTT 5.
struct SharedFilter {
  std::string_view share_name;
  std::string_view filter;
};
std::optional<SharedFilter> SplitSharedFilter(std::string_view filter);

bool HasWildcard(std::string_view filter);

// Whether `filter` matches `name` (MQTT 5.0 section 4.7; both valid, the
// filter not a "$share/" one — match its {filter} part). Levels are compared
// byte for byte with no normalisation [MQTT-4.7.3-4]; '+' matches exactly one
// level (possibly empty), '#' the level it stands in and every level below,
// including none ("sport/#" matches "sport"). A filter whose first character
// is a wildcard never matches a name that begins with '$' [MQTT-4.7.2-1].
bool TopicMatches(std::string_view filter, std::string_view name);

}  // namespace floe::mqtt

namespace floe::mqtt {

// Whether some Topic Name matches both filters (both valid, neither a
// "$share/" one): level by level, two literals must be equal, '+' takes any
// one level, '#' ends the comparison (it matches whatever the other filter
// still has, or nothing). A filter that starts with a wildcard matches no
// '$' name, so it overlaps one whose first level is a literal only if that
// literal does not begin with '$'. The stream bindings use it to pick the
// streams a subscription must read (docs/mqtt.md "Topics onto streams").
bool FiltersOverlap(std::string_view a, std::string_view b);

// How specific a binding filter is, to choose among several that match one
// topic (docs/mqtt.md "Topics onto streams"): < 0 when `a` is more specific
// than `b`, > 0 when less, 0 when neither. Level by level from the first: a
// literal level beats '+', which beats '#'; at the first level where they
// differ in kind that decides. Equal kinds as far as the shorter goes: when
// the longer continues with '#' the shorter wins ("a/b" beats "a/b/#" for
// the topic "a/b"), otherwise the longer. (Two different literals at one
// level cannot both match a topic; they compare as equal kinds.)
int CompareSpecificity(std::string_view a, std::string_view b);

}  // namespace floe::mqtt
