#include "support/etcd_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include <grpcpp/grpcpp.h>

#include "bank/bank.h"
#include "rpc.grpc.pb.h"

namespace floe::test {
namespace {

// A port nothing listens on now (bound, read, released).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return -1;
  }
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

}  // namespace

Result<std::unique_ptr<EtcdServer>> EtcdServer::Start(int members) {
  std::unique_ptr<EtcdServer> s(new EtcdServer());
  std::string pattern = std::filesystem::temp_directory_path().string() + "/floe-etcd-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) return Err(Status::IOError("mkdtemp"));
  s->dir_ = pattern;
  for (int i = 0; i < members; ++i) {
    s->names_.push_back(fmt::format("m{}", i));
    s->endpoints_.push_back(fmt::format("127.0.0.1:{}", FreePort()));
    s->peers_.push_back(fmt::format("127.0.0.1:{}", FreePort()));
    s->initial_cluster_ += fmt::format("{}{}=http://{}", i ? "," : "", s->names_[i], s->peers_[i]);
  }
  s->pids_.assign(members, -1);
  for (int i = 0; i < members; ++i) FLOE_RETURN_ERR_IF_ERROR(s->Spawn(i));
  // Ready when a bank on it answers (a quorum elected a leader).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  Status last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto bank = bank::OpenBank(s->Url("/ready/"));
    if (bank && (*bank)->Put("probe", "1")) return s;
    last = bank ? Status::Unavailable("put failed") : bank.error();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Err(Status::Unavailable("etcd did not come up: " + last.ToString()));
}

Status EtcdServer::Spawn(int i) {
  const char* bin = std::getenv("FLOE_ETCD");
  const std::string binary = bin ? bin : "/usr/bin/etcd";
  if (access(binary.c_str(), X_OK) != 0)
    return Status::NotFound(fmt::format("no etcd at {} (Debian package etcd-server)", binary));
  std::vector<std::string> args = {
      binary,
      "--name", names_[i],
      "--data-dir", fmt::format("{}/{}", dir_, names_[i]),
      "--listen-client-urls", "http://" + endpoints_[i],
      "--advertise-client-urls", "http://" + endpoints_[i],
      "--listen-peer-urls", "http://" + peers_[i],
      "--initial-advertise-peer-urls", "http://" + peers_[i],
      "--initial-cluster", initial_cluster_,
      "--initial-cluster-state", "new",
      "--log-level", "error",
  };
  const pid_t pid = fork();
  if (pid < 0) return Status::IOError("fork");
  if (pid == 0) {
    const std::string log = fmt::format("{}/{}.log", dir_, names_[i]);
    if (!freopen(log.c_str(), "a", stdout) || !freopen(log.c_str(), "a", stderr)) _exit(126);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pids_[i] = pid;
  return Status::OK();
}

std::string EtcdServer::Url(const std::string& prefix) const {
  std::string hosts;
  for (size_t i = 0; i < endpoints_.size(); ++i) hosts += (i ? "," : "") + endpoints_[i];
  return "etcd://" + hosts + prefix;
}

void EtcdServer::Kill(int i) {
  if (pids_[i] <= 0) return;
  kill(pids_[i], SIGCONT);
  kill(pids_[i], SIGKILL);
  waitpid(pids_[i], nullptr, 0);
  pids_[i] = -1;
}

Status EtcdServer::Restart(int i) {
  Kill(i);
  return Spawn(i);
}

void EtcdServer::Signal(int i, int signo) {
  if (pids_[i] > 0) kill(pids_[i], signo);
}

EtcdServer::~EtcdServer() {
  for (size_t i = 0; i < pids_.size(); ++i) Kill(static_cast<int>(i));
  if (!std::getenv("FLOE_KEEP_TEST_DIRS")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

}  // namespace floe::test

namespace floe::test {

namespace {

// A member's Maintenance Status, if it answers within 500 ms.
std::optional<etcdserverpb::StatusResponse> StatusOf(const std::string& endpoint) {
  auto stub = etcdserverpb::Maintenance::NewStub(grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  etcdserverpb::StatusResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  if (!stub->Status(&ctx, etcdserverpb::StatusRequest(), &resp).ok()) return std::nullopt;
  return resp;
}

}  // namespace

Result<int> EtcdServer::Leader() const {
  // A member names the leader by its id; each member says its own id.
  for (const std::string& e : endpoints_) {
    auto status = StatusOf(e);
    if (!status || status->leader() == 0) continue;
    for (size_t j = 0; j < endpoints_.size(); ++j) {
      auto other = StatusOf(endpoints_[j]);
      if (other && other->header().member_id() == status->leader()) return static_cast<int>(j);
    }
  }
  return Err(Status::Unavailable("no etcd member names a leader"));
}

}  // namespace floe::test
