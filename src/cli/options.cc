#include "cli/options.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "client/client.h"

namespace floe::cli {

namespace {
// --user and --password-file of the one command that runs (each process
// parses one command line): ClientOptionsFor reads them.
struct Credentials {
  std::string user;
  std::string password_file;
};
Credentials& GivenCredentials() {
  static Credentials c;
  return c;
}

// Adds --user and --password-file (the password never goes on argv: a file,
// or FLOE_PASSWORD). Called with --server, so every client command has them.
void AddCredentials(CLI::App* app) {
  if (app->get_option_no_throw("--user") != nullptr) return;
  app->add_option("--user", GivenCredentials().user,
                  "Log in as this user (a node started with --auth needs one); the password comes from "
                  "--password-file or the environment variable FLOE_PASSWORD")
      ->type_name("NAME");
  app->add_option("--password-file", GivenCredentials().password_file,
                  "File holding the --user's password (a trailing newline is not part of it)")
      ->type_name("PATH");
}

Status FillCredentials(client::ClientOptions* o) {
  const Credentials& c = GivenCredentials();
  if (c.user.empty()) {
    if (!c.password_file.empty()) return Status::InvalidArgument("--password-file needs --user");
    return Status::OK();
  }
  o->user = c.user;
  if (!c.password_file.empty()) {
    std::ifstream in(c.password_file, std::ios::binary);
    if (!in) return Status::InvalidArgument(fmt::format("--password-file {}: cannot be read", c.password_file));
    std::stringstream ss;
    ss << in.rdbuf();
    o->password = ss.str();
    while (!o->password.empty() && (o->password.back() == '\n' || o->password.back() == '\r')) o->password.pop_back();
  } else if (const char* env = std::getenv("FLOE_PASSWORD"); env != nullptr) {
    o->password = env;
  } else {
    return Status::InvalidArgument("--user needs a password: --password-file PATH or FLOE_PASSWORD");
  }
  return Status::OK();
}
}  // namespace

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
  AddCredentials(app);
  return o;
}

CLI::Option* AddTimeout(CLI::App* app, uint64_t* out_ms) {
  *out_ms = kDefaultTimeoutMs;
  AddCredentials(app);
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
  FLOE_RETURN_ERR_IF_ERROR(FillCredentials(&o));
  return o;
}

}  // namespace floe::cli
