// JSON string escaping for the CLI's --json output.
#pragma once

#include <string>
#include <string_view>

namespace floe::cli {

std::string JsonEscape(std::string_view s);

}  // namespace floe::cli
