// Test support for end-to-end tests: a real `floe serve` child process on
// loopback, subprocess runs of the `floe` CLI, and temporary directories.
//
// NodeProcess starts the binary with fork/exec, reads its stdout and stderr
// (one pipe, drained by a thread so the node never blocks on it), waits for
// the "floe: node … listening on HOST:PORT" line and parses the port. It can
// stop the node with SIGTERM (graceful, the caller checks the exit code),
// kill it with SIGKILL, and start it again on the same data directory.
//
// Ports. By default the helper reserves two loopback ports for its whole
// life: a socket bound to each with SO_REUSEADDR and never listening. Linux
// never hands a bound port out as the ephemeral port of an outgoing
// connection, and other processes cannot bind it, while the node (which
// also sets SO_REUSEADDR) can still bind and listen on it. So a restart gets
// the same port back, and clients given servers() (the primary port, then
// the spare one) reconnect by themselves. The spare is used only if the
// primary cannot be bound. With reserve_ports = false the node listens on
// port 0 and the port is whatever it printed.
//
// Not thread-safe: one test thread drives a NodeProcess (the output reader
// thread is internal).
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"

namespace floe::test {

// A fresh directory under /tmp (mkdtemp), removed with everything in it when
// destroyed (unless FLOE_KEEP_TEST_DIRS is set in the environment).
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "floe-e2e");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;      // the process's exit code; -N when killed by signal N
  bool timed_out = false;  // killed by RunCommand after timeout_ms
  std::string out;         // stdout
  std::string err;         // stderr
};

// Runs argv[0] (a path) with `input` on its stdin, collecting stdout and
// stderr; kills it with SIGKILL after timeout_ms.
CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view input = {},
                         int timeout_ms = 60000);

struct NodeConfig {
  std::string binary;                   // the floe binary
  std::string data_dir;                 // --data
  std::vector<std::string> extra_args;  // appended after `serve --data D --listen A`
  bool reserve_ports = true;            // see the file comment
  int start_timeout_ms = 30000;         // for the "listening on" line
};

class NodeProcess {
 public:
  explicit NodeProcess(NodeConfig config);
  ~NodeProcess();  // SIGKILLs a node still running
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  // Starts the node and waits until it listens. Fails (with its output in the
  // message) if it exits first or does not say it listens in time.
  Status Start();
  // SIGTERM, then waits up to timeout_ms for the process to exit. Returns its
  // exit code; an error if it died by a signal or had to be SIGKILLed.
  Result<int> Stop(int timeout_ms = 30000);
  // SIGKILL, and reaps it.
  void Kill();
  // Start() again on the same data directory (after Stop or Kill).
  Status Restart() { return Start(); }

  // True while the child has not exited (reaps it if it has).
  bool Alive();
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  // The MQTT port (node_process passes --mqtt-listen on a reserved port
  // unless extra_args names one); 0 when MQTT is off.
  uint16_t mqtt_port() const { return mqtt_port_; }
  // "127.0.0.1:PORT" of the running (or last) node.
  std::string address() const;
  // Every address the node may listen on across restarts: the primary port,
  // then the spare. Clients given this list follow the node over restarts.
  std::vector<std::string> servers() const;
  const NodeConfig& config() const { return config_; }
  // Everything the node wrote to stdout and stderr, across every start.
  std::string output() const;
  // How many times the node was started.
  int starts() const { return starts_; }

 private:
  Status StartOn(uint16_t listen_port);
  void Reap();  // the child was waited for
  void ReaderLoop(int fd);
  void JoinReader();

  const NodeConfig config_;
  int reserved_fds_[3] = {-1, -1, -1};  // the primary, the spare, MQTT
  uint16_t reserved_ports_[3] = {0, 0, 0};
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  uint16_t mqtt_port_ = 0;
  int starts_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;     // guarded by mu_
  size_t run_start_ = 0;   // where this run's output begins in output_
  bool eof_ = true;        // guarded by mu_: the current run's pipe is closed
  std::thread reader_;
};

}  // namespace floe::test
