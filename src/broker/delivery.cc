// Delivery (DESIGN.md "Consume"): what a consumer session is given —
// redeliveries first, then new messages, gaps for holes —, the answers it
// gives back (confirmed only once persisted), and the move of a message that
// reached its delivery limit to the dead-letter stream (dead_letter.cc).
#include <climits>

#include "broker/blob.h"
#include "broker/core.h"

namespace floe::broker {

namespace {
// Dead-letter moves one consumer has under way at most, and how long one
// over that waits before it is tried.
constexpr size_t kMaxDeadLettersInFlight = 32;
constexpr int64_t kDeadLetterBackoffMs = 100;
}  // namespace

Outcome<DeliveryBatch> Session::Deliver(uint32_t max_messages, uint32_t max_bytes) {
  if (!consumer_) return Fail(Code::kNoSession, "deliveries need a consumer session");
  if (!serving()) return Fail(Code::kNotOwner, "this node no longer serves the stream");  // fencing
  log::Stream& log = stream_->log();
  const StreamConfig& config = stream_->config();
  DeliveryBatch batch;
  std::vector<log::Entry>& entries = batch.storage;
  std::vector<uint32_t> counts;
  std::vector<uint64_t> to_dead_letter;
  bool changed = false;
  {
    MutexLock l(&consumer_->mu);
    Cursor& cursor = consumer_->cursor;
    const int64_t now = NowMs();
    const int64_t deadline = now + config.ack_wait_ms;
    size_t bytes = 0;
    // Redeliveries first: NAKed, timed out, or released by a lost session.
    for (uint64_t seq : cursor.Due(now, max_messages)) {
      if (consumer_->dead_lettering.count(seq)) continue;  // being moved
      const PendingEntry* p = cursor.Find(seq);
      if (config.max_deliveries > 0 && p->delivery_count >= config.max_deliveries) {
        if (consumer_->dead_lettering.size() >= kMaxDeadLettersInFlight) {
          // Enough moves under way for this consumer (each may read the bank
          // and wait for another node): this one later, without flooding
          // the file pool.
          cursor.Postpone(seq, now + kDeadLetterBackoffMs);
          changed = true;
          continue;
        }
        consumer_->dead_lettering.insert(seq);
        to_dead_letter.push_back(seq);
        continue;
      }
      auto r = log.Read({.from_seq = seq, .max_messages = 1});
      if (!r || r->entries.empty() || r->entries[0].seq != seq || r->entries[0].kind != log::Entry::Kind::kMessage) {
        cursor.Done(seq);  // gone (retention) or not a message: nothing to redeliver
        changed = true;
        continue;
      }
      bytes += r->entries[0].payload.size();
      cursor.Delivered(seq, id_, deadline);
      counts.push_back(cursor.Find(seq)->delivery_count);
      entries.push_back(std::move(r->entries[0]));
      changed = true;
    }
    // Then new messages, while the consumer has room for more pending.
    const size_t max_pending = core_->options.max_ack_pending;
    const size_t room = max_pending > cursor.pending().size() ? max_pending - cursor.pending().size() : 0;
    const size_t want = std::min<size_t>(max_messages - std::min<size_t>(entries.size(), max_messages), room);
    if (want > 0 && (entries.empty() || bytes < max_bytes)) {
      const uint64_t first = log.first_seq();
      if (cursor.next_seq() < first) {
        cursor.Gap(cursor.next_seq(), first - cursor.next_seq());  // deleted by retention
        changed = true;
      }
      auto r = log.Read({.from_seq = cursor.next_seq(), .max_messages = want,
                         .max_bytes = entries.empty() ? max_bytes : max_bytes - bytes});
      if (r) {
        for (auto& e : r->entries) {
          if (e.kind == log::Entry::Kind::kGap) {
            cursor.Gap(e.seq, e.gap_count);
            counts.push_back(0);
          } else {
            cursor.Delivered(e.seq, id_, deadline);
            counts.push_back(1);
          }
          entries.push_back(std::move(e));
          changed = true;
        }
      }
    }
  }
  for (uint64_t seq : to_dead_letter) {
    asio::post(core_->file_pool, [core = core_, stream = stream_, group = consumer_, seq] {
      MoveToDeadLetter(core, stream, group, seq);
    });
  }
  if (changed) core_->writer->Persist(stream_->name(), consumer_, nullptr);
  size_t delivered = 0;
  uint64_t top = 0;
  batch.entries.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const log::Entry& e = entries[i];
    Delivered x;
    x.seq = StreamSeq(e.seq);
    if (e.kind == log::Entry::Kind::kGap) {
      x.kind = Delivered::Kind::kGap;
      x.gap_count = e.gap_count;
    } else {
      ++delivered;
      top = std::max(top, e.seq);
      x.delivery_count = counts[i];
      x.timestamp_us = e.timestamp_us;
      x.key = e.key;
      x.headers = e.headers;
      x.payload = e.payload;
      std::string_view user_headers;
      uint64_t large_size = 0;
      if (ParseLargeRef(e.headers, &large_size, &user_headers)) {
        x.large_size = ByteOffset(large_size);
        x.kind = Delivered::Kind::kLarge;  // the bytes come by FetchChunk
        x.headers = user_headers;
        x.payload = {};
      }
    }
    batch.entries.push_back(x);
  }
  NoteDelivered(delivered, top);
  if (delivered > 0) {
    counters_->delivered_messages->Add(delivered);
    uint64_t again = 0;
    for (const Delivered& d : batch.entries) again += d.kind != Delivered::Kind::kGap && d.delivery_count > 1;
    if (again > 0) counters_->redelivered_messages->Add(again);
  }
  return batch;
}

std::chrono::steady_clock::time_point Session::NextRedelivery() {
  if (!consumer_) return std::chrono::steady_clock::time_point::max();
  int64_t next_deadline = INT64_MAX;
  {
    MutexLock l(&consumer_->mu);
    if (consumer_->dead_lettering.empty()) {
      next_deadline = consumer_->cursor.NextDeadline();
    } else {
      // A seq being moved is not deliverable, whatever its deadline says:
      // its move wakes the stream when it settles.
      for (const auto& [seq, p] : consumer_->cursor.pending())
        if (!consumer_->dead_lettering.count(seq)) next_deadline = std::min(next_deadline, p.deadline_ms);
    }
  }
  if (next_deadline == INT64_MAX) return std::chrono::steady_clock::time_point::max();
  // Deadlines are wall-clock ms (they are persisted); waits are steady.
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, next_deadline - NowMs()));
}

void Session::OnStreamChange(std::function<void()> fn) { stream_->AddFrontierWaiter(std::move(fn)); }

void Session::Answer(std::span<const AnswerInput> items, std::function<void(Outcome<std::vector<Code>>)> done) {
  if (!consumer_) return done(Fail(Code::kNoSession, "answers need a consumer session"));
  auto codes = std::make_shared<std::vector<Code>>();
  codes->reserve(items.size());
  {
    MutexLock l(&consumer_->mu);
    const int64_t now = NowMs();
    for (const auto& item : items) {
      Status s = consumer_->cursor.Apply({item.seq.value(), item.kind, item.delay_ms}, now, stream_->config().ack_wait_ms);
      codes->push_back(s.ok() ? Code::kOk : Code::kNotDelivered);
    }
  }
  // Confirm only once persisted (fenced by the stream's lease): a confirmed
  // ACK is never redelivered.
  auto self = shared_from_this();
  core_->writer->Persist(stream_->name(), consumer_, [self, codes, done = std::move(done)](Status s) {
    if (!s.ok()) return done(Fail(Code::kUnavailable, "persisting the answers failed: " + s.ToString()));
    {
      MutexLock l(&self->state_->mu);
      self->state_->record.answers += codes->size();
    }
    self->PersistState(nullptr);
    done(std::move(*codes));
  });
  // NAKed and released messages may be deliverable now.
  stream_->WakeAll();
}

}  // namespace floe::broker
