#include "client/session_link.h"

#include <cassert>
#include <chrono>

#include <fmt/format.h>

namespace floe::client::internal {

Result<wire::SessionOk> OpenSessionOn(Connection& conn, const wire::SessionOpen& open) {
  auto ok = conn.Call<wire::SessionOk>(open, kRequestTimeoutMs);
  if (!ok) return ok;
  if (ok->session_id == 0) return Err(Status::Internal("node opened session 0"));
  if (open.session_id != 0 && ok->session_id != open.session_id)
    return Err(Status::FailedPrecondition(
        fmt::format("asked to resume session {} but the node opened session {}", open.session_id, ok->session_id)));
  return ok;
}

SessionLink::SessionLink(const ClientOptions& options, uint64_t session_id, Mutex& mu, SessionRole* role,
                         const char* what)
    : options_(options), mu_(mu), role_(role), what_(what), session_id_(session_id), pacer_(options) {}

SessionLink::~SessionLink() { assert(!receiver_.joinable() && "FinishStop before destroying a started link"); }

// --- Connecting --------------------------------------------------------------

Status SessionLink::Start() {
  auto conn = Connect(-1);
  if (!conn) return conn.error();
  if (!Install(std::move(*conn))) return Status::Aborted(fmt::format("{} closed", what_));
  receiver_ = std::thread([this] { ReceiverLoop(); });
  return Status::OK();
}

Result<std::unique_ptr<Connection>> SessionLink::Connect(int64_t give_up_at_steady_ms) {
  auto conn = ConnectAny(options_, [this](Connection& c) { return OpenSession(c); }, &cancel_, &next_server_,
                         give_up_at_steady_ms, &redirects_);
  redirects_followed_ = redirects_.followed;
  return conn;
}

// Runs on the connecting thread, on a connection no other thread sees yet.
Status SessionLink::OpenSession(Connection& conn) {
  const uint64_t asked = session_id_.load();
  {
    MutexLock lk(&mu_);
    if (stopping_) return Status::Aborted(fmt::format("{} closed", what_));
    handshake_conn_ = &conn;
  }
  auto ok = OpenSessionOn(conn, role_->SessionRequest(asked));
  MutexLock lk(&mu_);
  handshake_conn_ = nullptr;
  if (!ok) return ok.error();
  session_id_ = ok->session_id;
  role_->SessionOpened(*ok);
  return Status::OK();
}

// False (and the connection closed) when stopping: checked in the same
// critical section that installs, so FinishStop always sees the connection
// it must cut.
bool SessionLink::Install(std::unique_ptr<Connection> fresh) {
  std::shared_ptr<Connection> conn = std::move(fresh);
  pacer_.Connected();
  std::string frames;
  {
    MutexLock lk(&mu_);
    if (stopping_) return false;
    conn_ = conn;
    if (conn_gen_++ > 0) {
      if (planned_reset_) planned_reset_ = false;
      else ++reconnects_;
    }
    frames = role_->Connected(*conn);
    cv_.SignalAll();
  }
  // A failed send shows up as a failed read, and the next connection retries.
  if (!frames.empty()) (void)conn->SendFrame(frames);
  return true;
}

Status SessionLink::WaitForConnection() {
  while (!conn_ && !stopping_ && broken_.ok()) cv_.Wait(&mu_);
  if (stopping_) return Status::FailedPrecondition(fmt::format("{} closed", what_));
  return broken_;
}

// --- Receiver ------------------------------------------------------------------

void SessionLink::ReceiverLoop() {
  for (;;) {
    std::shared_ptr<Connection> conn;
    {
      MutexLock lk(&mu_);
      if (stopping_ && !conn_) break;
      conn = conn_;
    }
    if (!conn) {
      if (!Reconnect()) break;
      continue;
    }
    auto frame = conn->ReadFrame();
    if (!frame) {
      MutexLock lk(&mu_);
      Cut(conn);
      continue;
    }
    pacer_.Progressed();
    const wire::FrameHeader& h = frame->header;
    if (h.type == wire::FrameType::kPing) {
      (void)conn->Send(h.request_id, wire::Pong{});
    } else if (h.type == wire::FrameType::kError && h.request_id == 0) {
      // About the connection itself (e.g. the stream moved to another node);
      // the node closes it next.
      Redirect(*conn, RedirectOf(frame->body));
    } else {
      role_->HandleFrame(*conn, *frame);
    }
  }
  MutexLock lk(&mu_);
  receiver_exited_ = true;
  cv_.SignalAll();
}

void SessionLink::Cut(const std::shared_ptr<Connection>& conn) {
  conn->Shutdown();
  if (conn_ != conn) return;
  conn_.reset();
  role_->Disconnected();
}

void SessionLink::Redirect(Connection& conn, std::string redirect) {
  if (!redirect.empty()) redirects_.hint = std::move(redirect);
  conn.Shutdown();
}

// Gives up (false) when stopping or when no server accepted the session in
// time; then the link is broken for good.
bool SessionLink::Reconnect() {
  bool planned;
  {
    MutexLock lk(&mu_);
    planned = planned_reset_;
  }
  // The owner's own reset is no sign of a sick node: no pause after it.
  if (planned) pacer_.Progressed();
  if (!cancel_.SleepFor(pacer_.DelayMs())) return false;
  // Connections that keep dying at once count against the give-up time too.
  Result<std::unique_ptr<Connection>> conn =
      SteadyNowMs() >= pacer_.GiveUpAtSteadyMs()
          ? Err(Status::Unavailable(
                fmt::format("connections kept breaking for {} ms; giving up", options_.reconnect_give_up_ms)))
          : Connect(pacer_.GiveUpAtSteadyMs());
  if (conn) return Install(std::move(*conn));
  {
    MutexLock lk(&mu_);
    if (stopping_) return false;
    broken_ = conn.error();
    cv_.SignalAll();
  }
  role_->GaveUp(conn.error());
  return false;
}

// --- Stopping ------------------------------------------------------------------

bool SessionLink::BeginStop() {
  {
    MutexLock lk(&mu_);
    if (stopped_) return false;
    stopped_ = true;
    stopping_ = true;
    if (handshake_conn_) handshake_conn_->Shutdown();
    cv_.SignalAll();
  }
  cancel_.Cancel();
  return true;
}

void SessionLink::FinishStop(bool graceful) {
  std::shared_ptr<Connection> conn;
  {
    MutexLock lk(&mu_);
    conn = conn_;
  }
  if (conn) {
    if (graceful && conn->Send(conn->NextRequestId(), wire::Goodbye{}).ok()) {
      conn->ShutdownWrite();
      const auto deadline = SteadyClock::now() + std::chrono::seconds(1);
      MutexLock lk(&mu_);
      while (!receiver_exited_ && cv_.WaitUntil(&mu_, deadline)) {}
    }
    conn->Shutdown();
  }
  if (receiver_.joinable()) receiver_.join();
  MutexLock lk(&mu_);
  conn_.reset();
}

}  // namespace floe::client::internal
