// Users and their permissions (docs/security.md): the user record kept in
// the bank (docs/bank.md "User record"), password hashing (Argon2id, PHC
// strings), and permission matching on stream names and MQTT topics. No
// networking: the front ends call it (src/frontend/*), and so does
// `floe user` (src/cli/user_commands.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace floe::auth {

// auth/users/<name>: one user record per key.
inline constexpr std::string_view kUsersPrefix = "auth/users/";
// auth/node-secret: the nodes' shared secret (random, hex); a node presents
// it as user kNodeUser when it calls another node (dead letters).
inline constexpr std::string_view kNodeSecretKey = "auth/node-secret";
inline constexpr std::string_view kNodeUser = "$node";
inline constexpr size_t kMaxUserNameBytes = 64;
inline constexpr size_t kMaxPasswordBytes = 1024;

std::string UserKey(std::string_view name);

// 1-64 bytes of [A-Za-z0-9._@-], not starting with '.' ('$' names, like
// kNodeUser, are the node's own).
Status ValidateUserName(std::string_view name);
// 1-1024 bytes, anything.
Status ValidatePassword(std::string_view password);

enum class Action : uint8_t { kPublish = 1, kConsume = 2, kAdmin = 3 };
std::string_view ActionName(Action a);

// What a user may do: `action` on every stream (or MQTT topic) `pattern`
// matches (MatchPattern).
struct Permission {
  Action action = Action::kConsume;
  std::string pattern;
  bool operator==(const Permission&) const = default;
};

struct User {
  std::string name;
  std::string password_hash;  // a PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
  std::vector<Permission> permissions;
  bool operator==(const User&) const = default;
};

// The bank's value for a user (version 1; docs/bank.md). DecodeUser checks
// everything it reads (the fuzz target tests/fuzz/auth_fuzz.cc).
std::string EncodeUser(const User& user);
Result<User> DecodeUser(std::string_view bytes);

// --- Passwords -----------------------------------------------------------------

struct HashCost {
  uint32_t time_cost = 2;          // passes
  uint32_t memory_kib = 19 * 1024; // 19 MiB: OWASP's Argon2id minimum
  uint32_t parallelism = 1;
};

// Argon2id of `password` with a fresh 16-byte salt from getrandom(2), as a
// PHC string. Never stores or logs the password.
Result<std::string> HashPassword(std::string_view password, const HashCost& cost = {});
// Whether `password` matches `encoded` (an Argon2id PHC string; any other
// string, malformed included, never matches). Takes as long as the hash's
// cost says, on purpose.
bool VerifyPassword(std::string_view encoded, std::string_view password);

// --- Permissions ---------------------------------------------------------------

// "publish:orders.*,consume:*,admin" (an action alone means pattern "*").
// InvalidArgument names the bad entry.
Result<std::vector<Permission>> ParsePermissions(std::string_view list);
std::string FormatPermissions(const std::vector<Permission>& permissions);

// Whether `pattern` matches `name`. Two kinds of pattern (docs/security.md):
//  * with '+' or '#': an MQTT topic filter, matched level by level by MQTT's
//    rules (stream names never contain them, so it only ever matches topics);
//  * otherwise a glob: '*' matches any run of bytes ('/' included), every
//    other byte itself.
bool MatchPattern(std::string_view pattern, std::string_view name);
// Whether `pattern` matches every topic MQTT filter `filter` can match
// (SUBSCRIBE is granted only then).
bool PatternCoversFilter(std::string_view pattern, std::string_view filter);

// Whether the user may do `action` on stream (or topic) `name`.
bool Allowed(const User& user, Action action, std::string_view name);
// Whether the user may subscribe to MQTT `filter` ($share/GROUP/ stripped).
bool AllowedFilter(const User& user, std::string_view filter);
// Whether the user has any permission `name` matches (it may see the stream
// in STREAM_LIST and STREAM_INFO).
bool MaySee(const User& user, std::string_view name);

}  // namespace floe::auth
