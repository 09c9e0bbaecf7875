// Publish: producer dedup by (session, producer seq), the append into the
// stream's group commit, and one outcome per message once every message of
// the request is resolved (DESIGN.md "Publish").
#include "broker/blob.h"
#include "broker/core.h"
#include "log/batch.h"

namespace floe::broker {

namespace {

// A publish being resolved: `done` runs when the last message resolves.
struct PublishWait {
  Broker::Core* core = nullptr;
  std::shared_ptr<Session> session;  // kept alive until done
  uint64_t bytes = 0;
  PublishOutcome outcome;
  std::atomic<size_t> remaining{0};
  std::function<void(PublishOutcome)> done;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  uint64_t stored_messages = 0;  // fresh messages the append stored (set by its callback)
  uint64_t stored_bytes = 0;
};

using Lookup = log::Stream::ProducerLookup;

}  // namespace

void Session::Publish(std::span<const PublishInput> messages, uint64_t bytes, std::function<void(PublishOutcome)> done) {
  auto wait = std::make_shared<PublishWait>();
  wait->core = core_;
  wait->bytes = bytes;
  wait->done = std::move(done);
  wait->outcome.results.resize(messages.size());
  if (role_ != Role::kProducer) {
    for (size_t i = 0; i < messages.size(); ++i)
      wait->outcome.results[i] = {messages[i].producer_seq, Code::kNoSession};
    return wait->done(std::move(wait->outcome));
  }
  const uint32_t limit = std::min(stream_->config().max_message_bytes, core_->options.max_message_bytes);
  std::vector<log::Message> fresh;
  std::vector<size_t> fresh_index;
  uint64_t last = 0;
  log::Stream& log = stream_->log();
  publish_lock_->Lock();
  // A newer connection of this session holds it now (a takeover): this one
  // stores nothing more — its producer seqs may be the newer one's too (an
  // MQTT client id's counter restarts at the highest stored). Not answered
  // as acknowledged; the client resends on its new connection.
  bool holder;
  {
    MutexLock l(&state_->mu);
    holder = state_->holder == this;
  }
  if (!holder) {
    publish_lock_->Unlock();
    for (size_t i = 0; i < messages.size(); ++i) wait->outcome.results[i] = {messages[i].producer_seq, Code::kNoSession};
    wait->outcome.fenced = true;
    return wait->done(std::move(wait->outcome));
  }
  // Producer seqs above the highest the stream holds (or has in doubt) are
  // new: the common case needs no lookup per message.
  const uint64_t highest = log.HighestProducerSeq(id_);
  for (size_t i = 0; i < messages.size(); ++i) {
    const PublishInput& m = messages[i];
    const uint64_t pseq = m.producer_seq.value();
    PublishResult& r = wait->outcome.results[i];
    r.producer_seq = m.producer_seq;
    if (m.payload.size() + m.key.size() + m.headers.size() > limit) {
      r.code = Code::kMessageTooLarge;
      continue;
    }
    if (pseq == 0 || pseq <= last) {
      r.code = Code::kInvalidArgument;  // producer seqs start at 1 and increase within a request
      continue;
    }
    uint64_t unused_size;
    std::string_view unused_headers;
    if (!log::ParseHeaders(m.headers, [](void*, std::string_view, std::string_view) {}, nullptr).ok() ||
        ParseLargeRef(m.headers, &unused_size, &unused_headers)) {
      r.code = Code::kInvalidArgument;  // malformed, or the reserved floe.large header first
      continue;
    }
    last = pseq;
    auto found = pseq > highest ? Lookup{} : log.LookupProducer(id_, pseq);
    switch (found.state) {
      case Lookup::State::kCommitted:
        r.duplicate = true;
        r.seq = StreamSeq(found.seq);
        break;
      case Lookup::State::kInDoubt:
        // The first copy is being written; answer when it resolves.
        r.duplicate = true;
        r.seq = StreamSeq(found.seq);
        ++wait->remaining;
        break;
      case Lookup::State::kBelowWindow:
        r.code = Code::kDuplicateTooOld;
        break;
      case Lookup::State::kNew:
        fresh.push_back({.payload = m.payload, .key = m.key, .encoded_headers = m.headers,
                         .producer_id = id_, .producer_seq = pseq});
        fresh_index.push_back(i);
        break;
    }
  }
  // The last resolution decides: fencing (a node that lost the stream —
  // paused past its lease, or the stream moved — must not acknowledge; the
  // producer resends to the new owner, which finds what was stored in the
  // log's dedup index), the session's conveyance state, the node's count.
  auto finish = [wait](size_t n) {
    if (wait->remaining.fetch_sub(n) != n) return;
    Session& s = *wait->session;
    wait->outcome.fenced = !s.serving();
    if (!wait->outcome.fenced) {
      s.NoteAcked(wait->outcome.results);
      const CoreMetrics& m = wait->core->metrics;
      m.ack_latency->Observe(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                       std::chrono::steady_clock::now() - wait->start)
                                                       .count()));
      if (wait->stored_messages > 0) {
        s.counters_->published_messages->Add(wait->stored_messages);
        s.counters_->published_bytes->Add(wait->stored_bytes);
      }
    }
    wait->done(std::move(wait->outcome));
    wait->core->inflight_bytes -= wait->bytes;
  };
  wait->session = shared_from_this();
  const size_t in_doubt = wait->remaining.load();
  wait->remaining += fresh.empty() ? 1 : fresh.size() + 1;  // +1: held until everything is registered
  core_->inflight_bytes += bytes;
  if (!fresh.empty()) {
    uint64_t fresh_bytes = 0;
    for (const log::Message& m : fresh) fresh_bytes += m.payload.size() + m.key.size() + m.encoded_headers.size();
    log.AppendAsync(fresh, [wait, fresh_index, finish, fresh_bytes](const log::AppendResult& res) {
      if (res.status.ok()) {  // one append: all of it stored, or none
        wait->stored_messages = fresh_index.size();
        wait->stored_bytes = fresh_bytes;
      }
      for (size_t k = 0; k < fresh_index.size(); ++k) {
        PublishResult& r = wait->outcome.results[fresh_index[k]];
        if (res.status.ok()) {
          r.seq = StreamSeq(res.first_seq + k);
        } else if (res.status.code() == ErrorCode::kNoSpace) {
          r.code = Code::kNoSpace;  // the disk is full, holes recorded or not: DISK_FULL
        } else if (res.hole || res.out_of_order) {
          // Not stored: its write failed, or an earlier message of this
          // session is not stored yet (docs/protocol.md, "Order"). Resend.
          r.code = Code::kStorageFailed;
        } else {
          r.code = CodeOf(res.status);
        }
      }
      finish(fresh_index.size());
    });
  }
  publish_lock_->Unlock();
  // Duplicates of in-doubt messages: wait for the frontier to pass them. If
  // the first copy failed (its seq became a hole), the producer is told to
  // resend: the dedup window forgot it, so the resend is stored.
  for (size_t i = 0; i < wait->outcome.results.size() && in_doubt > 0; ++i) {
    PublishResult& r = wait->outcome.results[i];
    if (!r.duplicate || r.code != Code::kOk) continue;
    if (r.seq.value() <= log.frontier()) {
      if (log.LookupProducer(id_, r.producer_seq.value()).state != Lookup::State::kCommitted)
        r.code = Code::kStorageFailed;
      finish(1);
      continue;
    }
    auto stream = stream_;
    auto check = std::make_shared<std::function<void()>>();
    *check = [stream, wait, i, finish, check, session = id_]() {
      PublishResult& rr = wait->outcome.results[i];
      auto st = stream->log().LookupProducer(session, rr.producer_seq.value());
      if (st.state == Lookup::State::kInDoubt && st.seq == rr.seq.value()) {
        stream->AddFrontierWaiter(*check);  // not yet: wait for the next move
        return;
      }
      if (st.state != Lookup::State::kCommitted) rr.code = Code::kStorageFailed;
      else rr.seq = StreamSeq(st.seq);
      *check = nullptr;  // break the cycle
      finish(1);
    };
    stream->AddFrontierWaiter(*check);
  }
  finish(1);
}

}  // namespace floe::broker
