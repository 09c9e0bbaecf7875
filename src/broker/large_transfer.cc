// Large messages (docs/cluster.md "Large messages"): each chunk durable in
// the message's blob file and its bytes conveyed committed to the session's
// bank record (fenced by the stream's lease) before it is acknowledged; the
// last one stores a reference record in the stream. Consumers read a large
// message's bytes in pieces. File I/O runs on the core's file pool.
#include <fmt/format.h>

#include "broker/blob.h"
#include "broker/core.h"
#include "log/batch.h"

namespace floe::broker {

void Session::PublishChunk(const ChunkInput& c, std::function<void(ChunkResult)> done) {
  const uint64_t pseq = c.producer_seq.value(), total = c.total_size.value(), offset = c.offset.value();
  ChunkResult ack{.producer_seq = c.producer_seq};
  if (role_ != Role::kProducer) {
    ack.code = Code::kNoSession;
    return done(ack);
  }
  if (!serving()) {
    ack.fenced = true;
    return done(ack);
  }
  if (pseq == 0 || total == 0) {
    ack.code = Code::kInvalidArgument;
    return done(ack);
  }
  if (total > core_->options.max_large_message_bytes) {
    ack.code = Code::kMessageTooLarge;
    return done(ack);
  }
  if (!log::ParseHeaders(c.headers, [](void*, std::string_view, std::string_view) {}, nullptr).ok()) {
    ack.code = Code::kInvalidArgument;
    return done(ack);
  }
  // Stored before (a resend after the last ACK was lost)?
  log::Stream& log = stream_->log();
  if (pseq <= log.HighestProducerSeq(id_)) {
    auto found = log.LookupProducer(id_, pseq);
    using State = log::Stream::ProducerLookup::State;
    if (found.state == State::kCommitted) {
      ack.durable_bytes = c.total_size;
      ack.seq = StreamSeq(found.seq);
      ack.duplicate = true;
    } else {
      ack.code = found.state == State::kInDoubt ? Code::kUnavailable : Code::kDuplicateTooOld;
    }
    return done(ack);
  }
  uint64_t write_at;
  std::string data;
  std::string old_blob;
  {
    MutexLock l(&state_->mu);
    SessionRecord& rec = state_->record;
    if (state_->chunk_busy) {
      ack.code = Code::kTooManyInFlight;
      ack.durable_bytes = ByteOffset(rec.bytes_conveyed);
      return done(ack);
    }
    if (rec.conveying_producer_seq != pseq) {
      if (pseq < rec.conveying_producer_seq) {
        ack.code = Code::kInvalidArgument;  // an older message than the one in transfer
        return done(ack);
      }
      // A new large message (any unfinished older one is abandoned).
      if (rec.conveying_producer_seq != 0) old_blob = BlobPath(stream_->name(), id_, rec.conveying_producer_seq);
      rec.conveying_producer_seq = pseq;
      rec.conveying_total = total;
      rec.bytes_conveyed = 0;
    }
    ack.durable_bytes = ByteOffset(rec.bytes_conveyed);
    if (total != rec.conveying_total) {
      ack.code = Code::kInvalidArgument;  // the size changed mid-transfer
      return done(ack);
    }
    if (offset > rec.bytes_conveyed) {
      ack.code = Code::kOutOfRange;  // a gap: send from durable_bytes
      return done(ack);
    }
    // Bytes below what is durable were acknowledged before: skip them.
    const uint64_t skip = std::min<uint64_t>(rec.bytes_conveyed - offset, c.data.size());
    write_at = offset + skip;
    data.assign(c.data.substr(skip));
    state_->chunk_busy = true;
  }
  const uint64_t end = write_at + data.size();
  auto self = shared_from_this();
  asio::post(core_->file_pool, [self, old_blob = std::move(old_blob), write_at, end, data = std::move(data),
                                total, pseq, key = std::string(c.key),
                                headers = std::string(c.headers), done = std::move(done)]() mutable {
    Broker::Core* core = self->core_;
    if (!old_blob.empty()) RemoveBlob(core->BlobFile(old_blob));
    // Runs on the pool or, after the bank commit, on the bank writer: it
    // owns what it uses.
    auto failed = [self, pseq, done](Status s) {
      ChunkResult a{.producer_seq = ProducerSeq(pseq)};
      {
        MutexLock l(&self->state_->mu);
        self->state_->chunk_busy = false;
        a.durable_bytes = ByteOffset(self->state_->record.bytes_conveyed);
      }
      a.fenced = !self->serving();
      // A failed write: resend the chunk; a failed bank commit: retry.
      a.code = s.code() == ErrorCode::kIOError ? Code::kStorageFailed : Code::kUnavailable;
      done(a);
    };
    if (!data.empty()) {
      Status s = WriteBlob(core->BlobFile(BlobPath(self->stream_->name(), self->id_, pseq)), write_at, data);
      if (!s.ok()) return failed(s);
    }
    // Durable: record the bytes conveyed in the bank before the ACK.
    {
      MutexLock l(&self->state_->mu);
      self->state_->record.bytes_conveyed = std::max(self->state_->record.bytes_conveyed, end);
      self->state_->record.updated_ms = NowMs();
    }
    self->PersistState([self, failed, pseq, total, end, key = std::move(key), headers = std::move(headers),
                        done](Status s) mutable {
      if (!s.ok()) return failed(s);
      if (end == total) {
        // Not on the bank writer's thread: the append may wait for the
        // log's backpressure, and every bank commit of the node would wait.
        asio::post(self->core_->file_pool, [self, pseq, total, key = std::move(key), headers = std::move(headers),
                                            done = std::move(done)]() mutable {
          self->CommitLarge(pseq, total, std::move(key), std::move(headers), std::move(done));
        });
        return;
      }
      {
        MutexLock l(&self->state_->mu);
        self->state_->chunk_busy = false;
      }
      ChunkResult a{.producer_seq = ProducerSeq(pseq), .durable_bytes = ByteOffset(end)};
      a.fenced = !self->serving();  // fencing: no ACK
      done(a);
    });
  });
}

// The last chunk is durable: store the message's reference record in the
// stream, then acknowledge.
void Session::CommitLarge(uint64_t producer_seq, uint64_t total, std::string key, std::string headers,
                          std::function<void(ChunkResult)> done) {
  auto ref_path = std::make_shared<std::string>(BlobPath(stream_->name(), id_, producer_seq));
  auto ref_headers = std::make_shared<std::string>(LargeRefHeaders(total, headers));
  auto ref_key = std::make_shared<std::string>(std::move(key));
  log::Message m{.payload = *ref_path, .key = *ref_key, .encoded_headers = *ref_headers,
                 .producer_id = id_, .producer_seq = producer_seq};
  auto self = shared_from_this();
  MutexLock session_lock(publish_lock_.get());
  // Stored meanwhile by another connection of this session (a reconnect
  // resent the last chunk)? Then it is a duplicate, never a second copy.
  log::Stream& log = stream_->log();
  if (producer_seq <= log.HighestProducerSeq(id_)) {
    auto found = log.LookupProducer(id_, producer_seq);
    const bool stored = found.state == log::Stream::ProducerLookup::State::kCommitted;
    ChunkResult a{.producer_seq = ProducerSeq(producer_seq), .durable_bytes = ByteOffset(total)};
    {
      MutexLock l(&state_->mu);
      state_->chunk_busy = false;
      SessionRecord& rec = state_->record;
      if (stored && rec.conveying_producer_seq == producer_seq)
        rec.conveying_producer_seq = rec.conveying_total = rec.bytes_conveyed = 0;
    }
    if (stored) {
      a.seq = StreamSeq(found.seq);
      a.duplicate = true;
    } else {
      a.code = Code::kUnavailable;  // the other copy is in doubt: ask again
    }
    a.fenced = !serving();
    return done(a);
  }
  log.AppendAsync({&m, 1}, [self, producer_seq, total, ref_path, ref_headers, ref_key,
                                       done = std::move(done)](const log::AppendResult& res) {
    ChunkResult a{.producer_seq = ProducerSeq(producer_seq), .durable_bytes = ByteOffset(total)};
    {
      MutexLock l(&self->state_->mu);
      self->state_->chunk_busy = false;
      SessionRecord& rec = self->state_->record;
      if (res.status.ok()) {
        rec.conveying_producer_seq = rec.conveying_total = rec.bytes_conveyed = 0;
        rec.messages += 1;
        if (producer_seq > rec.last_producer_seq) {
          rec.last_producer_seq = producer_seq;
          rec.last_seq = res.first_seq;
        }
      }
    }
    a.fenced = !self->serving();  // fencing: no ACK
    if (res.status.ok()) {
      a.seq = StreamSeq(res.first_seq);
      if (!a.fenced) {
        self->core_->published += 1;
        self->PersistState(nullptr);
      }
    } else {
      a.code = res.hole ? Code::kStorageFailed : CodeOf(res.status);  // resend the last chunk
    }
    done(a);
  });
}

void Session::FetchChunk(StreamSeq at, ByteOffset from, uint32_t max_bytes, std::function<void(Outcome<ChunkData>)> done) {
  const uint64_t seq = at.value(), offset = from.value();
  if (!consumer_) return done(Fail(Code::kNoSession, "reading a large message needs a consumer session"));
  if (!serving()) return done(Fail(Code::kNotOwner, "this node no longer serves the stream"));
  auto r = stream_->log().Read({.from_seq = seq, .max_messages = 1});
  uint64_t size = 0;
  std::string_view user_headers;
  if (!r || r->entries.empty() || r->entries[0].seq != seq || r->entries[0].kind != log::Entry::Kind::kMessage ||
      !ParseLargeRef(r->entries[0].headers, &size, &user_headers))
    return done(Fail(Code::kInvalidArgument, fmt::format("seq {} is not a large message", seq)));
  const std::string relative(r->entries[0].payload);
  if (!IsBlobPath(relative)) return done(Fail(Code::kInternal, "bad large-message reference"));
  if (offset > size) return done(Fail(Code::kOutOfRange, "offset past the message's end"));
  const uint32_t max = std::min<uint32_t>(std::max<uint32_t>(max_bytes, 1), core_->options.max_read_bytes);
  const uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(max, size - offset));
  asio::post(core_->file_pool, [seq, offset, size, want, path = core_->BlobFile(relative), done = std::move(done)] {
    auto data = ReadBlob(path, offset, want);
    if (!data) {
      // The reference is in the stream but its file is not readable: the
      // stream exists, so this is never "unknown stream".
      Code code = data.error().IsNotFound() ? Code::kInternal : CodeOf(data.error());
      return done(Fail(code, "reading the large message: " + data.error().ToString()));
    }
    if (data->size() != want) return done(Fail(Code::kInternal, "large message file is short"));
    done(ChunkData{.seq = StreamSeq(seq), .total_size = ByteOffset(size), .offset = ByteOffset(offset),
                   .data = std::move(*data)});
  });
}

}  // namespace floe::broker
