// Fuzzes `floe serve --config`'s reader (cli/config_file.h): any bytes
// either parse to entries or give an InvalidArgument that names the place;
// nothing crashes. What parses is written out again as TOML (every entry a
// quoted top-level key) and must read back to the same entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cli/config_file.h"

namespace {

std::string TomlString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04X}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::cli;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = ParseConfigToml(in, "fuzz.toml");
  if (!r) {
    if (r.error().message().substr(0, 10) != "fuzz.toml:") abort();
    return 0;
  }
  std::set<std::string> keys;
  std::string again;
  for (const ConfigEntry& e : *r) {
    if (e.key.empty() || e.line < 1) abort();
    if (!keys.insert(e.key).second) abort();  // a flag set twice is refused
    again += TomlString(e.key) + " = [";
    for (size_t i = 0; i < e.values.size(); ++i) again += (i ? "," : "") + TomlString(e.values[i]);
    again += "]\n";
  }
  auto back = ParseConfigToml(again, "again.toml");
  if (!back || back->size() != r->size()) abort();
  // Entries come in the order of toml++'s tables (by key), so compare as maps.
  std::map<std::string, std::vector<std::string>> want, got;
  for (const ConfigEntry& e : *r) want[e.key] = e.values;
  for (const ConfigEntry& e : *back) got[e.key] = e.values;
  if (want != got) abort();
  return 0;
}
