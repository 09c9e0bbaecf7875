// The file API. All of the log's file I/O goes through Env and File so tests
// can put a memory file system with fault injection underneath
// (tests/support/fault_env.h). Positional I/O only: the log knows the offset
// of everything it writes.
//
// Thread safety: an Env is safe to use from many threads. A File may be read
// (ReadAt) from many threads while one thread writes it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace floe {

// Alignment of offsets, lengths and buffers for direct I/O.
inline constexpr size_t kDirectIoAlignment = 4096;

class File {
 public:
  virtual ~File() = default;
  // Reads up to buf.size() bytes at offset; returns how many were read (short
  // only at end of file).
  virtual Result<size_t> ReadAt(uint64_t offset, std::span<char> buf) = 0;
  // Writes all of data at offset. A short write is an error: the bytes that
  // were written are unspecified.
  virtual Status WriteAt(uint64_t offset, std::span<const char> data) = 0;
  // fdatasync: every byte written before the call is durable when it returns OK.
  virtual Status Sync() = 0;
  virtual Status Truncate(uint64_t size) = 0;
  // Reserves [offset, offset+len) on disk; the file's size does not change.
  virtual Status Allocate(uint64_t offset, uint64_t len) = 0;
  virtual Result<uint64_t> Size() = 0;
  // True when writes bypass the page cache (O_DIRECT): they must then be
  // aligned to kDirectIoAlignment in offset, length and memory.
  virtual bool direct() const { return false; }
};

struct OpenOptions {
  bool create = false;     // create if missing
  bool exclusive = false;  // with create: fail if it exists
  bool writable = false;
  bool direct = false;     // ask for O_DIRECT; falls back to buffered when refused
};

// An exclusive advisory lock on a path, held until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;
  // The process-wide POSIX environment.
  static Env* Default();

  virtual Result<std::unique_ptr<File>> Open(const std::string& path, const OpenOptions& options) = 0;
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;  // names, no "." or ".."
  virtual Status CreateDir(const std::string& dir) = 0;  // with parents; OK if it exists
  virtual Status Remove(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Makes the directory's entries (created, removed, renamed files) durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Takes an exclusive lock (flock) on `path`, creating it; fails with
  // kUnavailable if another process or handle holds it.
  virtual Result<std::unique_ptr<FileLock>> Lock(const std::string& path) = 0;
  virtual uint64_t NowMicros() = 0;
};

}  // namespace floe
