// The SQLite bank: the conformance suite on a temporary file, then what is
// SQLite's own (URLs, files it cannot open, WAL mode).
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "bank/bank.h"
#include "bank/bank_conformance.h"

namespace floe::bank {
namespace {

using conformance::BankBackend;
using conformance::BankConformanceTest;

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/floe_bank_XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  return pattern;
}

BankBackend SqliteBackend() {
  return BankBackend{
      .name = "Sqlite",
      .new_location = [] { return MakeTempDir() + "/bank.db"; },
      .open = [](const std::string& path) { return OpenSqliteBank(path); },
      .destroy = [](const std::string& path) {
        std::error_code ec;
        std::filesystem::remove_all(std::filesystem::path(path).parent_path(), ec);
      },
  };
}

INSTANTIATE_TEST_SUITE_P(Sqlite, BankConformanceTest, ::testing::Values(SqliteBackend()), conformance::BackendName);

class SqliteBankTest : public ::testing::Test {
 protected:
  SqliteBankTest() : dir_(MakeTempDir()) {}
  ~SqliteBankTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(SqliteBankTest, OpenBankTakesASqliteUrlOrABarePath) {
  const std::string path = dir_ + "/b.db";
  {
    auto b = OpenBank("sqlite:" + path);
    ASSERT_TRUE(b) << b.error().ToString();
    ASSERT_TRUE((*b)->Put("k", "v"));
  }
  auto bare = OpenBank(path);
  ASSERT_TRUE(bare) << bare.error().ToString();
  auto got = (*bare)->Get("k");
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(got->value, "v");
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST_F(SqliteBankTest, OpenBankRejectsOtherSchemes) {
  for (const char* url : {"zookeeper://127.0.0.1:2181", "http://x/y", "file:///tmp/x"}) {
    auto b = OpenBank(url);
    ASSERT_FALSE(b) << url;
    EXPECT_EQ(b.error().code(), ErrorCode::kInvalidArgument) << url;
  }
}

TEST_F(SqliteBankTest, OpenInAMissingDirectoryFails) {
  auto b = OpenSqliteBank(dir_ + "/no/such/dir/bank.db");
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().code(), ErrorCode::kOk);
}

TEST_F(SqliteBankTest, OpenOfAFileThatIsNotABankFails) {
  const std::string path = dir_ + "/garbage.db";
  {
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 8192; ++i) f.put(static_cast<char>(i * 131 + 7));
  }
  auto b = OpenSqliteBank(path);
  EXPECT_FALSE(b) << "a garbage file opened as a bank";
}

TEST_F(SqliteBankTest, UsesWriteAheadLogging) {
  // bank.h: durable and shared between processes through WAL.
  const std::string path = dir_ + "/wal.db";
  auto b = OpenSqliteBank(path);
  ASSERT_TRUE(b) << b.error().ToString();
  ASSERT_TRUE((*b)->Put("k", "v"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

}  // namespace
}  // namespace floe::bank
