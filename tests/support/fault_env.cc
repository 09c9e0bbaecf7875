#include "support/fault_env.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

namespace floe::test {
namespace {

constexpr uint64_t kClean = UINT64_MAX;
constexpr size_t kPageSize = 4096;

std::string Parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Base(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "a//b/" -> "a/b": the env compares paths as strings.
std::string Normalize(std::string path) {
  std::string out;
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

bool Aligned(uint64_t v) { return v % kDirectIoAlignment == 0; }

bool AlignedIo(uint64_t offset, const void* buf, size_t len) {
  return Aligned(offset) && Aligned(len) && Aligned(reinterpret_cast<uintptr_t>(buf));
}

// First index where the two differ; the shorter size if one is a prefix of
// the other.
size_t FirstDifference(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return i;
  return n;
}

uint64_t Uniform(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}

// The bytes of one file after a crash, from its cached bytes `data` and its
// durable image `durable`.
std::string CrashImage(const std::string& data, const std::string& durable, CrashMode mode, std::mt19937_64& rng) {
  const size_t from = FirstDifference(data, durable);
  if (from >= data.size() || mode == CrashMode::kDropUnsynced) return durable;
  // Unsynced bytes: [from, data.size()).
  if (mode == CrashMode::kKeepPrefix) {
    const size_t keep = Uniform(rng, from, data.size());
    std::string out = data.substr(0, keep);
    if (durable.size() > keep) out.append(durable, keep);
    return out;
  }
  if (mode == CrashMode::kTearTail || mode == CrashMode::kZeroTail) {
    // A strict prefix survives, then 1.. bytes of damage, then whatever the
    // durable image had (usually nothing: logs append).
    const size_t keep = Uniform(rng, from, data.size() - 1);
    const size_t damaged = Uniform(rng, 1, data.size() - keep);
    std::string out = data.substr(0, keep + damaged);
    for (size_t i = keep; i < keep + damaged; ++i) {
      if (mode == CrashMode::kZeroTail) {
        out[i] = 0;
      } else {
        // Never what was written (the tear is always real) and never zero
        // (zeros past the last batch are a clean end, not a tear).
        const uint8_t written = static_cast<uint8_t>(out[i]);
        uint8_t garbage;
        do {
          garbage = static_cast<uint8_t>(Uniform(rng, 1, 255));
        } while (garbage == written);
        out[i] = static_cast<char>(garbage);
      }
    }
    if (durable.size() > out.size()) out.append(durable, out.size());
    return out;
  }
  // kSparsePages: each page holding unsynced bytes reaches the disk or not.
  std::string out = durable;
  for (size_t page = from / kPageSize * kPageSize; page < data.size(); page += kPageSize) {
    if (Uniform(rng, 0, 1) == 0) continue;
    const size_t begin = std::max(page, from);
    const size_t end = std::min(page + kPageSize, data.size());
    if (out.size() < end) out.resize(end, '\0');
    std::memcpy(out.data() + begin, data.data() + begin, end - begin);
  }
  return out;
}

}  // namespace

const char* CrashModeName(CrashMode mode) {
  switch (mode) {
    case CrashMode::kDropUnsynced: return "DropUnsynced";
    case CrashMode::kKeepPrefix: return "KeepPrefix";
    case CrashMode::kTearTail: return "TearTail";
    case CrashMode::kZeroTail: return "ZeroTail";
    case CrashMode::kSparsePages: return "SparsePages";
    case CrashMode::kRandom: return "Random";
  }
  return "?";
}

// ---------------------------------------------------------------------------

class FaultFile final : public File {
 public:
  FaultFile(FaultEnv* env, std::shared_ptr<FaultEnv::Node> node, std::string path, uint64_t epoch, bool writable,
            bool direct)
      : env_(env), node_(std::move(node)), path_(std::move(path)), epoch_(epoch), writable_(writable),
        direct_(direct) {}

  Result<size_t> ReadAt(uint64_t offset, std::span<char> buf) override {
    std::lock_guard l(env_->mu_);
    FLOE_RETURN_ERR_IF_ERROR(CheckLive("read"));
    FLOE_RETURN_ERR_IF_ERROR(CheckAligned("read", offset, buf.data(), buf.size()));
    const std::string& data = node_->data;
    if (offset >= data.size()) return size_t{0};
    const size_t n = std::min<uint64_t>(buf.size(), data.size() - offset);
    std::memcpy(buf.data(), data.data() + offset, n);
    return n;
  }

  Status WriteAt(uint64_t offset, std::span<const char> data) override {
    std::lock_guard l(env_->mu_);
    FLOE_RETURN_IF_ERROR(CheckLive("write"));
    if (!writable_) return Status::FromErrno(EBADF, "write " + path_);
    FLOE_RETURN_IF_ERROR(CheckAligned("write", offset, data.data(), data.size()));
    size_t len = data.size();
    int error = 0;
    env_->TakeWriteFault(path_, &len, &error);
    std::string& bytes = node_->data;
    if (len > 0) {
      if (bytes.size() < offset + len) bytes.resize(offset + len, '\0');
      std::memcpy(bytes.data() + offset, data.data(), len);
      node_->dirty_from = std::min(node_->dirty_from, offset);
      env_->bytes_written_ += len;
    }
    if (error != 0) return Status::FromErrno(error, "write " + path_ + " (injected)");
    return Status::OK();
  }

  Status Sync() override {
    std::unique_lock l(env_->mu_);
    if (env_->syncs_paused_) {
      ++env_->paused_syncs_;
      env_->pause_cv_.notify_all();
      env_->pause_cv_.wait(l, [&] { return !env_->syncs_paused_; });
      --env_->paused_syncs_;
    }
    ++env_->sync_calls_;
    if (Status s = CheckLive("fdatasync"); !s.ok()) {
      ++env_->failed_syncs_;
      return s;
    }
    if (env_->crash_at_sync_ > 0 && --env_->crash_at_sync_ == 0) {
      // The machine dies while this fdatasync is under way: nothing of it
      // is durable beyond what the crash mode lets through.
      env_->CrashLocked(env_->crash_at_sync_options_);
      ++env_->failed_syncs_;
      return Status::IOError("fdatasync " + path_ + ": the machine crashed");
    }
    int error = 0;
    if (env_->TakeSyncFault(&env_->sync_fault_, path_, &error)) {
      ++env_->failed_syncs_;
      // Linux marks the pages clean after reporting the error: a later Sync
      // will not write them again. (The new length, if any, still reaches the
      // disk with the next good Sync; the forgotten bytes then read as zeros
      // or as their old durable value.)
      if (env_->options_.forget_on_failed_sync) node_->dirty_from = kClean;
      return Status::FromErrno(error, "fdatasync " + path_ + " (injected)");
    }
    // The durable length becomes the cached one (it differs only after a
    // write past the end or a truncate since the last Sync); bytes past the
    // old durable end that are not dirty (forgotten by a failed Sync) read as
    // zeros, like a hole in the file.
    FaultEnv::Node& n = *node_;
    n.durable.resize(n.data.size(), '\0');
    if (n.dirty_from < n.data.size())
      std::memcpy(n.durable.data() + n.dirty_from, n.data.data() + n.dirty_from, n.data.size() - n.dirty_from);
    n.dirty_from = kClean;
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    std::lock_guard l(env_->mu_);
    FLOE_RETURN_IF_ERROR(CheckLive("truncate"));
    if (!writable_) return Status::FromErrno(EBADF, "truncate " + path_);
    // Growing zero-fills: those bytes are dirty too.
    node_->dirty_from = std::min<uint64_t>({node_->dirty_from, size, node_->data.size()});
    node_->data.resize(size, '\0');
    return Status::OK();
  }

  Status Allocate(uint64_t offset, uint64_t len) override {
    std::lock_guard l(env_->mu_);
    FLOE_RETURN_IF_ERROR(CheckLive("fallocate"));
    if (!writable_) return Status::FromErrno(EBADF, "fallocate " + path_);
    (void)offset;
    const WriteFault& f = env_->write_fault_;
    if (env_->write_fault_armed_ && f.sticky && f.error == ENOSPC &&
        path_.find(f.path_filter) != std::string::npos && len > env_->write_budget_) {
      return Status::FromErrno(ENOSPC, "fallocate " + path_ + " (injected)");
    }
    return Status::OK();
  }

  Result<uint64_t> Size() override {
    std::lock_guard l(env_->mu_);
    FLOE_RETURN_ERR_IF_ERROR(CheckLive("stat"));
    return static_cast<uint64_t>(node_->data.size());
  }

  bool direct() const override { return direct_; }

 private:
  // Requires env_->mu_.
  Status CheckLive(const char* op) const {
    if (epoch_ != env_->epoch_ || env_->down_)
      return Status::IOError(std::string(op) + " " + path_ + ": stale handle (the machine crashed)");
    return Status::OK();
  }

  // Requires env_->mu_.
  Status CheckAligned(const char* op, uint64_t offset, const void* buf, size_t len) const {
    if (!direct_ || AlignedIo(offset, buf, len)) return Status::OK();
    ++env_->alignment_violations_;
    return Status::FromErrno(EINVAL, std::string("unaligned direct ") + op + " of " + path_);
  }

  FaultEnv* const env_;
  const std::shared_ptr<FaultEnv::Node> node_;
  const std::string path_;
  const uint64_t epoch_;
  const bool writable_;
  const bool direct_;
};

class FaultLock final : public FileLock {
 public:
  FaultLock(FaultEnv* env, std::string path, uint64_t token) : env_(env), path_(std::move(path)), token_(token) {}
  ~FaultLock() override {
    std::lock_guard l(env_->mu_);
    // A crash released it (the holder died); it may be someone else's now.
    auto it = env_->locks_.find(path_);
    if (it != env_->locks_.end() && it->second == token_) env_->locks_.erase(it);
  }

 private:
  FaultEnv* const env_;
  const std::string path_;
  const uint64_t token_;
};

// ---------------------------------------------------------------------------

FaultEnv::FaultEnv(FaultEnvOptions options) : options_(options) { dirs_.insert("/"); }
FaultEnv::~FaultEnv() = default;

Status FaultEnv::CheckUp(const std::string& what) const {
  if (down_) return Status::IOError(what + ": the machine is down (crashed, not restarted)");
  return Status::OK();
}

bool FaultEnv::ParentExists(const std::string& path) const { return dirs_.count(Parent(path)) > 0; }

Result<std::unique_ptr<File>> FaultEnv::Open(const std::string& raw_path, const OpenOptions& options) {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  FLOE_RETURN_ERR_IF_ERROR(CheckUp("open " + path));
  if (dirs_.count(path)) return Err(Status::FromErrno(EISDIR, "open " + path));
  auto it = files_.find(path);
  if (it == files_.end()) {
    if (!options.create) return Err(Status::NotFound("open " + path + ": no such file"));
    if (!ParentExists(path)) return Err(Status::NotFound("open " + path + ": no such directory"));
    it = files_.emplace(path, std::make_shared<Node>()).first;
  } else if (options.create && options.exclusive) {
    return Err(Status::AlreadyExists("open " + path + ": exists"));
  }
  const bool direct = options.direct && options_.support_direct;
  return std::unique_ptr<File>(new FaultFile(this, it->second, path, epoch_, options.writable, direct));
}

Result<std::vector<std::string>> FaultEnv::ListDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard l(mu_);
  FLOE_RETURN_ERR_IF_ERROR(CheckUp("list " + dir));
  if (!dirs_.count(dir)) return Err(Status::NotFound("list " + dir + ": no such directory"));
  std::vector<std::string> names;
  for (const auto& [path, node] : files_)
    if (Parent(path) == dir) names.push_back(Base(path));
  for (const auto& d : dirs_)
    if (d != dir && Parent(d) == dir) names.push_back(Base(d));
  return names;
}

Status FaultEnv::CreateDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard l(mu_);
  FLOE_RETURN_IF_ERROR(CheckUp("mkdir " + dir));
  for (std::string d = dir; d != "/" && d != "." && !d.empty(); d = Parent(d)) {
    if (files_.count(d)) return Status::FromErrno(ENOTDIR, "mkdir " + d);
    dirs_.insert(d);
  }
  return Status::OK();
}

Status FaultEnv::Remove(const std::string& raw_path) {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  FLOE_RETURN_IF_ERROR(CheckUp("unlink " + path));
  if (files_.erase(path) == 0) return Status::FromErrno(ENOENT, "unlink " + path);
  return Status::OK();
}

Status FaultEnv::Rename(const std::string& raw_from, const std::string& raw_to) {
  const std::string from = Normalize(raw_from), to = Normalize(raw_to);
  std::lock_guard l(mu_);
  FLOE_RETURN_IF_ERROR(CheckUp("rename " + from));
  auto it = files_.find(from);
  if (it == files_.end()) return Status::FromErrno(ENOENT, "rename " + from);
  if (!ParentExists(to)) return Status::FromErrno(ENOENT, "rename " + from + " to " + to);
  auto node = it->second;
  files_.erase(it);
  files_[to] = std::move(node);
  return Status::OK();
}

Status FaultEnv::SyncDir(const std::string& raw_dir) {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard l(mu_);
  FLOE_RETURN_IF_ERROR(CheckUp("fsync dir " + dir));
  if (!dirs_.count(dir)) return Status::FromErrno(ENOENT, "open dir " + dir);
  int error = 0;
  if (TakeSyncFault(&dir_sync_fault_, dir, &error)) return Status::FromErrno(error, "fsync dir " + dir + " (injected)");
  // The directory's durable entries become exactly its live ones.
  std::erase_if(durable_files_, [&](const auto& e) { return Parent(e.first) == dir; });
  for (const auto& [path, node] : files_)
    if (Parent(path) == dir) durable_files_[path] = node;
  ++dir_syncs_;
  return Status::OK();
}

bool FaultEnv::Exists(const std::string& raw_path) {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  return !down_ && (files_.count(path) > 0 || dirs_.count(path) > 0);
}

Result<std::unique_ptr<FileLock>> FaultEnv::Lock(const std::string& raw_path) {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  FLOE_RETURN_ERR_IF_ERROR(CheckUp("lock " + path));
  if (!files_.count(path)) {
    // Like flock on a file opened with O_CREAT.
    if (!ParentExists(path)) return Err(Status::FromErrno(ENOENT, "open lock " + path));
    files_.emplace(path, std::make_shared<Node>());
  }
  if (locks_.count(path)) return Err(Status::Unavailable("lock " + path + ": held by another process"));
  const uint64_t token = next_lock_token_++;
  locks_[path] = token;
  return std::unique_ptr<FileLock>(new FaultLock(this, path, token));
}

uint64_t FaultEnv::NowMicros() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// ---------------------------------------------------------------------------

void FaultEnv::Crash(CrashOptions options) {
  std::lock_guard l(mu_);
  CrashLocked(options);
}

void FaultEnv::CrashLocked(const CrashOptions& options) {
  if (options.power_loss) LosePowerLocked(options);
  locks_.clear();  // the process holding them died
  ++epoch_;
  down_ = true;
  ++crashes_;
  crash_at_sync_ = 0;
  ClearFaultsLocked();  // faults belong to the hardware state before the crash
  crashed_cv_.notify_all();
}

void FaultEnv::LosePowerLocked(const CrashOptions& options) {
  std::mt19937_64 rng(options.seed);
  // Entries revert to the durable ones; each file (once, even if it has two
  // names) to its crash image.
  files_ = durable_files_;
  std::set<Node*> done;
  for (auto& [path, node] : files_) {
    if (!done.insert(node.get()).second) continue;
    CrashMode mode = options.mode;
    if (mode == CrashMode::kRandom) mode = static_cast<CrashMode>(Uniform(rng, 0, 3));
    std::string image = CrashImage(node->data, node->durable, mode, rng);
    node->data = image;
    node->durable = std::move(image);
    node->dirty_from = kClean;
  }
}

void FaultEnv::Restart() {
  std::lock_guard l(mu_);
  down_ = false;
}

bool FaultEnv::down() const {
  std::lock_guard l(mu_);
  return down_;
}

uint64_t FaultEnv::crashes() const {
  std::lock_guard l(mu_);
  return crashes_;
}

void FaultEnv::CrashAtSync(int nth, CrashOptions options) {
  std::lock_guard l(mu_);
  crash_at_sync_ = nth;
  crash_at_sync_options_ = options;
}

bool FaultEnv::WaitForCrashes(uint64_t count, uint64_t timeout_ms) {
  std::unique_lock l(mu_);
  return crashed_cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return crashes_ >= count; });
}

// ---------------------------------------------------------------------------

void FaultEnv::PauseSyncs() {
  std::lock_guard l(mu_);
  syncs_paused_ = true;
}

void FaultEnv::ResumeSyncs() {
  std::lock_guard l(mu_);
  syncs_paused_ = false;
  pause_cv_.notify_all();
}

void FaultEnv::WaitForPausedSyncs(int count) {
  std::unique_lock l(mu_);
  pause_cv_.wait(l, [&] { return paused_syncs_ >= count; });
}

bool FaultEnv::TakeSyncFault(SyncFault* fault, const std::string& path, int* error) {
  if (fault->count == 0 || path.find(fault->path_filter) == std::string::npos) return false;
  if (fault->skip > 0) {
    --fault->skip;
    return false;
  }
  if (fault->count > 0) --fault->count;
  *error = fault->error;
  return true;
}

void FaultEnv::TakeWriteFault(const std::string& path, size_t* len, int* error) {
  if (!write_fault_armed_ || path.find(write_fault_.path_filter) == std::string::npos) return;
  if (*len <= write_budget_) {
    write_budget_ -= *len;
    return;
  }
  *len = static_cast<size_t>(write_budget_);
  write_budget_ = 0;
  *error = write_fault_.error;
  if (!write_fault_.sticky) write_fault_armed_ = false;
}

void FaultEnv::FailSyncs(int count, int skip, int error, std::string path_filter) {
  std::lock_guard l(mu_);
  sync_fault_ = {count, skip, error, std::move(path_filter)};
}

void FaultEnv::FailDirSyncs(int count, int skip, int error) {
  std::lock_guard l(mu_);
  dir_sync_fault_ = {count, skip, error, ""};
}

void FaultEnv::InjectWriteFault(WriteFault fault) {
  std::lock_guard l(mu_);
  write_budget_ = fault.after_bytes;
  write_fault_ = std::move(fault);
  write_fault_armed_ = true;
}

void FaultEnv::ClearFaults() {
  std::lock_guard l(mu_);
  ClearFaultsLocked();
  crash_at_sync_ = 0;
}

void FaultEnv::ClearFaultsLocked() {
  sync_fault_ = {};
  dir_sync_fault_ = {};
  write_fault_armed_ = false;
  write_fault_ = {};
  write_budget_ = 0;
}

Status FaultEnv::FlipByte(const std::string& raw_path, uint64_t offset, uint8_t mask) {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return Status::NotFound("flip " + path + ": no such file");
  Node& n = *it->second;
  if (offset >= n.data.size() && offset >= n.durable.size())
    return Status::OutOfRange("flip " + path + ": offset past the end");
  if (offset < n.data.size()) n.data[offset] = static_cast<char>(n.data[offset] ^ mask);
  if (offset < n.durable.size()) n.durable[offset] = static_cast<char>(n.durable[offset] ^ mask);
  return Status::OK();
}

// ---------------------------------------------------------------------------

Result<std::string> FaultEnv::Contents(const std::string& raw_path) const {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return Err(Status::NotFound(path));
  return it->second->data;
}

Result<std::string> FaultEnv::DurableContents(const std::string& raw_path) const {
  const std::string path = Normalize(raw_path);
  std::lock_guard l(mu_);
  auto it = durable_files_.find(path);
  if (it == durable_files_.end()) return Err(Status::NotFound(path + " has no durable entry"));
  return it->second->durable;
}

std::vector<std::string> FaultEnv::Files(const std::string& raw_dir) const {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard l(mu_);
  std::vector<std::string> out;
  for (const auto& [path, node] : files_)
    if (Parent(path) == dir) out.push_back(path);
  return out;
}

std::vector<std::string> FaultEnv::DurableFiles(const std::string& raw_dir) const {
  const std::string dir = Normalize(raw_dir);
  std::lock_guard l(mu_);
  std::vector<std::string> out;
  for (const auto& [path, node] : durable_files_)
    if (Parent(path) == dir) out.push_back(path);
  return out;
}

uint64_t FaultEnv::sync_calls() const {
  std::lock_guard l(mu_);
  return sync_calls_;
}
uint64_t FaultEnv::failed_syncs() const {
  std::lock_guard l(mu_);
  return failed_syncs_;
}
uint64_t FaultEnv::dir_syncs() const {
  std::lock_guard l(mu_);
  return dir_syncs_;
}
uint64_t FaultEnv::bytes_written() const {
  std::lock_guard l(mu_);
  return bytes_written_;
}
uint64_t FaultEnv::alignment_violations() const {
  std::lock_guard l(mu_);
  return alignment_violations_;
}

}  // namespace floe::test
