// The node-to-node link the broker core uses for what it must hand to
// another node (docs/protocol.md, DEAD_LETTER): one floe-protocol
// connection per peer address, opened on first use and replaced when it
// breaks. Called on the core's file pool; each call is bounded by its
// timeouts, and calls are serialised (dead-letter moves are rare).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "base/mutex.h"
#include "broker/broker.h"

namespace floe::client::internal {
class Connection;
}

namespace floe::server {

class Forwarder final : public broker::Forwarder {
 public:
  // `secret`: the nodes' shared secret when users are on (it logs in as
  // auth::kNodeUser); "" = anonymous.
  explicit Forwarder(std::string node_id, std::string secret = {});
  ~Forwarder() override;
  broker::Outcome<broker::DeadLetterStored> ForwardDeadLetter(const std::string& address,
                                                              const broker::DeadLetterMove& move) override
      EXCLUDES(mu_);

 private:
  const std::string node_id_;
  const std::string secret_;
  Mutex mu_;  // one forward at a time: a connection has one reader
  std::map<std::string, std::unique_ptr<client::internal::Connection>> links_ GUARDED_BY(mu_);
  // A peer that could not be reached is not dialled again before this
  // (steady ms): the moves waiting for it fail at once and are retried
  // later, instead of each waiting out a connect timeout in turn.
  std::map<std::string, int64_t> down_until_ GUARDED_BY(mu_);
};

}  // namespace floe::server
