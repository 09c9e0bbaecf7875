// `floe user add|remove|list`: the users in the bank (docs/security.md). They
// write the bank directly, as `floe session list` reads it; running nodes
// see a change at their next refresh (--auth-refresh-ms, 2 s by default).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "auth/auth.h"
#include "bank/bank.h"
#include "cli/commands.h"
#include "cli/json.h"

namespace floe::cli {
namespace {

struct UserArgs {
  std::string bank = "sqlite:./floe-data/bank.db";
  std::string bank_prefix;
  std::string name;
  bool password_stdin = false;
  std::string allow;
  bool allow_given = false;
  bool update = false;
  bool json = false;
};

// `create`: a missing SQLite bank is made (users may be added before the
// first node starts); otherwise it must exist.
Result<std::unique_ptr<bank::Bank>> OpenUserBank(const UserArgs& a, bool create) {
  std::string url = a.bank;
  if (!a.bank_prefix.empty()) {
    auto with = bank::WithEtcdPrefix(url, a.bank_prefix);
    if (!with) return Err(with.error());
    url = *with;
  }
  if (url.find("://") == std::string::npos) {
    const std::filesystem::path path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
    if (!std::filesystem::exists(path)) {
      if (!create) return Err(Status::NotFound(fmt::format("no bank at {} (give --bank sqlite:DATA/bank.db)", path.string())));
      std::error_code ec;
      if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    }
  }
  return bank::OpenBank(url);
}

int Fail(const char* what, const Status& s, bool json) {
  if (json) return cli::Fail(s, true);
  fmt::print(stderr, "floe {}: {}\n", what, s.ToString());
  return 1;
}

Result<std::string> ReadPasswordFromStdin() {
  std::string password;
  if (!std::getline(std::cin, password) && password.empty())
    return Err(Status::InvalidArgument("--password-stdin: nothing on standard input"));
  if (!password.empty() && password.back() == '\r') password.pop_back();
  FLOE_RETURN_ERR_IF_ERROR(auth::ValidatePassword(password));
  return password;
}

std::string UserJson(const auth::User& u) {
  std::string perms;
  for (const auto& p : u.permissions)
    perms += fmt::format("{}{{\"action\":\"{}\",\"pattern\":\"{}\"}}", perms.empty() ? "" : ",",
                         auth::ActionName(p.action), JsonEscape(p.pattern));
  return fmt::format("{{\"name\":\"{}\",\"permissions\":[{}]}}", JsonEscape(u.name), perms);
}

int UserAdd(const UserArgs& a) {
  const char* what = "user add";
  if (Status s = auth::ValidateUserName(a.name); !s.ok()) return Fail(what, s, a.json);
  auto perms = auth::ParsePermissions(a.allow);
  if (!perms) return Fail(what, perms.error(), a.json);
  if (!a.password_stdin && !a.update)
    return Fail(what, Status::InvalidArgument("give the password on standard input with --password-stdin"), a.json);
  auto b = OpenUserBank(a, true);
  if (!b) return Fail(what, b.error(), a.json);
  auth::User user{.name = a.name, .password_hash = {}, .permissions = std::move(*perms)};
  std::optional<uint64_t> expected = 0;  // a new user: absent
  if (a.update) {
    auto old = (*b)->Get(auth::UserKey(a.name));
    if (!old) return Fail(what, old.error().IsNotFound() ? Status::NotFound(fmt::format("no user {}", a.name)) : old.error(), a.json);
    auto decoded = auth::DecodeUser(old->value);
    if (!decoded) return Fail(what, decoded.error(), a.json);
    user.password_hash = decoded->password_hash;  // kept unless a new password is given
    if (!a.allow_given) user.permissions = decoded->permissions;  // and so are the permissions
    expected = old->version;
  }
  if (a.password_stdin) {
    auto password = ReadPasswordFromStdin();
    if (!password) return Fail(what, password.error(), a.json);
    auto hash = auth::HashPassword(*password);
    if (!hash) return Fail(what, hash.error(), a.json);
    user.password_hash = std::move(*hash);
  }
  auto put = (*b)->Put(auth::UserKey(a.name), auth::EncodeUser(user), expected);
  if (!put) {
    if (put.error().code() == ErrorCode::kAborted)
      return Fail(what,
                  a.update ? Status::Aborted(fmt::format("user {} changed meanwhile; run it again", a.name))
                           : Status::AlreadyExists(fmt::format("user {} exists (change it with --update)", a.name)),
                  a.json);
    return Fail(what, put.error(), a.json);
  }
  if (a.json) fmt::print("{}\n", UserJson(user));
  else fmt::print("user {} {}: {}\n", a.name, a.update ? "updated" : "added",
                  user.permissions.empty() ? "no permissions" : auth::FormatPermissions(user.permissions));
  return 0;
}

int UserRemove(const UserArgs& a) {
  const char* what = "user remove";
  if (Status s = auth::ValidateUserName(a.name); !s.ok()) return Fail(what, s, a.json);
  auto b = OpenUserBank(a, false);
  if (!b) return Fail(what, b.error(), a.json);
  auto old = (*b)->Get(auth::UserKey(a.name));
  if (!old) return Fail(what, old.error().IsNotFound() ? Status::NotFound(fmt::format("no user {}", a.name)) : old.error(), a.json);
  if (Status s = (*b)->Delete(auth::UserKey(a.name), old->version); !s.ok()) return Fail(what, s, a.json);
  if (a.json) fmt::print("{{\"removed\":\"{}\"}}\n", JsonEscape(a.name));
  else fmt::print("user {} removed\n", a.name);
  return 0;
}

int UserList(const UserArgs& a) {
  const char* what = "user list";
  auto b = OpenUserBank(a, false);
  if (!b) return Fail(what, b.error(), a.json);
  auto all = (*b)->List(auth::kUsersPrefix);
  if (!all) return Fail(what, all.error(), a.json);
  std::string out = a.json ? "{\"users\":[" : fmt::format("{:<24} {}\n", "USER", "PERMISSIONS");
  bool first = true;
  for (const auto& kv : *all) {
    auto u = auth::DecodeUser(kv.value);
    if (!u) {
      fmt::print(stderr, "floe user list: {}: {}\n", kv.key, u.error().ToString());
      continue;
    }
    if (a.json) out += (first ? "" : ",") + UserJson(*u);
    else out += fmt::format("{:<24} {}\n", u->name, u->permissions.empty() ? "-" : auth::FormatPermissions(u->permissions));
    first = false;
  }
  if (a.json) out += "]}\n";
  fmt::print("{}", out);
  return 0;
}

void AddBank(CLI::App* c, UserArgs* a) {
  c->add_option("--bank", a->bank, "Information bank the nodes share (sqlite:PATH or etcd://HOST:PORT[,…][/PREFIX/])")
      ->default_val("sqlite:./floe-data/bank.db");
  c->add_option("--bank-prefix", a->bank_prefix, "Key prefix of floe's keys on etcd (default /floe/)");
  c->add_flag("--json", a->json, "One JSON object on stdout");
}

}  // namespace

void RegisterUserCommands(CLI::App& app, int* exit_code) {
  auto* user = app.add_subcommand("user", "Users of nodes started with --auth, in the bank (docs/security.md)")
                   ->require_subcommand(1);
  {
    auto a = std::make_shared<UserArgs>();
    auto* c = user->add_subcommand("add", "Add a user (or change one with --update); the password is read from stdin");
    c->add_option("name", a->name, "User name: 1-64 of [A-Za-z0-9._@-]")->required();
    c->add_flag("--password-stdin", a->password_stdin, "Read the password from the first line of standard input");
    c->add_option_function<std::string>("--allow", [p = a.get()](const std::string& v) {
      p->allow = v;
      p->allow_given = true;
    },
                  "Permissions, comma-separated ACTION[:PATTERN]: publish, consume, admin; PATTERN a stream name "
                  "with * wildcards or an MQTT filter with + and # (default: none). E.g. "
                  "publish:orders.*,consume:*,admin");
    c->add_flag("--update", a->update,
                "Change an existing user: its permissions with --allow, its password with --password-stdin (what "
                "is not given is kept)");
    AddBank(c, a.get());
    c->callback([a, exit_code] { *exit_code = UserAdd(*a); });
  }
  {
    auto a = std::make_shared<UserArgs>();
    auto* c = user->add_subcommand("remove", "Remove a user: its open connections are refused within seconds");
    c->add_option("name", a->name, "User name")->required();
    AddBank(c, a.get());
    c->callback([a, exit_code] { *exit_code = UserRemove(*a); });
  }
  {
    auto a = std::make_shared<UserArgs>();
    auto* c = user->add_subcommand("list", "Every user and its permissions (never the password hashes)");
    AddBank(c, a.get());
    c->callback([a, exit_code] { *exit_code = UserList(*a); });
  }
}

}  // namespace floe::cli
