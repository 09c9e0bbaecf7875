// The information bank: the shared store of everything that must outlive one
// node process — stream definitions, consumer cursors, sessions, and (for
// clusters) leases with fencing epochs. One interface, several backends:
// SQLite (default; several processes on one host share one file) and etcd.
//
// Keys are byte strings ordered bytewise; floe's keys are '/'-separated paths
// (docs/bank.md). Every key has a version: 0 means absent; each write of a
// key gives it a new version, greater than any version the bank issued
// before (so versions also order writes).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace floe::bank {

struct Versioned {
  std::string value;
  uint64_t version = 0;
};

struct KeyValue {
  std::string key;
  std::string value;
  uint64_t version = 0;
};

// One operation of an atomic Commit.
struct Op {
  enum class Kind : uint8_t { kPut, kDelete, kCheck };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;                        // kPut
  std::optional<uint64_t> expected_version; // compare first: 0 = must be absent
  static Op Put(std::string key, std::string value, std::optional<uint64_t> expected = std::nullopt) {
    return {Kind::kPut, std::move(key), std::move(value), expected};
  }
  static Op Delete(std::string key, std::optional<uint64_t> expected = std::nullopt) {
    return {Kind::kDelete, std::move(key), {}, expected};
  }
  // Only compares (fails the commit unless the key has this version).
  static Op Check(std::string key, uint64_t expected) { return {Kind::kCheck, std::move(key), {}, expected}; }
};

class Bank {
 public:
  virtual ~Bank() = default;

  // NotFound if the key is absent.
  virtual Result<Versioned> Get(std::string_view key) = 0;
  // Every key starting with prefix, in key order.
  virtual Result<std::vector<KeyValue>> List(std::string_view prefix) = 0;
  // Applies every op atomically and durably, or none: Aborted if any
  // expected_version does not match (nothing written). Returns the new
  // version of each op's key (0 for deletes and checks).
  virtual Result<std::vector<uint64_t>> Commit(std::span<const Op> ops) = 0;

  // Conveniences over Commit.
  Result<uint64_t> Put(std::string key, std::string value, std::optional<uint64_t> expected = std::nullopt);
  Status Delete(std::string key, std::optional<uint64_t> expected = std::nullopt);
};

// Opens (creating if missing) a SQLite bank file. Several processes may open
// the same file. Durable: a Commit that returned OK survives kill -9 and power
// loss (WAL, synchronous=FULL).
Result<std::unique_ptr<Bank>> OpenSqliteBank(const std::string& path);

// Opens a bank from a URL: "sqlite:PATH" (or a bare path).
Result<std::unique_ptr<Bank>> OpenBank(const std::string& url);

}  // namespace floe::bank
