// A second process for a test: the test binary itself, started afresh
// (fork + exec of /proc/self/exe) and filtered to the running test, with one
// environment variable set so the test body takes the child's branch.
// Nothing crosses but that variable and the file descriptors handed over:
// no threads, no client library state (gRPC cannot be used in a child forked
// while it runs).
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <string>

namespace floe::test {

// Starts the child; `fds` reach it as SpawnedFd(0), SpawnedFd(1)... Its
// standard output is discarded (its own test report); standard error is
// kept. Returns its pid, or -1.
pid_t SpawnSelf(const std::string& env_name, const std::string& env_value, std::initializer_list<int> fds);
inline int SpawnedFd(int i) { return 100 + i; }

}  // namespace floe::test
