#include "broker/blob.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include <fmt/format.h>

#include "base/coding.h"

namespace floe::broker {

namespace {

Status Errno(std::string_view what, const std::string& path) {
  return Status::IOError(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("opening", dir);
  const int r = ::fsync(fd);
  ::close(fd);
  return r == 0 ? Status::OK() : Errno("syncing", dir);
}

}  // namespace

std::string BlobPath(std::string_view stream, uint64_t session, uint64_t producer_seq) {
  return fmt::format("blobs/{}/{:016x}-{:016x}", stream, session, producer_seq);
}

bool IsBlobPath(std::string_view relative) {
  static const std::regex re("blobs/[A-Za-z0-9._-]+/[0-9a-f]{16}-[0-9a-f]{16}");
  return std::regex_match(relative.begin(), relative.end(), re) && relative.find("..") == std::string_view::npos;
}

std::string LargeRefHeaders(uint64_t size, std::string_view user_headers) {
  std::string h;
  const std::string value = std::to_string(size);
  PutFixed16(&h, static_cast<uint16_t>(kLargeHeader.size()));
  h.append(kLargeHeader);
  PutFixed32(&h, static_cast<uint32_t>(value.size()));
  h.append(value);
  h.append(user_headers);
  return h;
}

bool ParseLargeRef(std::string_view headers, uint64_t* size, std::string_view* user_headers) {
  const size_t name_end = 2 + kLargeHeader.size();
  if (headers.size() < name_end + 4 || DecodeFixed16(headers.data()) != kLargeHeader.size() ||
      headers.substr(2, kLargeHeader.size()) != kLargeHeader)
    return false;
  const uint32_t len = DecodeFixed32(headers.data() + name_end);
  if (len == 0 || len > 20 || headers.size() < name_end + 4 + len) return false;
  uint64_t v = 0;
  for (char c : headers.substr(name_end + 4, len)) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *size = v;
  *user_headers = headers.substr(name_end + 4 + len);
  return true;
}

Status WriteBlob(const std::string& path, uint64_t offset, std::string_view data) {
  const std::string dir = std::filesystem::path(path).parent_path();
  bool created = false;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IOError(fmt::format("creating {}: {}", dir, ec.message()));
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    created = true;
  }
  if (fd < 0) return Errno("opening", path);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("writing", path);
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    Status s = Errno("syncing", path);
    ::close(fd);
    return s;
  }
  ::close(fd);
  return created ? SyncDir(dir) : Status::OK();
}

Result<uint64_t> TruncateBlob(const std::string& path, uint64_t size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return uint64_t{0};
    return Err(Errno("reading", path));
  }
  if (static_cast<uint64_t>(st.st_size) <= size) return static_cast<uint64_t>(st.st_size);
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) return Err(Errno("truncating", path));
  return size;
}

Result<std::string> ReadBlob(const std::string& path, uint64_t offset, uint32_t max) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(errno == ENOENT ? Status::NotFound(fmt::format("no blob {}", path)) : Errno("opening", path));
  std::string out(max, '\0');
  size_t got = 0;
  while (got < max) {
    const ssize_t n = ::pread(fd, out.data() + got, max - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("reading", path);
      ::close(fd);
      return Err(s);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

void RemoveBlob(const std::string& path) { ::unlink(path.c_str()); }

}  // namespace floe::broker
