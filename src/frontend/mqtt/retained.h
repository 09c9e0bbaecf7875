// Retained messages (docs/mqtt.md "Retained messages"): MQTT's one kept
// message per topic, a front-end record in the bank,
//
//   frontend/mqtt-retained/<16 hex of RetainedTopicHash(topic)>
//
// (not under "mqtt/", where the session records are), whose value holds the
// topic, so a hash collision is seen and never served as the other topic.
//
//   PUBLISH with RETAIN, a will with Will Retain: stored in the MQTT stream
//     as any message; once durable there, RetainedStore::Commit writes the
//     record (an empty payload deletes it); the PUBACK / PUBREC waits for
//     both.
//   SUBSCRIBE: FindRetained reads the records its filters match.
//
// The encoding (retained_record.cc) depends on floe_base only: the fuzz
// target compiles it alone.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "broker/outcome.h"

namespace floe::broker {
class Broker;
}

namespace floe::frontend::mqtt {

// The key prefix of retained records, under the bank's "frontend/".
inline constexpr std::string_view kRetainedPrefix = "mqtt-retained/";

// One retained message as its record holds it (encoding version 1,
// docs/mqtt.md).
struct RetainedRecord {
  uint64_t seq = 0;     // the MQTT stream's seq the message was stored at (> 0)
  std::string topic;    // not empty
  std::string headers;  // the stored headers, as EncodeMessageHeaders made them
  std::string payload;  // not empty (an empty retained payload deletes the record)
};
std::string EncodeRetainedRecord(const RetainedRecord& r);
// Corruption for anything but a whole version 1 record.
Result<RetainedRecord> DecodeRetainedRecord(std::string_view bytes);
// FNV-1a (64 bits) of the topic, seeded apart from ClientHash.
uint64_t RetainedTopicHash(std::string_view topic);
// "mqtt-retained/<16 hex>": the record's key without "frontend/".
std::string RetainedKey(std::string_view topic);

// What a record's stored headers say of the message: the QoS it was
// published with and when its Message Expiry Interval ends (wall clock ms,
// 0: never).
struct RetainedInfo {
  uint8_t qos = 0;
  int64_t expires_at_ms = 0;
};
RetainedInfo DescribeRetained(const RetainedRecord& r);

// The node's writes of retained records; one per MQTT listener, shared by
// its connections (and kept alive by the callbacks that still use it: make
// it with std::make_shared). Thread-safe.
//
// Order: two retained messages of one topic may finish their writes in
// either order (two connections, two strands). The store keeps, per topic,
// the newest (highest stream seq) message that is being committed, and the
// bank writer takes the record's value from it when it commits (a fenced
// write of the MQTT stream: only the node serving it can change a retained
// record). So the record always ends at the newest message, an empty one
// included (a delete). Entries are dropped when no retained publish is
// between Begin and its outcome: any later one gets a higher seq.
class RetainedStore : public std::enable_shared_from_this<RetainedStore> {
 public:
  RetainedStore(broker::Broker* broker, std::string stream);

  // Before publishing a retained message into the stream. Each Begin is
  // followed by one Commit (the message was stored) or one Abandon.
  void Begin();
  void Abandon();
  // The message stored at `seq` becomes its topic's retained message (or,
  // with an empty payload, the topic has none), unless a later one did.
  // `done` runs on a core thread: OK once the bank holds it or a later one;
  // kInvalidArgument when another topic holds the topic's record (a hash
  // collision: that one is kept); kNotOwner, kUnavailable, kShuttingDown.
  void Commit(std::string topic, uint64_t seq, std::string headers, std::string payload,
              std::function<void(broker::Outcome<void>)> done);

 private:
  struct Latest {
    uint64_t seq = 0;
    std::optional<std::string> value;  // the encoded record; nullopt: deleted
  };
  void Write(const std::string& key, std::function<void(broker::Outcome<void>)> done);
  void Finished();  // one Begin's outcome is known

  broker::Broker* const broker_;
  const std::string stream_;
  Mutex mu_;
  uint64_t open_ GUARDED_BY(mu_) = 0;  // Begins whose outcome is not known yet
  std::map<std::string, Latest> latest_ GUARDED_BY(mu_);
};

// What FindRetained gives: a retained message and which filter matched it.
struct RetainedMatch {
  size_t filter = 0;  // index into the filters asked for
  std::shared_ptr<const RetainedRecord> record;
};
// The retained messages matching each of `filters` (MQTT topic filters,
// not `$share/`): a filter without wildcards is one bank read, any with
// wildcards lists every retained record (one bank read of them all).
// `done` runs on a core thread. Corrupt records are skipped (and said on
// stderr), not served.
void FindRetained(broker::Broker* broker, std::vector<std::string> filters,
                  std::function<void(broker::Outcome<std::vector<RetainedMatch>>)> done);

}  // namespace floe::frontend::mqtt
