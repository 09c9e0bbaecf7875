// `floe serve`: run a node.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "bank/bank.h"
#include "server/node.h"
#include "cli/commands.h"

namespace floe::cli {

void RegisterServeCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<server::NodeOptions>();
  auto* serve = app.add_subcommand("serve", "Run a floe node (embedded defaults: ./floe-data, 127.0.0.1:7650, SQLite bank). Several nodes sharing --data and --bank form a cluster (docs/cluster.md)");
  serve->add_option("--data", o->data_dir, "Data directory (streams and the SQLite bank)")->default_val("./floe-data");
  serve->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->default_val("127.0.0.1:7650");
  serve->add_option("--bank", o->bank,
                    "Information bank: sqlite:PATH (default sqlite:DATA/bank.db) or "
                    "etcd://HOST:PORT[,HOST:PORT…][/PREFIX/]");
  auto bank_prefix = std::make_shared<std::string>();
  serve->add_option("--bank-prefix", *bank_prefix, "Key prefix of floe's keys on etcd (default /floe/)");
  serve->add_option("--node-id", o->node_id, "This node's id")->default_val("node-1");
  serve->add_option("--io-threads", o->io_threads, "Network threads")->default_val(2)->check(CLI::Range(1, 64));
  serve->add_option("--max-connections", o->max_connections,
                    "Connections at most; past it a client gets TOO_MANY_CONNECTIONS at once")
      ->default_val(o->max_connections)
      ->check(CLI::Range(size_t{1}, server::kMaxMaxConnections));
  serve->add_option("--handshake-timeout-ms", o->handshake_timeout_ms,
                    "Close a connection that has not sent a whole HELLO this long after connecting")
      ->default_val(o->handshake_timeout_ms)
      ->check(CLI::Range(server::kMinHandshakeTimeoutMs, server::kMaxHandshakeTimeoutMs));
  serve->add_option("--frame-timeout-ms", o->frame_timeout_ms,
                    "Close a connection that sent part of a frame and then nothing for this long")
      ->default_val(o->frame_timeout_ms)
      ->check(CLI::Range(server::kMinFrameTimeoutMs, server::kMaxFrameTimeoutMs));
  serve->add_option("--idle-timeout-ms", o->idle_timeout_ms,
                    "Close a connection silent this long; the node sends PING at half of it, and any frame "
                    "(the PONG too) keeps it open")
      ->default_val(o->idle_timeout_ms)
      ->check(CLI::Range(server::kMinIdleTimeoutMs, server::kMaxIdleTimeoutMs));
  serve->add_option("--max-message-bytes", o->max_message_bytes, "Largest message payload the node accepts")
      ->default_val(o->max_message_bytes);
  serve->add_flag("--no-direct-io", [o](int64_t) { o->direct_io = false; }, "Write segments through the page cache");
  serve->add_option("--advertise", o->advertise,
                    "HOST:PORT other nodes send clients to (default: the listen address)");
  serve->add_option("--lease-ms", o->lease_ms,
                    "Stream lease period in ms: a dead node's streams move after about this long")
      ->default_val(o->lease_ms)
      ->check(CLI::Range(int64_t{30}, int64_t{600000}));
  serve->add_option("--session-ttl-ms", o->session_ttl_ms,
                    "Keep the bank record of a session that ended without GOODBYE this long")
      ->default_val(o->session_ttl_ms);
  serve->add_flag("--no-auto-balance", [o](int64_t) { o->auto_balance = false; },
                  "Move streams between nodes only when asked (floe cluster rebalance, floe node drain)");
  serve->add_option("--mqtt-listen", o->mqtt_listen,
                    "HOST:PORT for MQTT 5.0 and 3.1.1 clients ('' = off; port 0: any free port; docs/mqtt.md)")
      ->default_val(o->mqtt_listen);
  serve->add_option("--mqtt-stream", o->mqtt_stream,
                    "The stream MQTT messages are stored in (created on first use)")
      ->default_val(o->mqtt_stream);
  serve->callback([o, bank_prefix, exit_code] {
    if (!bank_prefix->empty()) {
      auto url = bank::WithEtcdPrefix(o->bank, *bank_prefix);
      if (!url) {
        fmt::print(stderr, "floe serve: --bank-prefix: {}\n", url.error().ToString());
        *exit_code = 2;
        return;
      }
      o->bank = *url;
    }
    auto node = server::Node::Start(*o);
    if (!node) {
      fmt::print(stderr, "floe serve: {}\n", node.error().ToString());
      *exit_code = 1;
      return;
    }
    (*node)->HandleSignals();
    if ((*node)->mqtt_port() != 0)
      fmt::print("floe: node {} MQTT on {}:{} (stream {})\n", o->node_id,
                 o->mqtt_listen.substr(0, o->mqtt_listen.rfind(':')), (*node)->mqtt_port(), o->mqtt_stream);
    // Tests and scripts wait for this line (after the MQTT one).
    fmt::print("floe: node {} listening on {}:{} (data {})\n", o->node_id,
               o->listen.substr(0, o->listen.rfind(':')), (*node)->port(), o->data_dir);
    std::fflush(stdout);
    const auto started = std::chrono::steady_clock::now();
    (*node)->Wait();
    const auto st = (*node)->stats();
    const double secs =
        std::max(1e-3, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    fmt::print("floe: node {} stopped: {} messages acknowledged; bank writer {} commits ({:.1f}/s), {} records; {} "
               "takeovers\n",
               o->node_id, st.published, st.bank_commits, double(st.bank_commits) / secs, st.bank_records,
               st.takeovers);
    *exit_code = 0;
  });
}

}  // namespace floe::cli
