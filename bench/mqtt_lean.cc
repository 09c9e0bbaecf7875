// mqtt_lean: a QoS 1 MQTT publisher that costs its machine as little as it
// can, so that on a shared 2-core machine the broker, not the client, bounds
// the rate (bench/README.md "MQTT"). One connection, one thread: PUBLISH
// packets are encoded with floe's own MQTT codec (src/mqtt) into one buffer
// and written together; PUBACKs are read in whole buffers and matched by
// packet id. It respects the Receive Maximum the server announces. Any broker
// can be measured with it (floe, mosquitto): it speaks plain MQTT 5.0 or
// 3.1.1.
//
//   mqtt_lean [-H HOST] [-p PORT] [-V 5|311] [--messages N] [--size B] [--inflight K] [--topic T] [--json]
//
// Times the first PUBLISH to the last PUBACK; exits 1 on a failed PUBACK, a
// refused CONNACK, a lost connection or 30 s without progress.
#include <arpa/inet.h>
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
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "mqtt/codec.h"
#include "mqtt/frame.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace mq = floe::mqtt;

struct Args {
  std::string host = "127.0.0.1";
  int port = 1883;
  int version = 5;
  uint64_t messages = 200000;
  size_t size = 100;
  uint32_t inflight = 1000;
  std::string topic = "lean/bench";
  bool json = false;
};

int Fail(const std::string& why) {
  fmt::print(stderr, "mqtt_lean: {}\n", why);
  return 1;
}

int Connect(const Args& a) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(a.host.c_str(), std::to_string(a.port).c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* r = res; r != nullptr && fd < 0; r = r->ai_next) {
    fd = socket(r->ai_family, r->ai_socktype, r->ai_protocol);
    if (fd >= 0 && connect(fd, r->ai_addr, r->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

bool WriteAll(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

int Run(const Args& a) {
  const mq::Version version = a.version == 5 ? mq::Version::kV5 : mq::Version::kV311;
  const int fd = Connect(a);
  if (fd < 0) return Fail(fmt::format("cannot connect to {}:{}", a.host, a.port));
  const std::string client_id = fmt::format("lean-{}", getpid());
  mq::Connect c;
  c.version = version;
  c.client_id = client_id;
  c.keep_alive = 60;
  std::string out;
  if (auto s = mq::EncodePacket(c, {.version = version, .sender = mq::Sender::kClient}, &out); !s.ok())
    return Fail("CONNECT: " + s.ToString());
  if (!WriteAll(fd, out)) return Fail("writing CONNECT failed");
  out.clear();

  std::vector<char> in;
  in.reserve(1 << 20);
  const mq::DecodeOptions dopt{.version = version, .sender = mq::Sender::kServer};
  // Reads until one whole packet is buffered at the front of `in`; returns its size.
  auto next_packet = [&](bool block) -> int64_t {
    for (;;) {
      auto f = mq::SplitFrame({in.data(), in.size()}, mq::kMaxPacketSize);
      if (f.kind == mq::FrameResult::kPacket) return static_cast<int64_t>(f.size);
      if (f.kind != mq::FrameResult::kNeedMore) return -1;
      if (!block) return 0;
      char buf[1 << 16];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      in.insert(in.end(), buf, buf + n);
    }
  };
  const int64_t first = next_packet(true);
  if (first <= 0) return Fail("no CONNACK");
  auto connack = mq::DecodePacket({in.data(), static_cast<size_t>(first)}, dopt);
  if (!connack || !std::holds_alternative<mq::Connack>(*connack))
    return Fail("the first packet is no CONNACK");
  const auto& ack = std::get<mq::Connack>(*connack);
  if (ack.reason != mq::ReasonCode::kSuccess)
    return Fail(fmt::format("CONNACK refused: 0x{:02x}", static_cast<int>(ack.reason)));
  uint32_t window = a.inflight;
  if (ack.properties.receive_maximum) window = std::min<uint32_t>(window, *ack.properties.receive_maximum);
  in.erase(in.begin(), in.begin() + first);

  std::string payload(a.size, 'x');
  std::vector<Clock::time_point> sent_at(65536);
  std::vector<uint32_t> latencies_us;
  latencies_us.reserve(a.messages);
  uint64_t sent = 0, acked = 0;
  uint32_t inflight = 0;
  uint16_t next_id = 1;
  const auto start = Clock::now();
  auto last_progress = start;
  while (acked < a.messages) {
    // Fill the window, then write everything at once.
    while (sent < a.messages && inflight < window) {
      std::memcpy(payload.data(), &sent, std::min<size_t>(8, payload.size()));
      mq::Publish p;
      p.qos = 1;
      p.topic = a.topic;
      p.packet_id = next_id;
      p.payload = payload;
      if (auto s = mq::EncodePacket(p, {.version = version, .sender = mq::Sender::kClient}, &out); !s.ok())
        return Fail("PUBLISH: " + s.ToString());
      sent_at[next_id] = Clock::now();
      next_id = next_id == 65535 ? 1 : next_id + 1;
      ++sent;
      ++inflight;
    }
    if (!out.empty()) {
      if (!WriteAll(fd, out)) return Fail("connection lost while writing");
      out.clear();
    }
    // Everything buffered, then block for more only when nothing was there.
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, 30000) <= 0) return Fail(fmt::format("no PUBACK for 30 s ({} of {} acknowledged)", acked, a.messages));
    char buf[1 << 16];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return Fail("connection lost");
    in.insert(in.end(), buf, buf + n);
    size_t off = 0;
    const auto now = Clock::now();
    for (;;) {
      auto f = mq::SplitFrame({in.data() + off, in.size() - off}, mq::kMaxPacketSize);
      if (f.kind == mq::FrameResult::kNeedMore) break;
      if (f.kind != mq::FrameResult::kPacket) return Fail("malformed packet from the server");
      auto pk = mq::DecodePacket({in.data() + off, static_cast<size_t>(f.size)}, dopt);
      off += f.size;
      if (!pk) return Fail("undecodable packet from the server: " + pk.error().message);
      if (auto* pa = std::get_if<mq::Puback>(&*pk)) {
        if (static_cast<uint8_t>(pa->reason) >= 0x80)
          return Fail(fmt::format("PUBACK {} failed: 0x{:02x}", pa->packet_id, static_cast<int>(pa->reason)));
        latencies_us.push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - sent_at[pa->packet_id]).count()));
        ++acked;
        --inflight;
        last_progress = now;
      } else if (std::holds_alternative<mq::Disconnect>(*pk)) {
        return Fail("the server sent DISCONNECT");
      }
    }
    in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(off));
    if (now - last_progress > std::chrono::seconds(30)) return Fail("no progress for 30 s");
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  mq::Disconnect d;
  out.clear();
  if (mq::EncodePacket(d, {.version = version, .sender = mq::Sender::kClient}, &out).ok()) (void)WriteAll(fd, out);
  close(fd);
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double q) { return latencies_us[std::min(latencies_us.size() - 1, size_t(q * latencies_us.size()))]; };
  const double rate = double(a.messages) / secs;
  if (a.json)
    fmt::print("{{\"messages\":{},\"size\":{},\"inflight\":{},\"window\":{},\"seconds\":{:.3f},\"msgs_per_s\":{:.0f},"
               "\"p50_us\":{},\"p99_us\":{}}}\n",
               a.messages, a.size, a.inflight, window, secs, rate, pct(0.5), pct(0.99));
  else
    fmt::print("publish QoS 1: {} msgs of {} B in {:.3f} s: {:.0f} msgs/s; PUBACK p50 {} us, p99 {} us (window {})\n",
               a.messages, a.size, secs, rate, pct(0.5), pct(0.99), window);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"mqtt_lean: a lean QoS 1 MQTT publisher (one connection, one thread, floe's MQTT codec)"};
  app.add_option("-H,--host", a.host, "Broker host")->default_val(a.host);
  app.add_option("-p,--port", a.port, "Broker port")->check(CLI::Range(1, 65535))->default_val(a.port);
  app.add_option("-V,--mqtt-version", a.version, "5 or 311")->check(CLI::IsMember({5, 311}))->default_val(5);
  app.add_option("--messages", a.messages, "Messages to publish (1 to 10^8)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}))
      ->default_val(a.messages);
  app.add_option("--size", a.size, "Payload bytes (8 to 1 MiB)")->check(CLI::Range(size_t{8}, size_t{1} << 20))->default_val(a.size);
  app.add_option("--inflight", a.inflight, "Unacknowledged PUBLISHes at most (1 to 65535)")
      ->check(CLI::Range(uint32_t{1}, uint32_t{65535}))
      ->default_val(a.inflight);
  app.add_option("--topic", a.topic, "Topic")->default_val(a.topic);
  app.add_flag("--json", a.json, "One JSON object");
  CLI11_PARSE(app, argc, argv);
  return Run(a);
}
