// Admin: stream create/delete/list/info over one connection, request by
// request. No reader thread: each call sends its request and reads until the
// reply with its request id arrives (Connection::Call).
//
// Thread safety: calls are serialised by mu_, so an Admin may be shared.
// A broken connection is dropped and the next call connects again (trying
// the servers in turn). A call whose connection broke mid-request is not
// resent: create and delete are not idempotent, so the caller learns
// Unavailable and decides.
#include <fmt/format.h>

#include "base/mutex.h"
#include "client/client.h"
#include "client/connection.h"

namespace floe::client {
namespace {

using internal::Connection;

class AdminImpl final : public Admin {
 public:
  explicit AdminImpl(const ClientOptions& options) : options_(options) {}

  Status Start() EXCLUDES(mu_) {
    MutexLock lk(&mu_);
    return EnsureConnected();
  }

  Status CreateStream(const std::string& name, const wire::StreamConfig& config) override EXCLUDES(mu_) {
    FLOE_RETURN_IF_ERROR(wire::ValidateStreamName(name));
    wire::StreamCreate req;
    req.name = name;
    req.config = config;
    MutexLock lk(&mu_);
    return StatusOf(Call<wire::Ok>(req));
  }

  Status DeleteStream(const std::string& name) override EXCLUDES(mu_) {
    MutexLock lk(&mu_);
    return StatusOf(Call<wire::Ok>(wire::StreamDelete{.name = name}));
  }

  Result<std::vector<std::string>> ListStreams() override EXCLUDES(mu_) {
    MutexLock lk(&mu_);
    auto reply = Call<wire::StreamListOk>(wire::StreamList{});
    if (!reply) return Err(reply.error());
    return std::vector<std::string>(reply->names.begin(), reply->names.end());
  }

  Result<StreamInfo> Info(const std::string& name) override EXCLUDES(mu_) {
    MutexLock lk(&mu_);
    auto reply = Call<wire::StreamInfoOk>(wire::StreamInfo{.name = name});
    if (!reply) return Err(reply.error());
    return ToStreamInfo(*reply);
  }

 private:
  Status EnsureConnected() REQUIRES(mu_) {
    if (conn_) return Status::OK();
    auto conn = internal::ConnectAny(options_, nullptr, &cancel_, &next_server_);
    if (!conn) return conn.error();
    conn_ = std::move(*conn);
    return Status::OK();
  }

  // The reply's views point into conn_'s read buffer: copy before the next
  // call. Socket failures (and a silent node) drop the connection.
  // A NOT_OWNER answer (info or delete of a stream another node owns) is
  // followed to the owner, on a connection of its own.
  template <typename Reply, typename Request>
  Result<Reply> Call(const Request& req) REQUIRES(mu_) {
    FLOE_RETURN_ERR_IF_ERROR(EnsureConnected());
    auto reply = conn_->Call<Reply>(req, internal::kRequestTimeoutMs);
    if (!reply && conn_->broken()) {
      conn_.reset();
      return Err(Status::Unavailable(
          fmt::format("connection lost; the request may or may not have been applied: {}", reply.error().message())));
    }
    for (int hop = 0; !reply && !conn_->redirect().empty() && hop < internal::kMaxRedirectHops; ++hop) {
      auto owner = Connection::Open(conn_->redirect(), options_, &cancel_);
      if (!owner) return Err(owner.error());
      redirected_ = std::move(*owner);
      reply = redirected_->Call<Reply>(req, internal::kRequestTimeoutMs);
      if (reply || redirected_->redirect().empty()) break;
      conn_ = std::move(redirected_);
    }
    return reply;
  }

  static Status StatusOf(const Result<wire::Ok>& r) { return r ? Status::OK() : r.error(); }

  static StreamInfo ToStreamInfo(const wire::StreamInfoOk& r) {
    StreamInfo info;
    info.name = std::string(r.name);
    info.config = r.config;
    info.first_seq = r.first_seq;
    info.frontier = r.frontier;
    info.bytes = r.bytes;
    info.consumers.reserve(r.consumers.size());
    for (const auto& c : r.consumers)
      info.consumers.push_back({std::string(c.name), c.ack_floor, c.next_seq, c.pending, c.lag});
    return info;
  }

  const ClientOptions options_;
  internal::Canceller cancel_;  // never cancelled: Admin calls are short-lived
  Mutex mu_;
  // The connections are guarded (the pointers and their use: one reader at a
  // time, and a reply's views live in their read buffers until the next call).
  std::unique_ptr<Connection> conn_ GUARDED_BY(mu_);  // null until (re)connected
  std::unique_ptr<Connection> redirected_ GUARDED_BY(mu_);  // the owner's connection a reply's views point into
  size_t next_server_ GUARDED_BY(mu_) = 0;
};

}  // namespace

Result<std::unique_ptr<Admin>> Admin::Connect(const ClientOptions& options) {
  auto admin = std::make_unique<AdminImpl>(options);
  FLOE_RETURN_ERR_IF_ERROR(admin->Start());
  return std::unique_ptr<Admin>(std::move(admin));
}

}  // namespace floe::client
