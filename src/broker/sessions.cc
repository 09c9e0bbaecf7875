// Sessions: open or resume, lock on this node (the bank shows the holder,
// one epoch higher), persist the conveyance state, release, and tidy the
// records no node holds (docs/cluster.md "Sessions").
#include <fmt/format.h>

#include "base/logging.h"
#include "broker/blob.h"
#include "broker/core.h"

namespace floe::broker {

namespace {

// Holds `mu` (when there is one) until Release or the end of the scope.
class HeldUntilReleased {
 public:
  explicit HeldUntilReleased(Mutex* mu) NO_THREAD_SAFETY_ANALYSIS : mu_(mu) {
    if (mu_) mu_->Lock();
  }
  ~HeldUntilReleased() { Release(); }
  void Release() NO_THREAD_SAFETY_ANALYSIS {
    if (mu_) mu_->Unlock();
    mu_ = nullptr;
  }

 private:
  Mutex* mu_;
};

// The first seq a new durable consumer reads.
uint64_t StartSeq(log::Stream& log, StartAt at, uint64_t value) {
  const uint64_t first = log.first_seq();
  switch (at) {
    case StartAt::kFirst: return first;
    case StartAt::kSeq: return std::max(value, first);
    case StartAt::kNew: return log.frontier() + 1;
    case StartAt::kTime: {
      auto t = log.SeekTime(static_cast<int64_t>(value));
      return t ? std::max(*t, first) : first;
    }
  }
  return first;
}

}  // namespace

void Broker::OpenSession(std::shared_ptr<Peer> peer, SessionRequest req, std::function<void(Outcome<Opened>)> done) {
  Core* core = core_.get();
  // The bank reads (the resumed session's record, the stream's owner) run
  // on the bank pool, never on the caller's I/O thread.
  asio::post(core->bank_pool, [core, peer = std::move(peer), req = std::move(req), done = std::move(done)]() mutable {
    if (core->stopping) return done(Fail(Code::kShuttingDown, "node is shutting down"));
    const uint64_t asked = req.session_id.value();  // 0: a new session
    std::optional<SessionRecord> prior;
    if (asked != 0) {
      auto v = core->bank->Get(SessionKey(asked));
      if (v) {
        auto r = DecodeSessionRecord(v->value);
        if (!r) return done(Fail(Code::kInternal, r.error().ToString()));
        prior = std::move(*r);
      } else if (!v.error().IsNotFound()) {
        return done(Fail(Code::kUnavailable, "reading the session: " + v.error().ToString()));
      }
    }
    const SessionRecord::Kind kind =
        req.role == Role::kProducer ? SessionRecord::Kind::kProducer : SessionRecord::Kind::kConsumer;
    if (req.stream.empty()) {
      if (!prior)
        return done(Fail(Code::kInvalidArgument, "a session needs a stream, or the id of a session the bank knows"));
      req.stream = prior->stream;
    }
    if (prior && (prior->stream != req.stream || prior->kind != kind))
      return done(Fail(Code::kInvalidArgument, fmt::format("session {:016x} is a {} session of stream {}",
                                                           asked, SessionKindName(prior->kind), prior->stream)));
    if (kind == SessionRecord::Kind::kConsumer) {
      if (req.consumer.empty() && prior) req.consumer = prior->consumer;
      Status valid = ValidateStreamName(req.consumer);
      if (!valid.ok()) return done(Fail(Code::kInvalidName, "consumer " + std::string(valid.message())));
      if (prior && prior->consumer != req.consumer)
        return done(Fail(Code::kInvalidArgument,
                         fmt::format("session {:016x} belongs to consumer {}", asked, prior->consumer)));
    }
    auto stream = core->Served(req.stream);
    if (!stream) return done(tl::unexpected(core->Locate(req.stream)));

    const uint64_t id = asked ? asked : core->sessions.NewId();
    core->sessions.Claim(id, peer);
    SessionGrant grant;
    grant.session_id = SessionId(id);
    std::shared_ptr<ConsumerGroup> consumer;
    uint64_t highest_pseq = 0, highest_seq = 0;
    // Producers: the publish lock from reading the highest producer seq to
    // making this session the holder, so an older connection's publish
    // cannot slip in between (it is refused once this one holds it).
    std::shared_ptr<Mutex> publish_lock =
        kind == SessionRecord::Kind::kProducer ? core->sessions.PublishLock(id) : nullptr;
    HeldUntilReleased publishing(publish_lock.get());
    if (kind == SessionRecord::Kind::kProducer) {
      // A session opened anew starts its order afresh: its client resends
      // what was not stored, in order, from here (a client that gave up on a
      // message reopens so; docs/protocol.md "Order").
      stream->log().ForgetUnstored(id);
      highest_pseq = stream->log().HighestProducerSeq(id, &highest_seq);
      grant.highest_producer_seq = ProducerSeq(highest_pseq);
      grant.highest_seq = StreamSeq(highest_seq);
    } else {
      consumer = stream->GetOrCreateConsumer(req.consumer, StartSeq(stream->log(), req.start_at, req.start_value));
      MutexLock l(&consumer->mu);
      grant.ack_floor = StreamSeq(consumer->cursor.ack_floor());
      for (const auto& [seq, p] : consumer->cursor.pending())
        if (p.session_id == id) grant.pending.push_back({StreamSeq(seq), p.delivery_count});
    }
    auto state = core->sessions.StateFor(id);
    std::shared_ptr<Session> session(new Session(
        core, id, req.role, stream, consumer, state,
        publish_lock));
    session->peer_ = peer.get();
    session->counters_ = core->metrics.ForStream(stream->name());
    (peer && peer->protocol() == PeerProtocol::kMqtt ? core->metrics.sessions_opened_mqtt
                                                     : core->metrics.sessions_opened_floe)->Add();
    // Lock the session: this node holds it, one epoch higher. The bank's
    // checkpoint is corrected by the stream's own tail (the log knows the
    // highest producer seq it stored for this session).
    std::string taken_from;  // the node whose lock this open takes over
    uint64_t epoch;
    {
      MutexLock l(&state->mu);
      SessionRecord& rec = state->record;
      if (rec.id == 0) {
        if (prior) rec = *prior;
        rec.id = id;
        rec.kind = kind;
        rec.stream = req.stream;
        rec.consumer = kind == SessionRecord::Kind::kConsumer ? req.consumer : std::string();
      }
      taken_from = rec.holder;
      rec.holder = core->options.node_id;
      ++rec.epoch;
      epoch = rec.epoch;
      rec.updated_ms = NowMs();
      if (kind == SessionRecord::Kind::kProducer && highest_pseq >= rec.last_producer_seq) {
        rec.last_producer_seq = highest_pseq;
        rec.last_seq = highest_seq;
      }
      state->holder = session.get();
      publishing.Release();
      state->group = consumer;
      state->ended = false;
      state->chunk_busy = false;
      grant.epoch = Epoch(rec.epoch);
      // A large message in transfer: resume at the bytes the bank says are
      // durable (the blob file may hold more, written but never acknowledged).
      if (rec.conveying_producer_seq != 0) {
        if (rec.conveying_producer_seq <= highest_pseq) {
          rec.conveying_producer_seq = rec.conveying_total = rec.bytes_conveyed = 0;  // it was stored
        } else {
          auto size = TruncateBlob(core->BlobFile(BlobPath(req.stream, id, rec.conveying_producer_seq)),
                                   rec.bytes_conveyed);
          if (size && *size < rec.bytes_conveyed) rec.bytes_conveyed = *size;
          grant.chunk_producer_seq = ProducerSeq(rec.conveying_producer_seq);
          grant.chunk_bytes = ByteOffset(rec.bytes_conveyed);
        }
      }
    }
    if (!taken_from.empty())
      logging::Info("session.taken_over",
                    fmt::format("session {:016x} on stream {} taken over from {} (epoch {})", id, req.stream,
                                taken_from, epoch),
                    {{"node", core->options.node_id}, {"stream", req.stream}, {"from", taken_from}, {"epoch", epoch}});
    // A consumer's cursor goes to the bank first: a consumer created here
    // (at this node's frontier, for start_at "new") must not be created
    // again elsewhere at another frontier if this node dies before its
    // first delivery. The bank writer commits in queue order, so the cursor
    // is committed in the session's commit or an earlier one, and its
    // outcome is known (on the writer thread, or here if the writer
    // refused it) before the session's. Written at every open, not only at
    // creation: a second session of a consumer just created by another may
    // otherwise get its grant before the creator's write landed.
    auto cursor_written = std::make_shared<Status>(Status::OK());
    if (consumer)
      core->writer->Persist(req.stream, consumer, [cursor_written](Status s) { *cursor_written = std::move(s); });
    // The grant only once the bank shows the session locked here (and the
    // consumer's cursor). On failure the session is released again (the
    // caller closes).
    session->PersistState([session, peer, grant = std::move(grant), done = std::move(done),
                           cursor_written](Status s) mutable {
      if (s.ok() && !cursor_written->ok())
        s = Status(cursor_written->code(), "the consumer's cursor: " + std::string(cursor_written->message()));
      if (s.ok()) return done(Opened{std::move(session), std::move(grant)});
      session->Close();
      done(Fail(Code::kUnavailable, "locking the session in the bank: " + s.ToString()));
      peer->CloseSoon();  // after the failure is sent
    });
  });
}

Session::Session(Broker::Core* core, uint64_t id, Role role, std::shared_ptr<StreamEntry> stream,
                 std::shared_ptr<ConsumerGroup> consumer, std::shared_ptr<SessionState> state,
                 std::shared_ptr<Mutex> publish_lock)
    : core_(core),
      id_(id),
      role_(role),
      stream_(std::move(stream)),
      consumer_(std::move(consumer)),
      state_(std::move(state)),
      publish_lock_(std::move(publish_lock)) {}

Session::~Session() = default;

const std::string& Session::stream_name() const { return stream_->name(); }
bool Session::serving() const { return stream_->owned(); }

void Session::ForgetUnstored() {
  if (role_ == Role::kProducer) stream_->log().ForgetUnstored(id_);
}

void Session::PersistState(std::function<void(Status)> done) {
  core_->PersistSession(stream_->name(), id_, state_, std::move(done));
}

void Session::NoteAcked(const std::vector<PublishResult>& results) {
  uint64_t count = 0, top_pseq = 0, top_seq = 0;
  for (const auto& r : results) {
    if (r.code != Code::kOk) continue;
    ++count;
    if (r.producer_seq.value() > top_pseq) {
      top_pseq = r.producer_seq.value();
      top_seq = r.seq.value();
    }
  }
  if (count == 0) return;
  core_->published += count;
  {
    MutexLock l(&state_->mu);
    SessionRecord& rec = state_->record;
    rec.messages += count;
    if (top_pseq > rec.last_producer_seq) {
      rec.last_producer_seq = top_pseq;
      rec.last_seq = top_seq;
    }
    rec.updated_ms = NowMs();
  }
  PersistState(nullptr);
}

void Session::NoteDelivered(size_t delivered, uint64_t top_seq) {
  if (delivered == 0) return;
  {
    MutexLock l(&state_->mu);
    state_->record.messages += delivered;
    state_->record.last_seq = std::max(state_->record.last_seq, top_seq);
    state_->record.updated_ms = NowMs();
  }
  PersistState(nullptr);
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  // Release the session's lock (unless a newer connection of it holds it):
  // the record shows no holder, and its state stays for whoever resumes it.
  // After a goodbye the record is deleted.
  bool mine;
  {
    MutexLock l(&state_->mu);
    mine = state_->holder == this;
    if (mine) {
      state_->holder = nullptr;
      state_->record.holder.clear();
      state_->record.updated_ms = NowMs();
      state_->ended = goodbye_;
    }
  }
  // Its outstanding deliveries go back to the stream — unless a newer
  // connection holds the session: they are that one's now (its grant listed
  // them), and releasing them would deliver them to it a second time.
  if (consumer_ && mine) {
    {
      MutexLock l(&consumer_->mu);
      consumer_->cursor.Release(id_, NowMs());
    }
    core_->writer->Persist(stream_->name(), consumer_, nullptr);
    stream_->WakeAll();  // others may take the released deliveries
  }
  if (mine) PersistState(nullptr);
  core_->sessions.Release(id_, peer_);
}

void Broker::Core::PersistSession(const std::string& stream, uint64_t id, std::shared_ptr<SessionState> state,
                                  std::function<void(Status)> done) {
  // Progress (every publish ACK, every delivery) only marks the record
  // dirty once per bank commit: one queued lazy write carries the latest.
  if (!done) {
    MutexLock l(&state->mu);
    if (state->lazy_queued) return;
    state->lazy_queued = true;
  }
  writer->Write(SessionKey(id), stream,
                [state]() -> std::optional<std::string> {
                  MutexLock l(&state->mu);
                  state->lazy_queued = false;  // what follows is written
                  if (state->ended) return std::nullopt;
                  SessionRecord rec = state->record;
                  if (state->group) {
                    MutexLock g(&state->group->mu);
                    uint32_t pending = 0;
                    for (const auto& [seq, p] : state->group->cursor.pending())
                      if (p.session_id == rec.id) ++pending;
                    rec.pending = pending;
                  }
                  return EncodeSessionRecord(rec);
                },
                std::move(done));
}

void Broker::Core::Housekeep() {
  auto all = bank->List(kSessionsPrefix);
  if (!all) return;
  const int64_t now = NowMs();
  for (const auto& kv : *all) {
    auto r = DecodeSessionRecord(kv.value);
    if (!r) continue;
    if (!Served(r->stream)) continue;  // its owner looks after it
    // Every write of a session's record goes through its one SessionState,
    // so this cannot overwrite a connection's newer state.
    auto state = sessions.StateFor(r->id);
    bool write = false;
    {
      MutexLock l(&state->mu);
      if (state->holder != nullptr) continue;  // served here now
      if (state->record.id == 0) state->record = *r;
      if (!state->record.holder.empty()) {
        // Held by a node that lost the stream (died, paused, gave it up):
        // the lock is void.
        state->record.holder.clear();
        state->record.updated_ms = now;
        write = true;
      } else if (now - state->record.updated_ms > options.session_ttl_ms) {
        state->ended = true;  // closed long ago: the record goes
        write = true;
      }
    }
    if (write) PersistSession(r->stream, r->id, state, nullptr);
  }
}

}  // namespace floe::broker
