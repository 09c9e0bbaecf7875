#include "frontend/mqtt/keeper.h"

#include <algorithm>
#include <future>
#include <limits>

#include <fmt/format.h>

#include "base/logging.h"
#include "frontend/await_core.h"
#include "frontend/mqtt/internal.h"

namespace floe::frontend::mqtt {

using asio::awaitable;

namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr uint32_t kForever = 0xFFFFFFFFu;  // a Session Expiry Interval that never ends
constexpr int kRetryMs = 1000;              // an action that could not be done now
constexpr size_t kMaxActs = 64;             // actions under way at once

struct Due {
  int64_t will = kNever;
  int64_t end = kNever;
  int64_t first() const { return std::min(will, end); }
};

// When a left session's will and end are due: the will after its delay, or
// at the session's end if that comes first [MQTT-3.1.2-8].
Due DueOf(const SessionRecord& r) {
  Due d;
  if (r.expiry_s != kForever) d.end = r.left_at_ms + int64_t{r.expiry_s} * 1000;
  if (r.will) d.will = std::min(d.end, r.left_at_ms + int64_t{r.will->delay_s} * 1000);
  if (r.will && r.will->producer_seq != 0) d.will = 0;  // being published when its publisher went: finish it
  return d;
}

}  // namespace

Keeper::Keeper(asio::io_context& io, broker::Broker* broker, const MqttOptions* options,
               std::shared_ptr<RetainedStore> retained)
    : broker_(broker), options_(options), retained_(std::move(retained)), strand_(asio::make_strand(io)), timer_(strand_) {}

void Keeper::Start() {
  auto self = shared_from_this();
  asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->Loop(); }, asio::detached);
}

void Keeper::Stop() {
  asio::post(strand_, [self = shared_from_this()] {
    self->stopped_ = true;
    self->timer_.cancel();
  });
}

Keeper::Stats Keeper::stats() {
  std::promise<Stats> p;
  auto f = p.get_future();
  asio::post(strand_, [&] { p.set_value(stats_); });
  return f.get();
}

void Keeper::Claim(const std::string& key, const void* owner, std::function<void()> done) {
  asio::post(strand_, [self = shared_from_this(), key, owner, done = std::move(done)]() mutable {
    self->attached_[key] = owner;
    self->holders_[key].insert(owner);
    self->due_.erase(key);
    if (self->busy_.count(key)) self->waiting_[key].push_back(std::move(done));
    else done();
  });
}

void Keeper::WaitAlone(const std::string& key, const void* owner, std::function<void()> done) {
  asio::post(strand_, [self = shared_from_this(), key, owner, done = std::move(done)]() mutable {
    if (self->Alone(key, owner)) return done();
    // A connection of this node that held the key (being taken over) has
    // not let go: wait until it has (its last record write done), at most
    // kClaimWaitMs.
    auto timer = std::make_shared<asio::steady_timer>(self->strand_, std::chrono::milliseconds(kClaimWaitMs));
    self->alone_waiters_[key].push_back({owner, std::move(done), timer});
    timer->async_wait([self, key, timer](const asio::error_code&) { self->WakeAlone(key, timer.get()); });
  });
}

bool Keeper::Alone(const std::string& key, const void* owner) const {
  auto h = holders_.find(key);
  return h == holders_.end() || (h->second.size() == 1 && h->second.count(owner));
}

void Keeper::WakeAlone(const std::string& key, const asio::steady_timer* expired) {
  auto w = alone_waiters_.find(key);
  if (w == alone_waiters_.end()) return;
  std::vector<PendingClaim> ready;
  std::erase_if(w->second, [&](PendingClaim& p) {
    if (p.timer.get() != expired && !Alone(key, p.owner)) return false;
    ready.push_back(std::move(p));
    return true;
  });
  if (w->second.empty()) alone_waiters_.erase(w);
  for (auto& p : ready) {
    p.timer->cancel();
    p.done();
  }
}

void Keeper::Release(const std::string& key, const void* owner, bool left) {
  asio::post(strand_, [self = shared_from_this(), key, owner, left] {
    auto h = self->holders_.find(key);
    if (h != self->holders_.end()) {
      h->second.erase(owner);
      if (h->second.empty()) self->holders_.erase(h);
    }
    self->WakeAlone(key, nullptr);
    auto it = self->attached_.find(key);
    if (it == self->attached_.end() || it->second != owner) return;  // a newer connection holds it
    self->attached_.erase(it);
    if (left) {
      self->due_[key] = 0;  // read its record now: it says what is due and when
      self->timer_.cancel();
    }
  });
}

void Keeper::Finish(const std::string& key) {
  busy_.erase(key);
  timer_.cancel();  // the Loop starts what waited for room
  auto w = waiting_.find(key);
  if (w == waiting_.end()) return;
  auto fns = std::move(w->second);
  waiting_.erase(w);
  for (auto& f : fns) f();
}

void Keeper::Schedule(const std::string& key, const SessionRecord& record) {
  const int64_t at = DueOf(record).first();
  if (at == kNever) due_.erase(key);
  else due_[key] = at;
}

awaitable<void> Keeper::Loop() {
  while (!stopped_ && !broker_->stopping()) {
    const int64_t now = WallMs();
    if (now >= next_scan_ms_) {
      next_scan_ms_ = now + kScanMs;
      co_await Scan();
      continue;
    }
    int64_t next = next_scan_ms_;
    for (auto it = due_.begin(); it != due_.end();) {
      if (busy_.size() >= kMaxActs) break;
      if (it->second > now) {
        next = std::min(next, it->second);
        ++it;
        continue;
      }
      std::string key = it->first;
      it = due_.erase(it);
      if (attached_.count(key) || busy_.count(key)) continue;
      busy_.insert(key);
      auto self = shared_from_this();
      asio::co_spawn(strand_, [self, key]() -> awaitable<void> { co_await self->Act(key); }, asio::detached);
    }
    timer_.expires_after(std::chrono::milliseconds(std::clamp<int64_t>(next - now, 10, kScanMs)));
    co_await timer_.async_wait(kNoThrow);
  }
}

awaitable<void> Keeper::Scan() {
  // Only the node serving the MQTT stream acts for sessions no connection
  // holds: elsewhere every live session would look like an orphan.
  auto where = co_await AwaitCore<broker::Outcome<broker::Broker::Placement>>(
      [&](auto done) { broker_->LocateStream(options_->stream, std::move(done)); });
  if (!where || !where->here) co_return;
  using Listed = broker::Outcome<std::vector<broker::Record>>;
  auto records = co_await AwaitCore<Listed>([&](auto done) { broker_->ListRecords("mqtt/", std::move(done)); });
  if (!records) co_return;  // the bank is unreachable: the next scan tries again
  const int64_t now = WallMs();
  for (const broker::Record& rec : *records) {
    const std::string key = rec.key.substr(5);
    if (attached_.count(key) || busy_.count(key)) continue;
    auto r = DecodeSessionRecord(rec.value);
    if (!r) continue;
    if (!r->node.empty()) {
      due_[key] = now;  // held by a node that no longer holds it: an orphan, if this node serves the stream
      continue;
    }
    Schedule(key, *r);
  }
}

awaitable<bool> Keeper::Write(const std::string& key, std::optional<std::string> value) {
  auto w = co_await AwaitCore<broker::Outcome<void>>(
      [&](auto done) { broker_->WriteRecord("mqtt/" + key, std::move(value), std::move(done)); });
  co_return w.has_value();
}

awaitable<void> Keeper::Act(std::string key) {
  auto retry = [&] {
    due_[key] = WallMs() + kRetryMs;
    Finish(key);
  };
  auto bytes = co_await AwaitCore<broker::Outcome<std::optional<std::string>>>(
      [&](auto done) { broker_->ReadRecord("mqtt/" + key, std::move(done)); });
  if (!bytes) co_return retry();
  if (!*bytes || attached_.count(key)) co_return Finish(key);
  auto decoded = DecodeSessionRecord(**bytes);
  if (!decoded) {
    logging::Error("mqtt.session_unreadable",
                   fmt::format("session record {} unreadable: {}", key, decoded.error().ToString()));
    co_return Finish(key);
  }
  SessionRecord record = std::move(*decoded);
  if (record.node.empty() && DueOf(record).first() > WallMs()) {
    Schedule(key, record);
    co_return Finish(key);
  }
  // Lock the session here: fails unless this node serves the MQTT stream,
  // and fences whatever node held it before.
  const uint64_t h = ClientHash(record.client_id);
  auto opened = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
    broker_->OpenSession(shared_from_this(),
                         {.session_id = SessionId(h | 1), .role = Role::kProducer, .stream = options_->stream},
                         std::move(done));
  });
  if (!opened) {
    due_[key] = WallMs() + (opened.error().code == broker::Code::kNotOwner ? kScanMs : kRetryMs);
    co_return Finish(key);
  }
  std::shared_ptr<broker::Session> producer = opened->session;
  bool ok = true;
  if (attached_.count(key)) {
    // A connection claimed it while the lock was taken: the connection's
    // open takes the session back.
  } else {
    if (!record.node.empty()) {
      logging::Info("mqtt.session_orphaned",
                    fmt::format("session of client {} was held by node {}, which no longer holds it", record.client_id,
                                record.node),
                    {{"client", record.client_id}, {"from", record.node}});
      ++stats_.orphans_found;
      record.node.clear();
      record.left_at_ms = WallMs();
      ok = co_await Write(key, EncodeSessionRecord(record));
    }
    const int64_t now = WallMs();
    const Due due = DueOf(record);
    if (ok && record.will && now >= due.will) {
      uint64_t next = opened->grant.highest_producer_seq.value() + 1;
      if (!record.qos2_in.empty())
        for (const auto& [id, pseq] : record.qos2_in)
          if (!record.qos2_in_stream.count(id)) next = std::max(next, pseq + 1);  // the default stream's
      ok = co_await PublishWill(key, record, producer, next);
    }
    if (ok && now >= due.end) {
      producer->EndAtClose();
      ok = co_await EndSession(key, record);
    } else if (ok) {
      ok = co_await Write(key, EncodeSessionRecord(record));
      if (ok) Schedule(key, record);
    }
  }
  producer->Close();
  if (!ok) co_return retry();
  Finish(key);
}

awaitable<bool> Keeper::PublishWill(const std::string& key, SessionRecord& record,
                                    const std::shared_ptr<broker::Session>& producer, uint64_t next_seq) {
  SessionRecord::Will& will = *record.will;
  if (will.producer_seq == 0) {
    // Written before it is published: a keeper that dies between the two is
    // followed by one that resends the same producer seq, stored once.
    will.producer_seq = next_seq;
    if (!co_await Write(key, EncodeSessionRecord(record))) co_return false;
  }
  const broker::PublishInput in{ProducerSeq(will.producer_seq), {}, will.headers, will.payload};
  auto out = co_await AwaitCore<broker::PublishOutcome>(
      [&](auto done) { producer->Publish({&in, 1}, will.payload.size(), std::move(done)); });
  if (out.fenced || out.results.empty() || out.results[0].code != broker::Code::kOk) {
    producer->ForgetUnstored();
    co_return false;
  }
  if (will.retain) {
    // Will Retain [MQTT-3.1.2-15]: the topic's retained message too, before
    // the will counts as sent (a failure here retries the whole, stored once).
    retained_->Begin();
    auto r = co_await AwaitCore<broker::Outcome<void>>([&](auto done) {
      retained_->Commit(will.topic, out.results[0].seq.value(), will.headers, will.payload, std::move(done));
    });
    if (!r && r.error().code != broker::Code::kInvalidArgument) co_return false;
  }
  logging::Info("mqtt.will_sent",
                fmt::format("will of client {} published on {} (stream seq {})", record.client_id, will.topic,
                            out.results[0].seq.value()),
                {{"client", record.client_id}, {"topic", will.topic}});
  ++stats_.wills_published;
  record.will.reset();
  co_return true;
}

awaitable<bool> Keeper::EndSession(const std::string& key, const SessionRecord& record) {
  auto c = co_await AwaitCore<broker::Outcome<broker::Broker::Opened>>([&](auto done) {
    broker_->OpenSession(shared_from_this(),
                         {.session_id = SessionId(ConsumerSessionId(record.client_id, record.generation)),
                          .role = Role::kConsumer,
                          .stream = options_->stream,
                          .consumer = fmt::format("mqtt.{}.{}", key, record.generation),
                          .start_at = StartAt::kNew},
                         std::move(done));
  });
  if (!c) co_return false;
  c->session->EndAtClose();
  c->session->Close();
  if (!co_await Write(key, std::nullopt)) co_return false;
  logging::Info("mqtt.session_expired", fmt::format("session of client {} expired", record.client_id),
                {{"client", record.client_id}});
  ++stats_.sessions_expired;
  co_return true;
}

}  // namespace floe::frontend::mqtt
