// Client-side commands: `floe stream …`, `floe produce`, `floe consume`.
// Each takes --server HOST:PORT[,HOST:PORT…] and tries the servers in turn.
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

namespace floe::cli {
namespace {

int Fail(const Status& s) {
  fmt::print(stderr, "error: {}\n", s.ToString());
  return 1;
}

Result<client::ClientOptions> ClientOpts(const std::string& servers) {
  auto list = client::ParseServers(servers);
  if (!list) return Err(list.error());
  client::ClientOptions o;
  o.servers = *list;
  o.client_name = "floe-cli";
  return o;
}

struct StreamArgs {
  std::string server = "127.0.0.1:7650";
  std::string name;
  bool json = false;
  wire::StreamConfig config;
  std::string sync = "fdatasync";
};

int StreamCreate(const StreamArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  auto admin = client::Admin::Connect(*o);
  if (!admin) return Fail(admin.error());
  wire::StreamConfig c = a.config;
  if (a.sync == "none") c.sync = wire::SyncMode::kNone;
  else if (a.sync != "fdatasync") return Fail(Status::InvalidArgument("--sync is fdatasync or none"));
  Status s = (*admin)->CreateStream(a.name, c);
  if (!s.ok()) return Fail(s);
  if (a.json) fmt::print("{{\"created\":\"{}\"}}\n", JsonEscape(a.name));
  else fmt::print("created stream {}\n", a.name);
  return 0;
}

int StreamDelete(const StreamArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  auto admin = client::Admin::Connect(*o);
  if (!admin) return Fail(admin.error());
  Status s = (*admin)->DeleteStream(a.name);
  if (!s.ok()) return Fail(s);
  if (a.json) fmt::print("{{\"deleted\":\"{}\"}}\n", JsonEscape(a.name));
  else fmt::print("deleted stream {}\n", a.name);
  return 0;
}

int StreamList(const StreamArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  auto admin = client::Admin::Connect(*o);
  if (!admin) return Fail(admin.error());
  auto names = (*admin)->ListStreams();
  if (!names) return Fail(names.error());
  if (a.json) {
    std::string out = "[";
    for (size_t i = 0; i < names->size(); ++i) out += fmt::format("{}\"{}\"", i ? "," : "", JsonEscape((*names)[i]));
    fmt::print("{}]\n", out);
  } else {
    for (const auto& n : *names) fmt::print("{}\n", n);
  }
  return 0;
}

int StreamInfoCmd(const StreamArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  auto admin = client::Admin::Connect(*o);
  if (!admin) return Fail(admin.error());
  auto info = (*admin)->Info(a.name);
  if (!info) return Fail(info.error());
  const auto& c = info->config;
  if (a.json) {
    std::string consumers;
    for (const auto& x : info->consumers)
      consumers += fmt::format("{}{{\"name\":\"{}\",\"ack_floor\":{},\"next_seq\":{},\"pending\":{},\"lag\":{}}}",
                               consumers.empty() ? "" : ",", JsonEscape(x.name), x.ack_floor, x.next_seq, x.pending,
                               x.lag);
    fmt::print("{{\"name\":\"{}\",\"first_seq\":{},\"frontier\":{},\"bytes\":{},\"retention_bytes\":{},"
               "\"retention_age_ms\":{},\"max_message_bytes\":{},\"sync\":\"{}\",\"ack_wait_ms\":{},"
               "\"max_deliveries\":{},\"dead_letter\":\"{}\",\"consumers\":[{}]}}\n",
               JsonEscape(info->name), info->first_seq, info->frontier, info->bytes, c.retention_bytes,
               c.retention_age_ms, c.max_message_bytes, c.sync == wire::SyncMode::kNone ? "none" : "fdatasync",
               c.ack_wait_ms, c.max_deliveries, JsonEscape(c.dead_letter), consumers);
    return 0;
  }
  fmt::print("stream        {}\nfirst seq     {}\nfrontier      {}\nbytes         {}\nsync          {}\n"
             "ack wait      {} ms\nmax deliver   {}\ndead letter   {}\n",
             info->name, info->first_seq, info->frontier, info->bytes,
             c.sync == wire::SyncMode::kNone ? "none" : "fdatasync", c.ack_wait_ms, c.max_deliveries,
             c.dead_letter.empty() ? "-" : c.dead_letter);
  for (const auto& x : info->consumers)
    fmt::print("consumer      {}: ack floor {}, next {}, pending {}, lag {}\n", x.name, x.ack_floor, x.next_seq,
               x.pending, x.lag);
  return 0;
}

struct ProduceArgs {
  std::string server = "127.0.0.1:7650";
  std::string stream;
  uint64_t count = 0;
  size_t size = 100;
  bool json = false;
  uint64_t session_id = 0;
  size_t inflight = 1000;
  std::string large;  // a file sent as one large message
};

// --large FILE: the file as one message, in chunks, resumable with
// --session-id after an interruption.
int ProduceLarge(const ProduceArgs& a, const client::ClientOptions& o) {
  const int fd = ::open(a.large.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(Status::IOError(fmt::format("{}: {}", a.large, std::strerror(errno))));
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0) {
    ::close(fd);
    return Fail(Status::InvalidArgument(fmt::format("{}: empty or unreadable", a.large)));
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
  if (!r) return Fail(r.error());
  if (a.json)
    fmt::print("{{\"seq\":{},\"producer_seq\":1,\"size\":{},\"session\":\"{:x}\",\"resumed_from\":{},\"duplicate\":{}}}\n",
               r->seq, st.st_size, r->session_id, r->resumed_from, r->duplicate);
  else
    fmt::print("1 {} ({} bytes, session {:x}, resumed from byte {})\n", r->seq, st.st_size, r->session_id,
               r->resumed_from);
  return 0;
}

int Produce(const ProduceArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  if (!a.large.empty()) return ProduceLarge(a, *o);
  client::ProducerOptions po;
  static_cast<client::ClientOptions&>(po) = *o;
  po.stream = a.stream;
  po.session_id = a.session_id;
  po.max_inflight = a.inflight;
  auto producer = client::Producer::Open(po);
  if (!producer) return Fail(producer.error());
  Mutex out_mu;  // one ACK line at a time on stdout/stderr
  std::atomic<uint64_t> failed{0};
  auto on_ack = [&](const client::PublishOutcome& r) {
    MutexLock l(&out_mu);
    if (!r.status.ok()) {
      ++failed;
      fmt::print(stderr, "error: producer seq {}: {}\n", r.producer_seq, r.status.ToString());
      return;
    }
    if (a.json) fmt::print("{{\"seq\":{},\"producer_seq\":{}}}\n", r.seq, r.producer_seq);
    else fmt::print("{} {}\n", r.producer_seq, r.seq);
  };
  if (a.count > 0) {
    std::string payload(std::max<size_t>(a.size, 8), 'x');
    for (uint64_t i = 0; i < a.count; ++i) {
      std::memcpy(payload.data(), &i, 8);
      auto r = (*producer)->Send(payload, on_ack);
      if (!r) return Fail(r.error());
    }
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      auto r = (*producer)->Send(line, on_ack);
      if (!r) return Fail(r.error());
    }
  }
  Status s = (*producer)->Close();
  if (!s.ok()) return Fail(s);
  if (!a.json) fmt::print(stderr, "session {:x}\n", (*producer)->session_id());
  return failed == 0 ? 0 : 1;
}

struct ConsumeArgs {
  std::string server = "127.0.0.1:7650";
  std::string stream;
  std::string consumer;
  uint64_t max = UINT64_MAX;
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

int Consume(const ConsumeArgs& a) {
  auto o = ClientOpts(a.server);
  if (!o) return Fail(o.error());
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = *o;
  co.stream = a.stream;
  co.consumer = a.consumer;
  co.session_id = a.session_id;
  if (!a.from.empty()) {
    // --from SEQ, or --from TIME as an ISO date is not parsed here: a number
    // with a unit suffix 'us' is a timestamp in µs since the epoch.
    if (a.from == "new") {
      co.start_at = wire::StartAt::kNew;
    } else if (a.from.size() > 2 && a.from.ends_with("us")) {
      co.start_at = wire::StartAt::kTime;
      co.start_value = std::stoull(a.from.substr(0, a.from.size() - 2));
    } else {
      co.start_at = wire::StartAt::kSeq;
      co.start_value = std::stoull(a.from);
    }
  }
  auto consumer = client::Consumer::Open(co);
  if (!consumer) return Fail(consumer.error());
  uint64_t got = 0;
  while (got < a.max) {
    auto batch = (*consumer)->Fetch(static_cast<uint32_t>(std::min<uint64_t>(a.max - got, 100)), 1 << 20, a.wait_ms);
    if (!batch) return Fail(batch.error());
    if (batch->empty()) break;
    std::vector<uint64_t> acks;
    for (const auto& m : *batch) {
      if (m.gap) {
        if (a.json) fmt::print("{{\"gap\":{},\"count\":{}}}\n", m.seq, m.gap_count);
        continue;
      }
      if (m.large_size > 0) {
        if (!a.save_large.empty()) {
          Status s = SaveLarge(**consumer, a.save_large, m);
          if (!s.ok()) return Fail(s);
        }
        if (a.json)
          fmt::print("{{\"seq\":{},\"delivery\":{},\"timestamp_us\":{},\"large_size\":{}}}\n", m.seq,
                     m.delivery_count, m.timestamp_us, m.large_size);
        else
          fmt::print("<large message {}: {} bytes{}>\n", m.seq, m.large_size,
                     a.save_large.empty() ? "" : fmt::format(", saved in {}/{}", a.save_large, m.seq));
      } else if (a.json) {
        fmt::print("{{\"seq\":{},\"delivery\":{},\"timestamp_us\":{},\"payload\":\"{}\"}}\n", m.seq, m.delivery_count,
                   m.timestamp_us, JsonEscape(m.payload));
      } else {
        fmt::print("{}\n", m.payload);
      }
      ++got;
      if (a.nak) {
        Status s = (*consumer)->Nak(m.seq);
        if (!s.ok()) return Fail(s);
      } else if (a.ack) {
        acks.push_back(m.seq);
      }
    }
    if (!acks.empty()) {
      Status s = (*consumer)->Ack(acks);
      if (!s.ok()) return Fail(s);
    }
  }
  Status s = (*consumer)->Close();
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

void RegisterClientCommands(CLI::App& app, int* exit_code) {
  // floe stream …
  auto sa = std::make_shared<StreamArgs>();
  auto* stream = app.add_subcommand("stream", "Create, delete, list and inspect streams on a node");
  stream->require_subcommand(1);
  auto server_opt = [](CLI::App* c, std::string* s) {
    c->add_option("--server", *s, "HOST:PORT[,HOST:PORT…], tried in turn")->default_val("127.0.0.1:7650");
  };
  auto* create = stream->add_subcommand("create", "Create a stream");
  create->add_option("name", sa->name, "Stream name")->required();
  create->add_option("--retention-bytes", sa->config.retention_bytes, "Delete oldest segments past this size (0: keep)");
  create->add_option("--retention-age-ms", sa->config.retention_age_ms, "Delete segments older than this (0: keep)");
  create->add_option("--max-message-bytes", sa->config.max_message_bytes, "Largest message")->default_val(1 << 20);
  create->add_option("--sync", sa->sync, "fdatasync (durable, default) or none (not durable)")->default_val("fdatasync");
  create->add_option("--ack-wait-ms", sa->config.ack_wait_ms, "Redeliver unanswered deliveries after")->default_val(30000);
  create->add_option("--max-deliveries", sa->config.max_deliveries, "Then dead-letter (0: never)")->default_val(5);
  create->add_option("--dead-letter", sa->config.dead_letter, "Dead-letter stream name");
  create->add_flag("--json", sa->json, "JSON output");
  server_opt(create, &sa->server);
  create->callback([=] { *exit_code = StreamCreate(*sa); });
  auto* del = stream->add_subcommand("delete", "Delete a stream and its consumers");
  del->add_option("name", sa->name, "Stream name")->required();
  del->add_flag("--json", sa->json, "JSON output");
  server_opt(del, &sa->server);
  del->callback([=] { *exit_code = StreamDelete(*sa); });
  auto* list = stream->add_subcommand("list", "List streams");
  list->add_flag("--json", sa->json, "JSON output");
  server_opt(list, &sa->server);
  list->callback([=] { *exit_code = StreamList(*sa); });
  auto* info = stream->add_subcommand("info", "First seq, frontier, bytes, consumers and their lag");
  info->add_option("name", sa->name, "Stream name")->required();
  info->add_flag("--json", sa->json, "JSON output");
  server_opt(info, &sa->server);
  info->callback([=] { *exit_code = StreamInfoCmd(*sa); });

  // floe produce
  auto pa = std::make_shared<ProduceArgs>();
  auto* produce = app.add_subcommand("produce", "Publish stdin lines (or --count synthetic messages); print each ACK");
  produce->add_option("stream", pa->stream, "Stream name")->required();
  produce->add_option("--count", pa->count, "Send this many synthetic messages instead of stdin");
  produce->add_option("--size", pa->size, "Synthetic message size")->default_val(100);
  produce->add_option("--session-id", pa->session_id, "Resume this producer session");
  produce->add_option("--inflight", pa->inflight, "Unacknowledged messages at most")->default_val(1000);
  produce->add_flag("--json", pa->json, "Print {\"seq\":S,\"producer_seq\":P} per ACK");
  produce->add_option("--large", pa->large,
                      "Send this file as one large message, in chunks (resume with --session-id)");
  server_opt(produce, &pa->server);
  produce->callback([=] { *exit_code = Produce(*pa); });

  // floe consume
  auto ca = std::make_shared<ConsumeArgs>();
  auto* consume = app.add_subcommand("consume", "Print messages of a durable consumer, one payload per line");
  consume->add_option("stream", ca->stream, "Stream name")->required();
  consume->add_option("--consumer", ca->consumer, "Durable consumer name")->required();
  consume->add_option("--max", ca->max, "Stop after this many messages");
  consume->add_option("--wait-ms", ca->wait_ms, "Stop when nothing arrives for this long")->default_val(1000);
  consume->add_option("--from", ca->from, "New consumers start at SEQ, at TIMEus (µs since the epoch), or 'new'");
  consume->add_option("--session-id", ca->session_id, "Resume this consumer session");
  consume->add_flag("--ack,!--no-ack", ca->ack, "ACK each message (default)");
  consume->add_flag("--nak", ca->nak, "NAK each message (redelivered)");
  consume->add_flag("--json", ca->json, "One JSON object per message");
  consume->add_option("--save-large", ca->save_large, "Write each large message's body to DIR/<seq>")
      ->check(CLI::ExistingDirectory);
  server_opt(consume, &ca->server);
  consume->callback([=] { *exit_code = Consume(*ca); });
}

}  // namespace floe::cli
