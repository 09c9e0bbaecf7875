// Internal to the client library: the session link that a Producer and a
// Consumer each hold by composition. It owns what both need to keep one
// session alive across connections (docs/protocol.md, Sessions):
//   * connecting to options.servers in turn with backoff, HELLO, and
//     SESSION_OPEN with the session id (resuming it after a break, and
//     refusing a node that opens another id), following NOT_OWNER redirects;
//   * the receiver thread: the socket's only reader; it answers PING, follows
//     a connection-level ERROR's redirect, hands every other frame to the
//     role, and on any break reconnects, paced by a ReconnectPacer, until
//     reconnect_give_up_ms pass without a usable connection;
//   * shutdown: GOODBYE, half-close, a second for the node to close its
//     side, then the cut.
// What a session carries (messages in flight, replies awaited, a
// subscription) belongs to the role, which the link calls through
// SessionRole.
//
// Locking: the link has no mutex of its own. It shares its owner's (`mu`,
// given to the constructor), so a connection change and the role's reaction
// to it (resend what is unacknowledged, fail waiting replies) are one
// critical section, and the hot paths take one lock, not two. The owner
// names that mutex as link_.mu() (RETURN_CAPABILITY), never by its own
// member: its fields are GUARDED_BY(link_.mu()) and it locks link_.mu(), so
// the clang thread-safety analysis sees the one mutex the link's accessors
// REQUIRE (two names for it would look like two mutexes).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "base/mutex.h"
#include "base/status.h"
#include "client/client.h"
#include "client/connection.h"
#include "wire/protocol.h"

namespace floe::client::internal {

// SESSION_OPEN on a fresh connection, and the checks every session makes of
// the answer: the node never opens session 0, and a resumed session keeps
// its id (under another id, dedup by (session, producer seq) would fail and
// a resend could be stored twice).
Result<wire::SessionOk> OpenSessionOn(Connection& conn, const wire::SessionOpen& open);

// What a producer or a consumer adds to the link. Each hook says which
// thread calls it and whether the shared mutex is held (an override of a
// "mutex held" hook is REQUIRES(link_.mu()): the analysis then checks its
// body, though not the link's call through this interface).
class SessionRole {
 public:
  virtual ~SessionRole() = default;
  // The SESSION_OPEN to send, for `session_id` (0: a new session). Its views
  // must outlive the call. Connecting thread, mutex not held.
  virtual wire::SessionOpen SessionRequest(uint64_t session_id) = 0;
  // The node opened the session. Connecting thread, mutex held.
  virtual void SessionOpened(const wire::SessionOk& ok) = 0;
  // `conn` is now the link's connection (conn_gen() already bumped). Returns
  // frames to write on it once the mutex is released ("" for none): the
  // consumer renews its subscription so. Connecting thread, mutex held.
  virtual std::string Connected(Connection& conn) = 0;
  // The link's connection broke and was dropped: every request in flight on
  // it is lost. Receiver thread (or the owner's thread in Cut), mutex held.
  virtual void Disconnected() = 0;
  // Reconnecting gave up: broken() is set and the receiver is about to
  // exit. Receiver thread, mutex NOT held (the role may run callbacks).
  virtual void GaveUp(const Status& why) = 0;
  // Every frame but PING and a connection-level ERROR (request id 0). The
  // frame's body points into the connection's read buffer until the hook
  // returns. Receiver thread, mutex not held.
  virtual void HandleFrame(Connection& conn, const Frame& frame) = 0;
};

// Threads: the constructor, Start and Stop* run on the owner's thread (Stop*
// also from its destructor); the receiver thread is the link's own. Accessors
// marked "mu held" need the owner's mutex; the counters are atomic.
//
// States, moved by the receiver (and Start): connected (conn_ set);
// reconnecting (conn_ null, stopping_ and broken_ unset); broken (broken_
// set: gave up, terminal); stopping (set by BeginStop, terminal). A
// connection is installed only while neither broken nor stopping, in the
// same critical section that checks it, so Stop never misses one.
class SessionLink {
 public:
  // `what` names the owner in errors ("producer"). `options`, `mu` and
  // `role` must outlive the link.
  SessionLink(const ClientOptions& options, uint64_t session_id, Mutex& mu, SessionRole* role,
              const char* what);
  ~SessionLink();  // precondition: stopped (FinishStop) or never started
  SessionLink(const SessionLink&) = delete;
  SessionLink& operator=(const SessionLink&) = delete;

  // Connects and opens the session on the caller's thread (the first
  // connection's failure is the caller's error), then starts the receiver.
  Status Start() EXCLUDES(mu_);

  // Shutting down, in two steps around the owner stopping its own threads.
  // BeginStop: the link is stopping; a connect or backoff in progress is
  // woken. False if it was stopped before. Mutex not held.
  bool BeginStop() EXCLUDES(mu_);
  // Graceful: GOODBYE and half-close, then up to a second for the node to
  // close its side (the receiver sees EOF and exits). Then the connection is
  // cut and the receiver joined. Mutex not held.
  void FinishStop(bool graceful) EXCLUDES(mu_);

  // Cuts the current connection on purpose (the consumer's Stop): the next
  // one is not counted as a reconnect nor paced. Mutex held.
  void MarkPlannedReset() REQUIRES(mu_) { planned_reset_ = true; }

  // Shuts `conn` down and, if it is still the link's connection, drops it
  // (Disconnected runs on this thread): for a writer whose send failed, so
  // nothing more goes out on it before the receiver notices. Mutex held.
  void Cut(const std::shared_ptr<Connection>& conn) REQUIRES(mu_);

  // Follows `redirect` ("" keeps the server list) on the next connection and
  // cuts `conn`. Receiver thread only (from HandleFrame).
  void Redirect(Connection& conn, std::string redirect);

  // Waits on the link's condition variable (releasing the mutex meanwhile)
  // until a connection is installed; FailedPrecondition when stopping,
  // broken() when broken. Mutex held.
  Status WaitForConnection() REQUIRES(mu_);

  // The shared mutex (the owner's), as the analysis is to name it.
  Mutex& mu() const RETURN_CAPABILITY(mu_) { return mu_; }

  // Mutex held for these four.
  const std::shared_ptr<Connection>& conn() const REQUIRES(mu_) { return conn_; }
  uint64_t conn_gen() const REQUIRES(mu_) { return conn_gen_; }  // bumped per installed connection
  bool stopping() const REQUIRES(mu_) { return stopping_; }
  const Status& broken() const REQUIRES(mu_) { return broken_; }  // OK until reconnecting gave up

  // Any thread.
  uint64_t session_id() const { return session_id_.load(); }
  uint64_t reconnects() const { return reconnects_.load(); }
  uint64_t redirects() const { return redirects_followed_.load(); }

 private:
  Status OpenSession(Connection& conn) EXCLUDES(mu_);
  Result<std::unique_ptr<Connection>> Connect(int64_t give_up_at_steady_ms) EXCLUDES(mu_);
  bool Install(std::unique_ptr<Connection> fresh) EXCLUDES(mu_);
  void ReceiverLoop() EXCLUDES(mu_);
  bool Reconnect() EXCLUDES(mu_);

  const ClientOptions& options_;
  Mutex& mu_;                // the owner's
  SessionRole* const role_;  // the owner
  const char* const what_;
  Canceller cancel_;
  std::atomic<uint64_t> session_id_;
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> redirects_followed_{0};

  // Used by the one thread connecting (Start, then the receiver); no mutex.
  Redirects redirects_;
  size_t next_server_ = 0;
  ReconnectPacer pacer_;

  CondVar cv_;  // connection installed, broken, stopping, receiver exited
  std::shared_ptr<Connection> conn_ GUARDED_BY(mu_);  // null while reconnecting
  // A connection in SESSION_OPEN, so BeginStop can wake it. The pointer is
  // guarded; the Connection is not (its Shutdown is for any thread).
  Connection* handshake_conn_ GUARDED_BY(mu_) = nullptr;
  uint64_t conn_gen_ GUARDED_BY(mu_) = 0;
  Status broken_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  bool stopped_ GUARDED_BY(mu_) = false;        // BeginStop ran
  bool planned_reset_ GUARDED_BY(mu_) = false;  // the owner cut conn_ on purpose
  bool receiver_exited_ GUARDED_BY(mu_) = false;

  std::thread receiver_;
};

}  // namespace floe::client::internal
