// `floe mqtt retained` and `floe mqtt sessions`: the MQTT front end's state
// as the information bank records it (docs/mqtt.md, docs/cli.md). They read
// the bank directly, so they work while nodes are down; only the sessions'
// queue depth asks the node serving the MQTT stream for its frontier.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bank/bank.h"
#include "broker/cursor.h"
#include "broker/registry.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "client/client.h"
#include "cluster/cluster.h"
#include "frontend/mqtt/connection.h"
#include "frontend/mqtt/retained.h"

namespace floe::cli {
namespace {

namespace fm = ::floe::frontend::mqtt;

struct MqttArgs {
  std::string bank = "sqlite:./floe-data/bank.db";
  std::string bank_prefix;
  std::string stream = "mqtt";
  uint64_t timeout_ms = kDefaultTimeoutMs;
  bool json = false;
};

void AddBankOptions(CLI::App* c, MqttArgs* a) {
  c->add_option("--bank", a->bank,
                "Information bank the nodes share (sqlite:PATH or etcd://HOST:PORT[,HOST:PORT…][/PREFIX/])")
      ->default_val("sqlite:./floe-data/bank.db");
  c->add_option("--bank-prefix", a->bank_prefix, "Key prefix of floe's keys on etcd (default /floe/)");
  c->add_flag("--json", a->json, "One JSON value");
}

// A missing SQLite file is an error (these commands must not create an
// empty bank by mistake).
Result<std::unique_ptr<bank::Bank>> OpenExisting(const MqttArgs& a) {
  std::string url = a.bank;
  if (!a.bank_prefix.empty()) {
    auto with = bank::WithEtcdPrefix(url, a.bank_prefix);
    if (!with) return Err(with.error());
    url = *with;
  }
  const std::string path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
  if (url.find("://") == std::string::npos && !std::filesystem::exists(path))
    return Err(Status::NotFound(fmt::format("no bank at {} (give --bank sqlite:DATA/bank.db)", path)));
  return bank::OpenBank(url);
}

int Refuse(const char* what, const Status& s, bool json) {
  if (json) return cli::Fail(s, true);
  fmt::print(stderr, "floe mqtt {}: {}\n", what, s.ToString());
  return 1;
}

constexpr std::string_view kFrontendPrefix = "frontend/";

int Retained(const MqttArgs& a) {
  auto b = OpenExisting(a);
  if (!b) return Refuse("retained", b.error(), a.json);
  auto all = (*b)->List(std::string(kFrontendPrefix) + std::string(fm::kRetainedPrefix));
  if (!all) return Refuse("retained", all.error(), a.json);
  std::vector<fm::RetainedRecord> records;
  for (const auto& kv : *all) {
    auto r = fm::DecodeRetainedRecord(kv.value);
    if (!r) {
      fmt::print(stderr, "floe mqtt retained: {}: {}\n", kv.key, r.error().ToString());
      continue;
    }
    records.push_back(std::move(*r));
  }
  std::sort(records.begin(), records.end(), [](const auto& x, const auto& y) { return x.topic < y.topic; });
  const int64_t now = cluster::WallMs();
  std::string out = a.json ? "[" : fmt::format("{:<40} {:>10} {:>3} {:>12} {}\n", "TOPIC", "BYTES", "QOS", "SEQ",
                                               "EXPIRES");
  bool first = true;
  for (const auto& r : records) {
    const fm::RetainedInfo info = fm::DescribeRetained(r);
    if (a.json) {
      out += fmt::format("{}{{\"topic\":\"{}\",\"bytes\":{},\"qos\":{},\"seq\":{},\"expires_at_ms\":{}}}",
                         first ? "" : ",", JsonEscape(r.topic), r.payload.size(), info.qos, r.seq,
                         info.expires_at_ms ? std::to_string(info.expires_at_ms) : std::string("null"));
    } else {
      const std::string expires = info.expires_at_ms == 0            ? "never"
                                  : info.expires_at_ms <= now        ? "expired (not sent)"
                                                                     : fmt::format("in {} s", (info.expires_at_ms - now + 999) / 1000);
      out += fmt::format("{:<40} {:>10} {:>3} {:>12} {}\n", r.topic, r.payload.size(), info.qos, r.seq, expires);
    }
    first = false;
  }
  if (a.json) out += "]\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

// The MQTT stream's frontier, asked of the node the bank names as its
// owner; nullopt (and why in *why) when no node serves it or it did not answer.
std::optional<uint64_t> Frontier(bank::Bank& bank, const MqttArgs& a, std::string* why) {
  auto lease = bank.GetLease(cluster::StreamLeaseName(a.stream));
  if (!lease || lease->expires_ms <= cluster::WallMs()) {
    *why = fmt::format("no node serves stream {} now", a.stream);
    return std::nullopt;
  }
  auto node = bank.Get(cluster::NodeKey(lease->owner));
  auto info = node ? cluster::DecodeNodeInfo(node->value) : Result<cluster::NodeInfo>(Err(node.error()));
  if (!info) {
    *why = fmt::format("node {} (serving stream {}) is not in the bank: {}", lease->owner, a.stream,
                       info.error().ToString());
    return std::nullopt;
  }
  auto options = ClientOptionsFor(info->address, a.timeout_ms, "floe-mqtt-sessions");
  if (!options) {
    *why = options.error().ToString();
    return std::nullopt;
  }
  auto admin = client::Admin::Connect(*options);
  if (!admin) {
    *why = fmt::format("node {} at {}: {}", lease->owner, info->address, admin.error().ToString());
    return std::nullopt;
  }
  auto st = (*admin)->Info(a.stream);
  if (!st) {
    *why = fmt::format("node {} at {}: {}", lease->owner, info->address, st.error().ToString());
    return std::nullopt;
  }
  return st->frontier;
}

struct SessionRow {
  fm::SessionRecord record;
  std::string consumer;
  std::optional<broker::Cursor> cursor;  // nullopt: the bank holds none yet
};

int Sessions(const MqttArgs& a) {
  auto b = OpenExisting(a);
  if (!b) return Refuse("sessions", b.error(), a.json);
  bank::Bank& bank = **b;
  // "frontend/mqtt/": the session records (retained ones are under "frontend/mqtt-retained/").
  auto all = bank.List(std::string(kFrontendPrefix) + "mqtt/");
  if (!all) return Refuse("sessions", all.error(), a.json);
  std::vector<SessionRow> rows;
  for (const auto& kv : *all) {
    auto r = fm::DecodeSessionRecord(kv.value);
    if (!r) {
      fmt::print(stderr, "floe mqtt sessions: {}: {}\n", kv.key, r.error().ToString());
      continue;
    }
    SessionRow row{std::move(*r), {}, std::nullopt};
    row.consumer = fmt::format("mqtt.{:016x}.{}", fm::ClientHash(row.record.client_id), row.record.generation);
    auto c = bank.Get(broker::CursorKey(a.stream, row.consumer));
    if (c) {
      auto cursor = broker::Cursor::Decode(c->value);
      if (cursor) row.cursor = std::move(*cursor);
      else fmt::print(stderr, "floe mqtt sessions: cursor of {}: {}\n", row.consumer, cursor.error().ToString());
    } else if (!c.error().IsNotFound()) {
      return Refuse("sessions", c.error(), a.json);
    }
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.record.client_id < y.record.client_id; });
  std::string why;
  const std::optional<uint64_t> frontier = rows.empty() ? std::nullopt : Frontier(bank, a, &why);
  auto queue_of = [&](const SessionRow& r) -> std::optional<uint64_t> {
    if (!frontier || !r.cursor) return std::nullopt;
    return *frontier > r.cursor->ack_floor() ? *frontier - r.cursor->ack_floor() : 0;
  };
  if (!a.json && !rows.empty() && !frontier) fmt::print(stderr, "floe mqtt sessions: queue depth unknown: {}\n", why);
  std::string out;
  if (a.json) {
    out = fmt::format("{{\"stream\":\"{}\",\"frontier\":{},", JsonEscape(a.stream),
                      frontier ? std::to_string(*frontier) : std::string("null"));
    if (!frontier && !rows.empty()) out += fmt::format("\"frontier_unknown\":\"{}\",", JsonEscape(why));
    out += "\"sessions\":[";
  } else {
    out = fmt::format("{:<28} {:>10} {:>8} {:>8}  {}\n", "CLIENT", "EXPIRY", "PENDING", "QUEUE", "SUBSCRIPTIONS");
  }
  bool first = true;
  for (const SessionRow& r : rows) {
    const auto queue = queue_of(r);
    const uint64_t pending = r.cursor ? r.cursor->pending().size() : 0;
    if (a.json) {
      std::string subs;
      for (const auto& s : r.record.subscriptions)
        subs += fmt::format("{}{{\"filter\":\"{}\",\"qos\":{},\"no_local\":{},\"retain_as_published\":{},"
                            "\"retain_handling\":{},\"identifier\":{}}}",
                            subs.empty() ? "" : ",", JsonEscape(s.filter), s.options.max_qos, s.options.no_local,
                            s.options.retain_as_published, static_cast<int>(s.options.retain_handling), s.identifier);
      out += fmt::format(
          "{}{{\"client_id\":\"{}\",\"session_expiry_s\":{},\"consumer\":\"{}\",\"ack_floor\":{},\"pending\":{},"
          "\"queue\":{},\"subscriptions\":[{}]}}",
          first ? "" : ",", JsonEscape(r.record.client_id), r.record.expiry_s, JsonEscape(r.consumer),
          r.cursor ? std::to_string(r.cursor->ack_floor()) : std::string("null"), pending,
          queue ? std::to_string(*queue) : std::string("null"), subs);
    } else {
      std::string subs;
      for (const auto& s : r.record.subscriptions)
        subs += fmt::format("{}{} (QoS {})", subs.empty() ? "" : ", ", s.filter, s.options.max_qos);
      const std::string expiry = r.record.expiry_s == 0xFFFFFFFFu ? "never" : fmt::format("{} s", r.record.expiry_s);
      out += fmt::format("{:<28} {:>10} {:>8} {:>8}  {}\n", r.record.client_id, expiry, pending,
                         queue ? std::to_string(*queue) : std::string("-"), subs.empty() ? "-" : subs);
    }
    first = false;
  }
  if (a.json) out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

void RegisterMqttCommands(CLI::App& app, int* exit_code) {
  auto* m = app.add_subcommand("mqtt", "The MQTT front end's state, from the bank")->require_subcommand(1);
  {
    auto a = std::make_shared<MqttArgs>();
    auto* c = m->add_subcommand("retained",
                                "Every retained message: topic, payload bytes, QoS, the MQTT stream seq it was stored at");
    AddBankOptions(c, a.get());
    c->callback([a, exit_code] { *exit_code = Retained(*a); });
  }
  {
    auto a = std::make_shared<MqttArgs>();
    auto* c = m->add_subcommand(
        "sessions",
        "Every MQTT session the bank keeps: client id, subscriptions with their QoS, Session Expiry Interval,\n"
        "PENDING = deliveries sent and not answered (the consumer's cursor), QUEUE = offline queue depth =\n"
        "the MQTT stream's frontier (asked of the node serving it) minus the consumer's ack floor: every\n"
        "later message not answered yet, in flight or not, whether or not it matches the filters (a\n"
        "session answers those at once when it reads them). '-' (JSON null) when no node answered.");
    AddBankOptions(c, a.get());
    AddName(c, "--stream", &a->stream, "stream", "The MQTT stream (the nodes' --mqtt-stream)")->default_val("mqtt");
    AddTimeout(c, &a->timeout_ms);
    c->callback([a, exit_code] { *exit_code = Sessions(*a); });
  }
}

}  // namespace floe::cli
