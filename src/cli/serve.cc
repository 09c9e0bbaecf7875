// `floe serve`: run a node.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bank/bank.h"
#include "base/logging.h"
#include "client/client.h"
#include "server/node.h"
#include "cli/commands.h"
#include "cli/config_file.h"
#include "cli/options.h"
#include "model/limits.h"

namespace floe::cli {

void RegisterServeCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<server::NodeOptions>();
  auto* serve = app.add_subcommand("serve", "Run a floe node (embedded defaults: ./floe-data, 127.0.0.1:7650, SQLite bank). Several nodes sharing --data and --bank form a cluster (docs/cluster.md)");
  serve->add_option("--data", o->data_dir, "Data directory (streams and the SQLite bank)")->default_val("./floe-data");
  serve->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->default_val("127.0.0.1:7650")
      ->check(CLI::Validator(
          [](std::string& s) {
            Status v = ValidateListenAddress(s);
            return v.ok() ? std::string() : std::string(v.message());
          },
          ""));
  serve->add_option("--bank", o->bank,
                    "Information bank: sqlite:PATH (default sqlite:DATA/bank.db) or "
                    "etcd://HOST:PORT[,HOST:PORT…][/PREFIX/]");
  auto bank_prefix = std::make_shared<std::string>();
  serve->add_option("--bank-prefix", *bank_prefix, "Key prefix of floe's keys on etcd (default /floe/)");
  AddName(serve, "--node-id", &o->node_id, "node", "This node's id")->default_val("node-1");
  AddNumber(serve, "--io-threads", &o->io_threads, Kind::kInteger, Range{1, 64}, "Network threads (1 to 64)");
  AddNumber(serve, "--max-connections", &o->max_connections, Kind::kInteger, Range{1, server::kMaxMaxConnections},
            "Connections at most (1 to 10^6); past it a client gets TOO_MANY_CONNECTIONS at once");
  AddNumber(serve, "--handshake-timeout-ms", &o->handshake_timeout_ms, Kind::kDurationMs,
            Range{server::kMinHandshakeTimeoutMs, server::kMaxHandshakeTimeoutMs},
            "Close a connection that has not sent a whole HELLO this long after connecting (100 ms to 10 min)");
  AddNumber(serve, "--frame-timeout-ms", &o->frame_timeout_ms, Kind::kDurationMs,
            Range{server::kMinFrameTimeoutMs, server::kMaxFrameTimeoutMs},
            "Close a connection that sent part of a frame and then nothing for this long (100 ms to 10 min)");
  AddNumber(serve, "--idle-timeout-ms", &o->idle_timeout_ms, Kind::kDurationMs,
            Range{server::kMinIdleTimeoutMs, server::kMaxIdleTimeoutMs},
            "Close a connection silent this long (1 s to 1 day); the node sends PING at half of it, and any frame "
            "(the PONG too) keeps it open");
  AddNumber(serve, "--max-message-bytes", &o->max_message_bytes, Kind::kBytes, Range{1024, kMaxMessageBytesCeiling},
            "Largest message payload the node accepts (1 KiB to 16 MiB; larger bodies go as large messages)");
  serve->add_flag("--no-direct-io", [o](int64_t) { o->direct_io = false; }, "Write segments through the page cache");
  serve->add_option("--advertise", o->advertise, "HOST:PORT other nodes send clients to (default: the listen address)")
      ->check(CLI::Validator(
          [](std::string& s) {
            auto v = client::ParseServers(s);
            if (v && v->size() != 1) return std::string("one HOST:PORT");
            return v ? std::string() : std::string(v.error().message());
          },
          ""));
  AddNumber(serve, "--lease-ms", &o->lease_ms, Kind::kDurationMs, Range{30, 600000},
            "Stream lease period (30 ms to 10 min): a dead node's streams move after about this long");
  AddNumber(serve, "--session-ttl-ms", &o->session_ttl_ms, Kind::kDurationMs, Range{1000, 365ull * 24 * 3600 * 1000},
            "Keep the bank record of a session that ended without GOODBYE this long (1 s to 365 d)");
  serve->add_flag("--no-auto-balance", [o](int64_t) { o->auto_balance = false; },
                  "Move streams between nodes only when asked (floe cluster rebalance, floe node drain)");
  serve->add_option("--mqtt-listen", o->mqtt_listen,
                    "HOST:PORT for MQTT 5.0 and 3.1.1 clients ('' = off; port 0: any free port; docs/mqtt.md)")
      ->default_val(o->mqtt_listen);
  serve->add_option("--mqtt-stream", o->mqtt_stream,
                    "The stream MQTT messages are stored in (created on first use)")
      ->default_val(o->mqtt_stream);
  serve->add_option("--mqtt-advertise", o->mqtt_advertise,
                    "HOST:PORT other nodes relay or redirect MQTT clients to (default: the --mqtt-listen address "
                    "bound)")
      ->check(CLI::Validator(
          [](std::string& s) {
            auto v = client::ParseServers(s);
            if (v && v->size() != 1) return std::string("one HOST:PORT");
            return v ? std::string() : std::string(v.error().message());
          },
          ""));
  o->http_listen = "127.0.0.1:7680";
  serve->add_option("--http-listen", o->http_listen,
                    "HOST:PORT for /metrics (Prometheus), /healthz, /readyz and /api/v1 ('' = off; port 0: any free "
                    "port; docs/operations.md)")
      ->default_val(o->http_listen)
      ->check(CLI::Validator(
          [](std::string& s) {
            if (s.empty()) return std::string();
            Status v = ValidateListenAddress(s);
            return v.ok() ? std::string() : std::string(v.message());
          },
          ""));
  serve->add_flag("--mqtt-redirect", o->mqtt_redirect,
                  "A node not serving the MQTT stream answers CONNACK 0x9C with the serving node's address "
                  "(Server Reference) instead of relaying the client there");
  // Users and permissions (docs/security.md).
  serve->add_flag("--auth", o->auth,
                  "Clients log in as users of the bank (floe user add) and every request is checked against the "
                  "user's permissions (floe protocol HELLO, MQTT CONNECT)");
  serve->add_flag("--allow-anonymous", o->allow_anonymous,
                  "Run without --auth even on a listener that is not loopback (refused otherwise)");
  AddNumber(serve, "--auth-refresh-ms", &o->auth_refresh_ms, Kind::kDurationMs, Range{100, 600000},
            "With --auth: read the users again this often (100 ms to 10 min); a removed user or changed "
            "permission reaches open connections within about this long");
  auto log_level = std::make_shared<std::string>("info");
  auto log_format = std::make_shared<std::string>("text");
  serve->add_option("--log-level", *log_level, "Lowest level logged: debug, info, warn or error")
      ->default_val("info")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  serve->add_option("--log-format", *log_format,
                    "text (one line per event) or json (one JSON object per line, for log shippers); "
                    "docs/operations.md \"Logs\"")
      ->default_val("text")
      ->check(CLI::IsMember({"text", "json"}));
  // --config FILE (before or after `serve`): the file's keys are serve's
  // flags; the command line wins.
  app.set_config("--config", "",
                 "floe serve: read its options from this TOML file (keys are the flags without --; "
                 "docs/operations.md \"The config file\")");
  app.config_formatter(std::make_shared<TomlConfig>(serve));
  app.allow_config_extras(CLI::config_extras_mode::error);
  serve->fallthrough();
  serve->callback([o, bank_prefix, log_level, log_format, exit_code] {
    logging::Configure(*logging::ParseLevel(*log_level), *logging::ParseFormat(*log_format));
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
    // The ports are read before anything is printed: once the listening
    // line is out, a SIGTERM may close the listeners on the signal thread.
    const unsigned port = static_cast<unsigned>((*node)->port());
    const unsigned mqtt_port = static_cast<unsigned>((*node)->mqtt_port());
    const unsigned http_port = static_cast<unsigned>((*node)->http_port());
    (*node)->HandleSignals();
    if (mqtt_port != 0)
      fmt::print("floe: node {} MQTT on {}:{} (stream {})\n", o->node_id,
                 o->mqtt_listen.substr(0, o->mqtt_listen.rfind(':')), mqtt_port, o->mqtt_stream);
    // Tests and scripts wait for this line (after the MQTT one).
    fmt::print("floe: node {} listening on {}:{} (data {})\n", o->node_id,
               o->listen.substr(0, o->listen.rfind(':')), port, o->data_dir);
    // After it, so a reader of the listening line meets it as before; out
    // before READY=1 like the others.
    if (http_port != 0)
      fmt::print("floe: node {} HTTP on {}:{} (/metrics, /healthz, /readyz, /api/v1)\n", o->node_id,
                 o->http_listen.substr(0, o->http_listen.rfind(':')), http_port);
    std::fflush(stdout);
    // Under systemd (Type=notify, packaging/floe.service): ready once the
    // listeners are bound; a no-op without NOTIFY_SOCKET.
    (void)sd_notifyf(0, "READY=1\nSTATUS=node %s listening on port %u\nMAINPID=%lu", o->node_id.c_str(), port,
                     static_cast<unsigned long>(::getpid()));
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
