// A session's record in the bank (`sessions/<id:016x>`, docs/cluster.md): the
// connection instance id, what it conveys to or from which stream, which node
// holds it (the session's lock) with a session epoch that grows at every new
// holder, and its conveyance state, persisted while the transfer runs.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "base/status.h"

namespace floe::broker {

struct ConsumerGroup;

struct SessionRecord {
  enum class Kind : uint8_t { kProducer = 1, kConsumer = 2 };
  uint64_t id = 0;
  Kind kind = Kind::kProducer;
  std::string stream;
  std::string consumer;   // consumers: the durable consumer
  std::string holder;     // node id serving it; "" = released (no node holds it)
  uint64_t epoch = 0;     // +1 at every new holder
  int64_t updated_ms = 0; // wall clock of the last change
  // Conveyance state.
  uint64_t last_producer_seq = 0;  // producer: highest producer seq acknowledged
  uint64_t last_seq = 0;           // producer: its stream seq; consumer: last seq delivered
  uint64_t messages = 0;           // producer: messages acknowledged; consumer: delivered
  uint64_t answers = 0;            // consumer: answers confirmed
  uint32_t pending = 0;            // consumer: deliveries awaiting this session's answer
  // Producer: the large message being conveyed in chunks (0: none), its
  // size, and how many of its bytes are durable in the node's blob file.
  // Written before each chunk is acknowledged: the resume point.
  uint64_t conveying_producer_seq = 0;
  uint64_t conveying_total = 0;
  uint64_t bytes_conveyed = 0;
};

std::string SessionKey(uint64_t id);
inline constexpr std::string_view kSessionsPrefix = "sessions/";
std::string EncodeSessionRecord(const SessionRecord& r);
Result<SessionRecord> DecodeSessionRecord(std::string_view bytes);
std::string_view SessionKindName(SessionRecord::Kind k);

// A session as a node serves it: the record plus the attached Session
// holding it. Shared by the connections of one session on one node (a
// reconnect claims it). Any thread, with `mu`.
struct SessionState {
  Mutex mu;
  SessionRecord record GUARDED_BY(mu);
  const void* holder GUARDED_BY(mu) = nullptr;          // the broker::Session serving it, or null
  std::shared_ptr<ConsumerGroup> group GUARDED_BY(mu);  // consumers
  bool ended GUARDED_BY(mu) = false;                    // GOODBYE: the record is deleted
  bool chunk_busy GUARDED_BY(mu) = false;               // a chunk is being written
  bool lazy_queued GUARDED_BY(mu) = false;              // a lazy write of the record awaits the bank writer
};

}  // namespace floe::broker
