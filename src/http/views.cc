#include "http/views.h"

#include <fmt/format.h>

#include "cli/json.h"
#include "cli/parse.h"

namespace floe::http {

using cli::JsonEscape;

namespace {

std::string Quoted(std::string_view s) { return "\"" + JsonEscape(s) + "\""; }

std::string ConsumerJson(const broker::ConsumerView& c) {
  return fmt::format("{{\"name\":{},\"ack_floor\":{},\"next_seq\":{},\"pending\":{},\"lag\":{},\"lag_seconds\":{:.3f}}}",
                     Quoted(c.name), c.ack_floor, c.next_seq, c.pending, c.lag, c.lag_seconds);
}

std::string OneStreamJson(const broker::StreamView& s) {
  std::string out = fmt::format("{{\"name\":{}", Quoted(s.name));
  // `floe stream info --json`'s members, where this node has them.
  if (s.served) {
    out += fmt::format(",\"first_seq\":{},\"frontier\":{},\"segment_file_bytes\":{}", s.log.first_seq, s.log.frontier,
                       s.log.bytes);
  }
  if (s.config) {
    const StreamConfig& c = *s.config;
    out += fmt::format(
        ",\"retention_bytes\":{},\"retention_age_ms\":{},\"max_message_bytes\":{},\"sync\":\"{}\","
        "\"ack_wait_ms\":{},\"max_deliveries\":{},\"dead_letter\":{}",
        c.retention_bytes, c.retention_age_ms, c.max_message_bytes, c.sync == SyncMode::kNone ? "none" : "fdatasync",
        c.ack_wait_ms, c.max_deliveries, Quoted(c.dead_letter));
    out += ",\"mqtt_topics\":[";
    for (size_t i = 0; i < c.mqtt_topics.size(); ++i) out += (i ? "," : "") + Quoted(c.mqtt_topics[i]);
    out += "]";
  }
  if (s.served) {
    out += ",\"consumers\":[";
    for (size_t i = 0; i < s.consumers.size(); ++i) out += (i ? "," : "") + ConsumerJson(s.consumers[i]);
    out += "]";
    out += fmt::format(",\"segments\":{},\"in_doubt\":{},\"holes\":{},\"group_commits\":{},\"syncs\":{}",
                       s.log.segments, s.log.in_doubt, s.log.holes, s.log.groups_written, s.log.syncs);
  }
  // The lease (as `floe cluster status` shows it) and this node's counters.
  out += fmt::format(",\"owner\":{},\"epoch\":{},\"expires_in_ms\":{},\"served_here\":{}", Quoted(s.owner), s.epoch,
                     s.expires_in_ms ? std::to_string(*s.expires_in_ms) : std::string("null"), s.served);
  out += fmt::format(
      ",\"counters\":{{\"published_messages\":{},\"published_bytes\":{},\"delivered_messages\":{},"
      "\"redelivered_messages\":{},\"dead_letters\":{}}}}}",
      s.published_messages, s.published_bytes, s.delivered_messages, s.redelivered_messages, s.dead_letters);
  return out;
}

std::string SessionJson(const broker::SessionRecord& r) {
  // As `floe session list --json` (src/cli/cluster_commands.cc).
  return fmt::format(
      "{{\"id\":\"{}\",\"kind\":\"{}\",\"stream\":{},\"consumer\":{},\"holder\":{},\"epoch\":{},"
      "\"updated_ms\":{},\"last_producer_seq\":{},\"last_seq\":{},\"messages\":{},\"answers\":{},\"pending\":{},"
      "\"conveying_producer_seq\":{},\"conveying_total\":{},\"bytes_conveyed\":{}}}",
      cli::FormatSessionId(r.id), broker::SessionKindName(r.kind), Quoted(r.stream), Quoted(r.consumer),
      Quoted(r.holder), r.epoch, r.updated_ms, r.last_producer_seq, r.last_seq, r.messages, r.answers, r.pending,
      r.conveying_producer_seq, r.conveying_total, r.bytes_conveyed);
}

std::string Head(const broker::NodeView& v) {
  return fmt::format("\"node\":{},\"time_ms\":{}", Quoted(v.node_id), v.wall_ms);
}

}  // namespace

std::string ErrorJson(int status, std::string_view code, std::string_view message) {
  return fmt::format("{{\"error\":{{\"status\":{},\"code\":{},\"message\":{}}}}}\n", status, Quoted(code),
                     Quoted(message));
}

std::string ReadyJson(const broker::NodeView& v) {
  if (v.not_ready.empty()) return fmt::format("{{\"ready\":true,{}}}\n", Head(v));
  return fmt::format("{{\"ready\":false,\"reason\":{},{}}}\n", Quoted(v.not_ready), Head(v));
}

std::string ClusterJson(const broker::NodeView& v) {
  std::string out = "{" + Head(v) + ",\"nodes\":[";
  bool first = true;
  for (const cluster::NodeInfo& n : v.nodes) {
    const int64_t age = v.wall_ms - n.heartbeat_ms;
    const bool alive = age < std::max<int64_t>(n.lease_ms, 1);
    out += fmt::format(
        "{}{{\"id\":{},\"address\":{},\"mqtt_address\":{},\"alive\":{},\"drained\":{},"
        "\"heartbeat_age_ms\":{},\"lease_ms\":{},\"streams\":{},\"sessions\":{},\"publish_rate\":{},"
        "\"mqtt_connections\":{}}}",
        first ? "" : ",", Quoted(n.id), Quoted(n.address), n.mqtt_address.empty() ? "null" : Quoted(n.mqtt_address),
        alive, v.drained.count(n.id) > 0, age, n.lease_ms, n.streams, n.sessions, n.publish_rate, n.mqtt_connections);
    first = false;
  }
  out += "],\"streams\":[";
  first = true;
  for (const broker::StreamView& s : v.streams) {
    out += fmt::format("{}{{\"name\":{},\"owner\":{},\"epoch\":{},\"expires_in_ms\":{}}}", first ? "" : ",",
                       Quoted(s.name), Quoted(s.owner), s.epoch,
                       s.expires_in_ms ? std::to_string(*s.expires_in_ms) : std::string("null"));
    first = false;
  }
  out += "]}\n";
  return out;
}

std::string StreamsJson(const broker::NodeView& v) {
  std::string out = "{" + Head(v) + ",\"streams\":[";
  for (size_t i = 0; i < v.streams.size(); ++i) out += (i ? "," : "") + OneStreamJson(v.streams[i]);
  out += "]}\n";
  return out;
}

std::optional<std::string> StreamJson(const broker::NodeView& v, std::string_view name) {
  for (const broker::StreamView& s : v.streams)
    if (s.name == name) return OneStreamJson(s) + "\n";
  return std::nullopt;
}

std::string SessionsJson(const broker::NodeView& v, const std::vector<broker::SessionRecord>& sessions) {
  std::string out = "{" + Head(v) + ",\"sessions\":[";
  for (size_t i = 0; i < sessions.size(); ++i) out += (i ? "," : "") + SessionJson(sessions[i]);
  out += "]}\n";
  return out;
}

std::string MetricsText(const broker::NodeView& v, const metrics::Registry& registry) {
  metrics::TextWriter w;
  const metrics::Labels none;
  // Node.
  w.Gauge("floe_node_ready", "1 while /readyz answers 200 (bank reachable, every stream it holds open)", none,
          v.not_ready.empty() ? 1 : 0);
  w.Gauge("floe_bank_up", "1 if the node's last reads of the bank succeeded", none, v.bank.ok() ? 1 : 0);
  w.Counter("floe_published_messages_total", "Messages acknowledged by this node (all streams)", none,
            v.stats.published);
  w.Counter("floe_bank_writer_commits_total", "Bank commits of the node's bank writer", none, v.stats.bank_commits);
  w.Counter("floe_bank_writer_records_total", "Records written by those commits", none, v.stats.bank_records);
  w.Gauge("floe_leases_held", "Stream leases this node holds", none, double(v.leases_held));
  w.Counter("floe_leases_lost_total", "Stream leases lost while held (taken over or lapsed), not given up", none,
            v.leases_lost);
  w.Counter("floe_takeovers_total", "Streams taken up after the node's first round (failover, drain, balance)", none,
            v.stats.takeovers);
  w.Gauge("floe_lease_renew_last_seconds", "Duration of the last lease renewal tick", none,
          double(v.renew.last_ms) / 1e3);
  w.Gauge("floe_lease_renew_max_seconds", "Duration of the slowest lease renewal tick since start", none,
          double(v.renew.max_ms) / 1e3);
  w.Gauge("floe_connections", "Client connections open on this node", {{"protocol", "floe"}},
          double(v.floe_connections));
  w.Gauge("floe_connections", "Client connections open on this node", {{"protocol", "mqtt"}},
          double(v.mqtt_connections));
  w.Gauge("floe_sessions", "Sessions attached on this node (both protocols)", none, double(v.sessions));
  if (v.mqtt_session_records)
    w.Gauge("floe_mqtt_sessions", "MQTT sessions recorded in the bank (cluster-wide)", none,
            double(*v.mqtt_session_records));
  if (v.mqtt_retained_messages)
    w.Gauge("floe_mqtt_retained_messages", "MQTT retained messages in the bank (cluster-wide)", none,
            double(*v.mqtt_retained_messages));
  size_t alive = 0;
  for (const cluster::NodeInfo& n : v.nodes) alive += v.wall_ms - n.heartbeat_ms < std::max<int64_t>(n.lease_ms, 1);
  w.Gauge("floe_cluster_nodes", "Nodes in the bank's node records, by liveness", {{"alive", "true"}}, double(alive));
  w.Gauge("floe_cluster_nodes", "Nodes in the bank's node records, by liveness", {{"alive", "false"}},
          double(v.nodes.size() - alive));
  // Streams served here: what `floe stream info` reports.
  for (const broker::StreamView& s : v.streams) {
    if (!s.served) continue;
    const metrics::Labels l{{"stream", s.name}};
    w.Gauge("floe_stream_frontier_seq", "Highest visible seq of the stream", l, double(s.log.frontier));
    w.Gauge("floe_stream_first_seq", "Lowest seq still held (retention moves it)", l, double(s.log.first_seq));
    w.Gauge("floe_stream_segment_bytes", "Bytes of the stream's segment files", l, double(s.log.bytes));
    w.Gauge("floe_stream_segments", "Segment files of the stream", l, double(s.log.segments));
    w.Gauge("floe_stream_in_doubt", "Appends assigned seqs but not yet resolved", l, double(s.log.in_doubt));
    w.Counter("floe_stream_holes_total", "Seqs resolved as holes since the stream was opened here", l, s.log.holes);
    w.Counter("floe_stream_group_commits_total", "Group commits written since the stream was opened here", l,
              s.log.groups_written);
    for (const broker::ConsumerView& c : s.consumers) {
      const metrics::Labels lc{{"stream", s.name}, {"consumer", c.name}};
      w.Gauge("floe_consumer_lag_messages", "Messages above the durable consumer's ack floor up to the frontier", lc,
              double(c.lag));
      w.Gauge("floe_consumer_lag_seconds", "Age of the durable consumer's oldest unacknowledged message", lc,
              c.lag_seconds);
      w.Gauge("floe_consumer_pending_messages", "Deliveries awaiting the consumer's answer", lc, double(c.pending));
      w.Gauge("floe_consumer_ack_floor_seq", "Every seq at or below it is acknowledged", lc, double(c.ack_floor));
    }
  }
  // The core's own counters and histograms (per stream, log, bank writer).
  registry.WriteTo(&w);
  return w.Finish();
}

}  // namespace floe::http
