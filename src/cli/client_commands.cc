// `floe produce` and `floe consume`: a producer and a durable consumer over
// the floe protocol. Each takes --server HOST:PORT[,HOST:PORT…] (tried in
// turn) and --timeout. Every option is checked while the command line is
// parsed (cli/options.h); what needs the stream (its message limit, its
// frontier) is checked against `stream info` before anything is sent.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

#include "base/mutex.h"
#include "client/client.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "model/limits.h"

namespace floe::cli {
namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The stream's settings and state, read before producing or consuming.
Result<client::StreamInfo> Describe(const client::ClientOptions& o, const std::string& stream) {
  auto admin = client::Admin::Connect(o);
  if (!admin) return Err(admin.error());
  return (*admin)->Info(stream);
}

// A message over the limit: what the limit is and what to do instead.
std::string TooLargeHint(const std::string& stream, uint64_t limit) {
  return fmt::format("stream {} accepts messages of at most {}, its --max-message-bytes (a node may allow less); "
                     "send a larger body as one large message, in chunks: floe produce {} --large FILE",
                     stream, FormatBytes(limit), stream);
}

struct ProduceArgs {
  std::string server = "127.0.0.1:7650";
  uint64_t timeout_ms = kDefaultTimeoutMs;
  std::string stream;
  uint64_t count = 0;  // 0: stdin
  uint64_t size = 100;
  bool json = false;
  uint64_t session_id = 0;
  uint64_t inflight = 1000;
  std::string large;  // a file sent as one large message
};

// --large FILE: the file as one message, in chunks, resumable with
// --session-id after an interruption.
int ProduceLarge(const ProduceArgs& a, const client::ClientOptions& o) {
  const int fd = ::open(a.large.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(Status::IOError(fmt::format("{}: {}", a.large, std::strerror(errno))), a.json);
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Fail(Status::InvalidArgument(fmt::format("{}: empty, unreadable or not a regular file", a.large)), a.json);
  }
  client::LargeMessageOptions lo;
  static_cast<client::ClientOptions&>(lo) = o;
  lo.stream = a.stream;
  lo.session_id = a.session_id;
  auto read = [fd](uint64_t offset, std::span<char> out) -> Status {
    size_t got = 0;
    while (got < out.size()) {
      const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::IOError("reading the file: short read");
      got += static_cast<size_t>(n);
    }
    return Status::OK();
  };
  auto r = client::PublishLarge(lo, static_cast<uint64_t>(st.st_size), read);
  ::close(fd);
  if (!r) return Fail(r.error(), a.json);
  if (a.json)
    fmt::print("{{\"seq\":{},\"producer_seq\":1,\"size\":{},\"session\":\"{}\",\"resumed_from\":{},\"duplicate\":{}}}\n",
               r->seq, st.st_size, FormatSessionId(r->session_id), r->resumed_from, r->duplicate);
  else
    fmt::print("1 {} ({} bytes, session {}, resumed from byte {})\n", r->seq, st.st_size,
               FormatSessionId(r->session_id), r->resumed_from);
  return 0;
}

int Produce(const ProduceArgs& a) {
  auto o = ClientOptionsFor(a.server, a.timeout_ms, "floe-cli");
  if (!o) return Fail(o.error(), a.json);
  if (!a.large.empty()) return ProduceLarge(a, *o);
  // The stream's limit, so a message over it is refused here with the
  // limit named, and a --size over it before anything is sent.
  auto info = Describe(*o, a.stream);
  if (!info) return Fail(info.error(), a.json);
  const uint64_t limit = info->config.max_message_bytes;
  if (a.count > 0 && a.size > limit)
    return Fail(Status::InvalidArgument(fmt::format("--size {}: {}", a.size, TooLargeHint(a.stream, limit))), a.json);
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = *o;
  po.stream = a.stream;
  po.session_id = a.session_id;
  po.max_inflight = a.inflight;
  auto producer = client::Producer::Open(po);
  if (!producer) return Fail(producer.error(), a.json);
  Mutex out_mu;  // one line at a time on stdout/stderr
  std::atomic<uint64_t> failed{0};
  auto report = [&](const Status& s, std::string_view where_json, std::string_view where_text) {
    MutexLock l(&out_mu);
    ++failed;
    if (a.json) fmt::print("{}\n", ErrorJson(s, where_json));
    else if (where_text.empty()) fmt::print(stderr, "error: {}\n", s.ToString());
    else fmt::print(stderr, "error: {}: {}\n", where_text, s.ToString());
  };
  auto on_ack = [&](const client::PublishOutcome& r) {
    if (!r.status.ok()) {
      Status s = r.status;
      if (ErrorCodeName(s) == "MESSAGE_TOO_LARGE")
        s = Status(s.code(), fmt::format("{} ({})", s.message(), TooLargeHint(a.stream, limit)));
      report(s, fmt::format(",\"producer_seq\":{}", r.producer_seq), fmt::format("producer seq {}", r.producer_seq));
      return;
    }
    MutexLock l(&out_mu);
    if (a.json) fmt::print("{{\"seq\":{},\"producer_seq\":{}}}\n", r.seq, r.producer_seq);
    else fmt::print("{} {}\n", r.producer_seq, r.seq);
  };
  Status broken;
  if (a.count > 0) {
    std::string payload(a.size, 'x');
    for (uint64_t i = 0; i < a.count && broken.ok(); ++i) {
      std::memcpy(payload.data(), &i, std::min<size_t>(8, payload.size()));
      auto r = (*producer)->Send(payload, on_ack);
      if (!r) broken = r.error();
    }
  } else {
    std::string line;
    for (uint64_t n = 1; broken.ok() && std::getline(std::cin, line); ++n) {
      if (line.size() > limit) {  // refused; the lines after it still go
        report(Status::InvalidArgument(
                   fmt::format("line {}: {} is over the limit: {}", n, FormatBytes(line.size()), TooLargeHint(a.stream, limit))),
               fmt::format(",\"line\":{}", n), "");
        continue;
      }
      auto r = (*producer)->Send(line, on_ack);
      if (!r) broken = r.error();
    }
  }
  Status s = (*producer)->Close();
  fmt::print(stderr, "session {}\n", FormatSessionId((*producer)->session_id()));
  if (!broken.ok()) return Fail(broken, a.json);
  if (!s.ok()) return Fail(s, a.json);
  return failed == 0 ? 0 : 1;
}

struct ConsumeArgs {
  std::string server = "127.0.0.1:7650";
  uint64_t timeout_ms = kDefaultTimeoutMs;
  std::string stream;
  std::string consumer;
  uint64_t max = 0;  // 0: no limit
  bool ack = true;
  bool nak = false;
  bool json = false;
  uint32_t wait_ms = 1000;
  std::string from;
  uint64_t session_id = 0;
  std::string save_large;  // directory for large messages' bodies
};

// Writes large message `seq` to DIR/<seq>, piece by piece.
Status SaveLarge(client::Consumer& c, const std::string& dir, const client::ReceivedMessage& m) {
  const std::string path = fmt::format("{}/{}", dir, m.seq);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(fmt::format("{}: {}", path, std::strerror(errno)));
  uint64_t offset = 0;
  while (offset < m.large_size) {
    auto piece = c.ReadLarge(m.seq, offset, 4u << 20);
    if (!piece || piece->empty()) {
      ::close(fd);
      return piece ? Status::Internal("empty piece") : piece.error();
    }
    if (::pwrite(fd, piece->data(), piece->size(), static_cast<off_t>(offset)) != static_cast<ssize_t>(piece->size())) {
      ::close(fd);
      return Status::IOError(fmt::format("writing {}", path));
    }
    offset += piece->size();
  }
  ::close(fd);
  return Status::OK();
}

// --from, checked against the stream: where a new consumer starts. A seq
// past the stream's next seq is refused (a consumer there would wait for
// messages that may never come); `last` is the frontier now. A consumer
// that exists resumes where it stood, whatever --from says.
Status ResolveStart(const ConsumeArgs& a, const client::ClientOptions& o, client::ConsumerOptions* co) {
  auto pos = ParseStartPosition(a.from, NowUs());  // checked at parse time; the clock moved little
  if (!pos) return Status::InvalidArgument("--from: " + std::string(pos.error().message()));
  auto info = Describe(o, a.stream);
  if (!info) return info.error();
  for (const auto& c : info->consumers)
    if (c.name == a.consumer) {
      fmt::print(stderr, "note: consumer {} exists: it resumes after its ack floor {}; --from applies to new consumers\n",
                 a.consumer, c.ack_floor);
      return Status::OK();
    }
  using K = StartPosition::Kind;
  switch (pos->kind) {
    case K::kFirst: co->start_at = wire::StartAt::kFirst; break;
    case K::kNew: co->start_at = wire::StartAt::kNew; break;
    case K::kTime: co->start_at = wire::StartAt::kTime, co->start_value = pos->value; break;
    case K::kLast:
      if (info->frontier == 0) co->start_at = wire::StartAt::kFirst;
      else co->start_at = wire::StartAt::kSeq, co->start_value = info->frontier;
      break;
    case K::kSeq:
      if (pos->value > info->frontier + 1)
        return Status::OutOfRange(fmt::format(
            "--from {}: stream {} holds seqs up to {} (its frontier); a new consumer starts at a seq from 1 to {}, "
            "or at 'new' for only the messages published from now on",
            pos->value, a.stream, info->frontier, info->frontier + 1));
      co->start_at = wire::StartAt::kSeq;
      co->start_value = pos->value;
      break;
  }
  return Status::OK();
}

int Consume(const ConsumeArgs& a) {
  auto o = ClientOptionsFor(a.server, a.timeout_ms, "floe-cli");
  if (!o) return Fail(o.error(), a.json);
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = *o;
  co.stream = a.stream;
  co.consumer = a.consumer;
  co.session_id = a.session_id;
  if (!a.from.empty())
    if (Status s = ResolveStart(a, *o, &co); !s.ok()) return Fail(s, a.json);
  auto consumer = client::Consumer::Open(co);
  if (!consumer) return Fail(consumer.error(), a.json);
  const uint64_t max = a.max == 0 ? UINT64_MAX : a.max;
  uint64_t got = 0;
  auto fail = [&](const Status& s) {
    fmt::print(stderr, "session {}\n", FormatSessionId((*consumer)->session_id()));
    return Fail(s, a.json);
  };
  while (got < max) {
    auto batch = (*consumer)->Fetch(static_cast<uint32_t>(std::min<uint64_t>(max - got, 100)), 1 << 20, a.wait_ms);
    if (!batch) return fail(batch.error());
    if (batch->empty()) break;
    std::vector<uint64_t> acks;
    for (const auto& m : *batch) {
      if (m.gap) {
        if (a.json) fmt::print("{{\"gap\":{},\"count\":{}}}\n", m.seq, m.gap_count);
        continue;
      }
      const std::string key = m.key.empty() ? std::string() : "," + JsonBytesField("key", m.key);
      if (m.large_size > 0) {
        if (!a.save_large.empty()) {
          Status s = SaveLarge(**consumer, a.save_large, m);
          if (!s.ok()) return fail(s);
        }
        if (a.json)
          fmt::print("{{\"seq\":{},\"delivery\":{},\"timestamp_us\":{}{},\"large_size\":{}}}\n", m.seq,
                     m.delivery_count, m.timestamp_us, key, m.large_size);
        else
          fmt::print("<large message {}: {} bytes{}>\n", m.seq, m.large_size,
                     a.save_large.empty() ? "" : fmt::format(", saved in {}/{}", a.save_large, m.seq));
      } else if (a.json) {
        fmt::print("{{\"seq\":{},\"delivery\":{},\"timestamp_us\":{}{},{}}}\n", m.seq, m.delivery_count,
                   m.timestamp_us, key, JsonBytesField("payload", m.payload));
      } else {
        fmt::print("{}\n", m.payload);
      }
      ++got;
      if (a.nak) {
        Status s = (*consumer)->Nak(m.seq);
        if (!s.ok()) return fail(s);
      } else if (a.ack) {
        acks.push_back(m.seq);
      }
    }
    if (!acks.empty()) {
      Status s = (*consumer)->Ack(acks);
      if (!s.ok()) return fail(s);
    }
  }
  Status s = (*consumer)->Close();
  fmt::print(stderr, "session {}\n", FormatSessionId((*consumer)->session_id()));
  return s.ok() ? 0 : Fail(s, a.json);
}

}  // namespace

void RegisterClientCommands(CLI::App& app, int* exit_code) {
  // floe produce
  auto pa = std::make_shared<ProduceArgs>();
  auto* produce = app.add_subcommand(
      "produce", "Publish stdin lines (or --count synthetic messages); print each ACK; the session id goes to stderr");
  AddName(produce, "stream", &pa->stream, "stream", "Stream name")->required();
  auto* count = AddNumber(produce, "--count", &pa->count, Kind::kInteger, Range{1, 1000000000},
                          "Send this many synthetic messages instead of stdin (1 to 10^9)");
  AddNumber(produce, "--size", &pa->size, Kind::kBytes, Range{8, kMaxMessageBytesCeiling},
            "Synthetic message size (8 bytes, which hold the index, to the stream's limit)");
  AddSessionId(produce, "--session-id", &pa->session_id, "Resume this producer session (16 hex digits, as printed)");
  AddNumber(produce, "--inflight", &pa->inflight, Kind::kInteger, Range{1, 100000},
            "Unacknowledged messages at most (1 to 100000)");
  produce->add_flag("--json", pa->json,
                    "Print {\"seq\":S,\"producer_seq\":P} per ACK; errors as {\"error\":{…}} lines on stdout");
  produce
      ->add_option("--large", pa->large,
                   "Send this file as one large message, in chunks (resume with --session-id); for bodies over the "
                   "stream's message limit")
      ->check(CLI::ExistingFile)
      ->excludes(count);
  AddServers(produce, &pa->server);
  AddTimeout(produce, &pa->timeout_ms);
  produce->callback([=] { *exit_code = Produce(*pa); });

  // floe consume
  auto ca = std::make_shared<ConsumeArgs>();
  auto* consume = app.add_subcommand(
      "consume", "Print messages of a durable consumer, one payload per line; the session id goes to stderr");
  AddName(consume, "stream", &ca->stream, "stream", "Stream name")->required();
  AddName(consume, "--consumer", &ca->consumer, "consumer", "Durable consumer name")->required();
  AddNumber(consume, "--max", &ca->max, Kind::kInteger, Range{1, 1ull << 53}, "Stop after this many messages")
      ->default_str("no limit");
  AddNumber(consume, "--wait-ms", &ca->wait_ms, Kind::kDurationMs, Range{0, 3600 * 1000},
            "Stop when nothing arrives for this long (0 to 1 h; ms, or 30s, 5m)");
  consume
      ->add_option("--from", ca->from,
                   "Where a NEW consumer starts: first (default), last (the last message now), new (only messages "
                   "published from now on), SEQ (1 to the stream's frontier + 1; a larger seq is refused), an ISO "
                   "8601 time (2026-12-01T10:00:00Z), a time ago (-30s, -5m, -2h, -1d), or TIMEus (µs since the "
                   "epoch). A time starts at the first message stamped at or after it. An existing consumer "
                   "resumes where it stood.")
      ->check(CLI::Validator(
          [](std::string& s) {
            auto v = ParseStartPosition(s, NowUs());
            return v ? std::string() : std::string(v.error().message());
          },
          ""))
      ->type_name("POSITION");
  AddSessionId(consume, "--session-id", &ca->session_id, "Resume this consumer session (16 hex digits, as printed)");
  consume->add_flag("--ack,!--no-ack", ca->ack, "ACK each message (default)");
  consume->add_flag("--nak", ca->nak, "NAK each message (redelivered)");
  consume->add_flag("--json", ca->json,
                    "One JSON object per message; a payload or key that is not UTF-8 is base64 with "
                    "\"payload_encoding\":\"base64\" (\"key_encoding\"); errors as {\"error\":{…}} on stdout");
  consume->add_option("--save-large", ca->save_large, "Write each large message's body to DIR/<seq>")
      ->check(CLI::ExistingDirectory);
  AddServers(consume, &ca->server);
  AddTimeout(consume, &ca->timeout_ms);
  consume->callback([=] { *exit_code = Consume(*ca); });
}

}  // namespace floe::cli
