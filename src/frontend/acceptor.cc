#include "frontend/acceptor.h"

#include <cstdlib>

#include <fmt/format.h>

namespace floe::frontend {

Result<std::string> BindAcceptor(asio::ip::tcp::acceptor& acceptor, const std::string& listen,
                                 std::string_view option) {
  using asio::ip::tcp;
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    return Err(Status::InvalidArgument(fmt::format("{} wants HOST:PORT, got '{}'", option, listen)));
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  asio::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return Err(Status::InvalidArgument(fmt::format("{}: bad address in '{}'", option, listen)));
  char* end = nullptr;
  const long port = std::strtol(listen.c_str() + colon + 1, &end, 10);
  if (end == listen.c_str() + colon + 1 || *end != '\0' || port < 0 || port > 65535)
    return Err(Status::InvalidArgument(fmt::format("{}: bad port in '{}' (0 to 65535)", option, listen)));
  tcp::endpoint ep(addr, static_cast<uint16_t>(port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Err(Status::Unavailable(fmt::format("{}: listen on {}: {}", option, listen, ec.message())));
  return host;
}

}  // namespace floe::frontend
