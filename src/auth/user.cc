// The user record's codec and the naming rules (docs/bank.md "User record").
#include <fmt/format.h>

#include "auth/auth.h"
#include "base/codec.h"

namespace floe::auth {

namespace {
constexpr uint8_t kUserEncodingVersion = 1;
constexpr uint32_t kMaxPermissions = 1024;
constexpr size_t kMaxPatternBytes = 256;
constexpr size_t kMaxHashBytes = 512;

bool NameByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '@';
}
}  // namespace

std::string UserKey(std::string_view name) { return std::string(kUsersPrefix) + std::string(name); }

Status ValidateUserName(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserNameBytes)
    return Status::InvalidArgument(fmt::format("a user name is 1-{} bytes, got {}", kMaxUserNameBytes, name.size()));
  if (name[0] == '.') return Status::InvalidArgument("a user name may not start with '.'");
  for (char c : name)
    if (!NameByte(c))
      return Status::InvalidArgument(
          fmt::format("a user name is made of [A-Za-z0-9._@-]; '{}' has byte 0x{:02x}", name,
                      static_cast<unsigned>(static_cast<unsigned char>(c))));
  return Status::OK();
}

Status ValidatePassword(std::string_view password) {
  if (password.empty()) return Status::InvalidArgument("the password is empty");
  if (password.size() > kMaxPasswordBytes)
    return Status::InvalidArgument(fmt::format("a password is at most {} bytes", kMaxPasswordBytes));
  return Status::OK();
}

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kPublish: return "publish";
    case Action::kConsume: return "consume";
    case Action::kAdmin: return "admin";
  }
  return "?";
}

std::string EncodeUser(const User& user) {
  std::string out;
  Encoder e(&out);
  e.U8(kUserEncodingVersion);
  e.String(user.name);
  e.String(user.password_hash);
  e.U32(static_cast<uint32_t>(user.permissions.size()));
  for (const auto& p : user.permissions) {
    e.U8(static_cast<uint8_t>(p.action));
    e.String(p.pattern);
  }
  return out;
}

Result<User> DecodeUser(std::string_view bytes) {
  Decoder d({bytes.data(), bytes.size()});
  const uint8_t version = d.U8();
  if (d.ok() && version != kUserEncodingVersion) d.Fail(fmt::format("user record version {} is unknown", version));
  User u;
  u.name = std::string(d.String());
  u.password_hash = std::string(d.String());
  const uint32_t n = d.Count(3);
  if (d.ok() && n > kMaxPermissions) d.Fail(fmt::format("{} permissions, more than {}", n, kMaxPermissions));
  for (uint32_t i = 0; d.ok() && i < n; ++i) {
    const uint8_t a = d.U8();
    Permission p{static_cast<Action>(a), std::string(d.String())};
    if (d.ok() && (a < 1 || a > 3)) d.Fail(fmt::format("permission action {} is unknown", a));
    if (d.ok() && (p.pattern.empty() || p.pattern.size() > kMaxPatternBytes)) d.Fail("permission pattern size");
    u.permissions.push_back(std::move(p));
  }
  FLOE_RETURN_ERR_IF_ERROR(d.Finish());
  if (Status s = ValidateUserName(u.name); !s.ok()) return Err(s);
  if (u.password_hash.size() > kMaxHashBytes || u.password_hash.rfind("$argon2id$", 0) != 0)
    return Err(Status::Corruption(fmt::format("user {}: the password hash is not an Argon2id PHC string", u.name)));
  return u;
}

}  // namespace floe::auth
