// Helpers shared by the end-to-end tests (e2e_test.cc, cluster_e2e_test.cc):
// status assertions, self-describing payloads, publish outcome logs, stream
// audits, and raw wire connections. Test-only; each test binary includes it
// once, so its definitions live in an unnamed namespace.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/env.h"
#include "client/client.h"
#include "log/batch.h"
#include "log/segment.h"
#include "support/node_process.h"
#include "wire/protocol.h"


namespace floe {
namespace {

using client::ReceivedMessage;
using test::NodeConfig;
using test::NodeProcess;
using test::RunCommand;
using test::TempDir;
using Clock = std::chrono::steady_clock;

// Status checks; both take extra context: ASSERT_OK(s) << "while doing x".
#define FLOE_STATUS_CHECK(expr, fail)                                            \
  switch (0)                                                                     \
  case 0:                                                                        \
  default:                                                                       \
    if (const ::floe::Status _st = (expr); _st.ok()) {                           \
    } else                                                                       \
      fail() << #expr << " -> " << _st.ToString() << " "
#define ASSERT_OK(expr) FLOE_STATUS_CHECK(expr, FAIL)
#define EXPECT_OK(expr) FLOE_STATUS_CHECK(expr, ADD_FAILURE)
#define FLOE_CONCAT_INNER(a, b) a##b
#define FLOE_CONCAT(a, b) FLOE_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) ASSERT_OK_AND_ASSIGN_IMPL(FLOE_CONCAT(_res_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                        \
  auto tmp = (expr);                                                      \
  ASSERT_TRUE(tmp.has_value()) << #expr << " -> " << tmp.error().ToString(); \
  lhs = std::move(*tmp)

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// --- Payloads that name themselves ------------------------------------------------

// "p<producer>:<index>:" then filler derived from both, 10 to 209 bytes of
// it, so a payload can be checked byte for byte from its own prefix.
std::string MakePayload(int producer, uint64_t index) {
  std::string p = fmt::format("p{}:{}:", producer, index);
  const size_t fill = 10 + (index * 7919 + producer * 31) % 200;
  for (size_t k = 0; k < fill; ++k) p.push_back(static_cast<char>('a' + (index + k + producer) % 26));
  return p;
}

// Parses and verifies a MakePayload payload.
bool ParsePayload(const std::string& payload, int* producer, uint64_t* index) {
  unsigned p = 0;
  unsigned long long i = 0;
  if (std::sscanf(payload.c_str(), "p%u:%llu:", &p, &i) != 2) return false;
  *producer = static_cast<int>(p);
  *index = i;
  return payload == MakePayload(*producer, *index);
}

// Headers in the wire/log encoding: u16 name length, name, u32 value
// length, value.
std::string EncodeHeader(std::string_view name, std::string_view value) {
  std::string h;
  PutFixed16(&h, static_cast<uint16_t>(name.size()));
  h.append(name);
  PutFixed32(&h, static_cast<uint32_t>(value.size()));
  h.append(value);
  return h;
}

// --- Collecting publish outcomes ----------------------------------------------------

// The outcomes of one producer's messages, by producer seq.
class AckLog {
 public:
  client::AckCallback Callback() {
    return [this](const client::PublishOutcome& o) {
      std::lock_guard l(mu_);
      if (o.status.ok()) {
        ++ok_;
        if (o.duplicate) ++duplicates_;
        if (!outcomes_.emplace(o.producer_seq, o).second) ++repeated_;
      } else {
        ++failed_;
        if (errors_.size() < 10) errors_.push_back(fmt::format("producer seq {}: {}", o.producer_seq, o.status.ToString()));
        failures_.emplace(o.producer_seq, o);
      }
      cv_.notify_all();
    };
  }
  // Waits until at least n messages were acknowledged OK (false on timeout).
  bool WaitForOk(size_t n, int timeout_ms) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return ok_ >= n; });
  }
  std::map<uint64_t, client::PublishOutcome> Outcomes() {
    std::lock_guard l(mu_);
    return outcomes_;
  }
  std::map<uint64_t, client::PublishOutcome> Failures() {
    std::lock_guard l(mu_);
    return failures_;
  }
  size_t ok() {
    std::lock_guard l(mu_);
    return ok_;
  }
  size_t failed() {
    std::lock_guard l(mu_);
    return failed_;
  }
  size_t duplicates() {
    std::lock_guard l(mu_);
    return duplicates_;
  }
  size_t repeated() {  // a callback run twice for one producer seq
    std::lock_guard l(mu_);
    return repeated_;
  }
  std::string Errors() {
    std::lock_guard l(mu_);
    std::string s;
    for (const auto& e : errors_) s += e + "\n";
    return s;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t ok_ = 0, failed_ = 0, duplicates_ = 0, repeated_ = 0;
  std::map<uint64_t, client::PublishOutcome> outcomes_;
  std::map<uint64_t, client::PublishOutcome> failures_;
  std::vector<std::string> errors_;
};

// Pulls until `want` messages (gaps not counted) arrived or timeout_ms
// passed; ACKs each batch when `ack`. Every entry (gaps too) is returned in
// arrival order.
Result<std::vector<ReceivedMessage>> PullAll(client::Consumer& c, size_t want, bool ack, int timeout_ms = 30000,
                                             uint32_t batch = 200) {
  std::vector<ReceivedMessage> all;
  size_t messages = 0;
  const auto start = Clock::now();
  while (messages < want && MsSince(start) < timeout_ms) {
    auto got = c.Fetch(batch, 1 << 20, 500);
    if (!got) return Err(got.error());
    std::vector<uint64_t> seqs;
    for (auto& m : *got) {
      if (!m.gap) {
        ++messages;
        seqs.push_back(m.seq);
      }
      all.push_back(std::move(m));
    }
    if (ack && !seqs.empty()) FLOE_RETURN_ERR_IF_ERROR(c.Ack(seqs));
  }
  return all;
}

// Reads a whole stream with a fresh durable consumer: every entry from the
// first seq to the frontier, in order.
Result<std::vector<ReceivedMessage>> ReadStream(const client::ClientOptions& base, const std::string& stream,
                                                const std::string& consumer_name, uint64_t frontier) {
  client::ConsumerOptions co;
  static_cast<client::ClientOptions&>(co) = base;
  co.stream = stream;
  co.consumer = consumer_name;
  auto c = client::Consumer::Open(co);
  if (!c) return Err(c.error());
  std::vector<ReceivedMessage> all;
  uint64_t next = 1;
  const auto start = Clock::now();
  while (next <= frontier && MsSince(start) < 60000) {
    auto got = (*c)->Fetch(1000, 4 << 20, 500);
    if (!got) return Err(got.error());
    std::vector<uint64_t> seqs;
    for (auto& m : *got) {
      if (!m.gap) seqs.push_back(m.seq);
      next = m.gap ? m.seq + m.gap_count : m.seq + 1;
      all.push_back(std::move(m));
    }
    if (!seqs.empty()) FLOE_RETURN_ERR_IF_ERROR((*c)->Ack(seqs));
  }
  FLOE_RETURN_ERR_IF_ERROR((*c)->Close());
  return all;
}

// What a stream read in full holds: the seq of each (producer, index), and
// counts of messages, gaps, payloads stored twice and damaged payloads. Also
// checks (EXPECT) that the seqs are dense from 1 and in order.
struct AuditResult {
  std::map<std::pair<int, uint64_t>, uint64_t> seq_of;  // (producer, index) -> seq
  size_t messages = 0, gaps = 0, stored_twice = 0, bad_payloads = 0;
};

AuditResult Audit(const std::vector<ReceivedMessage>& entries) {
  AuditResult r;
  uint64_t next = 1;
  for (const auto& m : entries) {
    EXPECT_EQ(m.seq, next) << "the stream read is dense and in order";
    next = m.gap ? m.seq + m.gap_count : m.seq + 1;
    if (m.gap) {
      ++r.gaps;
      continue;
    }
    ++r.messages;
    int p;
    uint64_t i;
    if (!ParsePayload(m.payload, &p, &i)) {
      ++r.bad_payloads;
      continue;
    }
    if (!r.seq_of.emplace(std::make_pair(p, i), m.seq).second) ++r.stored_twice;
  }
  return r;
}

// Every message producer `p` got an ACK for is stored at the ACK's seq.
void ExpectAcked(const AuditResult& audit, int p, const std::map<uint64_t, client::PublishOutcome>& acked) {
  size_t missing = 0, moved = 0;
  for (const auto& [pseq, o] : acked) {
    auto it = audit.seq_of.find({p, pseq - 1});
    if (it == audit.seq_of.end()) {
      if (++missing <= 5) ADD_FAILURE() << "producer " << p << " index " << pseq - 1 << " ACKed at seq " << o.seq << " is gone";
    } else if (it->second != o.seq) {
      if (++moved <= 5)
        ADD_FAILURE() << "producer " << p << " index " << pseq - 1 << " ACKed at seq " << o.seq << " but stored at "
                      << it->second;
    }
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(moved, 0u);
}

// --- Raw wire connections ----------------------------------------------------------

struct RawFrame {
  uint8_t type = 0;
  uint64_t request_id = 0;
  std::string body;
};

std::string Frame(uint8_t type, uint64_t request_id, std::string_view body, uint8_t flags = 0,
                  uint16_t reserved = 0) {
  std::string f(wire::kFrameHeaderSize, '\0');
  EncodeFixed32(f.data(), static_cast<uint32_t>(12 + body.size()));
  f[4] = static_cast<char>(type);
  f[5] = static_cast<char>(flags);
  EncodeFixed16(f.data() + 6, reserved);
  EncodeFixed64(f.data() + 8, request_id);
  f.append(body);
  return f;
}

template <typename M>
std::string FrameOf(uint64_t request_id, const M& m) {
  std::string f;
  wire::AppendFrame(&f, request_id, m);
  return f;
}

std::string HelloFrame(uint64_t id = 1) { return FrameOf(id, wire::Hello{.client = "raw-test"}); }

// A blocking TCP connection that speaks frames by hand.
class RawConn {
 public:
  enum class Read { kFrame, kEof, kTimeout, kError };

  static std::unique_ptr<RawConn> Connect(uint16_t port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd);
      return nullptr;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return std::unique_ptr<RawConn>(new RawConn(fd));
  }
  ~RawConn() { close(fd_); }

  // False once the peer is gone (EPIPE, ECONNRESET).
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  Read ReadFrame(int timeout_ms, RawFrame* out) {
    const auto start = Clock::now();
    while (true) {
      if (buf_.size() >= 4) {
        const uint32_t len = DecodeFixed32(buf_.data());
        if (len < 12 || len > (64u << 20)) return Read::kError;  // the node never sends such a frame
        if (buf_.size() >= 4 + size_t{len}) {
          out->type = static_cast<uint8_t>(buf_[4]);
          out->request_id = DecodeFixed64(buf_.data() + 8);
          out->body = buf_.substr(16, len - 12);
          buf_.erase(0, 4 + size_t{len});
          return Read::kFrame;
        }
      }
      const int64_t left = timeout_ms - MsSince(start);
      if (left <= 0) return Read::kTimeout;
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return Read::kTimeout;
      char tmp[65536];
      const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n == 0) return buf_.empty() ? Read::kEof : Read::kError;
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == ECONNRESET ? Read::kEof : Read::kError;  // a reset is a close too
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  // Sends HELLO and expects HELLO_OK.
  bool Handshake() {
    if (!Send(HelloFrame(1))) return false;
    RawFrame f;
    return ReadFrame(5000, &f) == Read::kFrame && f.type == static_cast<uint8_t>(wire::FrameType::kHelloOk);
  }

  // Reads frames until the node closes; false if it is still open after
  // timeout_ms.
  bool ReadUntilClosed(int timeout_ms, std::vector<RawFrame>* frames) {
    const auto start = Clock::now();
    while (true) {
      RawFrame f;
      const int64_t left = timeout_ms - MsSince(start);
      if (left <= 0) return false;
      switch (ReadFrame(static_cast<int>(left), &f)) {
        case Read::kFrame:
          frames->push_back(std::move(f));
          break;
        case Read::kEof:
        case Read::kError:
          return true;
        case Read::kTimeout:
          return false;
      }
    }
  }

 private:
  explicit RawConn(int fd) : fd_(fd) {}
  int fd_;
  std::string buf_;
};

// The ERROR frame's code, or -1 if `f` is not a well-formed ERROR.
int ErrorCodeOf(const RawFrame& f) {
  if (f.type != static_cast<uint8_t>(wire::FrameType::kError)) return -1;
  auto e = wire::DecodeBodyAs<wire::Error>(std::span<const char>(f.body.data(), f.body.size()));
  if (!e) return -1;
  return static_cast<int>(e->code);
}

constexpr uint8_t T(wire::FrameType t) { return static_cast<uint8_t>(t); }
constexpr int C(wire::WireError e) { return static_cast<int>(e); }

}  // namespace
}  // namespace floe
