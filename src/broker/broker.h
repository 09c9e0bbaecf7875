// The broker core: what a floe node *does*, in floe's own types and no wire
// format (DESIGN.md layer 5). Front ends (the floe protocol, MQTT) decode
// what a client sends, call the core, and map its Codes once at their edge.
//
//   Broker    one per node: the bank, the streams it serves (Registry), the
//             bank writer, the cluster membership, the sessions open here.
//   Session   one attached client session: publish, large transfers,
//             deliveries, answers. Created by Broker::OpenSession.
//   Peer      what a front end's connection offers the core: being told to
//             stop, to close, or that its stream moved.
//
// Threads. The core runs no I/O threads of its own. Calls that may block on
// the bank or on a disk (OpenSession, the stream admin calls, chunk writes
// and reads, dead-letter moves) run on the core's own pools and answer
// through a callback, so no front end's I/O thread ever waits for them.
// Callbacks run on a core thread (a pool, the bank writer, a log's writer):
// a front end posts to its own strand and does nothing slow in them.
#pragma once

#include <chrono>
#include <mutex>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "broker/outcome.h"
#include "log/stream.h"
#include "model/types.h"

namespace floe::cluster {
class Cluster;
}
namespace floe::metrics {
class Registry;
}
namespace floe::bank {
class Bank;
}

namespace floe::broker {

class StreamEntry;
class Registry;
class BankWriter;
struct ConsumerGroup;
struct SessionState;
class Session;

class Forwarder;
struct StreamCounters;  // broker/metrics.h
struct NodeView;       // broker/observe.h
struct SessionRecord;  // broker/session.h

struct BrokerOptions {
  std::string node_id = "node-1";
  std::string data_dir = "./floe-data";
  std::string bank;                          // "" = sqlite:<data_dir>/bank.db
  uint32_t max_message_bytes = 8u << 20;     // node-wide cap on one message
  uint32_t max_read_bytes = 8u << 20;        // one delivery or chunk read at most
  uint32_t max_ack_pending = 10000;          // per durable consumer
  bool direct_io = true;
  int64_t lease_ms = 3000;
  bool auto_balance = true;
  std::string home;  // cluster::ClusterOptions::home: set only while holding the node lock
  std::function<bool(const std::string& id)> peer_dead;  // cluster::ClusterOptions::peer_dead
  // cluster::ClusterOptions::placed_with
  std::function<std::string(const std::string& name, std::string_view record)> placed_with;
  int64_t session_ttl_ms = 24ll * 3600 * 1000;
  uint64_t max_large_message_bytes = 4ull << 30;
  // The streams' file layer (tests: a fault-injecting one); nullptr: Env::Default().
  Env* env = nullptr;
  uint64_t disk_reserve_bytes = 32ull << 20;  // kept free for the bank (docs/operations.md)
  // Reaches the node serving a dead-letter stream this node does not serve
  // (the server's node-to-node link); null: such moves wait until the
  // dead-letter stream is served here.
  std::shared_ptr<Forwarder> forwarder;
};

// A message moved to the dead-letter stream of the stream it reached its
// delivery limit on. Its identity in the dead-letter stream's dedup window is
// (DeadLetterProducerId(source_stream, consumer), source_seq): a move that is
// retried — on this node, forwarded again, or by the node that takes the
// source stream over — is stored once.
struct DeadLetterMove {
  std::string stream;         // the dead-letter stream
  std::string source_stream;  // where the message reached max_deliveries
  std::string consumer;       // the durable consumer that gave up on it
  StreamSeq source_seq;
  std::string key;
  std::string headers;  // encoded as in docs/format.md
  std::string payload;
};
struct DeadLetterStored {
  StreamSeq seq;           // in the dead-letter stream
  bool duplicate = false;  // stored by an earlier try: seq is that copy's
};
uint64_t DeadLetterProducerId(std::string_view source_stream, std::string_view consumer);

// Carries a dead-letter move to the node at `address` (HOST:PORT) that serves
// its dead-letter stream, and returns that node's answer. Called on the
// core's file pool; may block (bounded by its own timeouts).
class Forwarder {
 public:
  virtual ~Forwarder() = default;
  virtual Outcome<DeadLetterStored> ForwardDeadLetter(const std::string& address, const DeadLetterMove& move) = 0;
};

// A front end's connection, as the core sees it. Any thread may call these;
// the front end posts to its own strand.
enum class PeerProtocol : uint8_t { kFloe, kMqtt };

class Peer {
 public:
  virtual ~Peer() = default;
  // The front end's protocol (counted per node in its heartbeat).
  virtual PeerProtocol protocol() const { return PeerProtocol::kFloe; }
  // The node is stopping: take no more requests.
  virtual void StopReading() = 0;
  // Finish what is queued, then close (the node stops, or a newer
  // connection of the same session took it over).
  virtual void CloseSoon() = 0;
  // The node no longer serves `stream`: if this connection's session is on
  // it, tell the client to go to `redirect` ("" = not known yet) and close.
  virtual void Evict(const std::shared_ptr<StreamEntry>& stream, const std::string& redirect) = 0;
};

struct SessionRequest {
  SessionId session_id;     // 0: a new session (the core picks the id)
  Role role = Role::kProducer;
  std::string stream;       // "" = the stream of the resumed session
  std::string consumer;     // consumers: the durable consumer ("" = the resumed one's)
  StartAt start_at = StartAt::kFirst;  // a new consumer starts here
  uint64_t start_value = 0;  // a seq (kSeq) or a timestamp in µs (kTime)
};

// What the client learns when its session is locked on this node.
struct SessionGrant {
  SessionId session_id;
  Epoch epoch;
  ProducerSeq highest_producer_seq;   // producers: the highest stored for this session
  StreamSeq highest_seq;              // ... and its stream seq
  StreamSeq ack_floor;                // consumers
  struct Pending {
    StreamSeq seq;
    uint32_t delivery_count = 0;
  };
  std::vector<Pending> pending;       // consumers: this session's deliveries awaiting answers
  ProducerSeq chunk_producer_seq;     // producers: a large message in transfer ...
  ByteOffset chunk_bytes;             // ... and how many of its bytes are durable
};

struct PublishInput {
  ProducerSeq producer_seq;
  std::string_view key;
  std::string_view headers;  // encoded as in docs/format.md
  std::string_view payload;
};

struct PublishResult {
  ProducerSeq producer_seq;
  Code code = Code::kOk;
  bool duplicate = false;  // already stored: seq is the original's
  StreamSeq seq;
};

struct PublishOutcome {
  std::vector<PublishResult> results;  // in the input's order
  // The node lost the stream while the messages were resolved: nothing may
  // be acknowledged; the client resends to the new owner (dedup finds what
  // was stored).
  bool fenced = false;
};

struct ChunkInput {
  ProducerSeq producer_seq;
  ByteOffset total_size;  // the whole message's size
  ByteOffset offset;
  std::string_view key;      // read with the last chunk
  std::string_view headers;
  std::string_view data;
};

struct ChunkResult {
  ProducerSeq producer_seq;
  Code code = Code::kOk;
  ByteOffset durable_bytes;    // send from here on
  StreamSeq seq;               // once stored: its stream seq
  bool duplicate = false;
  bool fenced = false;         // the node lost the stream: no ACK, move
};

struct ChunkData {
  StreamSeq seq;
  ByteOffset total_size;
  ByteOffset offset;
  std::string data;
};

// One entry of a delivery. Views point into `DeliveryBatch::storage`.
struct Delivered {
  enum class Kind : uint8_t { kMessage, kGap, kLarge };
  Kind kind = Kind::kMessage;
  StreamSeq seq;
  uint64_t gap_count = 0;        // gaps: [seq, seq + gap_count) are holes
  uint32_t delivery_count = 0;
  int64_t timestamp_us = 0;
  std::string_view key;
  std::string_view headers;      // user headers (for kLarge without the reference)
  std::string_view payload;      // empty for kLarge: read it with FetchChunk
  ByteOffset large_size;
};

// A consumer's answer to one delivery.
struct AnswerInput {
  StreamSeq seq;
  AnswerKind kind = AnswerKind::kAck;
  uint32_t delay_ms = 0;  // NAK: redeliver after this long
};

struct DeliveryBatch {
  std::vector<log::Entry> storage;
  std::vector<Delivered> entries;
};

struct ConsumerStatus {
  std::string name;
  StreamSeq ack_floor;
  StreamSeq next_seq;
  uint32_t pending = 0;
  uint64_t lag = 0;
};

// A front end's record in the bank (Broker::ListRecords).
struct Record {
  std::string key;  // without "frontend/"
  std::string value;
};

struct StreamStatus {
  std::string name;
  StreamConfig config;
  StreamSeq first_seq;
  StreamSeq frontier;
  uint64_t bytes = 0;
  std::vector<ConsumerStatus> consumers;
};

class Broker {
 public:
  // Opens the bank and the registry; serves nothing until StartCluster.
  static Result<std::unique_ptr<Broker>> Open(const BrokerOptions& options);
  ~Broker();

  // Joins the cluster (heartbeat at `address`, the HOST:PORT clients are
  // sent to, and `mqtt_address`, where MQTT clients reach the node, "" =
  // none) and takes this node's share of the streams.
  Status StartCluster(const std::string& address, const std::string& mqtt_address = {});

  // Stopping, in the order a node does it: BeginStop (no takeovers, no new
  // sessions), the front ends drain (inflight_bytes() reaches 0), Flush
  // (answers and sessions persisted), the front ends close, then Finish
  // (streams closed, leases given up).
  void BeginStop();
  bool stopping() const;
  void Flush();
  void Finish();

  // Peers (connections of every front end). Attach returns how many are
  // attached, this one included.
  size_t Attach(std::shared_ptr<Peer> peer);
  void Detach(const Peer* peer);
  size_t peer_count();
  std::vector<std::shared_ptr<Peer>> Peers();

  // Opens or resumes a session and locks it here (the bank shows this node
  // as its holder, one epoch higher) before `done` runs with the grant. The
  // session's stream must be served here: otherwise kNotOwner with the
  // owner's address, kUnknownStream, or kUnavailable while it has no owner.
  // `peer` is told to close if another connection later claims the session.
  struct Opened {
    std::shared_ptr<Session> session;
    SessionGrant grant;
  };
  void OpenSession(std::shared_ptr<Peer> peer, SessionRequest request, std::function<void(Outcome<Opened>)> done);

  // Where `stream` is served, as the bank says (a front end that moves its
  // client to the serving node: the MQTT relay). `done` runs on a core
  // thread. A stream without a live owner has `node` "" (and this node
  // tries to take it); kUnavailable when the bank cannot be read.
  struct Placement {
    bool here = false;         // this node serves it now
    std::string node;          // the live owner ("" = none right now)
    std::string address;       // its floe-protocol HOST:PORT
    std::string mqtt_address;  // its MQTT HOST:PORT ("" = it advertises none)
  };
  void LocateStream(std::string stream, std::function<void(Outcome<Placement>)> done);

  // Stream admin; `done` runs on a core thread.
  void CreateStream(std::string name, StreamConfig config, std::function<void(Outcome<void>)> done);
  void DeleteStream(std::string name, std::function<void(Outcome<void>)> done);
  void ListStreams(std::function<void(Outcome<std::vector<std::string>>)> done);
  // `fn` runs (on a core thread, before the admin call's `done`) after each
  // stream this node creates (its config) or deletes (nullptr). Streams made
  // or deleted by other nodes are not told: read them (ListStreamConfigs).
  void AddStreamListener(std::function<void(const std::string& name, const StreamConfig* config)> fn);
  // Every stream of the cluster with its config, as the bank records it (one
  // range read; the MQTT front end's topic bindings).
  void ListStreamConfigs(std::function<void(Outcome<std::vector<std::pair<std::string, StreamConfig>>>)> done);
  void DescribeStream(std::string name, std::function<void(Outcome<StreamStatus>)> done);

  // Stores a dead-letter move forwarded by another node into `move.stream`,
  // served here (else kNotOwner / kUnavailable / kUnknownStream as for a
  // session); `done` runs once it is durable, or with the failure.
  void AppendDeadLetter(DeadLetterMove move, std::function<void(Outcome<DeadLetterStored>)> done);

  // A front end's own records in the bank (an MQTT session's subscriptions),
  // under "frontend/" + key; `done` runs on a core thread. A value of
  // nullopt deletes. Commits are not fenced by a stream: the front end owns
  // the key while it holds the session the record belongs to.
  void ReadRecord(std::string key, std::function<void(Outcome<std::optional<std::string>>)> done);
  void WriteRecord(std::string key, std::optional<std::string> value, std::function<void(Outcome<void>)> done);
  // Every front-end record whose key starts with `prefix` (under
  // "frontend/" + prefix), in key order; keys without "frontend/".
  void ListRecords(std::string prefix, std::function<void(Outcome<std::vector<Record>>)> done);
  // A front-end record that belongs to the data of `stream` (an MQTT
  // retained message): written by the node's bank writer in its next group
  // commit, fenced by the stream's lease, so only the node serving `stream`
  // changes it (kNotOwner otherwise). `value` runs on the bank writer's
  // thread when the commit is made, maybe more than once (nullopt deletes):
  // of several writes of one key, the commit holds what `value` says then.
  void WriteStreamRecord(std::string key, const std::string& stream,
                         std::function<std::optional<std::string>()> value, std::function<void(Outcome<void>)> done);

  // Node-wide publish bytes awaiting their ACK (front ends stop reading
  // past their limit).
  uint64_t inflight_bytes() const;

  struct Stats {
    uint64_t published = 0;
    uint64_t bank_commits = 0;
    uint64_t bank_records = 0;
    uint64_t takeovers = 0;
  };
  Stats stats() const;

  // Observability (src/http, docs/operations.md). The node's metrics: the
  // core's paths update them; lives as long as the Broker.
  metrics::Registry& metrics();
  // The bank's view of the cluster and the streams served here, with this
  // node's counters and readiness. Reads the bank and the logs on the
  // calling thread (as long as the bank takes): never call it on a front
  // end's I/O thread.
  NodeView Observe();
  // Observe in two steps: what the node knows without the bank (its
  // counters, connections, leases held; never blocks), then the bank's part
  // (nodes, streams, leases, readiness), which blocks as Observe does.
  NodeView ObserveLocal();
  void ObserveBank(NodeView* view);
  // Every session record in the bank (as `floe session list`); blocks likewise.
  Result<std::vector<SessionRecord>> SessionRecords();

  class Core;  // the state the core's files share (broker/core.h)

 private:
  friend class Session;
  explicit Broker(std::unique_ptr<Core> core);
  std::unique_ptr<Core> core_;
};

// One client session attached on this node. Its front end calls it from
// one strand at a time (never two calls at once); callbacks come back on
// core threads.
class Session : public std::enable_shared_from_this<Session> {
 public:
  ~Session();
  SessionId id() const { return SessionId(id_); }
  Role role() const { return role_; }
  const std::string& stream_name() const;
  // Whether this node may act for the session's stream now (its lease is
  // valid); when false the front end moves the client on.
  bool serving() const;
  bool on_stream(const std::shared_ptr<StreamEntry>& stream) const { return stream_ == stream; }

  // Producers. Stores the fresh messages (dedup by producer seq), waits for
  // duplicates still in doubt, and calls `done` once every message is
  // resolved: durable (fdatasync'd) or refused. `bytes` counts toward the
  // node's in-flight limit until `done` returns.
  void Publish(std::span<const PublishInput> messages, uint64_t bytes, std::function<void(PublishOutcome)> done);
  // One chunk of a large message: durable in its blob file and its bytes
  // conveyed committed to the bank before `done` says so; the last one
  // stores the message in the stream. One chunk at a time per session.
  void PublishChunk(const ChunkInput& chunk, std::function<void(ChunkResult)> done);

  // Consumers. Takes up to `max_messages` / `max_bytes` for this session:
  // redeliveries first (NAKed, timed out, released), then new messages.
  // kNotOwner once the node lost the stream.
  Outcome<DeliveryBatch> Deliver(uint32_t max_messages, uint32_t max_bytes);
  // When Deliver may have something again without the frontier moving: the
  // earliest redelivery deadline (steady clock), or time_point::max().
  std::chrono::steady_clock::time_point NextRedelivery();
  // `fn` runs once, on a log thread, when the frontier next moves or the
  // stream closes (or at once if it already did since the last Deliver).
  void OnStreamChange(std::function<void()> fn);
  // Answers; `done` runs once they are persisted (a confirmed ACK is never
  // redelivered): one code per item.
  void Answer(std::span<const AnswerInput> items, std::function<void(Outcome<std::vector<Code>>)> done);
  // Part of a large message (any consumer of the stream may read any).
  void FetchChunk(StreamSeq seq, ByteOffset offset, uint32_t max_bytes, std::function<void(Outcome<ChunkData>)> done);

  // Producers whose protocol does not resend in order (MQTT): after a
  // message was not stored, the session's later messages are accepted again
  // instead of being refused until it is resent (docs/protocol.md "Order").
  void ForgetUnstored();

  // The client said goodbye: the session ends with the connection (its
  // record is deleted) instead of waiting to be resumed.
  void EndAtClose() { goodbye_ = true; }
  // The connection closed: releases the session's lock and its outstanding
  // deliveries (redelivered at once to whoever asks). Called once.
  void Close();

 private:
  friend class Broker;
  Session(Broker::Core* core, uint64_t id, Role role, std::shared_ptr<StreamEntry> stream,
          std::shared_ptr<ConsumerGroup> consumer, std::shared_ptr<SessionState> state,
          std::shared_ptr<Mutex> publish_lock);
  // Records acknowledged publishes in the conveyance state (lazily persisted).
  void NoteAcked(const std::vector<PublishResult>& results);
  void NoteDelivered(size_t delivered, uint64_t top_seq);
  void PersistState(std::function<void(Status)> done);
  void CommitLarge(uint64_t producer_seq, uint64_t total, std::string key, std::string headers,
                   std::function<void(ChunkResult)> done);

  Broker::Core* const core_;
  const uint64_t id_;
  const Role role_;
  const std::shared_ptr<StreamEntry> stream_;
  const std::shared_ptr<ConsumerGroup> consumer_;  // consumers
  const std::shared_ptr<SessionState> state_;
  const std::shared_ptr<Mutex> publish_lock_;  // producers: see SessionTable::PublishLock
  const Peer* peer_ = nullptr;  // the connection it was opened for
  StreamCounters* counters_ = nullptr;  // its stream's (core->metrics), set at open
  bool goodbye_ = false;
  bool closed_ = false;
};

}  // namespace floe::broker
