// Watches on etcd: one Watch stream per WatchPrefixes call, resumed after
// the last revision seen; a cancel or compaction is reported as a resync.
#include "bank/etcd_internal.h"

namespace floe::bank::etcd {

// Its thread (Run) reads the stream and calls `changed`; the destructor, on
// the owner's thread, stops it. mu_ guards the hand-over between the two.
class EtcdWatch final : public Bank::Watch {
 public:
  EtcdWatch(EtcdBank* bank, std::vector<std::string> prefixes, Bank::WatchFn changed)
      : bank_(bank), prefixes_(std::move(prefixes)), changed_(std::move(changed)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~EtcdWatch() override {
    {
      MutexLock l(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    cv_.SignalAll();
    thread_.join();
  }

 private:
  void Run() EXCLUDES(mu_) {
    int64_t next_revision = 0;  // 0: from now
    int backoff_ms = 50;
    bool reported = false;      // this outage's resync was reported
    for (size_t attempt = 0;; ++attempt) {
      const size_t i = (bank_->current_.load() + attempt) % bank_->stubs_.size();
      grpc::ClientContext ctx;
      {
        MutexLock l(&mu_);
        if (stop_) return;
        ctx_ = &ctx;
      }
      auto stream = bank_->stubs_[i].watch->Watch(&ctx);
      bool ok = true;
      for (const std::string& p : prefixes_) {
        etcdserverpb::WatchRequest req;
        auto* create = req.mutable_create_request();
        create->set_key(bank_->prefix_ + p);
        create->set_range_end(PrefixEnd(bank_->prefix_ + p));
        create->set_start_revision(next_revision);
        ok = ok && stream->Write(req);
      }
      bool compacted = false;
      etcdserverpb::WatchResponse resp;
      while (ok && stream->Read(&resp)) {
        if (resp.compact_revision() > 0 || resp.canceled()) {
          // History we needed is gone (compacted) or etcd dropped the watch:
          // the caller looks again, and the watch goes on from the oldest
          // revision etcd still has, so nothing after it is missed (even
          // while the caller looks, or before the watch is back).
          if (resp.compact_revision() > 0) next_revision = resp.compact_revision();
          compacted = true;
          break;
        }
        if (resp.created()) {
          backoff_ms = 50;
          reported = false;  // watching again: the next cut is news
        }
        if (next_revision == 0 && resp.header().revision() > 0) next_revision = resp.header().revision() + 1;
        for (const auto& ev : resp.events()) {
          next_revision = std::max(next_revision, ev.kv().mod_revision() + 1);
          changed_(std::string_view(ev.kv().key()).substr(bank_->prefix_.size()), false);
        }
      }
      ctx.TryCancel();
      (void)stream->Finish();
      {
        MutexLock l(&mu_);
        ctx_ = nullptr;
        if (stop_) return;
      }
      // Cut (member gone) or behind a compaction: whatever changed meanwhile
      // is found by looking again (said once per outage); then watch again,
      // from where we were if we can.
      if (compacted || !reported) changed_("", true);
      reported = true;
      MutexLock l(&mu_);
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::milliseconds(compacted && next_revision > 0 ? 0 : backoff_ms);
      while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {}
      backoff_ms = std::min(backoff_ms * 2, 1000);
    }
  }

  EtcdBank* const bank_;
  const std::vector<std::string> prefixes_;
  const Bank::WatchFn changed_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ GUARDED_BY(mu_) = nullptr;  // the stream to cancel
  std::thread thread_;
};

std::unique_ptr<Bank::Watch> EtcdBank::WatchPrefixes(std::vector<std::string> prefixes, WatchFn changed) {
  return std::make_unique<EtcdWatch>(this, std::move(prefixes), std::move(changed));
}

}  // namespace floe::bank::etcd
