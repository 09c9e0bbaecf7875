#include "frontend/mqtt/shared.h"

#include <algorithm>

#include <fmt/format.h>

#include "frontend/await_core.h"
#include "frontend/mqtt/internal.h"
#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

using asio::awaitable;

namespace {

uint64_t GroupHash(const std::string& group, const std::string& filter) {
  return ClientHash(fmt::format("$share\n{}\n{}", group, filter));
}

}  // namespace

SharedGroup::SharedGroup(asio::io_context& io, broker::Broker* broker, const MqttOptions* options,
                         SharedGroups* registry, std::string group, std::string filter, std::string stream)
    : broker_(broker),
      options_(options),
      registry_(registry),
      group_(std::move(group)),
      filter_(std::move(filter)),
      stream_(std::move(stream)),
      strand_(asio::make_strand(io)),
      wake_timer_(strand_) {}

std::string SharedGroup::consumer_name() const { return "mqtt.share." + Hex(GroupHash(group_, filter_)); }

void SharedGroup::Join(std::shared_ptr<Connection> member, uint8_t max_qos, uint32_t subscription_id,
                       bool retain_as_published) {
  asio::post(strand_, [self = shared_from_this(), member = std::move(member), max_qos, subscription_id,
                       retain_as_published] {
    const Connection* key = member.get();
    auto it = std::find_if(self->members_.begin(), self->members_.end(), [&](const auto& m) { return m.first == key; });
    if (it == self->members_.end()) {
      self->members_.push_back({key, Member{member, max_qos, subscription_id, retain_as_published, 0}});
    } else {
      it->second.max_qos = max_qos;  // subscribed again: the new options
      it->second.subscription_id = subscription_id;
      it->second.retain_as_published = retain_as_published;
    }
    if (!self->pumping_) {
      self->pumping_ = true;
      asio::co_spawn(self->strand_, [self]() -> awaitable<void> { co_await self->Pump(); }, asio::detached);
    } else {
      self->Wake();
    }
  });
}

void SharedGroup::Leave(const Connection* member) {
  asio::post(strand_, [self = shared_from_this(), member] {
    auto it = std::find_if(self->members_.begin(), self->members_.end(),
                           [&](const auto& m) { return m.first == member; });
    if (it != self->members_.end()) self->members_.erase(it);
    // Everything it was handed and did not answer goes to another member.
    std::vector<broker::AnswerInput> release;
    for (auto h = self->handed_.begin(); h != self->handed_.end();) {
      if (h->second != member) {
        ++h;
        continue;
      }
      release.push_back({StreamSeq(h->first), AnswerKind::kNak, 0});
      h = self->handed_.erase(h);
    }
    if (!release.empty() && self->session_)
      self->session_->Answer(release, [](broker::Outcome<std::vector<broker::Code>>) {});
    self->Wake();
  });
}

void SharedGroup::Answered(const Connection* member, uint64_t seq) {
  asio::post(strand_, [self = shared_from_this(), member, seq] {
    auto h = self->handed_.find(seq);
    if (h == self->handed_.end() || h->second != member) return;  // released meanwhile
    self->handed_.erase(h);
    for (auto& [key, m] : self->members_)
      if (key == member && m.outstanding > 0) --m.outstanding;
    if (self->session_) {
      const broker::AnswerInput a{StreamSeq(seq), AnswerKind::kAck, 0};
      self->session_->Answer({&a, 1}, [](broker::Outcome<std::vector<broker::Code>>) {});
    }
    self->Wake();
  });
}

void SharedGroup::CloseSoon() {
  // Another node's group (the stream moved there) took the consumer over.
  asio::post(strand_, [self = shared_from_this()] {
    self->CloseSession();
    self->Wake();
  });
}

void SharedGroup::Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string&) {
  asio::post(strand_, [self = shared_from_this(), stream] {
    if (self->session_ && self->session_->on_stream(stream)) self->CloseSession();
    self->Wake();
  });
}

void SharedGroup::Wake() {
  wake_ = true;
  wake_timer_.cancel();
}

void SharedGroup::CloseSession() {
  change_armed_ = false;
  if (!session_) return;
  session_->Close();  // its unanswered deliveries are released
  session_.reset();
  handed_.clear();
  for (auto& [key, m] : members_) m.outstanding = 0;
}

awaitable<void> SharedGroup::Pump() {
  auto self = shared_from_this();
  while (!members_.empty() && !broker_->stopping()) {
    if (!session_) {
      auto opened = co_await AwaitOnStrand<broker::Outcome<broker::Broker::Opened>>(strand_, self, [&](auto done) {
        // The default stream's group keeps the id it had before streams were
        // bound; a bound stream's is named by the stream too.
        uint64_t id = (stream_ == options_->stream ? GroupHash(group_, filter_)
                                                   : ClientHash(fmt::format("$share\n{}\n{}\n{}", group_, filter_, stream_))) &
                      ~uint64_t{1};
        broker_->OpenSession(self,
                             {.session_id = SessionId(id == 0 ? 2 : id),
                              .role = Role::kConsumer,
                              .stream = stream_,
                              .consumer = consumer_name(),
                              .start_at = StartAt::kNew},
                             std::move(done));
      });
      if (!opened) {
        wake_timer_.expires_after(std::chrono::seconds(1));
        co_await wake_timer_.async_wait(kNoThrow);
        continue;
      }
      if (members_.empty()) {
        opened->session->Close();
        break;
      }
      session_ = opened->session;
    }
    if (!session_->serving()) {
      CloseSession();
      continue;
    }
    // Members whose connection is gone leave (their FinishClose says so
    // too; this covers a race with it).
    std::erase_if(members_, [](const auto& m) { return m.second.connection.expired(); });
    uint32_t room = 0;
    for (const auto& [key, m] : members_) room += kPerMember - std::min(m.outstanding, kPerMember);
    if (room > 0) {
      auto batch = session_->Deliver(std::min<uint32_t>(room, 256), 1 << 20);
      if (!batch) {
        CloseSession();
        continue;
      }
      if (!batch->entries.empty()) {
        std::vector<broker::AnswerInput> done;  // no member's business, QoS 0, expired
        const int64_t now_ms = WallMs();
        for (const broker::Delivered& e : batch->entries) {
          if (e.kind != broker::Delivered::Kind::kMessage) {
            if (e.kind == broker::Delivered::Kind::kLarge) done.push_back({e.seq, AnswerKind::kAck, 0});
            continue;
          }
          Stored m = ParseStored(e.headers, stream_);
          if ((m.expires_at_ms > 0 && m.expires_at_ms <= now_ms) || !codec::TopicMatches(filter_, m.topic)) {
            done.push_back({e.seq, AnswerKind::kAck, 0});
            continue;
          }
          // Round robin among members with room.
          Member* chosen = nullptr;
          const Connection* chosen_key = nullptr;
          for (size_t k = 0; k < members_.size() && !chosen; ++k) {
            auto& [key, mem] = members_[(next_ + k) % members_.size()];
            if (mem.outstanding >= kPerMember) continue;
            chosen = &mem;
            chosen_key = key;
            next_ = (next_ + k + 1) % members_.size();
          }
          auto conn = chosen ? chosen->connection.lock() : nullptr;
          if (!conn) {
            done.push_back({e.seq, AnswerKind::kNak, 0});  // nobody to take it now: again later
            continue;
          }
          SharedMessage sm{e.seq.value(),
                           static_cast<uint8_t>(std::min<int>(chosen->max_qos, m.qos)),
                           std::string(m.topic),
                           std::string(e.headers),
                           std::string(e.payload),
                           chosen->subscription_id,
                           chosen->retain_as_published};
          if (sm.qos == 0) {
            done.push_back({e.seq, AnswerKind::kAck, 0});
          } else {
            handed_[e.seq.value()] = chosen_key;
            ++chosen->outstanding;
          }
          conn->DeliverShared(self, std::move(sm));
        }
        if (!done.empty()) session_->Answer(done, [](broker::Outcome<std::vector<broker::Code>>) {});
        co_await asio::post(strand_, asio::use_awaitable);
        continue;
      }
    }
    if (wake_) {
      wake_ = false;
      continue;
    }
    if (!change_armed_) {
      change_armed_ = true;
      session_->OnStreamChange([self] {
        asio::post(self->strand_, [self] {
          self->change_armed_ = false;
          self->Wake();
        });
      });
    }
    wake_timer_.expires_at(
        std::min(std::chrono::steady_clock::now() + std::chrono::seconds(1), session_->NextRedelivery()));
    co_await wake_timer_.async_wait(kNoThrow);
    wake_ = false;
  }
  // No members: the consumer stays, and its messages wait for the next one.
  if (members_.empty()) {
    CloseSession();
    registry_->Forget(this);
  }
  pumping_ = false;
  if (!members_.empty() && !broker_->stopping()) {
    pumping_ = true;  // joined while the last step ran
    asio::co_spawn(strand_, [self]() -> awaitable<void> { co_await self->Pump(); }, asio::detached);
  }
}

std::shared_ptr<SharedGroup> SharedGroups::Get(const std::string& group, const std::string& filter,
                                               const std::string& stream) {
  MutexLock lock(&mu_);
  auto& g = groups_[{group, filter, stream}];
  if (!g) g = std::make_shared<SharedGroup>(io_, broker_, options_, this, group, filter, stream);
  return g;
}

void SharedGroups::Forget(const SharedGroup* group) {
  MutexLock lock(&mu_);
  auto it = groups_.find({group->group(), group->filter(), group->stream()});
  // Two owners: this map and the caller's own (a member's, a Join on its
  // way, would be a third).
  if (it != groups_.end() && it->second.get() == group && it->second.use_count() <= 2) groups_.erase(it);
}

}  // namespace floe::frontend::mqtt

// --- the member's side: a Connection --------------------------------------------

namespace floe::frontend::mqtt {

void Connection::DeliverShared(std::shared_ptr<SharedGroup> group, SharedMessage message) {
  asio::post(strand_, [self = shared_from_this(), group = std::move(group), message = std::move(message)]() mutable {
    if (self->closed_ || self->close_after_write_ || !self->joined_.count(SharedFilterOf(group))) {
      group->Leave(self.get());  // gone, or left: what it was handed goes to another member
      return;
    }
    self->shared_backlog_.emplace_back(std::move(group), std::move(message));
    self->SendShared();
  });
}

void Connection::SendShared() {
  const int64_t now_ms = WallMs();
  while (!shared_backlog_.empty() && outgoing_.size() < client_receive_maximum_ && !closed_ && !close_after_write_) {
    std::shared_ptr<SharedGroup> group = std::move(shared_backlog_.front().first);
    auto held = std::make_shared<SharedMessage>(std::move(shared_backlog_.front().second));
    const SharedMessage& m = *held;
    shared_backlog_.pop_front();
    Stored st = ParseStored(m.headers, group->stream());
    if (st.expires_at_ms > 0 && st.expires_at_ms <= now_ms) {
      if (m.qos > 0) group->Answered(this, m.seq);  // expired while it waited here [MQTT-3.3.2-5]
      continue;
    }
    codec::Publish out;
    out.topic = m.topic;
    out.qos = m.qos;
    out.retain = m.retain_as_published && st.retain;
    out.payload = m.payload;
    if (version_ == codec::Version::kV5) {
      out.properties = st.properties;
      if (m.subscription_id) out.properties.subscription_identifiers = {m.subscription_id};
      if (st.expires_at_ms > 0)
        out.properties.message_expiry_interval = static_cast<uint32_t>((st.expires_at_ms - now_ms + 999) / 1000);
    }
    if (m.qos > 0) {
      out.packet_id = NextPacketId();
      outgoing_[out.packet_id] = Outgoing{m.seq, m.qos, false, true, group};
    }
    if (m.qos == 2) SendHeldQos2(out, held);
    else Send(out);
  }
}

std::string SharedFilterOf(const std::shared_ptr<SharedGroup>& group) {
  return "$share/" + group->group() + "/" + group->filter();
}

void Connection::JoinSharedGroups() {
  const auto view = bindings_->view();
  for (const auto& sub : record_.subscriptions) {
    auto split = codec::SplitSharedFilter(sub.filter);
    if (!split) continue;
    // The default stream's group, and one per bound stream the filter can
    // match (a stream bound later is joined when the bindings change).
    std::vector<std::string> streams = StreamsFor(view->bindings, {split->filter});
    streams.push_back(options_->stream);
    auto& groups = joined_[sub.filter];
    for (const std::string& stream : streams) {
      if (std::any_of(groups.begin(), groups.end(), [&](const auto& g) { return g->stream() == stream; })) continue;
      groups.push_back(shared_groups_->Get(std::string(split->share_name), std::string(split->filter), stream));
    }
    for (const auto& g : groups)
      g->Join(shared_from_this(), sub.options.max_qos, sub.identifier, sub.options.retain_as_published);
  }
}

void Connection::LeaveSharedGroups(const std::string& filter) {
  for (auto j = joined_.begin(); j != joined_.end();) {
    if (!filter.empty() && j->first != filter) {
      ++j;
      continue;
    }
    for (const std::shared_ptr<SharedGroup>& g : j->second) {
      // A late answer from the client is nobody's now; the group releases
      // what it handed us.
      for (auto& [id, o] : outgoing_)
        if (o.group == g) o.group.reset();
      std::erase_if(shared_backlog_, [&](const auto& b) { return b.first == g; });
      g->Leave(this);
    }
    j = joined_.erase(j);
  }
}

}  // namespace floe::frontend::mqtt
