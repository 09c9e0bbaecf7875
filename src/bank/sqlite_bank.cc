// SQLite backend of the bank: one table, WAL, synchronous=FULL.
//
//   kv(key BLOB PRIMARY KEY, value BLOB, version INTEGER)
//   meta(name TEXT PRIMARY KEY, value INTEGER)   -- 'version': last version issued
//
// Each Commit is one BEGIN IMMEDIATE transaction. Writers from several
// processes queue on SQLite's lock with a busy handler; an flock around each
// write transaction keeps that queue fair between processes (SQLite's own
// busy wait can starve one writer for seconds).
#include <sqlite3.h>
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bank/bank.h"
#include "base/mutex.h"

namespace floe::bank {
namespace {

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() { return stmt_; }
  explicit operator bool() const { return stmt_ != nullptr; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Any thread may call it (Bank's contract); calls take turns on mu_, as the
// one connection (opened SQLITE_OPEN_NOMUTEX) is used by one thread at a
// time. Init runs before the bank is shared.
class SqliteBank final : public Bank {
 public:
  ~SqliteBank() override {
    next_.reset();
    get_.reset();
    put_.reset();
    del_.reset();
    if (db_) sqlite3_close(db_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status Init(const std::string& path) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    path_ = path;
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      return Status::IOError(fmt::format("open bank {}: {}", path, db_ ? sqlite3_errmsg(db_) : "out of memory"));
    }
    sqlite3_busy_timeout(db_, 10000);
    lock_fd_ = ::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) return Status::FromErrno(errno, "open " + path + ".lock");
    FLOE_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    FLOE_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
    Flock guard(lock_fd_);
    FLOE_RETURN_IF_ERROR(Exec("CREATE TABLE IF NOT EXISTS kv(key BLOB PRIMARY KEY, value BLOB NOT NULL, "
                              "version INTEGER NOT NULL) WITHOUT ROWID"));
    FLOE_RETURN_IF_ERROR(Exec("CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL)"));
    FLOE_RETURN_IF_ERROR(Exec("INSERT OR IGNORE INTO meta(name, value) VALUES('version', 0)"));
    return Status::OK();
  }

  Result<Versioned> Get(std::string_view key) EXCLUDES(mu_) override {
    MutexLock l(&mu_);
    Stmt st(db_, "SELECT value, version FROM kv WHERE key = ?1");
    if (!st) return Err(Error("prepare get"));
    sqlite3_bind_blob(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    int rc = sqlite3_step(st.get());
    if (rc == SQLITE_DONE) return Err(Status::NotFound(fmt::format("bank key {} not found", key)));
    if (rc != SQLITE_ROW) return Err(Error("get"));
    Versioned v;
    v.value.assign(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                   static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
    v.version = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 1));
    return v;
  }

  Result<std::vector<KeyValue>> List(std::string_view prefix) EXCLUDES(mu_) override {
    MutexLock l(&mu_);
    // key >= prefix AND key < prefix-successor, using the primary key order.
    Stmt st(db_, "SELECT key, value, version FROM kv WHERE key >= ?1 ORDER BY key");
    if (!st) return Err(Error("prepare list"));
    sqlite3_bind_blob(st.get(), 1, prefix.data(), static_cast<int>(prefix.size()), SQLITE_STATIC);
    std::vector<KeyValue> out;
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      std::string key(static_cast<const char*>(sqlite3_column_blob(st.get(), 0)),
                      static_cast<size_t>(sqlite3_column_bytes(st.get(), 0)));
      if (key.compare(0, prefix.size(), prefix) != 0) break;
      KeyValue kv;
      kv.key = std::move(key);
      kv.value.assign(static_cast<const char*>(sqlite3_column_blob(st.get(), 1)),
                      static_cast<size_t>(sqlite3_column_bytes(st.get(), 1)));
      kv.version = static_cast<uint64_t>(sqlite3_column_int64(st.get(), 2));
      out.push_back(std::move(kv));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err(Error("list"));
    return out;
  }

  Result<std::vector<uint64_t>> Commit(std::span<const Op> ops) EXCLUDES(mu_) override {
    for (const Op& op : ops)
      if (op.kind == Op::Kind::kCheckCreated)
        return Err(Status::InvalidArgument("the SQLite bank keeps no creation versions (its leases are records)"));
    MutexLock l(&mu_);
    Flock guard(lock_fd_);
    FLOE_RETURN_ERR_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    auto result = CommitLocked(ops);
    if (!result) {
      (void)Exec("ROLLBACK");
      return result;
    }
    Status s = Exec("COMMIT");
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return Err(s);
    }
    return result;
  }

 private:
  // flock for fairness between processes (see the file comment).
  struct Flock {
    explicit Flock(int fd) : fd_(fd) { while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {} }
    ~Flock() { ::flock(fd_, LOCK_UN); }
    int fd_;
  };

  Result<std::vector<uint64_t>> CommitLocked(std::span<const Op> ops) REQUIRES(mu_) {
    // Prepared once per connection: preparing costs more than a small write.
    if (!next_) {
      next_ = std::make_unique<Stmt>(db_, "UPDATE meta SET value = value + 1 WHERE name = 'version' RETURNING value");
      get_ = std::make_unique<Stmt>(db_, "SELECT version FROM kv WHERE key = ?1");
      put_ = std::make_unique<Stmt>(db_, "INSERT INTO kv(key, value, version) VALUES(?1, ?2, ?3) "
                                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version");
      del_ = std::make_unique<Stmt>(db_, "DELETE FROM kv WHERE key = ?1");
      if (!*next_ || !*get_ || !*put_ || !*del_) {
        next_.reset();
        return Err(Error("prepare commit"));
      }
    }
    Stmt& next = *next_;
    Stmt& get = *get_;
    Stmt& put = *put_;
    Stmt& del = *del_;
    // Every return path resets the cached statements: one left mid-query
    // keeps a read snapshot open, and the next write transaction on this
    // connection would then fail with SQLITE_BUSY_SNAPSHOT.
    struct ResetAll {
      Stmt* s[4];
      ~ResetAll() {
        for (Stmt* x : s) {
          sqlite3_reset(x->get());
          sqlite3_clear_bindings(x->get());
        }
      }
    } reset_all{{&next, &get, &put, &del}};
    // Compares first, so a failed compare writes nothing.
    for (const Op& op : ops) {
      if (!op.expected_version) continue;
      sqlite3_reset(get.get());
      sqlite3_bind_blob(get.get(), 1, op.key.data(), static_cast<int>(op.key.size()), SQLITE_STATIC);
      int rc = sqlite3_step(get.get());
      uint64_t have = 0;
      if (rc == SQLITE_ROW) have = static_cast<uint64_t>(sqlite3_column_int64(get.get(), 0));
      else if (rc != SQLITE_DONE) return Err(Error("compare"));
      if (have != *op.expected_version)
        return Err(Status::Aborted(fmt::format("bank key {} has version {}, expected {}", op.key, have,
                                               *op.expected_version)));
    }
    std::vector<uint64_t> versions(ops.size(), 0);
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      if (op.kind == Op::Kind::kCheck) continue;
      if (op.kind == Op::Kind::kDelete) {
        sqlite3_reset(del.get());
        sqlite3_bind_blob(del.get(), 1, op.key.data(), static_cast<int>(op.key.size()), SQLITE_STATIC);
        if (sqlite3_step(del.get()) != SQLITE_DONE) return Err(Error("delete"));
        continue;
      }
      sqlite3_reset(next.get());
      if (sqlite3_step(next.get()) != SQLITE_ROW) return Err(Error("next version"));
      const int64_t version = sqlite3_column_int64(next.get(), 0);
      while (sqlite3_step(next.get()) == SQLITE_ROW) {}
      sqlite3_reset(put.get());
      sqlite3_bind_blob(put.get(), 1, op.key.data(), static_cast<int>(op.key.size()), SQLITE_STATIC);
      sqlite3_bind_blob(put.get(), 2, op.value.data(), static_cast<int>(op.value.size()), SQLITE_STATIC);
      sqlite3_bind_int64(put.get(), 3, version);
      if (sqlite3_step(put.get()) != SQLITE_DONE) return Err(Error("put"));
      versions[i] = static_cast<uint64_t>(version);
    }
    return versions;
  }

  Status Exec(const char* sql) REQUIRES(mu_) {
    char* err = nullptr;
    if (int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err); rc != SQLITE_OK) {
      std::string msg = fmt::format("bank {}: {}: {}", path_, sql, err ? err : "?");
      const int primary = rc & 0xFF;
      Status s = primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? Status::Unavailable(msg) : Status::IOError(msg);
      sqlite3_free(err);
      return s;
    }
    return Status::OK();
  }

  // sqlite3_errcode/errmsg describe the connection's last call: only
  // meaningful while the caller still holds the connection.
  Status Error(std::string_view what) REQUIRES(mu_) {
    const int code = sqlite3_errcode(db_);
    std::string msg = fmt::format("bank {}: {}: {}", path_, what, sqlite3_errmsg(db_));
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return Status::Unavailable(msg);
    if (code == SQLITE_FULL) return Status::NoSpace(msg);
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return Status::Corruption(msg);
    return Status::IOError(msg);
  }

  Mutex mu_;  // one connection, used by one thread at a time
  // Opened by Init, closed by the destructor.
  sqlite3* db_ GUARDED_BY(mu_) = nullptr;
  // Prepared once per connection (CommitLocked).
  std::unique_ptr<Stmt> next_ GUARDED_BY(mu_), get_ GUARDED_BY(mu_), put_ GUARDED_BY(mu_), del_ GUARDED_BY(mu_);
  int lock_fd_ GUARDED_BY(mu_) = -1;
  std::string path_ GUARDED_BY(mu_);
};

}  // namespace

Result<uint64_t> Bank::Put(std::string key, std::string value, std::optional<uint64_t> expected) {
  Op op = Op::Put(std::move(key), std::move(value), expected);
  auto r = Commit({&op, 1});
  if (!r) return Err(r.error());
  return (*r)[0];
}

Status Bank::Delete(std::string key, std::optional<uint64_t> expected) {
  Op op = Op::Delete(std::move(key), expected);
  auto r = Commit({&op, 1});
  return r ? Status::OK() : r.error();
}

Result<std::unique_ptr<Bank>> OpenSqliteBank(const std::string& path) {
  auto bank = std::make_unique<SqliteBank>();
  Status s = bank->Init(path);
  if (!s.ok()) return Err(s);
  return std::unique_ptr<Bank>(std::move(bank));
}

Result<std::string> WithEtcdPrefix(const std::string& url, const std::string& prefix) {
  if (!url.starts_with("etcd://"))
    return Err(Status::InvalidArgument(fmt::format("a bank prefix applies to etcd banks only, not '{}'", url)));
  if (prefix.empty() || prefix.front() != '/' || prefix.back() != '/')
    return Err(Status::InvalidArgument(fmt::format("bank prefix must start and end with '/': '{}'", prefix)));
  const size_t slash = url.find('/', 7);
  return (slash == std::string::npos ? url : url.substr(0, slash)) + prefix;
}

Result<std::unique_ptr<Bank>> OpenBank(const std::string& url) {
  std::string_view u = url;
  if (u.starts_with("sqlite:")) return OpenSqliteBank(std::string(u.substr(7)));
  if (u.starts_with("etcd://")) {
    // etcd://HOST:PORT[,HOST:PORT…][/PREFIX/]
    std::string_view rest = u.substr(7);
    const size_t slash = rest.find('/');
    std::string prefix = slash == std::string_view::npos ? "/floe/" : std::string(rest.substr(slash));
    if (prefix.back() != '/') prefix.push_back('/');
    std::vector<std::string> endpoints;
    std::string_view hosts = rest.substr(0, slash);
    while (!hosts.empty()) {
      const size_t comma = hosts.find(',');
      std::string_view h = hosts.substr(0, comma);
      if (h.find(':') == std::string_view::npos)
        return Err(Status::InvalidArgument(fmt::format("bank URL '{}': '{}' needs a port", url, h)));
      endpoints.emplace_back(h);
      hosts = comma == std::string_view::npos ? std::string_view() : hosts.substr(comma + 1);
    }
    return OpenEtcdBank(endpoints, prefix);
  }
  if (u.find("://") != std::string_view::npos)
    return Err(Status::InvalidArgument(
        fmt::format("unsupported bank URL '{}' (supported: sqlite:PATH, etcd://HOST:PORT[,…][/PREFIX/])", url)));
  return OpenSqliteBank(url);
}

}  // namespace floe::bank
