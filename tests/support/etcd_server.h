// Test support: a real etcd server (Debian's etcd-server package, the
// `etcd` binary) on loopback, with a temporary data directory, started as a
// child process and stopped by PID. Single member by default; Cluster(n)
// starts n members forming one cluster.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.h"

namespace floe::test {

class EtcdServer {
 public:
  // Starts `members` etcd processes forming one cluster, each with a data
  // directory under a fresh temporary directory, and waits until every
  // member answers. The binary: $FLOE_ETCD or /usr/bin/etcd.
  static Result<std::unique_ptr<EtcdServer>> Start(int members = 1);
  ~EtcdServer();  // SIGKILLs what runs and removes the data

  // HOST:PORT of each member's client endpoint.
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  // "etcd://h1:p1,h2:p2/PREFIX/"
  std::string Url(const std::string& prefix) const;
  pid_t pid(int member) const { return pids_[member]; }
  void Kill(int member);                 // SIGKILL
  Status Restart(int member);            // after Kill, same data
  void Signal(int member, int signo);    // SIGSTOP / SIGCONT
  // The member that leads now, as the members answering say (Maintenance
  // Status); Unavailable if none answers or they name no leader.
  Result<int> Leader() const;

 private:
  EtcdServer() = default;
  Status Spawn(int member);
  std::string dir_;
  std::vector<std::string> names_, endpoints_, peers_;
  std::vector<pid_t> pids_;
  std::string initial_cluster_;
};

}  // namespace floe::test
