// The MQTT sessions no connection holds (docs/mqtt.md "Wills and session
// expiry"): their wills, published once the Will Delay Interval has passed
// or the session ends, whichever is first [MQTT-3.1.2-8], and their end once
// the Session Expiry Interval has passed [MQTT-4.1.0-2] — also for sessions
// whose node died (another node finds their records and acts for them).
//
// One per node. It acts only while the node serves the MQTT stream: every
// action begins by locking the session's producer Session here (the core's
// fencing), which fails elsewhere. Connections claim a client key before
// they read its record, so the keeper and a reconnecting client never write
// one record at once on this node.
//
// Threads: the keeper's own strand; Claim / Release / Left may be called
// from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <asio.hpp>

#include "broker/broker.h"
#include "frontend/await_core.h"
#include "frontend/mqtt/connection.h"

namespace floe::frontend::mqtt {

class Keeper final : public broker::Peer, public std::enable_shared_from_this<Keeper> {
 public:
  // How often every session record is read to find orphans (sessions whose
  // node no longer holds them) and what is due.
  static constexpr int kScanMs = 5000;
  // How long a claim waits for a connection of this node that still holds
  // the key (a takeover) to let go.
  static constexpr int kClaimWaitMs = 3000;

  Keeper(asio::io_context& io, broker::Broker* broker, const MqttOptions* options,
         std::shared_ptr<RetainedStore> retained);
  void Start();
  void Stop();

  // `owner` (a connection) takes the client key: what was due for it is
  // cancelled, and `done` runs (on a core or keeper thread) once no keeper
  // action on it is under way.
  void Claim(const std::string& key, const void* owner, std::function<void()> done);
  // `owner` no longer holds the key; `left` says it let the session go (its
  // record says node "" and when): the keeper schedules its will and expiry.
  void Release(const std::string& key, const void* owner, bool left);
  // `done` runs once no other connection of this node holds the key (one
  // being taken over let go, its last record write done), or after
  // kClaimWaitMs.
  void WaitAlone(const std::string& key, const void* owner, std::function<void()> done);

  // broker::Peer (the keeper's own sessions): nothing to close.
  void StopReading() override {}
  void CloseSoon() override {}
  void Evict(const std::shared_ptr<broker::StreamEntry>&, const std::string&) override {}

  struct Stats {
    uint64_t wills_published = 0;
    uint64_t sessions_expired = 0;
    uint64_t orphans_found = 0;
  };
  Stats stats();

 private:
  asio::awaitable<void> Loop();
  asio::awaitable<void> Scan();
  // Reads the key's record and does what is due: marks an orphan as left,
  // publishes the will, ends an expired session.
  asio::awaitable<void> Act(std::string key);
  asio::awaitable<bool> PublishWill(const std::string& key, SessionRecord& record,
                                    const std::shared_ptr<broker::Session>& producer, uint64_t next_seq);
  asio::awaitable<bool> EndSession(const std::string& key, const SessionRecord& record);
  asio::awaitable<bool> Write(const std::string& key, std::optional<std::string> value);
  void Schedule(const std::string& key, const SessionRecord& record);
  void Finish(const std::string& key);
  bool Alone(const std::string& key, const void* owner) const;
  // Runs the WaitAlone callbacks now due (`expired`: the one whose wait ran out).
  void WakeAlone(const std::string& key, const asio::steady_timer* expired);

  template <typename T, typename Start>
  asio::awaitable<T> AwaitCore(Start start) {
    return AwaitOnStrand<T>(strand_, shared_from_this(), std::move(start));
  }

  broker::Broker* const broker_;
  const MqttOptions* const options_;
  const std::shared_ptr<RetainedStore> retained_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::steady_timer timer_;
  bool stopped_ = false;
  std::map<std::string, const void*> attached_;  // key -> the connection holding it here
  std::map<std::string, int64_t> due_;           // key -> wall ms when its will or end is due
  std::set<std::string> busy_;                   // an Act is under way
  std::map<std::string, std::vector<std::function<void()>>> waiting_;  // claims waiting for an Act
  struct PendingClaim {
    const void* owner;
    std::function<void()> done;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::map<std::string, std::set<const void*>> holders_;  // connections that claimed a key and hold it still
  std::map<std::string, std::vector<PendingClaim>> alone_waiters_;
  int64_t next_scan_ms_ = 0;
  Stats stats_;
};

}  // namespace floe::frontend::mqtt
