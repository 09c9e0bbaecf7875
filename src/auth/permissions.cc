// Permission lists and matching (docs/security.md "Permissions").
#include <fmt/format.h>

#include "auth/auth.h"

namespace floe::auth {

namespace {

bool IsMqttPattern(std::string_view p) { return p.find_first_of("+#") != std::string_view::npos; }

// '*' matches any run of bytes. Iterative, with one backtrack point (the
// last '*'), so linear-ish time whatever the pattern.
bool Glob(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::vector<std::string_view> Levels(std::string_view t) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t slash = t.find('/', start);
    out.push_back(t.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

// `filter` (an MQTT filter: '+' one level, '#' the rest, the parent included)
// against topic-or-filter `t`. With `t` a filter, true only if every topic t
// matches, filter matches too.
bool FilterCovers(std::string_view filter, std::string_view t) {
  const auto f = Levels(filter), l = Levels(t);
  size_t i = 0;
  for (; i < f.size(); ++i) {
    if (f[i] == "#") return true;  // this level and below, or the parent alone
    if (i >= l.size()) return false;
    if (l[i] == "#") return false;  // t reaches deeper than f's levels allow
    if (f[i] == "+") continue;
    if (f[i] != l[i]) return false;  // a literal covers only itself ('+' in t included)
  }
  return i == l.size();
}

}  // namespace

Result<std::vector<Permission>> ParsePermissions(std::string_view list) {
  std::vector<Permission> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view entry = list.substr(start, comma - start);
    start = comma + 1;
    if (entry.empty()) {
      if (comma == list.size() && out.empty() && list.empty()) break;
      return Err(Status::InvalidArgument(fmt::format("permission list '{}' has an empty entry", list)));
    }
    const size_t colon = entry.find(':');
    const std::string_view action = entry.substr(0, colon);
    const std::string_view pattern = colon == std::string_view::npos ? std::string_view("*") : entry.substr(colon + 1);
    Permission p;
    if (action == "publish") p.action = Action::kPublish;
    else if (action == "consume") p.action = Action::kConsume;
    else if (action == "admin") p.action = Action::kAdmin;
    else
      return Err(Status::InvalidArgument(
          fmt::format("permission '{}': the action is publish, consume or admin, not '{}'", entry, action)));
    if (pattern.empty() || pattern.size() > 256)
      return Err(Status::InvalidArgument(fmt::format("permission '{}': the pattern is 1-256 bytes", entry)));
    p.pattern = std::string(pattern);
    out.push_back(std::move(p));
    if (comma == list.size()) break;
  }
  return out;
}

std::string FormatPermissions(const std::vector<Permission>& permissions) {
  std::string out;
  for (const auto& p : permissions)
    out += fmt::format("{}{}:{}", out.empty() ? "" : ",", ActionName(p.action), p.pattern);
  return out;
}

bool MatchPattern(std::string_view pattern, std::string_view name) {
  return IsMqttPattern(pattern) ? FilterCovers(pattern, name) : Glob(pattern, name);
}

bool PatternCoversFilter(std::string_view pattern, std::string_view filter) {
  if (IsMqttPattern(pattern)) return FilterCovers(pattern, filter);
  // A glob has no '+' or '#', so each wildcard of the filter must fall in a
  // '*', and whatever replaces it is then matched by that '*' as well. One
  // exception: "a/#" matches the parent "a" too, so the glob must match that.
  if (!Glob(pattern, filter)) return false;
  if (filter.size() >= 2 && filter.substr(filter.size() - 2) == "/#")
    return Glob(pattern, filter.substr(0, filter.size() - 2));
  return true;
}

bool Allowed(const User& user, Action action, std::string_view name) {
  for (const auto& p : user.permissions)
    if (p.action == action && MatchPattern(p.pattern, name)) return true;
  return false;
}

bool AllowedFilter(const User& user, std::string_view filter) {
  if (filter.rfind("$share/", 0) == 0) {
    const size_t slash = filter.find('/', 7);
    if (slash == std::string_view::npos) return false;
    filter = filter.substr(slash + 1);
  }
  for (const auto& p : user.permissions)
    if (p.action == Action::kConsume && PatternCoversFilter(p.pattern, filter)) return true;
  return false;
}

bool MaySee(const User& user, std::string_view name) {
  for (const auto& p : user.permissions)
    if (MatchPattern(p.pattern, name)) return true;
  return false;
}

}  // namespace floe::auth
