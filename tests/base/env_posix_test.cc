// The POSIX Env on real files in a temporary directory: positional I/O, sync,
// size changes, directories, locks and the O_DIRECT fallback the log relies on.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/env.h"
#include "support/temp_dir.h"

namespace floe {
namespace {

using ::floe::test::TempDir;

class EnvPosixTest : public ::testing::Test {
 protected:
  std::unique_ptr<File> OpenOrDie(const std::string& path, const OpenOptions& o) {
    auto f = env_->Open(path, o);
    EXPECT_TRUE(f.has_value()) << f.error().ToString();
    return f ? std::move(*f) : nullptr;
  }
  std::string ReadAll(File* f) {
    auto size = f->Size();
    EXPECT_TRUE(size.has_value());
    std::string out(*size, '\0');
    auto n = f->ReadAt(0, out);
    EXPECT_TRUE(n.has_value());
    out.resize(*n);
    return out;
  }

  Env* env_ = Env::Default();
  TempDir dir_;
};

TEST_F(EnvPosixTest, DefaultIsASingleton) { EXPECT_EQ(Env::Default(), Env::Default()); }

TEST_F(EnvPosixTest, WriteAndReadAtOffsets) {
  const std::string path = dir_.path() + "/f";
  auto f = OpenOrDie(path, {.create = true, .writable = true});
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(f->direct());
  ASSERT_TRUE(f->WriteAt(0, std::string_view("hello world")).ok());
  ASSERT_TRUE(f->WriteAt(6, std::string_view("there")).ok());  // overwrite in place
  ASSERT_TRUE(f->WriteAt(20, std::string_view("end")).ok());   // past the end: a gap of zeros
  EXPECT_EQ(*f->Size(), 23u);

  std::string buf(5, '\0');
  auto n = f->ReadAt(6, buf);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 5u);
  EXPECT_EQ(buf, "there");
  EXPECT_EQ(ReadAll(f.get()), std::string("hello there") + std::string(9, '\0') + "end");

  // A read across the end is short, not an error; a read past it is empty.
  std::string tail(10, 'x');
  n = f->ReadAt(18, tail);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 5u);
  EXPECT_EQ(tail.substr(0, 5), std::string("\0\0end", 5));
  n = f->ReadAt(100, tail);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);
}

TEST_F(EnvPosixTest, DataSurvivesReopen) {
  const std::string path = dir_.path() + "/f";
  {
    auto f = OpenOrDie(path, {.create = true, .writable = true});
    ASSERT_TRUE(f->WriteAt(0, std::string_view("durable")).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  auto f = OpenOrDie(path, {});
  EXPECT_EQ(ReadAll(f.get()), "durable");
}

TEST_F(EnvPosixTest, ReadOnlyFileRefusesWrites) {
  const std::string path = dir_.path() + "/f";
  { OpenOrDie(path, {.create = true, .writable = true}); }
  auto f = OpenOrDie(path, {});
  Status s = f->WriteAt(0, std::string_view("x"));
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
}

TEST_F(EnvPosixTest, TruncateShrinksAndGrows) {
  const std::string path = dir_.path() + "/f";
  auto f = OpenOrDie(path, {.create = true, .writable = true});
  ASSERT_TRUE(f->WriteAt(0, std::string_view("0123456789")).ok());
  ASSERT_TRUE(f->Truncate(4).ok());
  EXPECT_EQ(*f->Size(), 4u);
  EXPECT_EQ(ReadAll(f.get()), "0123");
  ASSERT_TRUE(f->Truncate(8).ok());
  EXPECT_EQ(ReadAll(f.get()), std::string("0123") + std::string(4, '\0'));
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8);
}

TEST_F(EnvPosixTest, AllocateKeepsTheSize) {
  const std::string path = dir_.path() + "/f";
  auto f = OpenOrDie(path, {.create = true, .writable = true});
  ASSERT_TRUE(f->WriteAt(0, std::string_view("abc")).ok());
  ASSERT_TRUE(f->Allocate(0, 1 << 20).ok());
  EXPECT_EQ(*f->Size(), 3u);  // preallocation must not look like data to a scan
  EXPECT_EQ(ReadAll(f.get()), "abc");
}

TEST_F(EnvPosixTest, OpenMissingIsNotFound) {
  auto f = env_->Open(dir_.path() + "/missing", {});
  ASSERT_FALSE(f.has_value());
  EXPECT_TRUE(f.error().IsNotFound()) << f.error().ToString();
  auto w = env_->Open(dir_.path() + "/missing", {.writable = true});
  ASSERT_FALSE(w.has_value());
  EXPECT_TRUE(w.error().IsNotFound());
  auto nodir = env_->Open(dir_.path() + "/no/such/dir/f", {.create = true, .writable = true});
  ASSERT_FALSE(nodir.has_value());
  EXPECT_TRUE(nodir.error().IsNotFound());
}

TEST_F(EnvPosixTest, ExclusiveCreateFailsIfItExists) {
  const std::string path = dir_.path() + "/f";
  ASSERT_NE(OpenOrDie(path, {.create = true, .exclusive = true, .writable = true}), nullptr);
  auto again = env_->Open(path, {.create = true, .exclusive = true, .writable = true});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists) << again.error().ToString();
  // Without exclusive, create opens the existing file.
  EXPECT_NE(OpenOrDie(path, {.create = true, .writable = true}), nullptr);
}

TEST_F(EnvPosixTest, ListDirCreateDirRemoveRenameExists) {
  const std::string nested = dir_.path() + "/a/b/c";
  ASSERT_TRUE(env_->CreateDir(nested).ok());
  EXPECT_TRUE(env_->Exists(nested));
  EXPECT_TRUE(env_->CreateDir(nested).ok());  // existing: OK
  EXPECT_TRUE(env_->CreateDir(nested + "/").ok());

  auto empty = env_->ListDir(nested);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());  // no "." or ".."

  for (const char* name : {"x", "y", "z"}) OpenOrDie(nested + "/" + name, {.create = true, .writable = true});
  auto names = env_->ListDir(nested);
  ASSERT_TRUE(names.has_value());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"x", "y", "z"}));

  ASSERT_TRUE(env_->Rename(nested + "/x", nested + "/w").ok());
  EXPECT_FALSE(env_->Exists(nested + "/x"));
  EXPECT_TRUE(env_->Exists(nested + "/w"));
  ASSERT_TRUE(env_->Remove(nested + "/y").ok());
  EXPECT_FALSE(env_->Exists(nested + "/y"));
  EXPECT_FALSE(env_->Remove(nested + "/y").ok());
  EXPECT_FALSE(env_->Rename(nested + "/y", nested + "/v").ok());
  names = env_->ListDir(nested);
  ASSERT_TRUE(names.has_value());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"w", "z"}));
  EXPECT_TRUE(env_->SyncDir(nested).ok());

  auto missing = env_->ListDir(dir_.path() + "/nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_TRUE(missing.error().IsNotFound());
  EXPECT_FALSE(env_->SyncDir(dir_.path() + "/nope").ok());
}

TEST_F(EnvPosixTest, CreateDirUnderAFileFails) {
  OpenOrDie(dir_.path() + "/file", {.create = true, .writable = true});
  Status s = env_->CreateDir(dir_.path() + "/file/sub");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
}

TEST_F(EnvPosixTest, LockIsExclusiveUntilReleased) {
  const std::string path = dir_.path() + "/LOCK";
  auto first = env_->Lock(path);
  ASSERT_TRUE(first.has_value()) << first.error().ToString();
  EXPECT_TRUE(env_->Exists(path));
  // flock conflicts between two open files of one process too: a stream
  // opened twice in one process is refused like one opened by two processes.
  auto second = env_->Lock(path);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable) << second.error().ToString();
  first->reset();
  auto third = env_->Lock(path);
  ASSERT_TRUE(third.has_value()) << third.error().ToString();
  auto fourth = env_->Lock(path);
  EXPECT_FALSE(fourth.has_value());
}

TEST_F(EnvPosixTest, LocksOnDifferentPathsAreIndependent) {
  auto a = env_->Lock(dir_.path() + "/A");
  auto b = env_->Lock(dir_.path() + "/B");
  EXPECT_TRUE(a.has_value());
  EXPECT_TRUE(b.has_value());
  auto missing_dir = env_->Lock(dir_.path() + "/nope/LOCK");
  EXPECT_FALSE(missing_dir.has_value());
}

// Writes and reads back through a file opened with direct = true: aligned I/O
// if the file system took O_DIRECT, ordinary I/O if Open fell back.
void CheckDirectOpen(Env* env, const std::string& dir) {
  const std::string path = dir + "/direct";
  auto f = env->Open(path, {.create = true, .writable = true, .direct = true});
  ASSERT_TRUE(f.has_value()) << f.error().ToString();
  std::unique_ptr<char, decltype(&std::free)> buf(
      static_cast<char*>(std::aligned_alloc(kDirectIoAlignment, 2 * kDirectIoAlignment)), &std::free);
  for (size_t i = 0; i < 2 * kDirectIoAlignment; ++i) buf.get()[i] = static_cast<char>(i * 7);
  std::span<const char> data(buf.get(), 2 * kDirectIoAlignment);
  ASSERT_TRUE((*f)->WriteAt(kDirectIoAlignment, data).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  EXPECT_EQ(*(*f)->Size(), 3 * kDirectIoAlignment);
  // Read back through a buffered handle: what was written is on the file.
  auto r = env->Open(path, {});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE((*r)->direct());
  std::string back(2 * kDirectIoAlignment, '\0');
  auto n = (*r)->ReadAt(kDirectIoAlignment, back);
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, back.size());
  EXPECT_TRUE(back == std::string(data.data(), data.size()));
  std::string head(kDirectIoAlignment, 'x');
  n = (*r)->ReadAt(0, head);
  ASSERT_TRUE(n.has_value());
  EXPECT_TRUE(head == std::string(kDirectIoAlignment, '\0'));
}

TEST_F(EnvPosixTest, DirectOpenOnDisk) { CheckDirectOpen(env_, dir_.path()); }

TEST_F(EnvPosixTest, DirectOpenOnTmpfsWorksOrFallsBack) {
  // tmpfs refused O_DIRECT with EINVAL before Linux 6.6: Open must then fall
  // back to buffered I/O rather than fail.
  if (!env_->Exists("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  TempDir shm("/dev/shm");
  CheckDirectOpen(env_, shm.path());
}

TEST_F(EnvPosixTest, NowMicrosIsWallClock) {
  const uint64_t now = env_->NowMicros();
  EXPECT_GT(now, 1'600'000'000'000'000ull);  // after September 2020
  EXPECT_LT(now, 4'000'000'000'000'000ull);
}

}  // namespace
}  // namespace floe
