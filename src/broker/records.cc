// Front ends' own records in the bank (Broker::ReadRecord / WriteRecord):
// state a protocol keeps beside the core's sessions, such as an MQTT
// session's subscriptions (docs/mqtt.md). Runs on the bank pool.
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

void Broker::ListRecords(std::string prefix,
                         std::function<void(Outcome<std::vector<std::pair<std::string, std::string>>>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, prefix = std::move(prefix), done = std::move(done)] {
    auto kvs = core->bank->List(std::string(kRecordPrefix) + prefix);
    if (!kvs) return done(Fail(Code::kUnavailable, "reading the bank: " + kvs.error().ToString()));
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(kvs->size());
    for (auto& kv : *kvs) out.emplace_back(kv.key.substr(kRecordPrefix.size()), std::move(kv.value));
    done(std::move(out));
  });
}

}  // namespace floe::broker
