// Counters, gauges and histograms for /metrics (src/http, docs/operations.md),
// cheap enough for the publish path: an update is one or three relaxed atomic
// adds on memory the metric owns, with no lock and no allocation.
//
//   metrics::Registry r;
//   Counter* c = r.GetCounter("floe_stream_published_messages_total", "...", {{"stream", "orders"}});
//   c->Add(n);                        // hot path: hold the pointer, never look it up per call
//   std::string text = r.Exposition();  // Prometheus text format 0.0.4
//
// Lookups (Get*) take the registry's lock and may allocate: call them when a
// stream or session is opened, not per message. A metric lives as long as
// its registry; its pointer never moves.
//
// Values that exist elsewhere already (a stream's frontier, a consumer's
// lag) are not copied into gauges: they are read at scrape time and written
// with a TextWriter next to the registry's own metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace floe::metrics {

// Label name and value pairs, in the order they are printed.
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Fixed buckets over integer observations (nanoseconds, messages, bytes):
// Observe finds the bucket among at most a few dozen bounds and adds to it
// and to the sum. `scale` converts the unit to the exposed base unit (1e-9:
// nanoseconds to seconds). A scrape reads the buckets one by one, so a
// snapshot taken during updates may be off by the observations in flight;
// its count is the sum of its buckets, so it is always self-consistent.
class Histogram {
 public:
  // `bounds`: the buckets' inclusive upper bounds, increasing; +Inf is added.
  Histogram(std::span<const uint64_t> bounds, double scale);
  void Observe(uint64_t v);

  struct Snapshot {
    std::vector<uint64_t> bounds;
    std::vector<uint64_t> counts;  // per bucket (not cumulative); counts.back() is +Inf's
    uint64_t count = 0;
    uint64_t sum = 0;
    double scale = 1;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<uint64_t> bounds_;
  const double scale_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<uint64_t> sum_{0};
};

// Bucket bounds used across floe.
// Latencies in nanoseconds: 50 µs to 10 s, about 2.5 per decade.
std::span<const uint64_t> LatencyBucketsNs();
// Sizes (messages in a group commit): 1 to 16384, powers of two.
std::span<const uint64_t> CountBuckets();

// Builds the Prometheus text exposition (format 0.0.4): one HELP and TYPE
// line per family, a family's samples together whatever order they were
// added in, label values escaped. Families come out in the order first seen.
class TextWriter {
 public:
  void Counter(std::string_view name, std::string_view help, const Labels& labels, uint64_t value);
  void Gauge(std::string_view name, std::string_view help, const Labels& labels, double value);
  void Histogram(std::string_view name, std::string_view help, const Labels& labels, const Histogram::Snapshot& s);
  std::string Finish() const;

 private:
  struct Family {
    std::string name, type, help;
    std::string samples;
  };
  Family& FamilyOf(std::string_view name, std::string_view type, std::string_view help);
  std::vector<Family> families_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Label values as the text format writes them: \ \" and newline escaped.
std::string EscapeLabelValue(std::string_view v);
// Whether `name` is a valid metric or label name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool ValidName(std::string_view name);

class Registry {
 public:
  // Finds or creates the metric with these labels. A name is of one type:
  // asking for it as another is a bug (abort).
  metrics::Counter* GetCounter(std::string_view name, std::string_view help, const Labels& labels = {});
  metrics::Gauge* GetGauge(std::string_view name, std::string_view help, const Labels& labels = {});
  metrics::Histogram* GetHistogram(std::string_view name, std::string_view help, const Labels& labels,
                                   std::span<const uint64_t> bounds, double scale);
  // Adds every metric to `w`.
  void WriteTo(TextWriter* w) const;

 private:
  struct Entry {
    std::string name, help;
    Labels labels;
    std::unique_ptr<metrics::Counter> counter;
    std::unique_ptr<metrics::Gauge> gauge;
    std::unique_ptr<metrics::Histogram> histogram;
  };
  Entry* Find(std::string_view name, std::string_view help, const Labels& labels, int type) REQUIRES(mu_);
  mutable Mutex mu_;
  // Keyed by name and labels; kept in creation order for the exposition.
  std::map<std::string, size_t, std::less<>> index_ GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Entry>> entries_ GUARDED_BY(mu_);
};

}  // namespace floe::metrics
