// CLI11 options over the parse helpers (cli/parse.h): each option below is
// checked while the command line is parsed, before any command runs, so a
// bad value is refused with the option's name and the accepted range (exit
// code 2) and nothing is connected, created or sent. A valid value is
// stored in *out; an option not given leaves *out (its default) alone.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/parse.h"

namespace floe::cli {

// The exit code of a command line that was refused before running.
inline constexpr int kUsageExitCode = 2;

enum class Kind { kInteger, kDurationMs, kBytes };

template <typename T>
CLI::Option* AddNumber(CLI::App* app, const std::string& name, T* out, Kind kind, Range r, const std::string& help) {
  static_assert(std::is_integral_v<T>);
  // The range must fit T (a programming error otherwise).
  if (r.max > static_cast<uint64_t>(std::numeric_limits<T>::max())) std::abort();
  auto parse = [kind, r](std::string_view s) -> Result<uint64_t> {
    switch (kind) {
      case Kind::kInteger: return ParseInteger(s, r);
      case Kind::kDurationMs: return ParseDurationMs(s, r);
      case Kind::kBytes: return ParseBytes(s, r);
    }
    return Err(Status::Internal("unknown kind"));
  };
  auto* o = app->add_option_function<std::string>(
      name, [out, parse](const std::string& s) { *out = static_cast<T>(*parse(s)); }, help);
  o->check(CLI::Validator(
      [parse](std::string& s) {
        auto v = parse(s);
        return v ? std::string() : std::string(v.error().message());
      },
      ""));
  o->type_name(kind == Kind::kDurationMs ? "DURATION" : kind == Kind::kBytes ? "BYTES" : "N");
  o->default_str(fmt::format("{}", *out));
  return o;
}

// A session id (cli/parse.h: 16 hex digits, as printed).
CLI::Option* AddSessionId(CLI::App* app, const std::string& name, uint64_t* out, const std::string& help);
// A stream, consumer or node name.
CLI::Option* AddName(CLI::App* app, const std::string& name, std::string* out, const std::string& what,
                     const std::string& help);
// HOST:PORT[,HOST:PORT…], checked as the client will read it.
CLI::Option* AddServers(CLI::App* app, std::string* out);
// --timeout: how long the client keeps trying to connect (and to reconnect)
// before it gives up, naming the addresses it tried. 100 ms to 1 h; 5 s by
// default.
inline constexpr uint64_t kDefaultTimeoutMs = 5000;
CLI::Option* AddTimeout(CLI::App* app, uint64_t* out_ms);

}  // namespace floe::cli

namespace floe::client {
struct ClientOptions;
}

namespace floe::cli {

// Client options for --server and --timeout: connecting gives up after
// timeout_ms (each dial after at most 2 s of it).
Result<client::ClientOptions> ClientOptionsFor(const std::string& servers, uint64_t timeout_ms,
                                               const std::string& client_name);

}  // namespace floe::cli
