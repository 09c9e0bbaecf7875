#include "broker/session_table.h"

#include <algorithm>

#include "broker/broker.h"
#include "broker/session.h"

namespace floe::broker {

template <typename T>
void SessionTable::SweepExpired(std::unordered_map<uint64_t, std::weak_ptr<T>>* m) {
  if (m->size() < 1024 || (m->size() & (m->size() - 1)) != 0) return;  // at powers of two from 1024
  std::erase_if(*m, [](const auto& kv) { return kv.second.expired(); });
}

uint64_t SessionTable::NewId() {
  MutexLock l(&mu_);
  uint64_t id;
  do id = rng_(); while (id == 0);
  return id;
}

void SessionTable::Claim(uint64_t id, const std::shared_ptr<Peer>& peer) {
  std::shared_ptr<Peer> previous;
  {
    MutexLock l(&mu_);
    auto& slot = sessions_[id];
    previous = slot.lock();
    slot = peer;
  }
  if (previous && previous != peer) previous->CloseSoon();
}

void SessionTable::Release(uint64_t id, const Peer* peer) {
  MutexLock l(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  auto cur = it->second.lock();
  if (!cur || cur.get() == peer) sessions_.erase(it);
}

template <typename T>
std::shared_ptr<T> SessionTable::Shared(std::unordered_map<uint64_t, std::weak_ptr<T>>* m, uint64_t id) {
  SweepExpired(m);
  auto& weak = (*m)[id];
  auto p = weak.lock();
  if (!p) weak = p = std::make_shared<T>();
  return p;
}

std::shared_ptr<Mutex> SessionTable::PublishLock(uint64_t id) {
  MutexLock l(&mu_);
  return Shared(&publish_locks_, id);
}

std::shared_ptr<SessionState> SessionTable::StateFor(uint64_t id) {
  MutexLock l(&mu_);
  return Shared(&states_, id);
}

size_t SessionTable::session_count() {
  MutexLock l(&mu_);
  return sessions_.size();
}

size_t SessionTable::Attach(std::shared_ptr<Peer> peer) {
  MutexLock l(&mu_);
  peers_.insert(std::move(peer));
  return peers_.size();
}

void SessionTable::Detach(const Peer* peer) {
  MutexLock l(&mu_);
  auto it = std::find_if(peers_.begin(), peers_.end(), [&](const auto& p) { return p.get() == peer; });
  if (it != peers_.end()) peers_.erase(it);
}

std::vector<std::shared_ptr<Peer>> SessionTable::Peers() {
  MutexLock l(&mu_);
  return {peers_.begin(), peers_.end()};
}

size_t SessionTable::peer_count() {
  MutexLock l(&mu_);
  return peers_.size();
}

size_t SessionTable::peer_count(PeerProtocol protocol) {
  MutexLock l(&mu_);
  return static_cast<size_t>(
      std::count_if(peers_.begin(), peers_.end(), [&](const auto& p) { return p->protocol() == protocol; }));
}

void SessionTable::Clear() {
  MutexLock l(&mu_);
  peers_.clear();
  sessions_.clear();
}

}  // namespace floe::broker
