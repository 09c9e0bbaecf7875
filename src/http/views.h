// The node's HTTP views as text (server.cc serves them): /metrics in the
// Prometheus text format and the /api/v1 JSON. Pure functions of a
// broker::NodeView, so they are tested without a socket.
//
// JSON shapes (docs/operations.md "HTTP API"): /api/v1/cluster is `floe
// cluster status --json` plus "node" and "time_ms"; each stream object of
// /api/v1/streams is `floe stream info --json`'s (for streams served here)
// plus the lease and this node's counters, which only grow, so a page that
// polls differences them into rates ("time_ms" is when they were read);
// /api/v1/sessions' items are `floe session list --json`'s.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/observe.h"
#include "metrics/metrics.h"

namespace floe::http {

std::string MetricsText(const broker::NodeView& view, const metrics::Registry& registry);
std::string ClusterJson(const broker::NodeView& view);
std::string StreamsJson(const broker::NodeView& view);
// nullopt: no stream of that name in the bank.
std::optional<std::string> StreamJson(const broker::NodeView& view, std::string_view name);
std::string SessionsJson(const broker::NodeView& view, const std::vector<broker::SessionRecord>& sessions);
// {"ready":true} or {"ready":false,"reason":"…"}
std::string ReadyJson(const broker::NodeView& view);
// {"error":{"status":404,"code":"NOT_FOUND","message":"…"}}
std::string ErrorJson(int status, std::string_view code, std::string_view message);

}  // namespace floe::http
