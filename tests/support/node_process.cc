#include "support/node_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <algorithm>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <regex>

#include <fmt/format.h>

namespace floe::test {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// argv for execv, built before fork (nothing but async-signal-safe calls
// may run between fork and exec in a threaded process).
std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> v;
  for (auto& a : args) v.push_back(a.data());
  v.push_back(nullptr);
  return v;
}

// Binds a loopback socket with SO_REUSEADDR to a kernel-chosen port and
// keeps it (not listening). Returns the fd, or -1.
int ReservePort(uint16_t* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

std::string WaitStatusText(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("wait status {:#x}", status);
}

}  // namespace

// --- TempDir ---------------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
  std::string templ = fmt::format("/tmp/{}-XXXXXX", prefix);
  if (mkdtemp(templ.data()) == nullptr) {
    fmt::print(stderr, "mkdtemp({}): {}\n", templ, std::strerror(errno));
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  if (std::getenv("FLOE_KEEP_TEST_DIRS") != nullptr) {
    fmt::print(stderr, "keeping {}\n", path_);
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// --- RunCommand ------------------------------------------------------------------

CommandResult RunCommand(const std::vector<std::string>& argv_in, std::string_view input, int timeout_ms) {
  CommandResult result;
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv = Argv(args);
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.err = fmt::format("pipe: {}", std::strerror(errno));
    return result;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    result.err = fmt::format("fork: {}", std::strerror(errno));
    return result;
  }
  fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
  size_t written = 0;
  int in_fd = in[1];
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int out_fd = out[0], err_fd = err[0];
  const auto start = Clock::now();
  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0) {
    pollfd p[3];
    int n = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1;
    if (out_fd >= 0) p[idx_out = n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) p[idx_err = n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) p[idx_in = n++] = {in_fd, POLLOUT, 0};
    const int64_t left = timeout_ms - MsSince(start);
    if (left <= 0) {
      kill(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    const int r = poll(p, n, static_cast<int>(std::min<int64_t>(left, 100)));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    auto drain = [&](int idx, int* fd, std::string* to) {
      if (idx < 0 || !(p[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      const ssize_t got = read(*fd, buf, sizeof buf);
      if (got > 0) {
        to->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(*fd);
        *fd = -1;
      }
    };
    drain(idx_out, &out_fd, &result.out);
    drain(idx_err, &err_fd, &result.err);
    if (idx_in >= 0 && (p[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t w = write(in_fd, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) {
        close(in_fd);
        in_fd = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) result.exit_code = -WTERMSIG(status);
  return result;
}

// --- NodeProcess -----------------------------------------------------------------

NodeProcess::NodeProcess(NodeConfig config) : config_(std::move(config)) {
  if (config_.reserve_ports) {
    for (int i = 0; i < 3; ++i) reserved_fds_[i] = ReservePort(&reserved_ports_[i]);
  }
}

NodeProcess::~NodeProcess() {
  if (pid_ > 0) Kill();
  JoinReader();
  for (int fd : reserved_fds_)
    if (fd >= 0) close(fd);
}

std::string NodeProcess::address() const { return fmt::format("127.0.0.1:{}", port_); }

std::vector<std::string> NodeProcess::servers() const {
  std::vector<std::string> s;
  if (reserved_fds_[0] >= 0) s.push_back(fmt::format("127.0.0.1:{}", reserved_ports_[0]));
  if (reserved_fds_[1] >= 0) s.push_back(fmt::format("127.0.0.1:{}", reserved_ports_[1]));
  if (port_ != 0 && (s.empty() || (port_ != reserved_ports_[0] && port_ != reserved_ports_[1])))
    s.insert(s.begin(), address());
  return s;
}

std::string NodeProcess::output() const {
  std::lock_guard l(mu_);
  return output_;
}

Status NodeProcess::Start() {
  if (pid_ > 0) return Status::FailedPrecondition("node already running");
  if (config_.reserve_ports && reserved_fds_[0] >= 0) {
    // The primary port; the spare only if the primary cannot be bound.
    Status s = StartOn(reserved_ports_[0]);
    if (s.ok() || reserved_fds_[1] < 0 || s.code() != ErrorCode::kUnavailable) return s;
    fmt::print(stderr, "node_process: port {} refused ({}); trying the spare port {}\n", reserved_ports_[0],
               s.ToString(), reserved_ports_[1]);
    return StartOn(reserved_ports_[1]);
  }
  return StartOn(0);
}

// Unavailable when the node exited complaining that it could not listen.
Status NodeProcess::StartOn(uint16_t listen_port) {
  JoinReader();
  std::vector<std::string> args = {config_.binary, "serve", "--data", config_.data_dir, "--listen",
                                   fmt::format("127.0.0.1:{}", listen_port)};
  args.insert(args.end(), config_.extra_args.begin(), config_.extra_args.end());
  // MQTT on a port of its own (the third reserved one: the same across
  // restarts), never the default 1883 several nodes of a test would share.
  if (std::find(args.begin(), args.end(), "--mqtt-listen") == args.end()) {
    args.push_back("--mqtt-listen");
    args.push_back(fmt::format("127.0.0.1:{}", reserved_fds_[2] >= 0 ? reserved_ports_[2] : 0));
  }
  // HTTP on any free port, never the default 7680 several nodes would share.
  if (std::find(args.begin(), args.end(), "--http-listen") == args.end()) {
    args.push_back("--http-listen");
    args.push_back("127.0.0.1:0");
  }
  std::vector<char*> argv = Argv(args);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::IOError(fmt::format("pipe: {}", std::strerror(errno)));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Die with the test (a failed assertion must not leave nodes behind).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return Status::IOError(fmt::format("fork: {}", std::strerror(errno)));
  }
  pid_ = pid;
  ++starts_;
  {
    std::lock_guard l(mu_);
    run_start_ = output_.size();
    eof_ = false;
  }
  reader_ = std::thread([this, fd = fds[0]] { ReaderLoop(fd); });

  static const std::regex kListening(R"(listening on [^ ]*:(\d+) )");
  const auto deadline = Clock::now() + std::chrono::milliseconds(config_.start_timeout_ms);
  std::unique_lock l(mu_);
  while (true) {
    std::smatch m;
    const std::string run = output_.substr(run_start_);
    if (std::regex_search(run, m, kListening)) {
      port_ = static_cast<uint16_t>(std::stoi(m[1].str()));
      static const std::regex kMqtt(R"(MQTT on [^ ]*:(\d+) )");
      std::smatch mm;
      mqtt_port_ = std::regex_search(run, mm, kMqtt) ? static_cast<uint16_t>(std::stoi(mm[1].str())) : 0;
      if (listen_port != 0 && port_ != listen_port)
        return Status::Internal(fmt::format("node asked to listen on {} says {}", listen_port, port_));
      return Status::OK();
    }
    if (eof_ || Clock::now() >= deadline) {
      const bool eof = eof_;
      l.unlock();
      if (!eof) Kill();
      int status = 0;
      if (eof && pid_ > 0) {
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        Reap();
      }
      JoinReader();
      const std::string text = output().substr(run_start_);
      const bool bind_failed = text.find("listen on") != std::string::npos;
      const std::string msg = fmt::format("floe serve on port {} {}; output:\n{}", listen_port,
                                          eof ? "exited before listening (" + WaitStatusText(status) + ")"
                                              : "did not listen in time",
                                          text);
      return bind_failed ? Status::Unavailable(msg) : Status::Internal(msg);
    }
    cv_.wait_until(l, std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
  }
}

void NodeProcess::ReaderLoop(int fd) {
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard l(mu_);
    output_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard l(mu_);
  eof_ = true;
  cv_.notify_all();
}

void NodeProcess::JoinReader() {
  if (reader_.joinable()) reader_.join();
}

void NodeProcess::Reap() { pid_ = -1; }

bool NodeProcess::Alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    fmt::print(stderr, "node_process: node {} exited on its own: {}\n", pid_, WaitStatusText(status));
    Reap();
  }
  return false;
}

Result<int> NodeProcess::Stop(int timeout_ms) {
  if (pid_ <= 0) return Err(Status::FailedPrecondition("node not running"));
  const pid_t pid = pid_;
  kill(pid, SIGTERM);
  const auto start = Clock::now();
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return Err(Status::Internal(fmt::format("waitpid: {}", std::strerror(errno))));
    if (MsSince(start) > timeout_ms) {
      Kill();
      return Err(Status::TimedOut(fmt::format("node did not exit within {} ms of SIGTERM; killed", timeout_ms)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Reap();
  JoinReader();
  if (!WIFEXITED(status))
    return Err(Status::Internal(fmt::format("node ended by {} after SIGTERM", WaitStatusText(status))));
  return WEXITSTATUS(status);
}

void NodeProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  Reap();
  JoinReader();
}

}  // namespace floe::test
