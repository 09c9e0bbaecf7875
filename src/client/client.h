// The floe C++ client: a producer with batching, pipelining and idempotent
// resend; a consumer with pull (fetch) and push (subscribe) and ACK/NAK; an
// admin handle. Producers and consumers reconnect on their own, trying the
// servers in turn, and resume their session by id (docs/protocol.md).
//
// Thread safety: Producer::Send/Flush may be called from several threads;
// ack callbacks run on the producer's receive thread (keep them short).
// A Consumer is used by one thread at a time (its push handler runs on the
// consumer's delivery thread, and may call Ack and friends).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "wire/protocol.h"

namespace floe::client {

struct ClientOptions {
  std::vector<std::string> servers = {"127.0.0.1:7650"};  // "host:port", tried in turn
  std::string client_name = "floe-client";
  // A node started with --auth needs a user (docs/security.md): sent in
  // HELLO (protocol version 2). Empty: anonymous (a version 1 HELLO).
  std::string user;
  std::string password;
  int connect_timeout_ms = 2000;
  // Reconnection: backoff doubles from min to max between attempts; give up
  // (operations fail with Unavailable) after this long without a connection.
  int reconnect_min_backoff_ms = 20;
  int reconnect_max_backoff_ms = 1000;
  int reconnect_give_up_ms = 30000;
};

// "h1:p1,h2:p2" -> {"h1:p1", "h2:p2"}; InvalidArgument if an entry lacks a port.
Result<std::vector<std::string>> ParseServers(std::string_view list);

struct StreamInfo {
  std::string name;
  wire::StreamConfig config;
  uint64_t first_seq = 0;
  uint64_t frontier = 0;
  uint64_t bytes = 0;
  struct Consumer {
    std::string name;
    uint64_t ack_floor = 0;
    uint64_t next_seq = 0;
    uint32_t pending = 0;
    uint64_t lag = 0;
  };
  std::vector<Consumer> consumers;
};

// Any thread: calls are serialised inside (one connection, one request at a
// time).
class Admin {
 public:
  static Result<std::unique_ptr<Admin>> Connect(const ClientOptions& options);
  virtual ~Admin() = default;
  virtual Status CreateStream(const std::string& name, const wire::StreamConfig& config) = 0;
  virtual Status DeleteStream(const std::string& name) = 0;
  virtual Result<std::vector<std::string>> ListStreams() = 0;
  virtual Result<StreamInfo> Info(const std::string& name) = 0;
};

struct PublishOutcome {
  Status status;              // OK: durable in the stream
  uint64_t producer_seq = 0;
  uint64_t seq = 0;           // the stream seq
  bool duplicate = false;     // a resend the node recognised: seq is the original
};
using AckCallback = std::function<void(const PublishOutcome&)>;

struct ProducerOptions : ClientOptions {
  std::string stream;
  uint64_t session_id = 0;          // 0: a new session
  size_t max_inflight = 1000;       // unacknowledged messages at most; Send blocks beyond
  uint32_t linger_us = 0;           // wait this long for more messages before sending a batch
  size_t max_batch_messages = 1000;
  size_t max_batch_bytes = 1 << 20;
};

// Send and Flush from any threads; Close once, from a thread that is not an
// ack callback. Callbacks run on the producer's receive thread (or, for a
// message that could not be sent, on the thread that found it out).
class Producer {
 public:
  static Result<std::unique_ptr<Producer>> Open(const ProducerOptions& options);
  virtual ~Producer() = default;
  // Queues one message (a copy is kept until it is acknowledged) and returns
  // its producer seq (1, 2, 3, … per session). `done` runs once, when the
  // node acknowledged it or it failed for good.
  virtual Result<uint64_t> Send(std::string_view payload, AckCallback done, std::string_view key = {},
                                std::string_view headers = {}) = 0;
  // Waits until every message sent so far is acknowledged or failed.
  virtual Status Flush() = 0;
  // Flushes, says goodbye, closes.
  virtual Status Close() = 0;
  virtual uint64_t session_id() const = 0;
  virtual uint64_t reconnects() const = 0;
  // NOT_OWNER redirects followed to reach the stream's owner node.
  virtual uint64_t redirects() const = 0;
};

struct ConsumerOptions : ClientOptions {
  std::string stream;
  std::string consumer;             // durable consumer name
  uint64_t session_id = 0;
  // Where the consumer starts if it does not exist yet (see wire::StartAt).
  wire::StartAt start_at = wire::StartAt::kFirst;
  uint64_t start_value = 0;
};

struct ReceivedMessage {
  uint64_t seq = 0;
  bool gap = false;                 // seqs [seq, seq+gap_count) are holes: no message
  uint64_t gap_count = 0;
  uint32_t delivery_count = 0;      // 1 on first delivery
  int64_t timestamp_us = 0;
  std::string key;
  std::string headers;
  std::string payload;
  // A large message (sent with PublishLarge): payload is empty; read its
  // large_size bytes with Consumer::ReadLarge, in pieces.
  uint64_t large_size = 0;
};

// One thread at a time; the push handler (on the delivery thread) may call
// Ack, Nak, InProgress, Terminate and Stop, but not Close.
class Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> Open(const ConsumerOptions& options);
  virtual ~Consumer() = default;
  // Pull: up to max_messages / max_bytes, waiting up to wait_ms for the first.
  virtual Result<std::vector<ReceivedMessage>> Fetch(uint32_t max_messages, uint32_t max_bytes, uint32_t wait_ms) = 0;
  // Answers; each returns once the node confirmed them persisted.
  virtual Status Ack(std::span<const uint64_t> seqs) = 0;
  virtual Status Nak(uint64_t seq, uint32_t delay_ms = 0) = 0;
  virtual Status InProgress(uint64_t seq) = 0;
  virtual Status Terminate(uint64_t seq) = 0;
  // Push: the node sends as credit allows; the handler runs on the delivery
  // thread; each handled entry gives one credit back. Stop() ends it.
  virtual Status Subscribe(uint32_t credit, std::function<void(const ReceivedMessage&)> handler) = 0;
  // Up to max_bytes of large message `seq` from `offset` (any consumer of
  // the stream may read it; it needs no delivery).
  virtual Result<std::string> ReadLarge(uint64_t seq, uint64_t offset, uint32_t max_bytes) = 0;
  virtual void Stop() = 0;
  virtual Status Close() = 0;
  virtual uint64_t session_id() const = 0;
  virtual uint64_t reconnects() const = 0;
  // NOT_OWNER redirects followed to reach the stream's owner node.
  virtual uint64_t redirects() const = 0;
};

// --- Large messages -------------------------------------------------------------
//
// A message bigger than a frame (up to the node's max_large_message_bytes, 4
// GiB by default) travels in chunks over a producer session of its own. Each
// chunk is durable on the node, and the bytes conveyed recorded in the bank,
// before its acknowledgement; after a disconnect or a node's death the
// transfer resumes at the first unacknowledged byte, on whichever node
// serves the stream then, without resending what was acknowledged. Neither
// side holds the whole message in memory: `read` supplies each chunk.

struct LargeMessageOptions : ClientOptions {
  std::string stream;
  uint64_t session_id = 0;          // 0: a new session; else resume that transfer
  uint64_t producer_seq = 1;        // the message's producer seq in its session
  uint32_t chunk_bytes = 4u << 20;  // clamped to what the node's frames allow
};

// Fills `out` with the message's bytes at `offset` (called once per chunk,
// again for a chunk that must be resent).
using ChunkReader = std::function<Status(uint64_t offset, std::span<char> out)>;

struct LargeMessageOutcome {
  uint64_t session_id = 0;
  uint64_t seq = 0;            // the stream seq
  bool duplicate = false;      // it was stored before (a resumed, finished transfer)
  uint64_t bytes_sent = 0;     // payload bytes put on the wire, resends included
  uint64_t resumed_from = 0;   // the node's durable bytes when this call began
  uint64_t reconnects = 0;
  uint64_t redirects = 0;
};

// Sends one large message and returns once it is stored (durable and
// visible in the stream). Reconnects and resumes on its own until
// options.reconnect_give_up_ms pass without progress.
Result<LargeMessageOutcome> PublishLarge(const LargeMessageOptions& options, uint64_t size, const ChunkReader& read,
                                         std::string_view key = {}, std::string_view headers = {});

}  // namespace floe::client
