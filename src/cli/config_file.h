// `floe serve --config FILE`: serve's options from a TOML file
// (docs/operations.md "The config file").
//
// Keys are serve's flags without the leading `--`; a table's keys are
// prefixed with its name and `-`, so `[mqtt] listen = …` is
// `--mqtt-listen`. Strings, integers and booleans are the flag's value as
// it would be typed; an array gives a flag several values. A flag on the
// command line wins over the file. Every value goes through the same
// checks as on the command line (ranges included), and a key that is no
// flag of serve is refused, naming the file, line and key.
#pragma once

#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/status.h"

namespace floe::cli {

struct ConfigEntry {
  std::string key;  // the flag without `--`
  std::vector<std::string> values;
  int line = 0;
};

// Pure: the file's text to entries, or InvalidArgument("SOURCE:LINE:COL: …").
// Fuzzed (tests/fuzz/config_fuzz.cc).
Result<std::vector<ConfigEntry>> ParseConfigToml(std::string_view text, std::string_view source);

// The CLI11 formatter over ParseConfigToml for the subcommand `sub`: its
// entries are `sub`'s options, checked to exist.
class TomlConfig : public CLI::Config {
 public:
  explicit TomlConfig(CLI::App* sub) : sub_(sub) {}
  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;

 private:
  CLI::App* sub_;
};

}  // namespace floe::cli
