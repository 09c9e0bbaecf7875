// `floe cluster status|rebalance`, `floe node drain`, `floe session list|show`:
// the cluster as the information bank records it (docs/cluster.md). They
// read and write the bank directly, so they work while nodes are down.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <set>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "bank/bank.h"
#include "broker/session.h"
#include "cli/commands.h"
#include "cli/json.h"
#include "cli/options.h"
#include "cluster/cluster.h"

namespace floe::cli {
namespace {

struct BankArgs {
  std::string bank = "sqlite:./floe-data/bank.db";
  std::string bank_prefix;
  bool json = false;
};

void AddBankOption(CLI::App* c, BankArgs* a) {
  c->add_option("--bank", a->bank,
                "Information bank the nodes share (sqlite:PATH or etcd://HOST:PORT[,HOST:PORT…][/PREFIX/])")
      ->default_val("sqlite:./floe-data/bank.db");
  c->add_option("--bank-prefix", a->bank_prefix, "Key prefix of floe's keys on etcd (default /floe/)");
}

// Opens the bank; a missing SQLite file is an error here (these commands
// must not create an empty bank by mistake).
Result<std::unique_ptr<bank::Bank>> OpenExisting(const BankArgs& a) {
  std::string url = a.bank;
  if (!a.bank_prefix.empty()) {
    auto with = bank::WithEtcdPrefix(url, a.bank_prefix);
    if (!with) return Err(with.error());
    url = *with;
  }
  std::string path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : url;
  if (url.find("://") == std::string::npos && !std::filesystem::exists(path))
    return Err(Status::NotFound(fmt::format("no bank at {} (give --bank sqlite:DATA/bank.db)", path)));
  return bank::OpenBank(url);
}

// Under --json the error is the JSON object on stdout (cli/json.h).
int Fail(const char* what, const Status& s, bool json = false) {
  if (json) return cli::Fail(s, true);
  fmt::print(stderr, "floe {}: {}\n", what, s.ToString());
  return 1;
}

int ClusterStatus(const BankArgs& a) {
  auto b = OpenExisting(a);
  if (!b) return Fail("cluster status", b.error(), a.json);
  bank::Bank& bank = **b;
  const int64_t now = cluster::WallMs();
  auto nodes = bank.List(cluster::kNodesPrefix);
  auto streams = bank.List(bank::kStreamsPrefix);
  auto drains = bank.List(cluster::kDrainPrefix);
  if (!nodes) return Fail("cluster status", nodes.error(), a.json);
  if (!streams) return Fail("cluster status", streams.error(), a.json);
  if (!drains) return Fail("cluster status", drains.error(), a.json);
  std::set<std::string> drained;
  for (const auto& kv : *drains) drained.insert(kv.key.substr(cluster::kDrainPrefix.size()));
  std::string out;
  if (a.json) out += "{\"nodes\":[";
  else out += fmt::format("{:<12} {:<22} {:<22} {:>5} {:<6} {:<8} {:>9} {:>7} {:>8} {:>10}\n", "NODE", "ADDRESS",
                          "MQTT", "CONNS", "ALIVE", "DRAINED", "HEARTBEAT", "STREAMS", "SESSIONS", "PUBLISH/S");
  bool first = true;
  for (const auto& kv : *nodes) {
    auto n = cluster::DecodeNodeInfo(kv.value);
    if (!n) continue;
    const int64_t age = now - n->heartbeat_ms;
    const bool alive = age < std::max<int64_t>(n->lease_ms, 1);
    const bool dr = drained.count(n->id) > 0;
    if (a.json) {
      out += fmt::format(
          "{}{{\"id\":\"{}\",\"address\":\"{}\",\"mqtt_address\":{},\"alive\":{},\"drained\":{},"
          "\"heartbeat_age_ms\":{},\"lease_ms\":{},\"streams\":{},\"sessions\":{},\"publish_rate\":{},"
          "\"mqtt_connections\":{}}}",
          first ? "" : ",", JsonEscape(n->id), JsonEscape(n->address),
          n->mqtt_address.empty() ? std::string("null") : "\"" + JsonEscape(n->mqtt_address) + "\"", alive, dr, age,
          n->lease_ms, n->streams, n->sessions, n->publish_rate, n->mqtt_connections);
    } else {
      out += fmt::format("{:<12} {:<22} {:<22} {:>5} {:<6} {:<8} {:>7}ms {:>7} {:>8} {:>10}\n", n->id, n->address,
                         n->mqtt_address.empty() ? "-" : n->mqtt_address, n->mqtt_connections, alive ? "yes" : "no",
                         dr ? "yes" : "no", age, n->streams, n->sessions, n->publish_rate);
    }
    first = false;
  }
  if (a.json) out += "],\"streams\":[";
  else out += fmt::format("\n{:<24} {:<12} {:>6} {:>12}\n", "STREAM", "OWNER", "EPOCH", "LEASE");
  first = true;
  for (const auto& kv : *streams) {
    const std::string name = kv.key.substr(bank::kStreamsPrefix.size());
    auto lease = bank.GetLease(cluster::StreamLeaseName(name));
    std::string owner;
    uint64_t epoch = 0;
    int64_t left = 0;
    if (lease) {
      epoch = lease->epoch;
      left = lease->expires_ms - now;
      if (left > 0) owner = lease->owner;
    }
    // An etcd lease has no wall-clock expiry: it lasts while its node keeps it alive.
    const bool by_bank = lease && lease->expires_ms == bank::kHeldByBank;
    if (a.json) {
      out += fmt::format("{}{{\"name\":\"{}\",\"owner\":\"{}\",\"epoch\":{},\"expires_in_ms\":{}}}", first ? "" : ",",
                         JsonEscape(name), JsonEscape(owner), epoch,
                         by_bank ? std::string("null") : std::to_string(std::max<int64_t>(left, 0)));
    } else {
      out += fmt::format("{:<24} {:<12} {:>6} {:>12}\n", name, owner.empty() ? "-" : owner, epoch,
                         by_bank ? std::string("kept alive")
                                 : left > 0 ? fmt::format("{}ms", left) : std::string(lease ? "expired" : "free"));
    }
    first = false;
  }
  if (a.json) out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

std::string SessionJson(const broker::SessionRecord& r) {
  return fmt::format(
      "{{\"id\":\"{}\",\"kind\":\"{}\",\"stream\":\"{}\",\"consumer\":\"{}\",\"holder\":\"{}\",\"epoch\":{},"
      "\"updated_ms\":{},\"last_producer_seq\":{},\"last_seq\":{},\"messages\":{},\"answers\":{},\"pending\":{},"
      "\"conveying_producer_seq\":{},\"conveying_total\":{},\"bytes_conveyed\":{}}}",
      FormatSessionId(r.id), broker::SessionKindName(r.kind), JsonEscape(r.stream), JsonEscape(r.consumer), JsonEscape(r.holder),
      r.epoch, r.updated_ms, r.last_producer_seq, r.last_seq, r.messages, r.answers, r.pending,
      r.conveying_producer_seq, r.conveying_total, r.bytes_conveyed);
}

int SessionList(const BankArgs& a) {
  auto b = OpenExisting(a);
  if (!b) return Fail("session list", b.error(), a.json);
  auto all = (*b)->List(broker::kSessionsPrefix);
  if (!all) return Fail("session list", all.error(), a.json);
  std::string out = a.json ? "[" : fmt::format("{:<16} {:<8} {:<20} {:<12} {:<10} {:>5} {:>10} {:>10} {:>8}\n", "SESSION",
                                               "KIND", "STREAM", "CONSUMER", "HOLDER", "EPOCH", "LAST SEQ", "MESSAGES",
                                               "PENDING");
  bool first = true;
  for (const auto& kv : *all) {
    auto r = broker::DecodeSessionRecord(kv.value);
    if (!r) {
      fmt::print(stderr, "floe session list: {}: {}\n", kv.key, r.error().ToString());
      continue;
    }
    if (a.json) {
      out += (first ? "" : ",") + SessionJson(*r);
    } else {
      out += fmt::format("{} {:<8} {:<20} {:<12} {:<10} {:>5} {:>10} {:>10} {:>8}\n", FormatSessionId(r->id),
                         broker::SessionKindName(r->kind), r->stream, r->consumer.empty() ? "-" : r->consumer,
                         r->holder.empty() ? "-" : r->holder, r->epoch, r->last_seq, r->messages, r->pending);
    }
    first = false;
  }
  if (a.json) out += "]\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

int SessionShow(const BankArgs& a, uint64_t id) {
  auto b = OpenExisting(a);
  if (!b) return Fail("session show", b.error(), a.json);
  auto v = (*b)->Get(broker::SessionKey(id));
  if (!v)
    return Fail("session show",
                v.error().IsNotFound() ? Status::NotFound(fmt::format("no session {} in the bank", FormatSessionId(id)))
                                       : v.error(),
                a.json);
  auto r = broker::DecodeSessionRecord(v->value);
  if (!r) return Fail("session show", r.error(), a.json);
  if (a.json) {
    fmt::print("{}\n", SessionJson(*r));
    return 0;
  }
  fmt::print("session            {}\nkind               {}\nstream             {}\n", FormatSessionId(r->id),
             broker::SessionKindName(r->kind), r->stream);
  if (!r->consumer.empty()) fmt::print("consumer           {}\n", r->consumer);
  fmt::print("holder             {}\nepoch              {}\nupdated            {} ms ago\n",
             r->holder.empty() ? "- (released)" : r->holder, r->epoch, cluster::WallMs() - r->updated_ms);
  if (r->kind == broker::SessionRecord::Kind::kProducer) {
    fmt::print("acked producer seq {}\nits stream seq     {}\nmessages acked     {}\n", r->last_producer_seq, r->last_seq,
               r->messages);
    if (r->conveying_producer_seq != 0)
      fmt::print("conveying          producer seq {}: {} of {} bytes durable\n", r->conveying_producer_seq,
                 r->bytes_conveyed, r->conveying_total);
  } else {
    fmt::print("last delivered seq {}\ndelivered          {}\nanswers confirmed  {}\npending            {}\n",
               r->last_seq, r->messages, r->answers, r->pending);
  }
  return 0;
}

int NodeDrain(const BankArgs& a, const std::string& id, bool undo) {
  auto b = OpenExisting(a);
  if (!b) return Fail("node drain", b.error());
  if (undo) {
    auto drained = (*b)->Get(cluster::DrainKey(id));
    if (!drained && drained.error().IsNotFound())
      return Fail("node drain", Status::NotFound(fmt::format("node {} is not drained: nothing to undo", id)));
    if (!drained) return Fail("node drain", drained.error());
    Status s = (*b)->Delete(cluster::DrainKey(id));
    if (!s.ok()) return Fail("node drain", s);
    fmt::print("node {} takes streams again\n", id);
    return 0;
  }
  // Only a node the bank knows (it registers while it runs): a mistyped id
  // would otherwise be "drained" and nothing would move.
  auto node = (*b)->Get(cluster::NodeKey(id));
  if (!node && node.error().IsNotFound()) {
    auto nodes = (*b)->List(cluster::kNodesPrefix);
    std::string known;
    if (nodes)
      for (const auto& kv : *nodes) known += (known.empty() ? "" : ", ") + kv.key.substr(cluster::kNodesPrefix.size());
    return Fail("node drain", Status::NotFound(fmt::format(
                                  "no node {} in the bank {}: the nodes it knows are {} (floe cluster status lists them)",
                                  id, a.bank, known.empty() ? "none" : known)));
  }
  if (!node) return Fail("node drain", node.error());
  auto r = (*b)->Put(cluster::DrainKey(id), fmt::format("{}", cluster::WallMs()));
  if (!r) return Fail("node drain", r.error());
  fmt::print("node {} is drained: it gives its streams up at its next tick\n", id);
  return 0;
}

int Rebalance(const BankArgs& a) {
  auto b = OpenExisting(a);
  if (!b) return Fail("cluster rebalance", b.error());
  auto r = (*b)->Put(std::string(cluster::kRebalanceKey), fmt::format("{}", cluster::WallMs()));
  if (!r) return Fail("cluster rebalance", r.error());
  fmt::print("asked every node to balance its streams now\n");
  return 0;
}

}  // namespace

void RegisterClusterCommands(CLI::App& app, int* exit_code) {
  auto* cl = app.add_subcommand("cluster", "The cluster as the bank records it")->require_subcommand(1);
  {
    auto a = std::make_shared<BankArgs>();
    auto* c = cl->add_subcommand("status", "Nodes (alive, drained, load) and streams (owner node, epoch, lease)");
    AddBankOption(c, a.get());
    c->add_flag("--json", a->json, "One JSON object");
    c->callback([a, exit_code] { *exit_code = ClusterStatus(*a); });
  }
  {
    auto a = std::make_shared<BankArgs>();
    auto* c = cl->add_subcommand("rebalance", "Ask every node to even out the streams now");
    AddBankOption(c, a.get());
    c->callback([a, exit_code] { *exit_code = Rebalance(*a); });
  }
  auto* node = app.add_subcommand("node", "One node of the cluster")->require_subcommand(1);
  {
    auto a = std::make_shared<BankArgs>();
    auto id = std::make_shared<std::string>();
    auto undo = std::make_shared<bool>(false);
    auto* c = node->add_subcommand("drain", "Move every stream off a node (it takes none until --undo)");
    AddName(c, "id", id.get(), "node", "Node id (as floe cluster status lists it)")->required();
    c->add_flag("--undo", *undo, "Let the node take streams again");
    AddBankOption(c, a.get());
    c->callback([a, id, undo, exit_code] { *exit_code = NodeDrain(*a, *id, *undo); });
  }
  auto* sess = app.add_subcommand("session", "Sessions and their conveyance state, from the bank")->require_subcommand(1);
  {
    auto a = std::make_shared<BankArgs>();
    auto* c = sess->add_subcommand("list", "Every session the bank records");
    AddBankOption(c, a.get());
    c->add_flag("--json", a->json, "One JSON array");
    c->callback([a, exit_code] { *exit_code = SessionList(*a); });
  }
  {
    auto a = std::make_shared<BankArgs>();
    auto id = std::make_shared<uint64_t>(0);
    auto* c = sess->add_subcommand("show", "One session's record: holder, epoch, conveyance state");
    AddSessionId(c, "id", id.get(), "Session id (16 hex digits, as session list prints)")->required();
    AddBankOption(c, a.get());
    c->add_flag("--json", a->json, "One JSON object");
    c->callback([a, id, exit_code] { *exit_code = SessionShow(*a, *id); });
  }
}

}  // namespace floe::cli
