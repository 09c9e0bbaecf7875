// Argon2id password hashes (libargon2, Debian libargon2-dev), as PHC strings
// so that each hash carries its own cost and salt: raising HashCost later
// leaves existing users verifiable.
#include <sys/random.h>

#include <cerrno>
#include <string>

#include <argon2.h>
#include <fmt/format.h>

#include "auth/auth.h"

namespace floe::auth {

namespace {
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

Status RandomBytes(char* out, size_t n) {
  while (n > 0) {
    const ssize_t got = ::getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "getrandom");
    }
    out += got;
    n -= static_cast<size_t>(got);
  }
  return Status::OK();
}
}  // namespace

Result<std::string> HashPassword(std::string_view password, const HashCost& cost) {
  FLOE_RETURN_ERR_IF_ERROR(ValidatePassword(password));
  char salt[kSaltBytes];
  FLOE_RETURN_ERR_IF_ERROR(RandomBytes(salt, sizeof salt));
  const size_t len = argon2_encodedlen(cost.time_cost, cost.memory_kib, cost.parallelism, kSaltBytes, kHashBytes,
                                       Argon2_id);
  std::string encoded(len, '\0');
  const int rc = argon2id_hash_encoded(cost.time_cost, cost.memory_kib, cost.parallelism, password.data(),
                                       password.size(), salt, sizeof salt, kHashBytes, encoded.data(), len);
  if (rc != ARGON2_OK) return Err(Status::Internal(fmt::format("argon2id: {}", argon2_error_message(rc))));
  encoded.resize(std::char_traits<char>::length(encoded.c_str()));
  return encoded;
}

bool VerifyPassword(std::string_view encoded, std::string_view password) {
  if (encoded.rfind("$argon2id$", 0) != 0 || password.size() > kMaxPasswordBytes) return false;
  const std::string z(encoded);  // libargon2 wants it NUL-terminated
  return argon2id_verify(z.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace floe::auth
