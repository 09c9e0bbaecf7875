// Stream admin: create (the creating node takes the stream's lease first),
// delete, list every stream of the cluster, describe one. Each call runs on
// the core's bank pool: it reads and commits to the bank and may recover a
// stream from disk.
#include <fmt/format.h>

#include "broker/core.h"

namespace floe::broker {

void Broker::CreateStream(std::string name, StreamConfig config, std::function<void(Outcome<void>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, name = std::move(name), config = std::move(config), done = std::move(done)] {
    if (Status v = ValidateStreamName(name); !v.ok()) return done(Fail(Code::kInvalidName, std::string(v.message())));
    if (core->registry->Get(name)) return done(Fail(Code::kStreamExists, fmt::format("stream {} exists", name)));
    // The lease first, so no other node opens the stream before it exists.
    auto valid_until = core->cluster->TakeNew(name);
    if (!valid_until) {
      if (core->bank->Get(StreamKey(name))) return done(Fail(Code::kStreamExists, fmt::format("stream {} exists", name)));
      return done(tl::unexpected(FailureOf(valid_until.error())));
    }
    auto r = core->registry->Create(name, config, core->cluster->Fence(name));
    if (!r) {
      core->cluster->Forget(name);
      return done(tl::unexpected(FailureOf(r.error())));
    }
    (*r)->SetValidUntil(*valid_until);
    core->StreamChanged(name, &config);
    done({});
  });
}

void Broker::DeleteStream(std::string name, std::function<void(Outcome<void>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, name = std::move(name), done = std::move(done)] {
    auto entry = core->Served(name);
    if (!entry) return done(tl::unexpected(core->Locate(name)));
    // A dead-letter stream outlives the streams that send to it: deleting it
    // first would drop the messages their consumers give up on.
    auto all = core->bank->List(kStreamsPrefix);
    if (!all) return done(tl::unexpected(FailureOf(all.error())));
    for (const auto& kv : *all) {
      auto config = DecodeStreamConfig(kv.value);
      if (config && config->dead_letter == name)
        return done(Fail(Code::kInvalidArgument,
                         fmt::format("stream {} is the dead-letter stream of {}: delete {} first", name,
                                     kv.key.substr(kStreamsPrefix.size()), kv.key.substr(kStreamsPrefix.size()))));
    }
    Status s = core->registry->Delete(name, core->cluster->Fence(name));
    if (s.IsNotFound()) return done(Fail(Code::kUnknownStream, std::string(s.message())));  // deleted meanwhile
    if (!s.ok()) return done(tl::unexpected(FailureOf(s)));
    core->Evict(entry, "");
    core->cluster->Forget(name);
    core->StreamChanged(name, nullptr);
    done({});
  });
}

void Broker::AddStreamListener(std::function<void(const std::string& name, const StreamConfig* config)> fn) {
  MutexLock l(&core_->stream_listeners_mu);
  core_->stream_listeners.push_back(std::move(fn));
}

void Broker::ListStreams(std::function<void(Outcome<std::vector<std::string>>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, done = std::move(done)] {
    // Every stream of the cluster, not only those this node serves.
    auto all = core->bank->List(kStreamsPrefix);
    if (!all) return done(tl::unexpected(FailureOf(all.error())));
    std::vector<std::string> names;
    for (const auto& kv : *all) names.push_back(kv.key.substr(kStreamsPrefix.size()));
    done(std::move(names));
  });
}

void Broker::ListStreamConfigs(
    std::function<void(Outcome<std::vector<std::pair<std::string, StreamConfig>>>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, done = std::move(done)] {
    auto all = core->bank->List(kStreamsPrefix);
    if (!all) return done(tl::unexpected(FailureOf(all.error())));
    std::vector<std::pair<std::string, StreamConfig>> out;
    for (const auto& kv : *all) {
      auto config = DecodeStreamConfig(kv.value);
      if (!config) continue;  // a record this node cannot read binds nothing
      out.emplace_back(kv.key.substr(kStreamsPrefix.size()), std::move(*config));
    }
    done(std::move(out));
  });
}

void Broker::DescribeStream(std::string name, std::function<void(Outcome<StreamStatus>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, name = std::move(name), done = std::move(done)] {
    auto s = core->Served(name);
    if (!s) return done(tl::unexpected(core->Locate(name)));
    auto st = s->log().stats();
    StreamStatus out;
    out.name = s->name();
    out.config = s->config();
    out.first_seq = StreamSeq(st.first_seq);
    out.frontier = StreamSeq(st.frontier);
    out.bytes = st.bytes;
    for (const std::shared_ptr<ConsumerGroup>& g : s->Consumers()) {
      MutexLock l(&g->mu);
      const uint64_t floor = g->cursor.ack_floor();
      out.consumers.push_back({g->name, StreamSeq(floor), StreamSeq(g->cursor.next_seq()),
                               static_cast<uint32_t>(g->cursor.pending().size()),
                               st.frontier > floor ? st.frontier - floor : 0});
    }
    done(std::move(out));
  });
}

}  // namespace floe::broker
