// A node's membership of a floe cluster (docs/cluster.md): its heartbeat and
// load in the bank, the leases on the streams it owns, and the decisions to
// take or give up streams (failover, drain, load balancing).
//
// The Cluster runs two threads, each ticking every lease_ms / 3 (the worker,
// on a bank that can watch, every lease_ms and whenever a lease, stream,
// drain or rebalance key changes): the renewer
// writes the heartbeat and renews the leases held, and nothing else, so slow
// work never makes a lease lapse; the worker opens and closes streams,
// takes free ones and gives some up (balance, drain). It never opens or
// closes a stream itself: it tells its Host (the node) to, and the Host
// answers whether it could (opening fails while another process still holds
// the stream directory's file lock; the lease is kept and the open retried).
//
// Safety: the node acts for a stream only while the lease is valid by its own
// steady clock (Host::SetValidUntil), and every bank write for a stream
// carries Fence(stream), which fails once the lease record moved. Expiry
// only decides when another node may take over.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bank/bank.h"
#include "base/mutex.h"
#include "base/status.h"

namespace floe::cluster {

// nodes/<id>
struct NodeInfo {
  std::string id;
  std::string address;       // where clients reach it (HOST:PORT)
  int64_t heartbeat_ms = 0;  // wall clock of the last heartbeat
  int64_t started_ms = 0;
  int64_t lease_ms = 0;      // its lease period (liveness: heartbeat younger than this)
  uint32_t streams = 0;      // streams it serves
  uint32_t sessions = 0;     // sessions open on it
  uint64_t publish_rate = 0; // messages acknowledged per second, last tick
  std::string mqtt_address;  // where MQTT clients reach it (HOST:PORT; "" = no MQTT, or a version 1 record)
  uint32_t mqtt_connections = 0;  // MQTT client connections on it, relayed ones too (version 3)
  // Version 4: the record's + 1 at each start of a process with this id (1
  // without a record); the newest wins (an older one that sees it steps
  // back). home: ClusterOptions::home.
  uint64_t incarnation = 0;
  std::string home;
};
std::string EncodeNodeInfo(const NodeInfo& n);
Result<NodeInfo> DecodeNodeInfo(std::string_view bytes);

// Bank keys and lease names.
std::string NodeKey(std::string_view id);
std::string DrainKey(std::string_view id);
inline constexpr std::string_view kNodesPrefix = "nodes/";
inline constexpr std::string_view kDrainPrefix = "drain/";
inline constexpr std::string_view kClusterPrefix = "cluster/";  // cluster-wide requests
inline constexpr std::string_view kRebalanceKey = "cluster/rebalance";
inline constexpr std::string_view kStreamLeasePrefix = "stream/";  // lease name prefix
// Housekeeping runs every kHousekeepPeriods lease periods; a node record
// whose heartbeat is kDeadNodePeriods lease periods old (its own) is removed.
inline constexpr int64_t kHousekeepPeriods = 10;
inline constexpr int64_t kDeadNodePeriods = 20;
std::string StreamLeaseName(std::string_view stream);

// Wall clock, ms since the epoch / steady clock, ms.
int64_t WallMs();
int64_t SteadyMs();

struct ClusterOptions {
  std::string node_id = "node-1";
  std::string address;       // advertised HOST:PORT
  int64_t lease_ms = 3000;
  bool auto_balance = true;
  std::string mqtt_address;  // advertised MQTT HOST:PORT ("" = MQTT off)
  // Where the node keeps its data (host and data directory), written to its
  // node record. Set it only while this process holds the node's lock on
  // that directory (server/node.cc: node-<id>.lock, which the kernel frees
  // only when its holder is gone): a node that finds its own record naming
  // the same home is the successor of the process that wrote it, and takes
  // that process's stream leases back at once, with higher epochs (the
  // successor rule, docs/bank.md). "": never a successor (its own earlier
  // leases are waited out, as anyone's).
  std::string home;
  // Whether the node `id`, whose record names this node's own home (the same
  // host and data directory), is proven dead now: its node lock can be
  // taken (the kernel frees it only when its holder is gone, kill -9
  // included). A dead peer's leases are taken at once, with higher epochs,
  // instead of waited out (docs/cluster.md "Dead peers"). Called every
  // kPeerProbeMs on the prober thread. Unset: peers' leases are waited out.
  std::function<bool(const std::string& id)> peer_dead;
  // The stream `name` (its record in the bank is `record`) must be served
  // by the node that serves the returned stream, its leader; "" = placed
  // freely. A follower is taken only by its leader's node, never counted in
  // a node's share, and given up by a node that does not hold its leader
  // (docs/cluster.md "Placement groups": MQTT's bound streams follow the
  // MQTT stream). Unset: every stream placed freely.
  std::function<std::string(const std::string& name, std::string_view record)> placed_with;
};

// How often the prober asks ClusterOptions::peer_dead about each peer.
inline constexpr int64_t kPeerProbeMs = 100;

// What the node does when it gains or loses a stream. Called on the cluster
// thread, never with the Cluster's lock held.
class Host {
 public:
  virtual ~Host() = default;
  // Opens the stream (recovering it from disk) and starts serving it, valid
  // until `valid_until_steady_ms`. NotFound: the stream was deleted.
  virtual Status OpenStream(const std::string& name, int64_t valid_until_steady_ms) = 0;
  // A renewal moved the validity forward.
  virtual void SetValidUntil(const std::string& name, int64_t valid_until_steady_ms) = 0;
  // Stop acting for the stream at once: its sessions are told to go to
  // `redirect` (the new owner's address, or "" if unknown) and closed, and
  // the stream is closed (its file lock released) before this returns, as
  // far as the node can manage.
  virtual void CloseStream(const std::string& name, const std::string& redirect) = 0;
  // Load, for the heartbeat.
  virtual uint32_t SessionCount() = 0;
  virtual uint64_t PublishedTotal() = 0;  // messages acknowledged since start
  virtual uint32_t MqttConnectionCount() { return 0; }
  // Every kHousekeepPeriods lease periods: tidy the bank records of owned streams.
  virtual void Housekeep() {}
};

// Threads: Start, Stop and the destructor are called by the owner (the
// node), one at a time; Fence, OwnerOf, Want, TakeNew and Forget by any
// thread (the node's connections). The worker and renewer threads are the
// Cluster's own, and so is the bank's watch thread that wakes the worker.
// mu_ guards what they share (the GUARDED_BY members); members marked
// "worker thread" or "cluster thread" are touched by that thread alone (or
// by Start before the threads run). The bank and the Host are called with
// mu_ not held: hence the EXCLUDES(mu_).
class Cluster {
 public:
  // `bank` and `host` outlive the Cluster.
  Cluster(bank::Bank* bank, ClusterOptions options, Host* host);
  ~Cluster();

  // Registers the node (first heartbeat), takes its share of streams, and
  // starts ticking.
  Status Start() EXCLUDES(mu_);
  // Stops ticking. With `release`, gives up every lease (the node closed its
  // streams first), so other nodes take over at once.
  void Stop(bool release) EXCLUDES(mu_);

  // The op that fences a bank write for `stream`, or nullopt if this node
  // does not hold the stream's lease (or its validity ran out).
  std::optional<bank::Op> Fence(const std::string& stream) EXCLUDES(mu_);

  struct Owner {
    std::string node;
    std::string address;
    std::string mqtt_address;  // its node record's ("" = none)
    uint64_t epoch = 0;
    bool live = false;  // the lease is unexpired and its node heartbeats
  };
  // The stream's owner as the bank says (NotFound: never owned).
  Result<Owner> OwnerOf(const std::string& stream) EXCLUDES(mu_);

  // A client asked for a stream nobody serves: try to take it now.
  void Want(const std::string& stream) EXCLUDES(mu_);
  // A new stream: takes its lease before it is recorded, so no other node
  // opens it first (the caller opens it, or calls Forget if it cannot).
  // Unavailable if another node holds it.
  // Returns the lease's validity (steady ms).
  Result<int64_t> TakeNew(const std::string& stream) EXCLUDES(mu_);
  // Gives the stream's lease up (the node closed it; deleting it).
  void Forget(const std::string& stream) EXCLUDES(mu_);

  uint64_t takeovers() const { return takeovers_.load(); }
  // Leases taken over by another node or lapsed while held (not given up).
  uint64_t leases_lost() const { return leases_lost_.load(std::memory_order_relaxed); }
  // Stream leases held now (acquired, maybe not open yet).
  size_t leases_held() EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return held_.size();
  }
  // This process's incarnation (its node record's), and whether it started
  // as the successor of the process before it.
  uint64_t incarnation() const { return incarnation_; }
  bool successor() const { return successor_; }
  // Stream leases taken back from an earlier process of this node.
  uint64_t inherited() const { return inherited_.load(); }
  // Renewal ticks: how many, and the last one's and the slowest one's
  // duration (steady ms) and number of leases.
  struct RenewStats {
    uint64_t ticks = 0;
    int64_t last_ms = 0;
    int64_t max_ms = 0;
    size_t last_leases = 0;
  };
  RenewStats renew_stats() EXCLUDES(mu_);

 private:
  struct Held {
    bank::Lease lease;
    int64_t valid_until = 0;   // steady ms
    int64_t acquired_at = 0;   // steady ms
    bool open = false;         // the host serves it
  };
  void WorkLoop() EXCLUDES(mu_);   // worker thread
  void RenewLoop() EXCLUDES(mu_);  // renewer thread
  // One round of the worker (Start's thread for the first round).
  void Work() EXCLUDES(mu_);
  // Writes the node record (Start's thread, then the renewer's), compared
  // with the version written last. Someone else wrote it meanwhile: a newer
  // incarnation makes this one step back (Supersede; Aborted), anything
  // else is overwritten. `first` (Register): Aborted at once instead.
  Status Heartbeat(int64_t now, bool first = false) EXCLUDES(mu_);
  void RenewAll() EXCLUDES(mu_);  // renewer thread
  // The rest: the worker thread (or Start's first round).
  void OpenPending() EXCLUDES(mu_);
  // Opens a held stream (if still held at `epoch`) and starts serving it.
  Status TryOpen(const std::string& name, uint64_t epoch) EXCLUDES(mu_);
  // Host::SetValidUntil(name, valid_until) for the lease held at `epoch`,
  // and 0 after it if that lease was lost meanwhile (worker or renewer).
  void GiveValidity(const std::string& name, uint64_t epoch, int64_t valid_until) EXCLUDES(mu_);
  void CloseLost() EXCLUDES(mu_);
  void Balance() EXCLUDES(mu_);
  // Takes the stream's lease: a free one, or (`inherited`) one an earlier
  // process of this node held (SucceedLease).
  // `inherited`: a lease as read, taken over at once with a higher epoch
  // (Bank::SucceedLease) — this node's predecessor's, or (`from_dead`) a
  // peer's proven dead; its owner is this node's id.
  bool Acquire(const std::string& stream, const bank::Lease* inherited = nullptr, bool from_dead = false)
      EXCLUDES(mu_);
  // The first heartbeat: a new incarnation, and whether it succeeds the
  // process before it (Start's thread).
  Status Register() EXCLUDES(mu_);
  // A newer process with this id (incarnation `by`) took over: stop acting
  // for every stream, take none and write no more heartbeats.
  void Supersede(uint64_t by) EXCLUDES(mu_);
  // The lease was taken over or lapsed: stop acting at once (the host's
  // validity drops to 0) and have the worker close the stream. Renewer.
  void Lose(const std::string& stream, const std::string& redirect) EXCLUDES(mu_);
  void ReleaseOne(const std::string& stream) EXCLUDES(mu_);
  // Removes the stream from held_ and returns what was held there.
  std::optional<Held> TakeHeld(const std::string& stream) EXCLUDES(mu_);
  std::string AddressOf(const std::string& node);

  bank::Bank* const bank_;
  const ClusterOptions options_;
  Host* const host_;
  const int64_t started_ms_;

  Mutex mu_;
  CondVar cv_;  // wakes the worker and the renewer: stop_, changed_, wanted_, lost_
  std::map<std::string, Held> held_ GUARDED_BY(mu_);
  std::set<std::string> wanted_ GUARDED_BY(mu_);
  std::set<std::string> renewing_ GUARDED_BY(mu_);  // renewals in flight
  CondVar renew_cv_;                                 // renewing_ shrank
  std::vector<std::pair<std::string, std::string>> lost_ GUARDED_BY(mu_);  // (stream, redirect) to close
  bool stop_ GUARDED_BY(mu_) = false;
  bool changed_ GUARDED_BY(mu_) = false;  // the watch saw a change
  // Leases stepped back from while the bank did not answer, to release once
  // it does.
  std::vector<bank::Lease> orphans_ GUARDED_BY(mu_);
  // Set by Start, reset by Stop (owner's thread); nullptr: the bank cannot watch.
  std::unique_ptr<bank::Bank::Watch> watch_;
  bool watching_ = false;                      // set in Start, before the threads
  bool started_ = false;                       // worker thread: the first round is done
  std::map<std::string, int64_t> released_at_; // cluster thread: streams we gave up (steady ms)
  uint64_t last_rebalance_ = 0;                // cluster thread
  bool rebalance_seen_ = false;                // cluster thread
  uint64_t last_published_ = 0;                // cluster thread
  int64_t last_heartbeat_steady_ = 0;          // cluster thread
  uint64_t incarnation_ = 0;                   // set by Start
  bool successor_ = false;                     // set by Start
  uint64_t record_version_ = 0;                // cluster thread: the node record as last written
  bool superseded_ GUARDED_BY(mu_) = false;    // a newer process with this id took over
  RenewStats renew_stats_ GUARDED_BY(mu_);
  std::atomic<uint64_t> inherited_{0};
  int64_t last_housekeep_steady_ = 0;          // worker thread
  // Removes the records of nodes dead for kDeadNodePeriods (the key space
  // stays bounded as nodes come and go).
  void ForgetDeadNodes();
  void ReleaseOrphans() EXCLUDES(mu_);
  // Until when the node may act on a lease acquired or renewed at t0 (steady ms).
  int64_t ValidUntil(int64_t t0, const bank::Lease& lease) const;
  std::atomic<uint64_t> takeovers_{0};
  std::atomic<uint64_t> leases_lost_{0};
  std::thread thread_;   // worker
  std::thread renewer_;
  // ---- placement groups (cluster/placement_groups.cc)
  // stream -> its leader, for streams whose leader exists (`known`).
  std::map<std::string, std::string> Followers(const std::vector<bank::KeyValue>& streams,
                                               const std::set<std::string>& known);
  // placed_with's answers by stream, with the record version they were for
  // (worker thread): a record is decoded again only when it changed.
  std::map<std::string, std::pair<uint64_t, std::string>> placed_cache_;
  // Takes the free followers of leaders this node holds; gives up the
  // followers it holds whose leader another live node holds (`owner_of`:
  // the leader's live owner, if any), and takes a free leader of followers
  // it holds.
  void PlaceFollowers(const std::map<std::string, std::string>& leader_of,
                      const std::vector<std::string>& free_followers,
                      const std::function<std::optional<std::string>(const std::string&)>& owner_of) EXCLUDES(mu_);
  // ---- dead peers (cluster/dead_peers.cc)
  void ProbeLoop() EXCLUDES(mu_);
  std::thread prober_;  // only with options_.peer_dead
  std::vector<std::string> home_peers_ GUARDED_BY(mu_);  // other ids with our home, as Balance last read
  std::set<std::string> dead_peers_ GUARDED_BY(mu_);    // proven dead at the last probe
  std::atomic<uint64_t> taken_from_dead_{0};
};

}  // namespace floe::cluster
