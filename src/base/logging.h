// The node's log: one line per event, on stderr.
//
// Every line has a level, a stable event name (dotted, e.g. `lease.lost`:
// what a log shipper or an alert matches on; the names are listed in
// docs/operations.md "Logs") and a sentence for people. Fields name what
// the event is about (node, stream, client, epoch …).
//
//   text (default):  2026-12-02T14:41:47.123Z WARN  lease.lost node=n1 stream=s: lost stream s: …
//   json:            {"ts":"2026-12-02T14:41:47.123Z","level":"warn","event":"lease.lost",
//                     "msg":"lost stream s: …","node":"n1","stream":"s"}
//
// A JSON line is always valid JSON (strings escaped, bytes that are not
// UTF-8 replaced), one object per line. Lines below the configured level
// are not formatted at all.
//
// Thread-safe: any thread may write; each line is written whole.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/status.h"

namespace floe::logging {

enum class Level : uint8_t { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format : uint8_t { kText = 0, kJson = 1 };

// "debug", "info", "warn", "error"; "text", "json". Anything else: an
// InvalidArgument naming the accepted values.
Result<Level> ParseLevel(std::string_view name);
Result<Format> ParseFormat(std::string_view name);
std::string_view LevelName(Level level);

// Process-wide; the default is info, text.
void Configure(Level min_level, Format format);
bool Enabled(Level level);

// One field of a line. A number stays a JSON number.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, uint64_t v) : key(k), value(std::to_string(v)), number(true) {}
  Field(std::string_view k, int64_t v) : key(k), value(std::to_string(v)), number(true) {}
  Field(std::string_view k, uint32_t v) : Field(k, static_cast<uint64_t>(v)) {}
  Field(std::string_view k, int v) : Field(k, static_cast<int64_t>(v)) {}
  std::string_view key;
  std::string value;
  bool number = false;
};

void Write(Level level, std::string_view event, std::string_view message, std::initializer_list<Field> fields = {});

inline void Debug(std::string_view event, std::string_view message, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, event, message, fields);
}
inline void Info(std::string_view event, std::string_view message, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, event, message, fields);
}
inline void Warn(std::string_view event, std::string_view message, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, event, message, fields);
}
inline void Error(std::string_view event, std::string_view message, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kError)) Write(Level::kError, event, message, fields);
}

// The line exactly as Write would print it (no newline); `wall_ms` is the
// time stamp, milliseconds since the epoch. Pure: for tests and the fuzzer.
std::string FormatLine(Format format, int64_t wall_ms, Level level, std::string_view event, std::string_view message,
                       std::initializer_list<Field> fields);

// Tests: every written line (with its newline) goes to `sink` instead of
// stderr while set; an empty function restores stderr.
void TEST_SetSink(std::function<void(std::string_view)> sink);

}  // namespace floe::logging
