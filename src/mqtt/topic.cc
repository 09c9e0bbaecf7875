#include "mqtt/topic.h"

#include <vector>

#include <fmt/format.h>

#include "mqtt/primitives.h"

namespace floe::mqtt {

namespace {

constexpr std::string_view kSharePrefix = "$share/";

Status CheckText(std::string_view s, std::string_view what) {
  if (s.empty()) return Status::InvalidArgument(fmt::format("{} is empty [MQTT-4.7.3-1]", what));
  if (s.size() > kMaxStringBytes) {
    return Status::InvalidArgument(fmt::format("{} is {} bytes, more than 65,535 [MQTT-4.7.3-3]", what, s.size()));
  }
  std::string_view bad = Utf8Error(s);
  if (!bad.empty()) return Status::InvalidArgument(fmt::format("{} {} [MQTT-4.7.3-2]", what, bad));
  return Status::OK();
}

// The wildcard rules on a plain (not "$share/") filter.
Status CheckWildcards(std::string_view filter) {
  size_t level_start = 0;
  for (size_t i = 0; i <= filter.size(); ++i) {
    if (i < filter.size() && filter[i] != '/') continue;
    std::string_view level = filter.substr(level_start, i - level_start);
    if (level.size() > 1 && level.find_first_of("+#") != std::string_view::npos) {
      return Status::InvalidArgument(fmt::format(
          "topic filter \"{}\": a wildcard must occupy a whole level [MQTT-4.7.1-1, MQTT-4.7.1-2]", filter));
    }
    if (level == "#" && i != filter.size()) {
      return Status::InvalidArgument(
          fmt::format("topic filter \"{}\": '#' must be the last level [MQTT-4.7.1-1]", filter));
    }
    level_start = i + 1;
  }
  return Status::OK();
}

}  // namespace

bool HasWildcard(std::string_view filter) { return filter.find_first_of("+#") != std::string_view::npos; }

Status ValidateTopicName(std::string_view name) {
  FLOE_RETURN_IF_ERROR(CheckText(name, "topic name"));
  if (HasWildcard(name)) {
    return Status::InvalidArgument(
        fmt::format("topic name \"{}\" contains a wildcard [MQTT-3.3.2-2, MQTT-4.7.0-1]", name));
  }
  return Status::OK();
}

std::optional<SharedFilter> SplitSharedFilter(std::string_view filter) {
  if (!filter.starts_with(kSharePrefix)) return std::nullopt;
  std::string_view rest = filter.substr(kSharePrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return SharedFilter{rest, {}};
  return SharedFilter{rest.substr(0, slash), rest.substr(slash + 1)};
}

Status ValidateTopicFilter(std::string_view filter, Version version) {
  FLOE_RETURN_IF_ERROR(CheckText(filter, "topic filter"));
  if (version == Version::kV5) {
    if (auto shared = SplitSharedFilter(filter)) {
      if (shared->share_name.empty()) {
        return Status::InvalidArgument(
            fmt::format("shared subscription \"{}\" has an empty ShareName [MQTT-4.8.2-1]", filter));
      }
      if (HasWildcard(shared->share_name)) {
        return Status::InvalidArgument(fmt::format(
            "shared subscription \"{}\": the ShareName must not contain '+' or '#' [MQTT-4.8.2-2]", filter));
      }
      if (shared->filter.empty()) {
        return Status::InvalidArgument(fmt::format(
            "shared subscription \"{}\" must be $share/ShareName/filter with a non-empty filter [MQTT-4.8.2-2]",
            filter));
      }
      return CheckWildcards(shared->filter);
    }
  }
  return CheckWildcards(filter);
}

bool TopicMatches(std::string_view filter, std::string_view name) {
  if (!name.empty() && name[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) return false;
  size_t f = 0, n = 0;  // the start of the current level in each
  bool name_done = false;
  while (true) {
    size_t f_end = filter.find('/', f);
    if (f_end == std::string_view::npos) f_end = filter.size();
    std::string_view f_level = filter.substr(f, f_end - f);
    if (f_level == "#") return true;  // this level and all below, or none
    if (name_done) return false;      // the filter has a level the name lacks
    size_t n_end = name.find('/', n);
    if (n_end == std::string_view::npos) n_end = name.size();
    if (f_level != "+" && f_level != name.substr(n, n_end - n)) return false;
    bool filter_last = f_end == filter.size();
    bool name_last = n_end == name.size();
    if (filter_last) return name_last;
    f = f_end + 1;
    if (name_last) {
      name_done = true;  // only a trailing "#" can still match
    } else {
      n = n_end + 1;
    }
  }
}

}  // namespace floe::mqtt

namespace floe::mqtt {
namespace {

std::vector<std::string_view> Levels(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find('/', start);
    if (end == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
}

// 0 a literal, 1 '+', 2 '#'.
int KindOf(std::string_view level) { return level == "#" ? 2 : level == "+" ? 1 : 0; }

}  // namespace

bool FiltersOverlap(std::string_view a, std::string_view b) {
  const auto la = Levels(a), lb = Levels(b);
  // [MQTT-4.7.2-1]: a filter starting with a wildcard matches no '$' name,
  // so it shares none with a filter whose first level is a '$' literal.
  auto dollar_first = [](const std::vector<std::string_view>& l) { return KindOf(l[0]) == 0 && l[0].starts_with('$'); };
  if ((KindOf(la[0]) != 0 && dollar_first(lb)) || (KindOf(lb[0]) != 0 && dollar_first(la))) return false;
  for (size_t i = 0;; ++i) {
    const bool a_end = i == la.size(), b_end = i == lb.size();
    if (a_end && b_end) return true;
    // One filter ran out: the other matches the same name only with a '#'
    // here ("a/#" matches "a").
    if (a_end) return KindOf(lb[i]) == 2;
    if (b_end) return KindOf(la[i]) == 2;
    const int ka = KindOf(la[i]), kb = KindOf(lb[i]);
    if (ka == 2 || kb == 2) return true;
    if (ka == 0 && kb == 0 && la[i] != lb[i]) return false;
  }
}

int CompareSpecificity(std::string_view a, std::string_view b) {
  const auto la = Levels(a), lb = Levels(b);
  for (size_t i = 0; i < la.size() && i < lb.size(); ++i) {
    const int ka = KindOf(la[i]), kb = KindOf(lb[i]);
    if (ka != kb) return ka < kb ? -1 : 1;
  }
  if (la.size() == lb.size()) return 0;
  // One ran out: "a/b" beats "a/b/#" (both match "a/b"; an exact end beats
  // '#', which matches nothing there), otherwise more levels win.
  const bool a_longer = la.size() > lb.size();
  const std::string_view next = a_longer ? la[lb.size()] : lb[la.size()];
  const bool longer_wins = KindOf(next) != 2;
  return a_longer == longer_wins ? -1 : 1;
}

}  // namespace floe::mqtt
