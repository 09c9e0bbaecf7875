#include "base/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "base/json_text.h"
#include "base/mutex.h"

namespace floe::logging {
namespace {

std::atomic<uint8_t> g_level{static_cast<uint8_t>(Level::kInfo)};
std::atomic<uint8_t> g_format{static_cast<uint8_t>(Format::kText)};

Mutex g_sink_mu;
std::function<void(std::string_view)>* g_sink GUARDED_BY(g_sink_mu) = nullptr;

std::string Timestamp(int64_t wall_ms) {
  const std::time_t secs = static_cast<std::time_t>(wall_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, wall_ms % 1000);
}

// A text field's value is bare when it has no space, '=' or quote (and is
// not empty); otherwise it is quoted as JSON quotes a string.
void AppendTextValue(std::string* out, const std::string& v) {
  bool bare = !v.empty();
  for (char c : v)
    if (c == ' ' || c == '=' || c == '"' || static_cast<unsigned char>(c) < 0x20) bare = false;
  if (bare) *out += v;
  else *out += "\"" + JsonEscape(v) + "\"";
}

}  // namespace

Result<Level> ParseLevel(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  return tl::make_unexpected(Status::InvalidArgument("log level must be debug, info, warn or error"));
}

Result<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return tl::make_unexpected(Status::InvalidArgument("log format must be text or json"));
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "?";
}

void Configure(Level min_level, Format format) {
  g_level.store(static_cast<uint8_t>(min_level), std::memory_order_relaxed);
  g_format.store(static_cast<uint8_t>(format), std::memory_order_relaxed);
}

bool Enabled(Level level) { return static_cast<uint8_t>(level) >= g_level.load(std::memory_order_relaxed); }

std::string FormatLine(Format format, int64_t wall_ms, Level level, std::string_view event, std::string_view message,
                       std::initializer_list<Field> fields) {
  std::string out;
  if (format == Format::kJson) {
    out = fmt::format("{{\"ts\":\"{}\",\"level\":\"{}\",\"event\":\"{}\",\"msg\":\"{}\"", Timestamp(wall_ms),
                      LevelName(level), JsonEscape(event), JsonEscape(message));
    for (const Field& f : fields) {
      // The four members above keep their meaning: a field of one of those
      // names is renamed, never a second member of the same name.
      const bool clash = f.key == "ts" || f.key == "level" || f.key == "event" || f.key == "msg";
      out += fmt::format(",\"{}{}\":", clash ? "field." : "", JsonEscape(f.key));
      if (f.number) out += f.value;
      else out += "\"" + JsonEscape(f.value) + "\"";
    }
    out += "}";
    return out;
  }
  std::string upper(LevelName(level));
  for (char& c : upper) c = static_cast<char>(c - 'a' + 'A');
  out = fmt::format("{} {:<5} {}", Timestamp(wall_ms), upper, event);
  for (const Field& f : fields) {
    out += fmt::format(" {}=", f.key);
    AppendTextValue(&out, f.value);
  }
  out += ": ";
  // The sentence is shown as it is, but a line stays one line.
  for (char c : message) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

void Write(Level level, std::string_view event, std::string_view message, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::string line = FormatLine(static_cast<Format>(g_format.load(std::memory_order_relaxed)), now_ms, level, event,
                                message, fields);
  line += '\n';
  MutexLock l(&g_sink_mu);
  if (g_sink != nullptr) {
    (*g_sink)(line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void TEST_SetSink(std::function<void(std::string_view)> sink) {
  MutexLock l(&g_sink_mu);
  delete g_sink;
  g_sink = sink ? new std::function<void(std::string_view)>(std::move(sink)) : nullptr;
}

}  // namespace floe::logging
