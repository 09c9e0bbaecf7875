// Shared subscriptions ($share/GROUP/filter, docs/mqtt.md "Shared
// subscriptions"): one durable consumer of the MQTT stream per (group,
// filter), shared by every session subscribed to it on this node. Each
// message goes to one member (round robin among those with room); a member
// that goes with deliveries unanswered has them released, so another member
// gets them [MQTT-4.8.2-3]; a failure PUBACK / PUBREC discards the message
// [MQTT-4.8.2-6].
//
// Threads: a group's own strand; members post to it and it posts to theirs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <asio.hpp>

#include "base/mutex.h"
#include "broker/broker.h"
#include "frontend/mqtt/connection.h"

namespace floe::frontend::mqtt {

class SharedGroups;

class SharedGroup final : public broker::Peer, public std::enable_shared_from_this<SharedGroup> {
 public:
  // Unanswered messages a member holds at once (its own Receive Maximum
  // bounds what it has on the wire).
  static constexpr uint32_t kPerMember = 64;

  SharedGroup(asio::io_context& io, broker::Broker* broker, const MqttOptions* options, SharedGroups* registry,
              std::string group, std::string filter, std::string stream);
  const std::string& group() const { return group_; }
  const std::string& filter() const { return filter_; }
  // The stream it reads: the default MQTT stream, or a bound one its filter
  // can match (one group per stream: each has its own seqs and cursor).
  const std::string& stream() const { return stream_; }
  // The durable consumer's name: mqtt.share.<16 hex of the group and filter>.
  std::string consumer_name() const;

  void Join(std::shared_ptr<Connection> member, uint8_t max_qos, uint32_t subscription_id,
            bool retain_as_published);
  // The member left the group (unsubscribed, or its connection ended):
  // what it was handed and did not answer goes to another member.
  void Leave(const Connection* member);
  // The member's client answered `seq`: PUBACK, PUBREC, or a failure (which
  // discards the message too).
  void Answered(const Connection* member, uint64_t seq);

  // broker::Peer (the group's consumer Session).
  void StopReading() override {}
  void CloseSoon() override;
  void Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) override;

 private:
  struct Member {
    std::weak_ptr<Connection> connection;
    uint8_t max_qos = 1;
    uint32_t subscription_id = 0;
    bool retain_as_published = false;
    uint32_t outstanding = 0;
  };
  asio::awaitable<void> Pump();
  void Wake();
  void CloseSession();

  broker::Broker* const broker_;
  const MqttOptions* const options_;
  SharedGroups* const registry_;  // outlives every group (the listener's)
  const std::string group_, filter_, stream_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer wake_timer_;
  bool wake_ = false;
  bool pumping_ = false;
  bool change_armed_ = false;
  std::shared_ptr<broker::Session> session_;
  std::vector<std::pair<const Connection*, Member>> members_;  // in joining order
  size_t next_ = 0;                                             // round robin
  std::map<uint64_t, const Connection*> handed_;                // seq -> member
};

// "$share/GROUP/filter" of a group.
std::string SharedFilterOf(const std::shared_ptr<SharedGroup>& group);

// Every group of this node, by (group, filter).
class SharedGroups {
 public:
  SharedGroups(asio::io_context& io, broker::Broker* broker, const MqttOptions* options)
      : io_(io), broker_(broker), options_(options) {}
  std::shared_ptr<SharedGroup> Get(const std::string& group, const std::string& filter, const std::string& stream);
  // Drops `group` if nothing but the registry and the caller holds it (its
  // last member left): groups do not pile up as clients come and go.
  void Forget(const SharedGroup* group);

 private:
  asio::io_context& io_;
  broker::Broker* const broker_;
  const MqttOptions* const options_;
  Mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, std::shared_ptr<SharedGroup>> groups_ GUARDED_BY(mu_);
};

}  // namespace floe::frontend::mqtt
