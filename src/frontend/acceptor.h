// Binding a front end's listening socket: "HOST:PORT" (IPv4, or IPv6 in
// brackets; port 0 picks a free one), checked, with SO_REUSEADDR.
#pragma once

#include <string>
#include <string_view>

#include <asio.hpp>

#include "base/status.h"

namespace floe::frontend {

// Opens, binds and listens `acceptor` on `listen`; returns the host part.
// Errors name `option` (the flag the address came from).
Result<std::string> BindAcceptor(asio::ip::tcp::acceptor& acceptor, const std::string& listen,
                                 std::string_view option);

}  // namespace floe::frontend
