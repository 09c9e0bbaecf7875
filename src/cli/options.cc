#include "cli/options.h"

#include "client/client.h"

namespace floe::cli {

CLI::Option* AddSessionId(CLI::App* app, const std::string& name, uint64_t* out, const std::string& help) {
  auto* o = app->add_option_function<std::string>(
      name, [out](const std::string& s) { *out = *ParseSessionId(s); }, help);
  o->check(CLI::Validator(
      [](std::string& s) {
        auto v = ParseSessionId(s);
        return v ? std::string() : std::string(v.error().message());
      },
      ""));
  o->type_name("SESSION");
  return o;
}

CLI::Option* AddName(CLI::App* app, const std::string& name, std::string* out, const std::string& what,
                     const std::string& help) {
  auto* o = app->add_option(name, *out, help);
  o->check(CLI::Validator(
      [what](std::string& s) {
        Status v = ValidateName(s, what);
        return v.ok() ? std::string() : std::string(v.message());
      },
      ""));
  o->type_name("NAME");
  return o;
}

CLI::Option* AddServers(CLI::App* app, std::string* out) {
  auto* o = app->add_option("--server", *out, "HOST:PORT[,HOST:PORT…], tried in turn");
  o->default_val("127.0.0.1:7650");
  o->check(CLI::Validator(
      [](std::string& s) {
        auto v = client::ParseServers(s);
        return v ? std::string() : std::string(v.error().message());
      },
      ""));
  o->type_name("SERVERS");
  return o;
}

CLI::Option* AddTimeout(CLI::App* app, uint64_t* out_ms) {
  *out_ms = kDefaultTimeoutMs;
  return AddNumber(app, "--timeout", out_ms, Kind::kDurationMs, Range{100, 3600 * 1000},
                   "Give up connecting (and reconnecting) after this long, naming the servers tried (ms, or 5s, "
                   "1m …)");
}

}  // namespace floe::cli

namespace floe::cli {

Result<client::ClientOptions> ClientOptionsFor(const std::string& servers, uint64_t timeout_ms,
                                               const std::string& client_name) {
  auto list = client::ParseServers(servers);
  if (!list) return Err(list.error());
  client::ClientOptions o;
  o.servers = *list;
  o.client_name = client_name;
  o.reconnect_give_up_ms = static_cast<int>(timeout_ms);
  o.connect_timeout_ms = static_cast<int>(std::min<uint64_t>(timeout_ms, 2000));
  return o;
}

}  // namespace floe::cli
