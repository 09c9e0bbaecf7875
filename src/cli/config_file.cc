#include "cli/config_file.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace floe::cli {
namespace {

// How deep tables may nest: serve's flags have at most three words.
constexpr int kMaxDepth = 4;

Status At(std::string_view source, const toml::source_region& where, std::string_view what) {
  return Status::InvalidArgument(fmt::format("{}:{}:{}: {}", source, where.begin.line, where.begin.column, what));
}

// One scalar as it would be typed after the flag.
Result<std::string> ScalarText(const toml::node& n, std::string_view source, const std::string& key) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto b = n.as_boolean()) return std::string(b->get() ? "true" : "false");
  std::string_view type = n.is_floating_point() ? "a float"
                          : n.is_date() || n.is_time() || n.is_date_time() ? "a date or time"
                          : n.is_table()  ? "a table"
                                          : "an array";
  return tl::make_unexpected(At(source, n.source(), fmt::format("{} is {}; floe's flags take a string, an integer "
                                                                "or a boolean (durations as integers of ms or "
                                                                "strings like \"3s\")",
                                                                key, type)));
}

Status Flatten(const toml::table& table, const std::string& prefix, int depth, std::string_view source,
               std::vector<ConfigEntry>* out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "-" + std::string(k.str());
    if (key.empty()) return At(source, node.source(), "an empty key names no flag");
    if (const toml::table* sub = node.as_table()) {
      if (depth + 1 >= kMaxDepth) return At(source, node.source(), fmt::format("table {} nests too deep", key));
      FLOE_RETURN_IF_ERROR(Flatten(*sub, key, depth + 1, source, out));
      continue;
    }
    ConfigEntry e{key, {}, static_cast<int>(node.source().begin.line)};
    if (const toml::array* arr = node.as_array()) {
      for (const toml::node& item : *arr) {
        auto text = ScalarText(item, source, key);
        if (!text) return text.error();
        e.values.push_back(std::move(*text));
      }
    } else {
      auto text = ScalarText(node, source, key);
      if (!text) return text.error();
      e.values.push_back(std::move(*text));
    }
    out->push_back(std::move(e));
  }
  return Status::OK();
}

}  // namespace

Result<std::vector<ConfigEntry>> ParseConfigToml(std::string_view text, std::string_view source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return tl::make_unexpected(At(source, e.source(), e.description()));
  }
  std::vector<ConfigEntry> out;  // in the order of toml++'s tables: by key
  Status s = Flatten(table, "", 0, source, &out);
  if (!s.ok()) return tl::make_unexpected(s);
  // `[mqtt] listen` and `mqtt-listen` name one flag: refused, not one of
  // them silently ignored.
  std::map<std::string, int> seen;
  for (const ConfigEntry& e : out)
    if (auto [it, fresh] = seen.emplace(e.key, e.line); !fresh)
      return tl::make_unexpected(Status::InvalidArgument(
          fmt::format("{}:{}: {} is set twice (lines {} and {}: a table's key and a dashed key name one flag)", source,
                      std::max(e.line, it->second), e.key, std::min(e.line, it->second), std::max(e.line, it->second))));
  return out;
}

std::string TomlConfig::to_config(const CLI::App* app, bool default_also, bool write_description,
                                  std::string prefix) const {
  return CLI::ConfigTOML().to_config(app, default_also, write_description, std::move(prefix));
}

std::vector<CLI::ConfigItem> TomlConfig::from_config(std::istream& input) const {
  const std::string text{std::istreambuf_iterator<char>(input), std::istreambuf_iterator<char>()};
  // The file's name, for the errors (the option on the parent app holds it).
  std::string source = "--config";
  if (const CLI::App* parent = sub_->get_parent(); parent != nullptr && parent->get_config_ptr() != nullptr) {
    auto files = parent->get_config_ptr()->as<std::vector<std::string>>();
    if (!files.empty()) source = files.front();
  }
  auto entries = ParseConfigToml(text, source);
  if (!entries) throw CLI::ConfigError(std::string(entries.error().message()));
  std::vector<CLI::ConfigItem> items;
  for (ConfigEntry& e : *entries) {
    const CLI::Option* opt = sub_->get_option_no_throw("--" + e.key);
    if (opt == nullptr || e.key == "config" || e.key == "help")
      throw CLI::ConfigError(fmt::format("{}:{}: {} is no option of floe {} (keys are its flags without --; floe {} "
                                         "--help lists them)",
                                         source, e.line, e.key, sub_->get_name(), sub_->get_name()));
    CLI::ConfigItem item;
    item.parents = {sub_->get_name()};
    item.name = e.key;
    item.inputs = std::move(e.values);
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace floe::cli
