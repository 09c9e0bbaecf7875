// `floe stream create|delete|list|info`: a node's streams, over the floe
// protocol. Each takes --server HOST:PORT[,HOST:PORT…] (tried in turn) and
// --timeout; every setting is range-checked (model/limits.h) before a
// connection is made.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "broker/registry.h"

#include "client/client.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "model/limits.h"

namespace floe::cli {
namespace {

struct StreamArgs {
  std::string server = "127.0.0.1:7650";
  uint64_t timeout_ms = kDefaultTimeoutMs;
  std::string name;
  bool json = false;
  wire::StreamConfig config;
  std::string sync = "fdatasync";
  std::string mqtt_topics;  // comma-separated topic filters
};

// "sensors/#,alerts/+" -> its filters, each checked as the node checks them.
Result<std::vector<std::string>> ParseMqttTopics(const std::string& list) {
  std::vector<std::string> out;
  if (list.empty()) return out;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    out.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (Status v = broker::ValidateMqttTopics(out); !v.ok()) return Err(Status::InvalidArgument("--mqtt-topics: " + std::string(v.message())));
  return out;
}

std::string TopicsJson(const std::vector<std::string>& topics) {
  std::string out = "[";
  for (size_t i = 0; i < topics.size(); ++i) out += fmt::format("{}\"{}\"", i ? "," : "", JsonEscape(topics[i]));
  return out + "]";
}

Result<std::unique_ptr<client::Admin>> Connect(const StreamArgs& a) {
  auto o = ClientOptionsFor(a.server, a.timeout_ms, "floe-cli");
  if (!o) return Err(o.error());
  return client::Admin::Connect(*o);
}

int StreamCreate(StreamArgs a) {
  if (a.sync == "none") a.config.sync = wire::SyncMode::kNone;
  auto topics = ParseMqttTopics(a.mqtt_topics);
  if (!topics) return Fail(topics.error(), a.json);
  a.config.mqtt_topics = std::move(*topics);
  // The same ranges the node checks; the options checked each already.
  if (Status v = ValidateStreamSettings(a.config); !v.ok()) return Fail(v, a.json);
  auto admin = Connect(a);
  if (!admin) return Fail(admin.error(), a.json);
  Status s = (*admin)->CreateStream(a.name, a.config);
  if (!s.ok()) return Fail(s, a.json);
  if (a.json) fmt::print("{{\"created\":\"{}\"}}\n", JsonEscape(a.name));
  else fmt::print("created stream {}\n", a.name);
  return 0;
}

int StreamDelete(const StreamArgs& a) {
  auto admin = Connect(a);
  if (!admin) return Fail(admin.error(), a.json);
  Status s = (*admin)->DeleteStream(a.name);
  if (!s.ok()) return Fail(s, a.json);
  if (a.json) fmt::print("{{\"deleted\":\"{}\"}}\n", JsonEscape(a.name));
  else fmt::print("deleted stream {}\n", a.name);
  return 0;
}

int StreamList(const StreamArgs& a) {
  auto admin = Connect(a);
  if (!admin) return Fail(admin.error(), a.json);
  auto names = (*admin)->ListStreams();
  if (!names) return Fail(names.error(), a.json);
  if (a.json) {
    std::string out = "[";
    for (size_t i = 0; i < names->size(); ++i) out += fmt::format("{}\"{}\"", i ? "," : "", JsonEscape((*names)[i]));
    fmt::print("{}]\n", out);
  } else {
    for (const auto& n : *names) fmt::print("{}\n", n);
  }
  return 0;
}

std::string Retention(const wire::StreamConfig& c) {
  if (c.retention_bytes == 0 && c.retention_age_ms == 0) return "keep everything";
  std::string out;
  if (c.retention_bytes != 0) out += fmt::format("at most {} of segment files", FormatBytes(c.retention_bytes));
  if (c.retention_age_ms != 0)
    out += fmt::format("{}segments younger than {}", out.empty() ? "" : ", ", FormatDurationMs(c.retention_age_ms));
  return out;
}

int StreamInfoCmd(const StreamArgs& a) {
  auto admin = Connect(a);
  if (!admin) return Fail(admin.error(), a.json);
  auto info = (*admin)->Info(a.name);
  if (!info) return Fail(info.error(), a.json);
  const auto& c = info->config;
  // info->bytes is the size of the stream's segment files (every record with
  // its batch and segment headers, as written to disk), not the sum of the
  // payloads: the labels say so.
  if (a.json) {
    std::string consumers;
    for (const auto& x : info->consumers)
      consumers += fmt::format("{}{{\"name\":\"{}\",\"ack_floor\":{},\"next_seq\":{},\"pending\":{},\"lag\":{}}}",
                               consumers.empty() ? "" : ",", JsonEscape(x.name), x.ack_floor, x.next_seq, x.pending,
                               x.lag);
    fmt::print("{{\"name\":\"{}\",\"first_seq\":{},\"frontier\":{},\"segment_file_bytes\":{},\"retention_bytes\":{},"
               "\"retention_age_ms\":{},\"max_message_bytes\":{},\"sync\":\"{}\",\"ack_wait_ms\":{},"
               "\"max_deliveries\":{},\"dead_letter\":\"{}\",\"mqtt_topics\":{},\"consumers\":[{}]}}\n",
               JsonEscape(info->name), info->first_seq, info->frontier, info->bytes, c.retention_bytes,
               c.retention_age_ms, c.max_message_bytes, c.sync == wire::SyncMode::kNone ? "none" : "fdatasync",
               c.ack_wait_ms, c.max_deliveries, JsonEscape(c.dead_letter), TopicsJson(c.mqtt_topics), consumers);
    return 0;
  }
  fmt::print("stream        {}\nfirst seq     {}\nfrontier      {}\n"
             "on disk       {} in segment files (records with their headers, not payload bytes)\n"
             "retention     {}\nmax message   {}\nsync          {}\n"
             "ack wait      {} ms\nmax deliver   {}\ndead letter   {}\nmqtt topics   {}\n",
             info->name, info->first_seq, info->frontier, FormatBytes(info->bytes), Retention(c),
             FormatBytes(c.max_message_bytes), c.sync == wire::SyncMode::kNone ? "none (not durable)" : "fdatasync",
             c.ack_wait_ms, c.max_deliveries == 0 ? std::string("unlimited") : std::to_string(c.max_deliveries),
             c.dead_letter.empty() ? "-" : c.dead_letter,
             c.mqtt_topics.empty() ? std::string("-") : fmt::format("{}", fmt::join(c.mqtt_topics, ",")));
  for (const auto& x : info->consumers)
    fmt::print("consumer      {}: ack floor {}, next {}, pending {}, lag {}\n", x.name, x.ack_floor, x.next_seq,
               x.pending, x.lag);
  return 0;
}

}  // namespace

void RegisterStreamCommands(CLI::App& app, int* exit_code) {
  auto sa = std::make_shared<StreamArgs>();
  auto* stream = app.add_subcommand("stream", "Create, delete, list and inspect streams on a node");
  stream->require_subcommand(1);
  auto common = [&](CLI::App* c) {
    c->add_flag("--json", sa->json, "JSON output; an error is {\"error\":{\"code\",\"retriable\",\"message\"}} on stdout");
    AddServers(c, &sa->server);
    AddTimeout(c, &sa->timeout_ms);
  };
  auto* create = stream->add_subcommand("create", "Create a stream");
  AddName(create, "name", &sa->name, "stream", "Stream name")->required();
  AddNumber(create, "--retention-bytes", &sa->config.retention_bytes, Kind::kBytes,
            Range{1, kMaxRetentionBytes, "keep everything"},
            "Delete the oldest segments past this size of segment files (0: keep; up to 1 PiB; e.g. 10GiB)");
  AddNumber(create, "--retention-age-ms", &sa->config.retention_age_ms, Kind::kDurationMs,
            Range{kMinRetentionAgeMs, kMaxRetentionAgeMs, "keep everything"},
            "Delete segments older than this (0: keep; 1 s to 100 years; ms, or 7d, 12h …)");
  AddNumber(create, "--max-message-bytes", &sa->config.max_message_bytes, Kind::kBytes,
            Range{1, kMaxMessageBytesCeiling},
            "Largest message (1 byte to 16 MiB, and at most the node's limit; larger bodies: produce --large)");
  create->add_option("--sync", sa->sync, "fdatasync (durable, default) or none (not durable)")
      ->default_val("fdatasync")
      ->check(CLI::IsMember({"fdatasync", "none"}));
  AddNumber(create, "--ack-wait-ms", &sa->config.ack_wait_ms, Kind::kDurationMs, Range{kMinAckWaitMs, kMaxAckWaitMs},
            "Redeliver unanswered deliveries after this long (100 ms to 7 d)");
  AddNumber(create, "--max-deliveries", &sa->config.max_deliveries, Kind::kInteger,
            Range{1, kMaxMaxDeliveries, "never dead-letter"}, "Then dead-letter (0: never; at most 10000)");
  AddName(create, "--dead-letter", &sa->config.dead_letter, "dead-letter stream",
          "Dead-letter stream name (it must exist)");
  create->add_option("--mqtt-topics", sa->mqtt_topics,
                     "MQTT topic filters bound to the stream, comma-separated (e.g. 'sensors/#,alerts/+'): "
                     "PUBLISHes on matching topics go here (docs/mqtt.md; set at creation only)");
  common(create);
  create->callback([=] {
    // A stream bound to MQTT topics is read by MQTT sessions, which resend
    // only on reconnect [MQTT-4.4.0-1]: unless told otherwise it gets the
    // default MQTT stream's delivery settings (ack wait 7 days, no
    // dead-lettering), not a redelivery every 30 s and a drop after 5.
    if (!sa->mqtt_topics.empty()) {
      if (create->count("--ack-wait-ms") == 0) sa->config.ack_wait_ms = kMaxAckWaitMs;
      if (create->count("--max-deliveries") == 0) sa->config.max_deliveries = 0;
    }
    *exit_code = StreamCreate(*sa);
  });

  auto* del = stream->add_subcommand("delete", "Delete a stream and its consumers");
  AddName(del, "name", &sa->name, "stream", "Stream name")->required();
  common(del);
  del->callback([=] { *exit_code = StreamDelete(*sa); });

  auto* list = stream->add_subcommand("list", "List streams");
  common(list);
  list->callback([=] { *exit_code = StreamList(*sa); });

  auto* info = stream->add_subcommand(
      "info", "First seq, frontier, size of the segment files on disk, settings, consumers and their lag");
  AddName(info, "name", &sa->name, "stream", "Stream name")->required();
  common(info);
  info->callback([=] { *exit_code = StreamInfoCmd(*sa); });
}

}  // namespace floe::cli
