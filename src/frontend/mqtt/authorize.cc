// MQTT's users and permissions (docs/mqtt.md "Authentication"): CONNECT's
// user name and password checked against the node's users, and each
// PUBLISH and SUBSCRIBE against the user's permissions as they are now.
#include <fmt/format.h>

#include "frontend/floe/log_limiter.h"
#include "frontend/mqtt/connection.h"

namespace floe::frontend::mqtt {

namespace {
// Refused logins, across the node's MQTT connections: at most one line a
// second (a client refused by the rate limit may retry in a loop).
LogLimiter login_log(std::chrono::seconds(1));
}  // namespace

using asio::awaitable;
using codec::ReasonCode;

awaitable<bool> Connection::Login(const codec::Connect& c) {
  if (!options_->auth) co_return true;
  if (!c.user_name || c.user_name->empty()) {
    login_log.Print("auth.login_refused", [&] {
      return fmt::format("node {}: refused an MQTT login: no user name", options_->node_id);
    });
    RefuseConnect(ReasonCode::kNotAuthorized, "this node needs a user name and password");
    co_return false;
  }
  std::string source = relayed_for_;
  if (source.empty()) {
    asio::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    source = ec ? std::string("?") : peer.address().to_string();
  }
  auto login = co_await AwaitCore<auth::LoginResult>([&](auto done) {
    options_->auth->Authenticate(std::string(*c.user_name), std::string(c.password.value_or("")), source,
                                 std::move(done));
  });
  if (closed_) co_return false;
  if (!login.user) {
    login_log.Print("auth.login_refused", [&] {
      return fmt::format("node {}: refused an MQTT login from {} as {}: {}", options_->node_id, source,
                         *c.user_name, login.message);
    });
    RefuseConnect(login.refusal == auth::Refusal::kRateLimited ? ReasonCode::kConnectionRateExceeded
                                                               : ReasonCode::kBadUserNameOrPassword,
                  login.message);
    co_return false;
  }
  user_ = login.user->name;
  co_return true;
}

bool Connection::MayPublish(std::string_view topic) {
  if (!options_->auth) return true;
  const auto user = options_->auth->Find(user_);
  return user && auth::Allowed(*user, auth::Action::kPublish, topic);
}

bool Connection::MaySubscribe(std::string_view filter) {
  if (!options_->auth) return true;
  const auto user = options_->auth->Find(user_);
  return user && auth::AllowedFilter(*user, filter);
}

}  // namespace floe::frontend::mqtt
