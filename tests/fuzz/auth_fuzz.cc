// Fuzzes what the auth library reads from outside: the user record a node
// reads from the bank every refresh (auth::DecodeUser), the permission list
// `floe user add --allow` parses, and pattern matching on both. Whatever
// decodes must re-encode to the same bytes (the encoding has one form) and
// decode again; nothing may read out of bounds or loop for long.
// (HELLO's version 2 credentials are fuzzed with every frame in frame_fuzz.)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/auth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace floe::auth;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto u = DecodeUser(in)) {
    const std::string once = EncodeUser(*u);
    if (once != in) abort();
    auto again = DecodeUser(once);
    if (!again || !(*again == *u)) abort();
    for (const auto& p : u->permissions) {
      (void)MatchPattern(p.pattern, u->name);
      (void)PatternCoversFilter(p.pattern, u->name);
    }
  }
  // The input as a permission list, and split in two as pattern and name.
  if (auto perms = ParsePermissions(in)) {
    auto back = ParsePermissions(FormatPermissions(*perms));
    if (!back || *back != *perms) abort();
  }
  const size_t cut = size / 2;
  (void)MatchPattern(in.substr(0, cut), in.substr(cut));
  (void)PatternCoversFilter(in.substr(0, cut), in.substr(cut));
  return 0;
}
