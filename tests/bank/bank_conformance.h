// The bank conformance suite: what every Bank backend (SQLite now, etcd
// later) must do, written once as value-parameterized GoogleTests over a
// backend factory. A backend's test file instantiates it:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, conformance::BankConformanceTest,
//                            ::testing::Values(SqliteBackend()), conformance::BackendName);
//
// and links bank_conformance.cc (the floe_bank_conformance object library).
//
// The suite covers get/put/delete, compare-and-set by version (expected 0 =
// absent), atomic multi-op commits with check ops, prefix listing in bytewise
// key order, binary keys and values, durability across reopen and across a
// writer killed without closing, and lost-update freedom under contention
// from threads and from two processes.
#pragma once

#include <sys/types.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "bank/bank.h"

namespace floe::bank::conformance {

// How the suite makes banks of one backend.
struct BankBackend {
  std::string name;  // the test name suffix: letters, digits, '_'
  // A fresh, empty, private bank location (a file path, an etcd prefix...).
  // Called once per test, in the test process.
  std::function<std::string()> new_location;
  // Opens (creating if missing) the bank at `location`. Several handles may be
  // open on one location at once, in one process or in several; the suite
  // also calls it in forked children.
  std::function<Result<std::unique_ptr<Bank>>(const std::string& location)> open;
  // Removes what new_location made, after the test (may be empty).
  std::function<void(const std::string& location)> destroy;
  // Leases are records judged by the caller's clock (expiry can be tested by
  // passing a later now_ms; epochs count 1, 2, 3...). False for native
  // leases (etcd): expiry is the bank's, tested by the backend's own tests.
  bool clock_leases = true;
};

// The tests that need a second process run it as this test binary started
// afresh (fork + exec of /proc/self/exe), filtered to the running test, with
// the bank location in the environment: no client library state (gRPC's
// threads, SQLite's handles) crosses into the child. A test body takes the
// child's branch when InChild() is true; its pipes reach the child at
// ChildFd(0), ChildFd(1)...
inline constexpr const char* kChildLocationEnv = "FLOE_BANK_CONFORMANCE_CHILD";
bool InChild();
inline int ChildFd(int i) { return 100 + i; }  // = test::SpawnedFd(i)

inline void PrintTo(const BankBackend& b, std::ostream* os) { *os << b.name; }

inline std::string BackendName(const ::testing::TestParamInfo<BankBackend>& info) { return info.param.name; }

class BankConformanceTest : public ::testing::TestWithParam<BankBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A new handle on this test's location.
  std::unique_ptr<Bank> Open();
  // Closes the test's own handle and opens a new one.
  void Reopen();
  // Starts the child process of the running test (see InChild), handing it
  // `fds` as ChildFd(0), ChildFd(1)... Returns its pid, or -1.
  pid_t SpawnChild(std::initializer_list<int> fds);

  std::string location_;
  std::unique_ptr<Bank> bank_;
};

}  // namespace floe::bank::conformance
