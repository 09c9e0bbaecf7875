// The sessions and peers of one node: which connection serves which session
// id, the per-session publish lock, and the per-session shared state that
// every write of a session's record goes through. Thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <memory>
#include "base/mutex.h"
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

namespace floe::broker {

class Peer;
enum class PeerProtocol : uint8_t;  // broker.h
struct SessionState;

class SessionTable {
 public:
  uint64_t NewId();
  // Makes `peer` the one connection serving session `id`; the previous one,
  // if any, is told to close (the client reconnected).
  void Claim(uint64_t id, const std::shared_ptr<Peer>& peer);
  // `peer` no longer serves `id` (unless a newer connection claimed it).
  void Release(uint64_t id, const Peer* peer);
  // The lock every connection of session `id` holds while it checks for
  // duplicates and appends, so an old connection still finishing a publish
  // and the new one resending it cannot both store a message.
  std::shared_ptr<Mutex> PublishLock(uint64_t id);
  // The shared state of session `id` on this node (created empty).
  std::shared_ptr<SessionState> StateFor(uint64_t id);
  size_t session_count();

  size_t Attach(std::shared_ptr<Peer> peer);
  void Detach(const Peer* peer);
  std::vector<std::shared_ptr<Peer>> Peers();
  size_t peer_count();
  size_t peer_count(PeerProtocol protocol);
  void Clear();

 private:
  // Drops entries whose object is gone whenever the map doubled since the
  // last sweep (amortised O(1) per insert). The caller holds mu_.
  template <typename T>
  static void SweepExpired(std::unordered_map<uint64_t, std::weak_ptr<T>>* m);
  // The object the map holds for `id`, made if there is none alive. The
  // caller holds mu_.
  template <typename T>
  static std::shared_ptr<T> Shared(std::unordered_map<uint64_t, std::weak_ptr<T>>* m, uint64_t id);

  Mutex mu_;
  std::mt19937_64 rng_ GUARDED_BY(mu_){std::random_device{}()};
  std::unordered_map<uint64_t, std::weak_ptr<Peer>> sessions_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::weak_ptr<Mutex>> publish_locks_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::weak_ptr<SessionState>> states_ GUARDED_BY(mu_);
  std::set<std::shared_ptr<Peer>> peers_ GUARDED_BY(mu_);
};

}  // namespace floe::broker
