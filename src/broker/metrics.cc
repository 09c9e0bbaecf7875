#include "broker/metrics.h"

namespace floe::broker {

CoreMetrics::CoreMetrics(metrics::Registry* r)
    : registry(r),
      ack_latency(r->GetHistogram("floe_publish_ack_latency_seconds",
                                  "Time from a publish request reaching the core to its ACK (every message resolved, "
                                  "fdatasync included)",
                                  {}, metrics::LatencyBucketsNs(), 1e-9)),
      bank_commit(r->GetHistogram("floe_bank_commit_seconds",
                                  "Duration of one bank commit of the node's bank writer (cursors, sessions)", {},
                                  metrics::LatencyBucketsNs(), 1e-9)),
      bank_commit_failures(r->GetCounter("floe_bank_commit_failures_total",
                                         "Bank commits of the node's bank writer that failed (fencing refusals "
                                         "included)")),
      sessions_opened_floe(r->GetCounter("floe_sessions_opened_total", "Sessions opened or resumed on this node",
                                         {{"protocol", "floe"}})),
      sessions_opened_mqtt(r->GetCounter("floe_sessions_opened_total", "Sessions opened or resumed on this node",
                                         {{"protocol", "mqtt"}})),
      streams_closed(r->GetCounter("floe_streams_closed_total",
                                   "Streams this node stopped serving (lease lost, handed over, deleted)")) {
  log.fdatasync_ns = r->GetHistogram("floe_log_fdatasync_seconds", "Duration of one fdatasync of a group commit", {},
                                     metrics::LatencyBucketsNs(), 1e-9);
  log.group_messages = r->GetHistogram("floe_log_group_commit_messages",
                                       "Messages written by one group commit (one write and one fdatasync)", {},
                                       metrics::CountBuckets(), 1);
  log.group_bytes = r->GetCounter("floe_log_written_bytes_total", "Batch bytes written by group commits");
  log.write_errors = r->GetCounter("floe_log_write_errors_total",
                                   "Group commits whose write or fdatasync failed (their messages became holes)");
  log.sync_errors = r->GetCounter("floe_log_fdatasync_errors_total", "fdatasync calls of group commits that failed");
}

StreamCounters* CoreMetrics::ForStream(const std::string& stream) {
  MutexLock l(&mu_);
  auto& slot = streams_[stream];
  if (!slot) {
    const metrics::Labels labels{{"stream", stream}};
    slot = std::make_unique<StreamCounters>();
    slot->published_messages = registry->GetCounter("floe_stream_published_messages_total",
                                                    "Messages stored and acknowledged (not duplicates)", labels);
    slot->published_bytes = registry->GetCounter("floe_stream_published_bytes_total",
                                                 "Payload, key and header bytes of the messages published", labels);
    slot->delivered_messages = registry->GetCounter("floe_stream_delivered_messages_total",
                                                    "Messages delivered to consumers, redeliveries included", labels);
    slot->redelivered_messages = registry->GetCounter(
        "floe_stream_redelivered_messages_total", "Deliveries of a message delivered before (NAK, timeout)", labels);
    slot->dead_letters = registry->GetCounter("floe_stream_dead_letters_total",
                                              "Messages moved to the dead-letter stream after max deliveries", labels);
  }
  return slot.get();
}

std::map<std::string, StreamCounters> CoreMetrics::AllStreams() {
  MutexLock l(&mu_);
  std::map<std::string, StreamCounters> out;
  for (const auto& [name, c] : streams_) out.emplace(name, *c);
  return out;
}

}  // namespace floe::broker
