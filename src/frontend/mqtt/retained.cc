// Retained messages: the node's writes of their records and the reads a
// SUBSCRIBE makes (docs/mqtt.md "Retained messages").
#include "frontend/mqtt/retained.h"

#include <cstdio>

#include <fmt/format.h>

#include "base/logging.h"
#include "broker/broker.h"
#include "frontend/mqtt/internal.h"
#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

RetainedInfo DescribeRetained(const RetainedRecord& r) {
  const Stored m = ParseStored(r.headers, "");
  return {m.qos, m.expires_at_ms};
}

RetainedStore::RetainedStore(broker::Broker* broker, std::string stream)
    : broker_(broker), stream_(std::move(stream)) {}

void RetainedStore::Begin() {
  MutexLock l(&mu_);
  ++open_;
}

void RetainedStore::Abandon() { Finished(); }

void RetainedStore::Finished() {
  MutexLock l(&mu_);
  // Invariant: every entry of latest_ belongs to a Begin still open.
  if (--open_ == 0) latest_.clear();
}

void RetainedStore::Commit(std::string topic, uint64_t seq, std::string headers, std::string payload,
                           std::function<void(broker::Outcome<void>)> done) {
  std::string key = RetainedKey(topic);
  // The record's topic is read first: a record of another topic with the
  // same hash is kept (refused here), not overwritten.
  broker_->ReadRecord(
      key, [self = shared_from_this(), this, key, topic = std::move(topic), seq, headers = std::move(headers), payload = std::move(payload),
            done = std::move(done)](broker::Outcome<std::optional<std::string>> current) mutable {
        if (!current) {
          Finished();
          return done(tl::unexpected(current.error()));
        }
        if (*current) {
          auto held = DecodeRetainedRecord(**current);
          if (held && held->topic != topic) {
            Finished();
            return done(broker::Fail(broker::Code::kInvalidArgument,
                                     fmt::format("topic '{}' has the retained record of topic '{}' (a hash collision): "
                                                 "the message is stored but not retained",
                                                 topic, held->topic)));
          }
          // A corrupt record is overwritten: it could never be served.
        }
        {
          MutexLock l(&mu_);
          Latest& latest = latest_[key];
          if (seq > latest.seq) {
            latest.seq = seq;
            if (payload.empty()) {
              latest.value.reset();  // [MQTT-3.3.1-6]: the topic's retained message is removed
            } else {
              latest.value = EncodeRetainedRecord(
                  {.seq = seq, .topic = std::move(topic), .headers = std::move(headers), .payload = std::move(payload)});
            }
          }
          // Else a later message of the topic is being committed: this write
          // commits that one, which is what the record must end at.
        }
        Write(key, std::move(done));
      });
}

void RetainedStore::Write(const std::string& key, std::function<void(broker::Outcome<void>)> done) {
  broker_->WriteStreamRecord(
      key, stream_,
      [self = shared_from_this(), this, key]() -> std::optional<std::string> {
        MutexLock l(&mu_);
        // Present: this write's Begin is still open.
        return latest_.at(key).value;
      },
      [self = shared_from_this(), this, done = std::move(done)](broker::Outcome<void> r) {
        Finished();
        done(std::move(r));
      });
}

namespace {

bool HasWildcard(std::string_view filter) { return filter.find_first_of("+#") != std::string_view::npos; }

std::shared_ptr<const RetainedRecord> Decoded(const std::string& key, const std::string& value) {
  auto r = DecodeRetainedRecord(value);
  if (!r) {
    logging::Error("mqtt.retained_unreadable",
                   fmt::format("retained record {} is not served: {}", key, r.error().ToString()));
    return nullptr;
  }
  return std::make_shared<const RetainedRecord>(std::move(*r));
}

// The exact filters, read one after the other (each read runs on the bank
// pool and starts the next).
struct ExactReads {
  broker::Broker* broker;
  std::vector<std::string> filters;
  std::function<void(broker::Outcome<std::vector<RetainedMatch>>)> done;
  std::vector<RetainedMatch> found;
  size_t next = 0;
};

void ReadNext(std::shared_ptr<ExactReads> reads) {
  if (reads->next == reads->filters.size()) return reads->done(std::move(reads->found));
  const std::string key = RetainedKey(reads->filters[reads->next]);
  reads->broker->ReadRecord(key, [reads, key](broker::Outcome<std::optional<std::string>> v) {
    if (!v) return reads->done(tl::unexpected(v.error()));
    const size_t i = reads->next++;
    if (*v) {
      auto rec = Decoded(key, **v);
      // The same hash of another topic (a collision) is not this topic's.
      if (rec && rec->topic == reads->filters[i]) reads->found.push_back({i, std::move(rec)});
    }
    ReadNext(std::move(reads));
  });
}

}  // namespace

void FindRetained(broker::Broker* broker, std::vector<std::string> filters,
                  std::function<void(broker::Outcome<std::vector<RetainedMatch>>)> done) {
  bool wildcard = false;
  for (const auto& f : filters) wildcard = wildcard || HasWildcard(f);
  if (!wildcard) {
    auto reads = std::make_shared<ExactReads>();
    reads->broker = broker;
    reads->filters = std::move(filters);
    reads->done = std::move(done);
    return ReadNext(std::move(reads));
  }
  broker->ListRecords(std::string(kRetainedPrefix), [filters = std::move(filters), done = std::move(done)](
                                                        broker::Outcome<std::vector<broker::Record>> all) {
    if (!all) return done(tl::unexpected(all.error()));
    std::vector<RetainedMatch> found;
    for (const broker::Record& r : *all) {
      auto rec = Decoded(r.key, r.value);
      if (!rec) continue;
      // Same rules as live delivery: '+' and '#' first never match '$' topics [MQTT-4.7.2-1].
      for (size_t i = 0; i < filters.size(); ++i)
        if (::floe::mqtt::TopicMatches(filters[i], rec->topic)) found.push_back({i, rec});
    }
    done(std::move(found));
  });
}

}  // namespace floe::frontend::mqtt
