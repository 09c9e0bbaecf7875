#include "client/connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace floe::client {
namespace {

struct HostPort {
  std::string host;
  std::string port;
};

// "host:port" or "[v6addr]:port"; the port must be 1-65535.
Result<HostPort> SplitHostPort(std::string_view s) {
  HostPort hp;
  size_t colon;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return Err(Status::InvalidArgument(fmt::format("server '{}' is not [host]:port", s)));
    hp.host = std::string(s.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return Err(Status::InvalidArgument(fmt::format("server '{}' is not host:port", s)));
    hp.host = std::string(s.substr(0, colon));
  }
  std::string_view port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Err(Status::InvalidArgument(fmt::format("server '{}' has no valid port", s)));
  const int n = std::stoi(std::string(port));
  if (n < 1 || n > 65535) return Err(Status::InvalidArgument(fmt::format("server '{}': port out of range", s)));
  hp.port = std::string(port);
  return hp;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status SocketError(const std::string& server, const char* what, int err) {
  return Status::Unavailable(fmt::format("{}: {}: {}", server, what, std::strerror(err)));
}

// Milliseconds left until `deadline_ms` for poll(): -1 for no deadline.
int PollTimeout(int64_t deadline_ms) {
  if (deadline_ms < 0) return -1;
  return static_cast<int>(std::clamp<int64_t>(deadline_ms - internal::SteadyNowMs(), 0, INT32_MAX));
}

int64_t DeadlineAfter(int timeout_ms) { return timeout_ms < 0 ? -1 : internal::SteadyNowMs() + timeout_ms; }

// Connects a non-blocking socket to one address, polling in short slices so
// a cancel is noticed; returns the connected fd (blocking again) or -1.
int ConnectOne(const addrinfo* ai, int64_t deadline_ms, const internal::Canceller* cancel, int* err) {
  const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      *err = errno;
      close(fd);
      return -1;
    }
    for (;;) {
      if (cancel && cancel->cancelled()) {
        *err = ECANCELED;
        close(fd);
        return -1;
      }
      pollfd p{fd, POLLOUT, 0};
      const int r = poll(&p, 1, std::min(PollTimeout(deadline_ms), 100));
      if (r > 0) break;
      if (r < 0 && errno != EINTR) {
        *err = errno;
        close(fd);
        return -1;
      }
      if (r == 0 && internal::SteadyNowMs() >= deadline_ms) {
        *err = ETIMEDOUT;
        close(fd);
        return -1;
      }
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    if (so_error != 0) {
      *err = so_error;
      close(fd);
      return -1;
    }
  }
  // Blocking from here: reads wait in poll(), writes block for backpressure.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  return fd;
}

Result<int> Dial(const std::string& server, int timeout_ms, const internal::Canceller* cancel) {
  auto hp = SplitHostPort(server);
  if (!hp) return Err(hp.error());
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const int rc = getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &list);
  if (rc != 0) return Err(Status::Unavailable(fmt::format("{}: resolve: {}", server, gai_strerror(rc))));
  const int64_t deadline = internal::SteadyNowMs() + std::max(timeout_ms, 1);
  int err = ECONNREFUSED;
  int fd = -1;
  for (const addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) fd = ConnectOne(ai, deadline, cancel, &err);
  freeaddrinfo(list);
  if (fd < 0) return Err(SocketError(server, "connect", err));
  return fd;
}

}  // namespace

Result<std::vector<std::string>> ParseServers(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view entry = Trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;
    auto hp = SplitHostPort(entry);
    if (!hp) return Err(hp.error());
    out.emplace_back(entry);
  }
  if (out.empty()) return Err(Status::InvalidArgument("no server given (want HOST:PORT[,HOST:PORT…])"));
  return out;
}

namespace internal {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now().time_since_epoch()).count();
}

// --- Canceller ---------------------------------------------------------------

void Canceller::Cancel() {
  MutexLock lk(&mu_);
  cancelled_ = true;
  cv_.SignalAll();
}

bool Canceller::cancelled() const {
  MutexLock lk(&mu_);
  return cancelled_;
}

bool Canceller::SleepFor(int ms) {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(ms);
  MutexLock lk(&mu_);
  while (!cancelled_ && cv_.WaitUntil(&mu_, deadline)) {}
  return !cancelled_;
}

// --- Errors ------------------------------------------------------------------

Status ErrorToStatus(wire::WireError code, bool retriable, std::string_view text) {
  using wire::WireError;
  const std::string msg = text.empty() ? std::string(wire::WireErrorName(code))
                                       : fmt::format("{}: {}", wire::WireErrorName(code), text);
  if (retriable) return Status::Unavailable(msg);
  switch (code) {
    case WireError::kOk:
      return Status::Internal("error frame with code OK");
    case WireError::kUnknownStream:
    case WireError::kUnknownConsumer:
      return Status::NotFound(msg);
    case WireError::kStreamExists:
      return Status::AlreadyExists(msg);
    case WireError::kInvalidArgument:
    case WireError::kInvalidName:
    case WireError::kMessageTooLarge:
    case WireError::kFrameTooLarge:
      return Status::InvalidArgument(msg);
    case WireError::kOutOfRange:
    case WireError::kDuplicateTooOld:
      return Status::OutOfRange(msg);
    case WireError::kStreamReadOnly:
    case WireError::kNoSession:
    case WireError::kNotDelivered:
    case WireError::kUnsupportedVersion:
    case WireError::kNotAuthorized:  // do not retry: the user's permissions say no
    case WireError::kAuthFailed:
      return Status::FailedPrecondition(msg);
    default:
      // A code that is retriable by nature but was sent as final, or one that
      // says the client and node disagree about the protocol.
      return wire::IsRetriable(code) ? Status::Unavailable(msg) : Status::Internal(msg);
  }
}

Status ErrorFrameToStatus(std::span<const char> body) {
  auto e = wire::DecodeBodyAs<wire::Error>(body);
  if (!e) return Status::Internal(fmt::format("undecodable ERROR frame from node: {}", e.error().message()));
  return ErrorToStatus(e->code, e->retriable, e->message);
}

bool IsRetriableStatus(const Status& s) {
  return s.code() == ErrorCode::kUnavailable || s.code() == ErrorCode::kTimedOut;
}

// --- Connection --------------------------------------------------------------

Connection::Connection(int fd, std::string server)
    : fd_(fd), server_(std::move(server)), rbuf_(new char[64 << 10]), rcap_(64 << 10) {}

Connection::~Connection() { close(fd_); }

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& server, const ClientOptions& options,
                                                     const Canceller* cancel) {
  const int64_t start = SteadyNowMs();
  auto fd = Dial(server, options.connect_timeout_ms, cancel);
  if (!fd) return Err(fd.error());
  std::unique_ptr<Connection> conn(new Connection(*fd, server));
  // The handshake shares the connect budget, at least a second of it.
  const int left = static_cast<int>(std::max<int64_t>(options.connect_timeout_ms - (SteadyNowMs() - start), 1000));
  FLOE_RETURN_ERR_IF_ERROR(conn->Hello(options, left));
  return conn;
}

Status Connection::Hello(const ClientOptions& options, int timeout_ms) {
  wire::Hello hello;
  hello.client = options.client_name;
  hello.user = options.user;
  hello.password = options.password;
  auto ok = Call<wire::HelloOk>(hello, timeout_ms);
  if (!ok) return ok.error();
  if (ok->version < wire::kMinVersion || ok->version > wire::kMaxVersion)
    return Status::FailedPrecondition(fmt::format("{}: node chose protocol version {}", server_, ok->version));
  if (ok->max_frame_bytes < wire::kFrameHeaderSize + 64)
    return Status::Internal(fmt::format("{}: node's max frame of {} bytes is unusable", server_, ok->max_frame_bytes));
  max_frame_bytes_ = ok->max_frame_bytes;
  max_message_bytes_ = ok->max_message_bytes;
  node_ = std::string(ok->node);
  return Status::OK();
}

Status Connection::SendFrame(std::string_view frame) {
  MutexLock lk(&write_mu_);
  while (!frame.empty()) {
    const ssize_t n = ::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      return SocketError(server_, "send", errno);
    }
    frame.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

void Connection::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }
void Connection::ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

Status Connection::Waited(int64_t deadline_ms, const char* what) {
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, PollTimeout(deadline_ms));
    if (r > 0) return Status::OK();
    if (r == 0) return Status::TimedOut(fmt::format("{}: no {} from node in time", server_, what));
    if (errno != EINTR) return SocketError(server_, "poll", errno);
  }
}

Status Connection::Fill(size_t n, int64_t deadline_ms) {
  if (rstart_ + n > rcap_) {
    // Move the unread bytes to the front; grow when one frame needs more.
    const size_t have = rend_ - rstart_;
    if (n > rcap_) {
      std::unique_ptr<char[]> bigger(new char[n]);
      std::memcpy(bigger.get(), rbuf_.get() + rstart_, have);
      rbuf_ = std::move(bigger);
      rcap_ = n;
    } else {
      std::memmove(rbuf_.get(), rbuf_.get() + rstart_, have);
    }
    rstart_ = 0;
    rend_ = have;
  }
  while (rend_ - rstart_ < n) {
    FLOE_RETURN_IF_ERROR(Waited(deadline_ms, "reply"));
    const ssize_t got = ::recv(fd_, rbuf_.get() + rend_, rcap_ - rend_, 0);
    if (got == 0) return Status::Unavailable(fmt::format("{}: connection closed by node", server_));
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return SocketError(server_, "recv", errno);
    }
    rend_ += static_cast<size_t>(got);
  }
  return Status::OK();
}

Result<Frame> Connection::ReadFrame(int timeout_ms) {
  auto frame = ReadFrameOnce(timeout_ms);
  if (!frame) broken_ = true;
  return frame;
}

Result<Frame> Connection::ReadFrameOnce(int timeout_ms) {
  rstart_ += consumed_;
  consumed_ = 0;
  if (rstart_ == rend_) rstart_ = rend_ = 0;  // keep the buffer's front in use
  const int64_t deadline = DeadlineAfter(timeout_ms);
  FLOE_RETURN_ERR_IF_ERROR(Fill(wire::kFrameHeaderSize, deadline));
  // Frames from the node are bounded by its own limit (announced in
  // HELLO_OK), never below the protocol's default.
  const uint32_t limit = std::max(max_frame_bytes_, wire::kDefaultMaxFrameBytes);
  auto header = wire::DecodeFrameHeader({rbuf_.get() + rstart_, wire::kFrameHeaderSize}, limit);
  if (!header) return Err(header.error());
  const size_t total = 4 + size_t{header->length};
  FLOE_RETURN_ERR_IF_ERROR(Fill(total, deadline));
  consumed_ = total;
  return Frame{*header, {rbuf_.get() + rstart_ + wire::kFrameHeaderSize, header->body_size()}};
}

Result<std::span<const char>> Connection::AwaitReply(uint64_t request_id, wire::FrameType type, int timeout_ms) {
  const int64_t deadline = DeadlineAfter(timeout_ms);
  for (;;) {
    auto frame = ReadFrame(PollTimeout(deadline));
    if (!frame) return Err(frame.error());
    const wire::FrameHeader& h = frame->header;
    if (h.type == wire::FrameType::kPing) {
      FLOE_RETURN_ERR_IF_ERROR(Send(h.request_id, wire::Pong{}));
      continue;
    }
    if (h.type == wire::FrameType::kError && (h.request_id == request_id || h.request_id == 0)) {
      if (h.request_id == 0) broken_ = true;  // about the connection itself: the node closes it
      redirect_ = RedirectOf(frame->body);
      return Err(ErrorFrameToStatus(frame->body));
    }
    if (h.request_id != request_id) continue;  // a late reply to an abandoned request
    if (h.type != type)
      return Err(Status::Internal(fmt::format("{}: node answered {} with {}", server_, wire::FrameTypeName(type),
                                              wire::FrameTypeName(h.type))));
    return frame->body;
  }
}

// --- ReconnectPacer -----------------------------------------------------------

int ReconnectPacer::DelayMs() {
  constexpr int64_t kYoungMs = 1000;
  const int64_t now = SteadyNowMs();
  if (progressed_ || now - connected_at_steady_ms_ >= kYoungMs) {
    delay_ms_ = 0;
    failing_since_steady_ms_ = now;
  } else {
    const int lo = std::max(options_.reconnect_min_backoff_ms, 1);
    delay_ms_ = delay_ms_ == 0 ? lo : std::min(delay_ms_ * 2, std::max(options_.reconnect_max_backoff_ms, lo));
  }
  return delay_ms_;
}

// --- ConnectAny --------------------------------------------------------------

std::string RedirectOf(std::span<const char> error_body) {
  auto e = wire::DecodeBodyAs<wire::Error>(error_body);
  return e ? std::string(e->redirect) : std::string();
}

Result<std::unique_ptr<Connection>> ConnectAny(const ClientOptions& options, const OnConnect& on_connect,
                                               Canceller* cancel, size_t* next_server,
                                               int64_t give_up_at_steady_ms, Redirects* redirects) {
  if (options.servers.empty()) return Err(Status::InvalidArgument("no server to connect to"));
  const size_t n = options.servers.size();
  const int64_t give_up_at = give_up_at_steady_ms >= 0 ? give_up_at_steady_ms
                                                      : SteadyNowMs() + std::max(options.reconnect_give_up_ms, 0);
  int backoff = std::max(options.reconnect_min_backoff_ms, 1);
  Status last;
  // Each address tried and its last error, in the order first tried: the
  // final error names them all, so a user sees what was dialled.
  std::vector<std::pair<std::string, std::string>> tried_addresses;
  auto note = [&](const std::string& server, const Status& s) {
    std::string text(s.message());
    if (text.rfind(server, 0) != 0) text = fmt::format("{}: {}", server, text);
    for (auto& [address, error] : tried_addresses)
      if (address == server) return void(error = std::move(text));
    tried_addresses.emplace_back(server, std::move(text));
  };
  // Tries one address, following NOT_OWNER redirects from there.
  auto attempt = [&](std::string server) -> Result<std::unique_ptr<Connection>> {
    for (int hop = 0;; ++hop) {
      auto conn = Connection::Open(server, options, cancel);
      Status s = conn ? (on_connect ? on_connect(**conn) : Status::OK()) : conn.error();
      if (s.ok()) return std::move(*conn);
      if (!conn || (*conn)->redirect().empty() || (*conn)->redirect() == server || hop >= kMaxRedirectHops ||
          cancel->cancelled())
        return Err(s);
      server = (*conn)->redirect();
      if (redirects) ++redirects->followed;
    }
  };
  if (redirects && !redirects->hint.empty()) {
    std::string hint = std::move(redirects->hint);
    redirects->hint.clear();
    ++redirects->followed;
    auto conn = attempt(hint);
    if (conn) return conn;
    if (!IsRetriableStatus(conn.error())) return conn;
    last = conn.error();
    note(hint, last);
  }
  for (;;) {
    size_t full = 0;  // servers of this round that refused with TOO_MANY_CONNECTIONS
    for (size_t tried = 0; tried < n; ++tried) {
      if (cancel->cancelled()) return Err(Status::Aborted("client closed while connecting"));
      const size_t index = *next_server % n;
      auto conn = attempt(options.servers[index]);
      if (conn) {
        *next_server = index;
        return conn;
      }
      const Status& s = conn.error();
      if (!IsRetriableStatus(s)) return Err(s);
      last = s;
      note(options.servers[index], s);
      *next_server = index + 1;
      if (s.message().find(wire::WireErrorName(wire::WireError::kTooManyConnections)) != std::string_view::npos) ++full;
    }
    // Every server is at its connection limit: a first connection (a user
    // waits on it) hears so now rather than after a retry loop; a
    // reconnecting session keeps trying until it gives up.
    if (full == n && give_up_at_steady_ms < 0) {
      std::string where;
      for (const auto& [address, error] : tried_addresses) where += (where.empty() ? "" : "; ") + error;
      return Err(Status::Unavailable("every server is at its connection limit: " + where));
    }
    // Sleep out the backoff, or what is left before giving up (then one last
    // round), so --timeout is the time spent trying, not a second less.
    const int64_t left = give_up_at - SteadyNowMs();
    if (left <= 0) {
      std::string errors;
      for (const auto& [address, error] : tried_addresses) errors += fmt::format("{}{}", errors.empty() ? "" : "; ", error);
      return Err(Status::Unavailable(fmt::format("no usable connection for {} ms; tried {}: {}",
                                                 options.reconnect_give_up_ms,
                                                 n == 1 ? "the one server" : fmt::format("{} servers", n), errors)));
    }
    if (!cancel->SleepFor(static_cast<int>(std::min<int64_t>(backoff, left))))
      return Err(Status::Aborted("client closed while connecting"));
    backoff = std::min(backoff * 2, std::max(options.reconnect_max_backoff_ms, backoff));
  }
}

}  // namespace internal
}  // namespace floe::client
