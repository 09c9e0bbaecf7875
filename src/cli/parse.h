// The one validation layer of the floe CLI: every number, duration, byte
// size, session id, start position and address a user types goes through
// one of these before anything is connected or created. Each refuses with
// InvalidArgument whose message quotes what was given and states what is
// accepted (the range, or the forms); each accepts only the whole text.
// Pure functions: no I/O, no clock (the caller passes "now").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace floe::cli {

// An accepted range [min, max]; `zero`, if set, also accepts 0 and says
// what it means (e.g. "keep everything").
struct Range {
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
  const char* zero = nullptr;
};

// Bytes that are not printable ASCII shown as \xNN, at most 64 of them, in
// single quotes: safe to echo into any message, terminal or JSON string.
std::string Quote(std::string_view text);

// A whole decimal number, digits only (no sign, no spaces, no hex), in `r`.
Result<uint64_t> ParseInteger(std::string_view text, Range r);

// A duration in milliseconds: a whole number with an optional unit, ms, s,
// m, h or d ("250", "250ms", "30s", "5m", "2h", "1d"); no unit means ms.
Result<uint64_t> ParseDurationMs(std::string_view text, Range r);

// A byte size: a whole number with an optional binary unit, K/KiB, M/MiB,
// G/GiB, T/TiB (1K = 1024), or B ("4096", "64KiB", "1M").
Result<uint64_t> ParseBytes(std::string_view text, Range r);

// "1.5 s", "7 d", "1 MiB": for messages.
std::string FormatDurationMs(uint64_t ms);
std::string FormatBytes(uint64_t bytes);

// Session ids have one form everywhere in the CLI: 16 lowercase hex digits,
// as printed (`floe produce`, `floe consume`, `floe session list`). Parsing
// takes 1 to 16 hex digits (either case) and refuses 0.
std::string FormatSessionId(uint64_t id);
Result<uint64_t> ParseSessionId(std::string_view text);

// An ISO 8601 time with its zone, as µs since the Unix epoch:
// YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS[.fraction]] followed by Z, +HH:MM,
// -HH:MM, +HHMM or -HHMM ("2026-12-01T10:00:00Z"). A date alone is
// midnight UTC. Years 1970 to 9999.
Result<int64_t> ParseIsoTimeUs(std::string_view text);

// Where `floe consume --from` starts a new durable consumer.
struct StartPosition {
  enum class Kind {
    kFirst,  // "first": the stream's first kept message (the default)
    kLast,   // "last": the last message the stream holds now, then what follows
    kNew,    // "new": only messages published from now on
    kSeq,    // a seq: value
    kTime,   // a time: value is µs since the epoch
  };
  Kind kind = Kind::kFirst;
  uint64_t value = 0;
};
// first, last, new, a seq (1 or more), an ISO 8601 time, a time ago
// (-30s, -5m, -2h, -1d: 1 s to 36,500 days), or µs since the epoch with the
// suffix us. A time after `now_us` is refused (it would wait for messages
// not yet written: say `new`).
Result<StartPosition> ParseStartPosition(std::string_view text, int64_t now_us);
// The accepted forms of --from, for help texts and errors.
extern const char* const kStartPositionForms;

// Names of streams, consumers and nodes: 1 to 128 bytes of A-Z a-z 0-9 . _ -,
// not starting with '.' (floe::ValidateStreamName), refused with the value
// quoted.
Status ValidateName(std::string_view text, std::string_view what);

// HOST:PORT to listen on: port 0 to 65535 (0: any free port).
Status ValidateListenAddress(std::string_view text);

}  // namespace floe::cli
