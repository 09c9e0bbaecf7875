// Front ends' own records in the bank (Broker::ReadRecord / WriteRecord):
// state a protocol keeps beside the core's sessions, such as an MQTT
// session's subscriptions or a retained message (docs/mqtt.md). Reads and
// unfenced writes run on the bank pool; stream records go through the bank
// writer, fenced.
#include "broker/core.h"

namespace floe::broker {

namespace {
constexpr std::string_view kRecordPrefix = "frontend/";
}  // namespace

void Broker::ReadRecord(std::string key, std::function<void(Outcome<std::optional<std::string>>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, key = std::move(key), done = std::move(done)] {
    auto v = core->bank->Get(std::string(kRecordPrefix) + key);
    if (v) return done(std::optional<std::string>(std::move(v->value)));
    if (v.error().IsNotFound()) return done(std::optional<std::string>());
    done(Fail(Code::kUnavailable, "reading the bank: " + v.error().ToString()));
  });
}

void Broker::WriteRecord(std::string key, std::optional<std::string> value, std::function<void(Outcome<void>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, key = std::move(key), value = std::move(value), done = std::move(done)] {
    const std::string full = std::string(kRecordPrefix) + key;
    const std::vector<bank::Op> ops{value ? bank::Op::Put(full, *value) : bank::Op::Delete(full)};
    auto r = core->bank->Commit(ops);
    if (!r) return done(Fail(Code::kUnavailable, "writing the bank: " + r.error().ToString()));
    done({});
  });
}

void Broker::ListRecords(std::string prefix, std::function<void(Outcome<std::vector<Record>>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, prefix = std::move(prefix), done = std::move(done)] {
    auto all = core->bank->List(std::string(kRecordPrefix) + prefix);
    if (!all) return done(Fail(Code::kUnavailable, "reading the bank: " + all.error().ToString()));
    std::vector<Record> out;
    out.reserve(all->size());
    for (bank::KeyValue& kv : *all) out.push_back({kv.key.substr(kRecordPrefix.size()), std::move(kv.value)});
    done(std::move(out));
  });
}

void Broker::WriteStreamRecord(std::string key, const std::string& stream,
                               std::function<std::optional<std::string>()> value,
                               std::function<void(Outcome<void>)> done) {
  core_->writer->Write(std::string(kRecordPrefix) + key, stream, std::move(value),
                       [stream, done = std::move(done)](Status s) {
                         if (s.ok()) return done({});
                         // Aborted: the fence failed, the node no longer serves the stream.
                         if (s.code() == ErrorCode::kAborted)
                           return done(Fail(Code::kNotOwner, "this node no longer serves stream " + stream));
                         if (s.code() == ErrorCode::kFailedPrecondition)
                           return done(Fail(Code::kShuttingDown, "the node is stopping"));
                         done(Fail(CodeOf(s), "writing the bank: " + s.ToString()));
                       });
}

}  // namespace floe::broker
