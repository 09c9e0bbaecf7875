// Dead-letter moves (DESIGN.md "Consume"): a message that reached its
// consumer's max_deliveries is copied to the stream's dead-letter stream —
// here if this node serves it, else forwarded to the node that does — and
// counts as answered only once that copy is durable.
//
// Once, whatever is retried: the copy's identity in the dead-letter stream is
// (DeadLetterProducerId(source stream, consumer), source seq), looked up in
// the dead-letter stream's dedup window before it is appended. A move retried
// after a failed write, a lost reply, or by the node that took the source
// stream over finds the first copy and answers with its seq.
#include <fmt/format.h>

#include "base/logging.h"
#include "broker/core.h"

namespace floe::broker {

namespace {

// A dead-letter move that could not be made is tried again this much later.
constexpr int64_t kRetryMs = 1000;
// How long a dead-letter stream's serving node is taken as known.
constexpr int64_t kRouteMs = 1000;

using Lookup = log::Stream::ProducerLookup;

// Appends `move` to `dlq`, served here, unless its identity is already there.
// Serialised by Core::dead_letter_mu so two tries of one move (a forwarded
// retry racing the first) cannot both find it new.
void AppendHere(Broker::Core* core, const std::shared_ptr<StreamEntry>& dlq, std::shared_ptr<const DeadLetterMove> move,
                std::function<void(Outcome<DeadLetterStored>)> done) {
  const uint64_t producer = DeadLetterProducerId(move->source_stream, move->consumer);
  const uint64_t pseq = move->source_seq.value();
  MutexLock l(&core->dead_letter_mu);
  const Lookup found = dlq->log().LookupProducer(producer, pseq);
  switch (found.state) {
    case Lookup::State::kCommitted:
      return done(DeadLetterStored{StreamSeq(found.seq), true});
    case Lookup::State::kInDoubt:
      return done(Fail(Code::kUnavailable, fmt::format("the first copy of {} seq {} is being written; retry",
                                                       move->source_stream, pseq)));
    case Lookup::State::kBelowWindow:
      // Older than the window can tell: stored again rather than lost (a
      // move this late is a retry of one the window has long forgotten).
    case Lookup::State::kNew:
      break;
  }
  // Dead letters keep no order: a move that failed must not hold the later
  // ones back (each is retried on its own).
  dlq->log().ForgetUnstored(producer);
  log::Message m{.payload = move->payload, .key = move->key, .encoded_headers = move->headers,
                 .producer_id = producer, .producer_seq = pseq};
  dlq->log().AppendAsync({&m, 1}, [dlq, move, done = std::move(done)](const log::AppendResult& r) {
    if (!r.status.ok()) return done(tl::unexpected(FailureOf(r.status)));
    // Fencing as for a publish: a node that lost the stream meanwhile does
    // not answer for it; the retry reaches the new owner, whose dedup
    // window (rebuilt from the log) finds this copy.
    if (!dlq->owned()) return done(Fail(Code::kUnavailable, "this node no longer serves " + dlq->name()));
    done(DeadLetterStored{StreamSeq(r.first_seq), false});
  });
}

// Where the move goes when this node does not serve the dead-letter stream.
// Runs on the file pool (Locate reads the bank; the forwarder blocks).
// Where the dead-letter stream was found is remembered for kRouteMs, so a
// burst of moves does not read the bank (three reads: the stream, its lease,
// the owner's address) once each; a failed forward forgets it.
Outcome<DeadLetterStored> Elsewhere(Broker::Core* core, const DeadLetterMove& move) {
  if (!core->options.forwarder)
    return Fail(Code::kUnavailable, fmt::format("dead-letter stream {} is served by another node", move.stream));
  std::string address;
  {
    MutexLock l(&core->dead_letter_mu);
    auto it = core->dead_letter_routes.find(move.stream);
    if (it != core->dead_letter_routes.end() && it->second.until_ms > NowMs()) address = it->second.address;
  }
  if (address.empty()) {
    const Failure where = core->Locate(move.stream);
    if (where.code != Code::kNotOwner || where.redirect.empty()) return tl::unexpected(where);
    address = where.redirect;
    MutexLock l(&core->dead_letter_mu);
    core->dead_letter_routes[move.stream] = {address, NowMs() + kRouteMs};
  }
  auto stored = core->options.forwarder->ForwardDeadLetter(address, move);
  if (!stored) {
    MutexLock l(&core->dead_letter_mu);
    core->dead_letter_routes.erase(move.stream);
  }
  return stored;
}

}  // namespace

uint64_t DeadLetterProducerId(std::string_view source_stream, std::string_view consumer) {
  // FNV-1a over a domain tag and both names, NUL-separated (names hold no
  // NUL): stable across nodes and versions, apart from the random session ids
  // in all but a 2^-64 chance; never 0 (which the dedup window ignores).
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    h = (h ^ 0) * 0x100000001b3ull;
  };
  mix("floe.dead-letter");
  mix(source_stream);
  mix(consumer);
  return h == 0 ? 1 : h;
}

void Broker::AppendDeadLetter(DeadLetterMove move, std::function<void(Outcome<DeadLetterStored>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, move = std::make_shared<const DeadLetterMove>(std::move(move)),
                               done = std::move(done)]() mutable {
    if (Status v = ValidateStreamName(move->source_stream); !v.ok())
      return done(Fail(Code::kInvalidName, "source stream " + std::string(v.message())));
    if (Status v = ValidateStreamName(move->consumer); !v.ok())
      return done(Fail(Code::kInvalidName, "consumer " + std::string(v.message())));
    if (move->source_seq.value() == 0) return done(Fail(Code::kInvalidArgument, "source seq 0"));
    auto dlq = core->Served(move->stream);
    if (!dlq) return done(tl::unexpected(core->Locate(move->stream)));
    if (move->payload.size() + move->key.size() + move->headers.size() > core->options.max_message_bytes)
      return done(Fail(Code::kMessageTooLarge, "dead-letter message over this node's --max-message-bytes"));
    AppendHere(core, dlq, std::move(move), std::move(done));
  });
}

void MoveToDeadLetter(Broker::Core* core, std::shared_ptr<StreamEntry> stream, std::shared_ptr<ConsumerGroup> group,
                      uint64_t seq) {
  auto settle = [core, stream, group, seq](bool moved) {
    {
      MutexLock l(&group->mu);
      group->dead_lettering.erase(seq);
      if (moved) group->cursor.Done(seq);
      else group->cursor.Postpone(seq, NowMs() + kRetryMs);
    }
    if (moved) core->writer->Persist(stream->name(), group, nullptr);
    if (moved && !stream->config().dead_letter.empty()) core->metrics.ForStream(stream->name())->dead_letters->Add();
    stream->WakeAll();  // the loops waiting on this seq look again
  };
  const std::string& dlq_name = stream->config().dead_letter;
  if (dlq_name.empty()) return settle(true);  // no dead-letter stream: dropped, as configured
  auto r = stream->log().Read({.from_seq = seq, .max_messages = 1});
  if (!r) return settle(false);
  if (r->entries.empty() || r->entries[0].seq != seq || r->entries[0].kind != log::Entry::Kind::kMessage)
    return settle(true);  // gone (retention) or not a message: nothing to move
  log::Entry& e = r->entries[0];
  auto move = std::make_shared<const DeadLetterMove>(DeadLetterMove{
      .stream = dlq_name, .source_stream = stream->name(), .consumer = group->name, .source_seq = StreamSeq(seq),
      .key = std::string(e.key), .headers = std::string(e.headers), .payload = std::string(e.payload)});
  auto report = [settle, move](const Outcome<DeadLetterStored>& stored) {
    if (stored) return settle(true);
    if (stored.error().code == Code::kUnknownStream) {
      // Deleted after the source stream was created with it (delete refuses
      // this while the source stream exists; a race can still get here).
      logging::Error("dead_letter.dropped",
                     fmt::format("dead-letter stream {} of {} no longer exists: seq {} of consumer {} dropped",
                                 move->stream, move->source_stream, move->source_seq.value(), move->consumer),
                     {{"stream", move->source_stream}, {"consumer", move->consumer}});
      return settle(true);
    }
    settle(false);  // retried kRetryMs later
  };
  if (auto dlq = core->Served(dlq_name)) return AppendHere(core, dlq, move, report);
  report(Elsewhere(core, *move));
}

}  // namespace floe::broker
