// The only file that includes httplib.h (it is large: one translation unit
// keeps the build fast).
#include "http/server.h"

#include <httplib.h>

#include <deque>
#include <functional>
#include <optional>

#include <fmt/format.h>

#include "base/mutex.h"
#include "broker/broker.h"
#include "broker/observe.h"
#include "http/views.h"
#include "http/webview/assets.h"
#include "model/types.h"

namespace floe::http {

namespace {

// Runs the requests' bank reads on one thread of its own, so that a handler
// waits for them at most `timeout`: a bank that does not answer (an etcd
// bank retries each call for 15 s) makes /readyz say so in time instead of
// hanging the probe. At most kMaxQueued reads wait; past that a request is
// answered at once, as if its read timed out, so a dead bank never piles up
// work.
class BankReader {
 public:
  BankReader() : thread_([this] { Loop(); }) {}
  ~BankReader() { Stop(); }
  // Drops what waits and joins the thread: after it nothing reads the
  // broker. Waits for the read under way (bounded by the bank's own retries).
  void Stop() {
    {
      MutexLock l(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    if (thread_.joinable()) thread_.join();
  }

  // fn() on the reader thread; nullopt if it did not finish within `timeout`.
  template <typename T>
  std::optional<T> Run(std::function<T()> fn, std::chrono::milliseconds timeout) {
    struct Slot {
      Mutex mu;
      CondVar cv;
      std::optional<T> value GUARDED_BY(mu);
    };
    auto slot = std::make_shared<Slot>();
    {
      MutexLock l(&mu_);
      if (stop_ || queue_.size() >= kMaxQueued) return std::nullopt;
      queue_.push_back([slot, fn = std::move(fn)] {
        T v = fn();
        MutexLock sl(&slot->mu);
        slot->value = std::move(v);
        slot->cv.SignalAll();
      });
      cv_.SignalAll();
    }
    const auto until = std::chrono::steady_clock::now() + timeout;
    MutexLock l(&slot->mu);
    while (!slot->value && slot->cv.WaitUntil(&slot->mu, until)) {
    }
    if (!slot->value) return std::nullopt;
    return std::move(slot->value);
  }

 private:
  static constexpr size_t kMaxQueued = 4;
  void Loop() {
    MutexLock l(&mu_);
    while (true) {
      while (!stop_ && queue_.empty()) cv_.Wait(&mu_);
      if (stop_) return;
      std::function<void()> job = std::move(queue_.front());
      queue_.pop_front();
      mu_.Unlock();
      job();
      mu_.Lock();
    }
  }
  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

class Server::Impl {
 public:
  Impl(broker::Broker* b, std::chrono::milliseconds t) : broker(b), bank_timeout(t) {}
  broker::Broker* const broker;
  const std::chrono::milliseconds bank_timeout;
  BankReader reader;  // outlives `server`'s handlers: Stop() ends the server first
  httplib::Server server;

  // What the bank and the node say; when the bank did not answer in time,
  // what the node knows alone, marked unready.
  broker::NodeView Observe() {
    auto v = reader.Run<broker::NodeView>([b = broker] { return b->Observe(); }, bank_timeout);
    if (v) return std::move(*v);
    broker::NodeView local = broker->ObserveLocal();
    local.bank = Status::Unavailable(
        fmt::format("the bank did not answer within {} ms", bank_timeout.count()));
    local.not_ready = "bank unreachable: " + local.bank.ToString();
    return local;
  }
};

namespace {

constexpr const char* kJson = "application/json";

void SendError(httplib::Response& res, int status, std::string_view code, std::string_view message) {
  res.status = status;
  res.set_content(ErrorJson(status, code, message), kJson);
}

// One of the web view's files (docs/operations.md "The web view"). no-cache:
// the browser revalidates each time, so a node's new binary shows its new
// page at the next load. The page may load only from this node ('self'),
// which it does anyway: the policy keeps it so.
void SendFile(httplib::Response& res, const webview::EmbeddedFile& file) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'");
  res.set_content(file.body.data(), file.body.size(), std::string(webview::ContentType(file.name)));
}

void Routes(Server::Impl* impl) {
  httplib::Server& s = impl->server;
  broker::Broker* b = impl->broker;
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  s.Get("/readyz", [impl](const httplib::Request&, httplib::Response& res) {
    const broker::NodeView v = impl->Observe();
    res.status = v.not_ready.empty() ? 200 : 503;
    res.set_content(ReadyJson(v), kJson);
  });
  s.Get("/metrics", [impl, b](const httplib::Request&, httplib::Response& res) {
    const broker::NodeView v = impl->Observe();
    res.set_content(MetricsText(v, b->metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/api/v1/cluster", [impl](const httplib::Request&, httplib::Response& res) {
    const broker::NodeView v = impl->Observe();
    if (!v.bank.ok()) return SendError(res, 503, "UNAVAILABLE", v.bank.ToString());
    res.set_content(ClusterJson(v), kJson);
  });
  s.Get("/api/v1/streams", [impl](const httplib::Request&, httplib::Response& res) {
    const broker::NodeView v = impl->Observe();
    if (!v.bank.ok()) return SendError(res, 503, "UNAVAILABLE", v.bank.ToString());
    res.set_content(StreamsJson(v), kJson);
  });
  // One path segment of a valid stream name; the name rule is the broker's.
  s.Get(R"(/api/v1/streams/([^/]+))", [impl](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (Status ok = ValidateStreamName(name); !ok.ok()) return SendError(res, 400, "INVALID_NAME", ok.message());
    const broker::NodeView v = impl->Observe();
    if (!v.bank.ok()) return SendError(res, 503, "UNAVAILABLE", v.bank.ToString());
    auto json = StreamJson(v, name);
    if (!json) return SendError(res, 404, "UNKNOWN_STREAM", fmt::format("no stream named '{}'", name));
    res.set_content(*json, kJson);
  });
  s.Get("/api/v1/sessions", [impl, b](const httplib::Request&, httplib::Response& res) {
    const broker::NodeView v = impl->Observe();
    if (!v.bank.ok()) return SendError(res, 503, "UNAVAILABLE", v.bank.ToString());
    using Sessions = Result<std::vector<broker::SessionRecord>>;
    auto sessions = impl->reader.Run<Sessions>([b] { return b->SessionRecords(); }, impl->bank_timeout);
    if (!sessions) return SendError(res, 503, "UNAVAILABLE", "the bank did not answer in time");
    if (!*sessions) return SendError(res, 503, "UNAVAILABLE", sessions->error().ToString());
    res.set_content(SessionsJson(v, **sessions), kJson);
  });
  // The web view: the page at /, its script and style sheet under /webview/.
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    const webview::EmbeddedFile* page = webview::FindFile("index.html");
    if (!page) return SendError(res, 404, "NOT_FOUND", "this build has no web view");
    SendFile(res, *page);
  });
  s.Get(R"(/webview/([A-Za-z0-9_.-]+))", [](const httplib::Request& req, httplib::Response& res) {
    const webview::EmbeddedFile* file = webview::FindFile(req.matches[1].str());
    if (!file) return SendError(res, 404, "NOT_FOUND", fmt::format("no such path: {}", req.path));
    SendFile(res, *file);
  });
  // Anything else: 404 for GET/HEAD, 405 for every other method.
  s.Get(".*", [](const httplib::Request& req, httplib::Response& res) {
    SendError(res, 404, "NOT_FOUND", fmt::format("no such path: {}", req.path));
  });
  // Before routing, so a body is never read for a method refused anyway.
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("Allow", "GET, HEAD");
    SendError(res, 405, "METHOD_NOT_ALLOWED", fmt::format("{} is not allowed: only GET and HEAD", req.method));
    return httplib::Server::HandlerResponse::Handled;
  });
  // A handler that throws (it should not: floe reports errors as values)
  // is a 500 with a JSON body, never a dead listener thread.
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    SendError(res, 500, "INTERNAL", "the request failed");
  });
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options, broker::Broker* broker) {
  const size_t colon = options.listen.rfind(':');
  if (colon == std::string::npos)
    return Err(Status::InvalidArgument(fmt::format("--http-listen '{}': HOST:PORT", options.listen)));
  std::string host = options.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  try {
    port = std::stoi(options.listen.substr(colon + 1));
  } catch (...) {
  }
  if (port < 0 || port > 65535)
    return Err(Status::InvalidArgument(fmt::format("--http-listen '{}': the port must be 0-65535", options.listen)));

  std::unique_ptr<Server> out(new Server());
  out->impl_ = std::make_unique<Impl>(broker, std::chrono::milliseconds(options.bank_timeout_ms));
  httplib::Server& s = out->impl_->server;
  const int threads = std::max(1, options.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options.max_request_body_bytes);
  s.set_read_timeout(options.read_timeout_s, 0);
  s.set_write_timeout(options.write_timeout_s, 0);
  // One request per connection: cpp-httplib keeps a connection's pool
  // thread while it waits for the next request, so a browser's idle
  // keep-alive connections (the web view opens several) would hold every
  // thread and starve /metrics and the page's own polls for seconds.
  s.set_keep_alive_max_count(1);
  Routes(out->impl_.get());
  const int bound = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return Err(Status::Unavailable(fmt::format("--http-listen {}: cannot bind (in use, or not a local address)",
                                               options.listen)));
  out->host_ = host;
  out->port_ = static_cast<uint16_t>(bound);
  Impl* impl = out->impl_.get();
  out->thread_ = std::thread([impl] { impl->server.listen_after_bind(); });
  // Stop() is a no-op until the loop runs: wait for it, so a Stop right
  // after Start cannot leave the loop running and the join hanging.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!s.is_running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return out;
}

void Server::Stop() {
  if (!impl_) return;
  impl_->server.stop();
  if (thread_.joinable()) thread_.join();
  impl_->reader.Stop();  // before the node stops the broker it reads
}

Server::~Server() { Stop(); }

}  // namespace floe::http
