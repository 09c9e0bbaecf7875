// One MQTT 5.0 or 3.1.1 client connection over the broker core
// (docs/mqtt.md). The packet layer (src/mqtt/) finds and decodes packets;
// this file turns them into core calls and the core's outcomes into packets:
//
//   PUBLISH    -> the session's producer Session on the topic's stream (the
//                 bound stream whose filter matches best, else the default
//                 MQTT stream: bindings.h); PUBACK /
//                 PUBREC only once the message is durable (fdatasync'd), a
//                 failure reason code (0x80 range) when it is not stored
//   SUBSCRIBE  -> the MQTT session record in the bank (before SUBACK), and a
//                 durable consumer on the MQTT stream and on each bound
//                 stream the filters can match, whose deliveries are
//                 filtered by the session's topic filters; a delivery is
//                 known by (stream, seq)
//   PUBACK, PUBCOMP from the client -> ACK of the delivered seq (persisted)
//   RETAIN     -> also the topic's retained record in the bank (retained.h),
//                 committed before the PUBACK / PUBREC; SUBSCRIBE sends the
//                 matching retained messages after its SUBACK
//
// The MQTT session floats as floe's own sessions do: its producer and
// consumer Sessions are locked by the node that serves the MQTT stream (a
// second CONNECT with the same client identifier takes them over: the old
// connection gets DISCONNECT 0x8E), its subscriptions live in the bank, its
// unanswered deliveries in the consumer's cursor (resent with DUP on
// reconnect).
//
// Threads: everything but the broker::Peer calls runs on the connection's
// strand. Core callbacks post back to it.
#pragma once

#include <chrono>
#include <deque>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include "auth/directory.h"
#include "broker/broker.h"
#include "frontend/await_core.h"
#include "frontend/mqtt/bindings.h"
#include "frontend/mqtt/retained.h"
#include "frontend/mqtt/session_record.h"
#include "mqtt/codec.h"
#include "mqtt/frame.h"

namespace floe::frontend::mqtt {

namespace codec = ::floe::mqtt;

struct MqttOptions {
  std::string node_id;
  // The stream every PUBLISH goes to and every subscription reads.
  std::string stream = "mqtt";
  // The largest packet this node accepts (announced as Maximum Packet Size).
  uint32_t max_packet_size = (1u << 20) + 65536;
  // QoS 1 and 2 PUBLISHes a client may have unacknowledged (Receive Maximum).
  uint16_t receive_maximum = 1024;
  // Topic aliases a client may use (Topic Alias Maximum).
  uint16_t topic_alias_maximum = 64;
  // A connection that sends no CONNECT within this is closed.
  int connect_timeout_ms = 10000;
  // A CONNECT reaching a node that does not serve the stream: relayed to the
  // node that does (docs/mqtt.md "MQTT in a cluster"), or with `redirect` answered
  // CONNACK 0x9C with that node's MQTT address as Server Reference.
  bool redirect = false;
  int relay_connect_timeout_ms = 2000;
  // Users (docs/mqtt.md "Authentication"): nullptr = anonymous. Outlives
  // the listener.
  auth::Directory* auth = nullptr;
};


class Keeper;
class SharedGroup;
class SharedGroups;

// What every connection of a node shares (the listener owns them).
struct NodeServices {
  std::shared_ptr<Keeper> keeper;          // wills and expiry of sessions no connection holds
  SharedGroups* shared = nullptr;          // shared subscriptions' groups
  std::shared_ptr<RetainedStore> retained; // retained messages' records
  std::shared_ptr<Bindings> bindings;       // streams bound to topic filters
};

// One message a shared subscription's group hands to a member (owned: it
// outlives the group's delivery batch).
struct SharedMessage {
  uint64_t seq = 0;
  uint8_t qos = 0;  // at most the member's granted QoS
  std::string topic, headers, payload;
  uint32_t subscription_id = 0;
  bool retain_as_published = false;
};

class Connection final : public broker::Peer, public std::enable_shared_from_this<Connection> {
 public:
  Connection(broker::Broker* broker, const MqttOptions* options, const NodeServices& services,
             asio::ip::tcp::socket socket);
  void Start();

  // broker::Peer: any thread.
  broker::PeerProtocol protocol() const override { return broker::PeerProtocol::kMqtt; }
  void StopReading() override;
  void CloseSoon() override;
  void Evict(const std::shared_ptr<broker::StreamEntry>& stream, const std::string& redirect) override;

  // A shared subscription's group hands this member a message: any thread.
  void DeliverShared(std::shared_ptr<SharedGroup> group, SharedMessage message);

 private:
  template <typename T, typename Start>
  asio::awaitable<T> AwaitCore(Start start) {
    return AwaitOnStrand<T>(strand_, shared_from_this(), std::move(start));
  }

  asio::awaitable<void> ReadLoop();
  asio::awaitable<bool> Handle(codec::Packet& packet);
  asio::awaitable<bool> OnConnect(const codec::Connect& c);
  // Users (authorize.cc). Login: CONNECT's user name and password against
  // the users; false once it refused (CONNACK sent, closing). MayPublish /
  // MaySubscribe: the user's permissions now (true without users).
  asio::awaitable<bool> Login(const codec::Connect& c);
  bool MayPublish(std::string_view topic);
  bool MaySubscribe(std::string_view filter);
  // Opens (or resumes) the session's producer and consumer Sessions; on
  // failure answers CONNACK with the reason and closes.
  // CONNACK with a failure `reason` (MQTT 5: `why` as its Reason String), then close.
  void RefuseConnect(codec::ReasonCode reason, std::string_view why);
  asio::awaitable<bool> OpenProducer();
  asio::awaitable<bool> OpenConsumer();
  // Publishes the will an earlier connection left due (its record `prior`):
  // its producer seq written to the record first, so it is stored once.
  asio::awaitable<bool> PublishPriorWill(SessionRecord prior);
  asio::awaitable<bool> OnPublish(codec::Publish& p);
  // Topics onto streams (docs/mqtt.md): a stream key is "" for the default
  // MQTT stream, else a bound stream's name.
  std::string RouteKey(std::string_view topic) const;
  const std::string& StreamOf(const std::string& key) const { return key.empty() ? options_->stream : key; }
  broker::Session* ProducerFor(const std::string& key);
  uint64_t& NextSeqFor(const std::string& key);
  // Opens the session's producer on a bound stream (its own core session,
  // its own producer seqs); false, with `why`, when it cannot be opened here.
  asio::awaitable<bool> OpenBoundProducer(const std::string& key, std::string* why);
  // Opens a consumer on every bound stream the subscriptions can read
  // (StreamsFor), each the durable consumer mqtt.<hash>.<generation> of
  // that stream, starting at the oldest subscription's time.
  asio::awaitable<void> OpenBoundConsumers();
  broker::Session* ConsumerOf(const std::string& key);
  // One delivery batch of one consumer; < 0: the connection ends.
  asio::awaitable<int> DeliverBatch(std::string key, std::shared_ptr<broker::Session> consumer, size_t room);
  // A QoS 0 / 1 PUBLISH: stored (and, with RETAIN, its topic's retained
  // record committed), then answered.
  void StoreAndAnswer(const std::string& key, uint8_t qos, uint16_t packet_id, std::string topic, bool retain,
                      std::string headers, std::string_view payload);
  // Sends the gathered QoS 0 / 1 PUBLISHes to the core as one request.
  void FlushPublishes();
  void AnswerStored(const std::string& key, uint8_t qos, uint16_t packet_id, broker::Code stored, broker::Code code);
  struct Pending {
    uint64_t producer_seq = 0;
    uint8_t qos = 0;
    uint16_t packet_id = 0;
    std::string headers, payload;
  };
  static constexpr size_t kMaxBatchBytes = 256 * 1024;
  std::vector<Pending> batch_;  // PUBLISHes of the current read, not yet given to the core
  std::string batch_key_;       // the stream they go to
  size_t batch_bytes_ = 0;
  void OnPubrel(const codec::Pubrel& p);
  void OnDeliveryAnswer(uint16_t packet_id, codec::PacketType type, codec::ReasonCode reason);
  asio::awaitable<bool> OnSubscribe(const codec::Subscribe& s);
  // After a SUBACK: queues the retained messages of the subscriptions made
  // (`fresh`: whether each did not exist before) as Retain Handling says.
  asio::awaitable<void> QueueRetained(const std::vector<SessionRecord::Sub>& subs, const std::vector<bool>& fresh);
  asio::awaitable<void> OnUnsubscribe(const codec::Unsubscribe& u);
  // The session record, written in the bank. Writes are one at a time and
  // coalesced: each covers every change made before it began; `after` runs
  // on the strand once a write covering the changes made so far is done
  // (false: it failed). A taken-over connection writes nothing.
  void Persist(std::function<void(bool ok)> after);
  void StartPersist();
  asio::awaitable<Status> SaveRecord();
  // Inbound QoS 2: stores the message of packet id `id` with producer seq
  // `pseq` (its mapping already durable) and answers PUBREC.
  struct RetainRequest {
    std::string topic, headers, payload;
  };
  // A RETAIN PUBLISH's request for its retained record (nullptr without
  // RETAIN); RetainedStore::Begin is called.
  std::shared_ptr<RetainRequest> BeginRetain(bool retain, const std::string& topic, const std::string& headers,
                                             std::string_view payload);
  void AfterStore(broker::PublishOutcome out, std::shared_ptr<RetainRequest> retain,
                  std::function<void(broker::Code stored, broker::Code answer)> then);
  void StoreQos2(const std::string& key, uint16_t id, uint64_t pseq, std::shared_ptr<RetainRequest> retain, std::string headers,
                 std::string payload);

  // MQTT in a cluster (relay.cc). Reads a relay preamble at the start of the
  // connection (consuming it from *in); false: a bad one, closed.
  bool TakeRelayPreamble(std::span<const char>* in);
  // The MQTT stream is served by another node (`why` says which): relay
  // the client there, or redirect it, or refuse it (0x88; a relayed
  // connection 0x9C). Ends this connection either way.
  asio::awaitable<void> MoveToOwner(std::string why);
  // This node no longer serves the MQTT stream: DISCONNECT 0x9C (with a
  // Server Reference when the bank already names the new owner) and close.
  void MoveOn(std::string why);

  // Delivery: pushes what the consumer Session gives, filtered by the
  // subscriptions, within the client's Receive Maximum.
  asio::awaitable<void> PushLoop();
  void WakePush();
  asio::awaitable<void> KeepAliveLoop();
  void Ack(const std::string& key, uint64_t seq);
  void FlushAcks();
  // ACKs gathered while a read's packets are handled, by stream key.
  std::map<std::string, std::vector<broker::AnswerInput>> acks_;
  bool in_read_ = false;                   // handling the packets of one read
  struct Outgoing;
  // The delivery is answered: ACK in our cursor, or its group told.
  void Done(Outgoing& o);
  // Drops an outbound delivery's packet id (answered, or dropped as too large).
  void Forget(uint16_t packet_id);
  // Sends queued retained messages within the Receive Maximum; false when
  // some wait for room.
  bool SendRetained();
  // A QoS 2 PUBLISH of no cursor of ours (shared, retained): sent once its
  // packet id is in the record; `keep` holds what `out` points into.
  void SendHeldQos2(const codec::Publish& out, std::shared_ptr<const void> keep);
  std::vector<uint16_t> pubrel_again_;  // after CONNACK: PUBRELs of qos2_held

  void Send(const codec::Packet& packet);
  void Enqueue(std::string bytes);
  void StartWrite();
  // MQTT 5: DISCONNECT with `reason` first; then close once written.
  void Disconnect(codec::ReasonCode reason, std::string_view why);
  // Closes once what is queued is written, or after kCloseGraceMs at the
  // latest (a peer that stopped reading).
  void CloseAfterWrite();
  void FinishClose();

  broker::Broker* const broker_;
  const MqttOptions* const options_;
  const std::shared_ptr<Keeper> keeper_;
  SharedGroups* const shared_groups_;
  const std::shared_ptr<RetainedStore> retained_;
  const std::shared_ptr<Bindings> bindings_;
  asio::ip::tcp::socket socket_;
  asio::any_io_executor strand_;
  codec::FrameSplitter splitter_;
  asio::steady_timer keep_alive_timer_;
  asio::steady_timer push_wake_;
  std::chrono::steady_clock::time_point last_packet_;
  std::chrono::steady_clock::time_point accepted_at_;
  bool change_armed_ = false;  // an OnStreamChange callback is registered
  bool wake_ = false;          // WakePush came while PushLoop was not waiting
  std::string outbox_, sending_;
  bool writing_ = false;
  bool reading_ = true;
  bool close_after_write_ = false;
  bool closed_ = false;
  // Relaying (relay.cc).
  bool preamble_checked_ = false;  // the first bytes were looked at
  std::string preamble_;           // a relay preamble still arriving
  bool relayed_ = false;           // came through another node: never relayed again
  std::string relayed_for_;        // the client's address, as the preamble names it
  std::string user_;               // with users on: who CONNECT logged in as
  std::span<const char>* unread_ = nullptr;  // bytes read after the packet being handled
  bool moving_on_ = false;         // MoveOn runs

  // After CONNECT.
  bool connected_ = false;
  codec::Version version_ = codec::Version::kV5;
  std::string client_id_;
  std::string client_key_;  // Hex(ClientHash(client_id_)): the record's key, the No Local mark
  std::string RecordKey() const { return "mqtt/" + client_key_; }
  uint16_t keep_alive_s_ = 0;
  bool taken_over_ = false;        // a newer connection has the session: leave its records alone
  std::string assigned_id_;
  bool claimed_ = false;  // the keeper knows this connection holds client_key_
  std::optional<SessionRecord::Will> will_;  // from CONNECT; into record_ once the session is known
  uint32_t client_max_packet_ = codec::kMaxPacketSize;
  uint16_t client_receive_maximum_ = 65535;
  SessionRecord record_;
  std::shared_ptr<broker::Session> producer_;
  uint64_t next_producer_seq_ = 1;
  std::shared_ptr<broker::Session> consumer_;
  // Bound streams (docs/mqtt.md "Topics onto streams"), by name.
  struct BoundProducer {
    std::shared_ptr<broker::Session> session;
    uint64_t next_seq = 1;
  };
  std::map<std::string, BoundProducer> bound_producers_;
  struct BoundConsumer {
    std::shared_ptr<broker::Session> session;
    bool change_armed = false;
  };
  std::map<std::string, BoundConsumer> bound_consumers_;
  uint64_t bindings_version_ = 0;  // of the view the bound consumers were opened for
  bool bound_retry_ = false;       // one could not be opened: try again (at bound_retry_at_)
  std::chrono::steady_clock::time_point bound_retry_at_{};
  std::map<uint16_t, std::string> topic_aliases_;  // the client's, inbound
  // Inbound QoS 2, by packet id (the durable mapping is record_.qos2_in).
  enum class Inbound : uint8_t {
    kMapping,   // its producer seq is being written to the record
    kStoring,   // being stored
    kStored,    // PUBRECed: waiting for PUBREL
    kResumed,   // from the record of an earlier connection: a PUBLISH of it is a resend
    kReleasing, // PUBREL came: PUBCOMP once the record no longer holds it
  };
  std::map<uint16_t, Inbound> inbound_qos2_;
  bool persisting_ = false;
  std::vector<std::function<void(bool)>> persist_next_;
  uint32_t inbound_inflight_ = 0;
  // Outbound QoS 1/2 deliveries awaiting the client's answer.
  struct Outgoing {
    uint64_t seq = 0;  // in the cursor of our consumer, or of `group`'s
    uint8_t qos = 1;
    bool released = false;  // QoS 2: PUBREC came, PUBREL sent
    bool shared = false;    // a shared subscription's: `seq` is its group's, not our cursor's
    std::shared_ptr<SharedGroup> group;  // shared, until the group is answered
    // A retained message sent on SUBSCRIBE: not a delivery of the consumer
    // (seq 0), so its answer acknowledges nothing in the cursor, and it is
    // not resent after a reconnect.
    bool retained = false;
    std::string stream;  // the stream key of `seq` (not shared, not retained)
  };
  std::map<uint16_t, Outgoing> outgoing_;
  std::map<SessionRecord::DeliveryKey, uint16_t> packet_of_seq_;
  std::set<uint16_t> qos2_ids_;
  // Shared subscriptions: the groups joined (by their "$share/..." filter)
  // and what they handed us that is not on the wire yet.
  // One group per stream the filter can read (the default and bound ones).
  std::map<std::string, std::vector<std::shared_ptr<SharedGroup>>> joined_;
  std::deque<std::pair<std::shared_ptr<SharedGroup>, SharedMessage>> shared_backlog_;
  // Joins the groups of record_'s shared subscriptions (again: new options).
  void JoinSharedGroups();
  // Leaves one group (`filter` "") or every group, releasing what it handed us.
  void LeaveSharedGroups(const std::string& filter);
  // Sends what the groups handed us, within the client's Receive Maximum.
  void SendShared();
  uint16_t NextPacketId();  // one not in outgoing_ nor in record_.qos2_out
  uint16_t next_packet_id_ = 1;
  // Retained messages to send (after SUBACK), ahead of the consumer's.
  struct RetainedOut {
    std::shared_ptr<const RetainedRecord> record;
    uint8_t qos = 0;          // granted: min(the message's, the subscription's)
    uint32_t identifier = 0;  // the subscription's Subscription Identifier
  };
  std::deque<RetainedOut> retained_out_;
};

}  // namespace floe::frontend::mqtt
