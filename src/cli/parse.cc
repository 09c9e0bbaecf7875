#include "cli/parse.h"

#include <fmt/format.h>

#include "model/types.h"

namespace floe::cli {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Leading digits of `text` as a number; *end is where they stop (0: no
// digit). False on overflow (*value is then meaningless).
bool LeadingNumber(std::string_view text, uint64_t* value, size_t* end) {
  uint64_t v = 0;
  bool fits = true;
  size_t i = 0;
  for (; i < text.size() && IsDigit(text[i]); ++i) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (v > (UINT64_MAX - d) / 10) fits = false;
    v = v * 10 + d;
  }
  *value = v;
  *end = i;
  return fits;
}

std::string Plain(uint64_t v) { return fmt::format("{}", v); }

// "1 to 100", "0 (keep everything) or 1000 to 5000": `show` formats a bound.
template <typename Show>
std::string Describe(const Range& r, Show show) {
  std::string span = r.min == r.max ? show(r.min) : fmt::format("{} to {}", show(r.min), show(r.max));
  if (r.zero != nullptr && r.min > 0) return fmt::format("0 ({}) or {}", r.zero, span);
  return span;
}

template <typename Show>
Status Refuse(std::string_view text, std::string_view kind, const Range& r, Show show, std::string_view why = {}) {
  return Status::InvalidArgument(fmt::format("got {}{}; accepted: {}, as {}", Quote(text),
                                             why.empty() ? "" : fmt::format(" ({})", why), Describe(r, show), kind));
}

bool InRange(uint64_t v, const Range& r) { return (v == 0 && r.zero != nullptr) || (v >= r.min && v <= r.max); }

// A number with a unit: the unit's factor, or 0 if `unit` is not one.
struct Unit {
  std::string_view name;
  uint64_t factor;
};

template <size_t N>
Result<uint64_t> ParseWithUnit(std::string_view text, const Range& r, const Unit (&units)[N], std::string_view kind,
                               std::string (*show)(uint64_t)) {
  if (text.empty()) return Err(Refuse(text, kind, r, show, "empty"));
  if (text[0] == '-') return Err(Refuse(text, kind, r, show, "negative"));
  uint64_t v;
  size_t end;
  if (!LeadingNumber(text, &v, &end)) return Err(Refuse(text, kind, r, show, "too large"));
  if (end == 0) return Err(Refuse(text, kind, r, show, "not a whole number"));
  const std::string_view unit = text.substr(end);
  uint64_t factor = 0;
  for (const Unit& u : units)
    if (u.name == unit) factor = u.factor;
  if (factor == 0) return Err(Refuse(text, kind, r, show, fmt::format("unknown unit {}", Quote(unit))));
  if (v > UINT64_MAX / factor) return Err(Refuse(text, kind, r, show, "too large"));
  v *= factor;
  if (!InRange(v, r)) return Err(Refuse(text, kind, r, show, v == 0 ? "zero" : "out of range"));
  return v;
}

constexpr uint64_t kSecondMs = 1000, kMinuteMs = 60 * kSecondMs, kHourMs = 60 * kMinuteMs, kDayMs = 24 * kHourMs;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Exactly `n` digits at text[*i], advancing *i.
bool Digits(std::string_view text, size_t* i, size_t n, unsigned* out) {
  if (*i + n > text.size()) return false;
  unsigned v = 0;
  for (size_t k = 0; k < n; ++k) {
    const char c = text[*i + k];
    if (!IsDigit(c)) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  *i += n;
  *out = v;
  return true;
}

bool Expect(std::string_view text, size_t* i, char c) {
  if (*i >= text.size() || text[*i] != c) return false;
  ++*i;
  return true;
}

}  // namespace

std::string Quote(std::string_view text) {
  std::string out = "'";
  size_t shown = 0;
  for (unsigned char c : text) {
    if (++shown > 64) {
      out += "…";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  return out + "'";
}

Result<uint64_t> ParseInteger(std::string_view text, Range r) {
  static const Unit kNone[] = {{"", 1}};
  return ParseWithUnit(text, r, kNone, "a whole number", Plain);
}

Result<uint64_t> ParseDurationMs(std::string_view text, Range r) {
  static const Unit kUnits[] = {{"", 1}, {"ms", 1}, {"s", kSecondMs}, {"m", kMinuteMs}, {"h", kHourMs}, {"d", kDayMs}};
  return ParseWithUnit(text, r, kUnits, "a duration: ms, or a whole number with a unit ms s m h d", FormatDurationMs);
}

Result<uint64_t> ParseBytes(std::string_view text, Range r) {
  static const Unit kUnits[] = {{"", 1},          {"B", 1},          {"K", 1ull << 10}, {"KiB", 1ull << 10},
                                {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
                                {"T", 1ull << 40}, {"TiB", 1ull << 40}};
  return ParseWithUnit(text, r, kUnits, "a byte size: bytes, or a whole number with a unit K M G T (1K = 1024)", FormatBytes);
}

std::string FormatDurationMs(uint64_t ms) {
  struct {
    uint64_t factor;
    const char* name;
  } const units[] = {{kDayMs, "d"}, {kHourMs, "h"}, {kMinuteMs, "min"}, {kSecondMs, "s"}};
  for (const auto& u : units)
    if (ms >= u.factor && ms % u.factor == 0) return fmt::format("{} ms ({} {})", ms, ms / u.factor, u.name);
  return fmt::format("{} ms", ms);
}

std::string FormatBytes(uint64_t bytes) {
  const char* names[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::string exact;
  for (int i = 5; i >= 0; --i) {
    const uint64_t f = 1ull << (10 * (i + 1));
    if (bytes >= f && bytes % f == 0) {
      exact = fmt::format(" ({} {})", bytes / f, names[i]);
      break;
    }
  }
  return fmt::format("{} {}{}", bytes, bytes == 1 ? "byte" : "bytes", exact);
}

std::string FormatSessionId(uint64_t id) { return fmt::format("{:016x}", id); }

Result<uint64_t> ParseSessionId(std::string_view text) {
  auto refuse = [&](std::string_view why) {
    return Err(Status::InvalidArgument(fmt::format(
        "got {} ({}); a session id is 1 to 16 hex digits, not 0, as floe prints it (e.g. 00c0ffee12345678)",
        Quote(text), why)));
  };
  if (text.empty()) return refuse("empty");
  if (text.size() > 16) return refuse("more than 16 digits");
  uint64_t v = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return refuse("not a hex digit");
    v = v << 4 | static_cast<uint64_t>(d);
  }
  if (v == 0) return refuse("0 is no session; leave --session-id out for a new one");
  return v;
}

Result<int64_t> ParseIsoTimeUs(std::string_view text) {
  auto refuse = [&](std::string_view why) {
    return Err(Status::InvalidArgument(fmt::format(
        "got {} ({}); an ISO 8601 time is YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.fraction]] with a zone: Z, +HH:MM or "
        "-HH:MM (e.g. 2026-12-01T10:00:00Z)",
        Quote(text), why)));
  };
  size_t i = 0;
  unsigned year, month, day, hour = 0, minute = 0, second = 0;
  if (!Digits(text, &i, 4, &year) || !Expect(text, &i, '-') || !Digits(text, &i, 2, &month) ||
      !Expect(text, &i, '-') || !Digits(text, &i, 2, &day))
    return refuse("no date YYYY-MM-DD");
  if (year < 1970) return refuse("before 1970");
  if (month < 1 || month > 12) return refuse("no such month");
  if (day < 1 || day > DaysInMonth(year, month)) return refuse("no such day");
  int64_t fraction_us = 0;
  int64_t offset_s = 0;
  if (i < text.size()) {
    if (text[i] != 'T' && text[i] != 't' && text[i] != ' ') return refuse("want T between date and time");
    ++i;
    if (!Digits(text, &i, 2, &hour) || !Expect(text, &i, ':') || !Digits(text, &i, 2, &minute))
      return refuse("no time HH:MM");
    if (i < text.size() && text[i] == ':') {
      ++i;
      if (!Digits(text, &i, 2, &second)) return refuse("no seconds after HH:MM:");
      if (i < text.size() && (text[i] == '.' || text[i] == ',')) {
        ++i;
        size_t n = 0;
        int64_t scale = 100000;
        for (; i < text.size() && IsDigit(text[i]); ++i, ++n) {
          if (n < 6) fraction_us += (text[i] - '0') * scale;
          scale /= 10;
        }
        if (n == 0 || n > 9) return refuse("a fraction of a second has 1 to 9 digits");
      }
    }
    if (hour > 23 || minute > 59 || second > 59) return refuse("no such time of day");
    if (i >= text.size()) return refuse("no zone: add Z for UTC, or +HH:MM");
    if (text[i] == 'Z' || text[i] == 'z') {
      ++i;
    } else if (text[i] == '+' || text[i] == '-') {
      const int sign = text[i] == '-' ? -1 : 1;
      ++i;
      unsigned oh, om;
      if (!Digits(text, &i, 2, &oh)) return refuse("zone offset is +HH:MM");
      if (i < text.size() && text[i] == ':') ++i;
      if (!Digits(text, &i, 2, &om)) return refuse("zone offset is +HH:MM");
      if (oh > 23 || om > 59) return refuse("no such zone offset");
      offset_s = sign * static_cast<int64_t>(oh * 3600 + om * 60);
    } else {
      return refuse("want a zone: Z, +HH:MM or -HH:MM");
    }
  }
  if (i != text.size()) return refuse("unexpected text after the time");
  const int64_t seconds = DaysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  if (seconds < 0) return refuse("before 1970");
  return seconds * 1000000 + fraction_us;
}

const char* const kStartPositionForms =
    "first | last | new | SEQ (a seq, e.g. 42) | an ISO 8601 time (e.g. 2026-12-01T10:00:00Z) | a time ago "
    "(-30s, -5m, -2h, -1d) | µs since the epoch with the suffix us (e.g. 1764583200000000us)";

Result<StartPosition> ParseStartPosition(std::string_view text, int64_t now_us) {
  using Kind = StartPosition::Kind;
  auto refuse = [&](std::string_view why) {
    return Err(Status::InvalidArgument(
        fmt::format("got {} ({}); accepted: {}", Quote(text), why, kStartPositionForms)));
  };
  if (text == "first") return StartPosition{Kind::kFirst, 0};
  if (text == "last") return StartPosition{Kind::kLast, 0};
  if (text == "new") return StartPosition{Kind::kNew, 0};
  if (text.empty()) return refuse("empty");
  auto at_time = [&](int64_t us) -> Result<StartPosition> {
    if (us > now_us) return refuse("a time in the future: to read only messages published from now on, say new");
    return StartPosition{Kind::kTime, static_cast<uint64_t>(us)};
  };
  if (text[0] == '-') {  // a time ago
    static const Unit kUnits[] = {{"s", kSecondMs}, {"m", kMinuteMs}, {"h", kHourMs}, {"d", kDayMs}};
    auto ms = ParseWithUnit(text.substr(1), Range{kSecondMs, 36500 * kDayMs}, kUnits, "a time ago", FormatDurationMs);
    if (!ms) return refuse("a time ago is -N with a unit s, m, h or d, from 1 s to 36500 d");
    const int64_t us = now_us - static_cast<int64_t>(*ms) * 1000;
    return StartPosition{Kind::kTime, static_cast<uint64_t>(std::max<int64_t>(us, 0))};
  }
  uint64_t v;
  size_t end;
  const bool fits = LeadingNumber(text, &v, &end);
  if (end == text.size()) {  // digits only: a seq
    if (!fits || v == UINT64_MAX) return refuse("seq too large");
    if (v == 0) return refuse("seqs start at 1; the stream's first message is 'first'");
    return StartPosition{Kind::kSeq, v};
  }
  if (end > 0 && text.substr(end) == "us") {
    if (!fits || v > static_cast<uint64_t>(INT64_MAX)) return refuse("time too large");
    return at_time(static_cast<int64_t>(v));
  }
  if (end == 4 && text.size() > 4 && text[4] == '-') {  // looks like a date
    auto us = ParseIsoTimeUs(text);
    if (!us) return Err(us.error());
    return at_time(*us);
  }
  return refuse("not a keyword, seq or time");
}

Status ValidateName(std::string_view text, std::string_view what) {
  Status s = ValidateStreamName(text);
  if (s.ok()) return s;
  return Status::InvalidArgument(fmt::format(
      "{} {}: a name is 1 to 128 bytes of A-Z a-z 0-9 . _ - and does not start with '.'", what, Quote(text)));
}

Status ValidateListenAddress(std::string_view text) {
  const size_t colon = text.rfind(':');
  auto refuse = [&](std::string_view why) {
    return Status::InvalidArgument(
        fmt::format("got {} ({}); accepted: HOST:PORT or [V6ADDR]:PORT, port 0 to 65535 (0: any free port)",
                    Quote(text), why));
  };
  if (colon == std::string_view::npos || colon == 0) return refuse("no HOST:");
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') return refuse("unclosed [");
  for (unsigned char c : host)
    if (c <= 0x20 || c >= 0x7f) return refuse("bad byte in the host");
  auto port = ParseInteger(text.substr(colon + 1), Range{0, 65535});
  if (!port) return refuse("bad port");
  return Status::OK();
}

}  // namespace floe::cli
