#include "metrics/metrics.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

namespace floe::metrics {

namespace {

constexpr uint64_t kLatencyNs[] = {
    50'000,      100'000,     250'000,     500'000,     1'000'000,     2'500'000,     5'000'000,
    10'000'000,  25'000'000,  50'000'000,  100'000'000, 250'000'000,   500'000'000,   1'000'000'000,
    2'500'000'000, 5'000'000'000, 10'000'000'000};
constexpr uint64_t kCounts[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

// {a="x",b="y"} (empty without labels), with `extra` appended (le="…").
std::string LabelText(const Labels& labels, std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    assert(ValidName(k));
    out += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, EscapeLabelValue(v));
    first = false;
  }
  if (!extra_name.empty()) out += fmt::format("{}{}=\"{}\"", first ? "" : ",", extra_name, extra_value);
  out += "}";
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string Key(std::string_view name, const Labels& labels) { return std::string(name) + LabelText(labels); }

}  // namespace

Histogram::Histogram(std::span<const uint64_t> bounds, double scale)
    : bounds_(bounds.begin(), bounds.end()), scale_(scale), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  assert(std::is_sorted(bounds_.begin(), bounds_.end()));
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(uint64_t v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  s.scale = scale_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::span<const uint64_t> LatencyBucketsNs() { return kLatencyNs; }
std::span<const uint64_t> CountBuckets() { return kCounts; }

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

TextWriter::Family& TextWriter::FamilyOf(std::string_view name, std::string_view type, std::string_view help) {
  assert(ValidName(name));
  auto it = index_.find(name);
  if (it != index_.end()) {
    if (families_[it->second].type != type) std::abort();  // one name, one type
    return families_[it->second];
  }
  index_.emplace(std::string(name), families_.size());
  families_.push_back({std::string(name), std::string(type), std::string(help), {}});
  return families_.back();
}

void TextWriter::Counter(std::string_view name, std::string_view help, const Labels& labels, uint64_t value) {
  FamilyOf(name, "counter", help).samples += fmt::format("{}{} {}\n", name, LabelText(labels), value);
}

void TextWriter::Gauge(std::string_view name, std::string_view help, const Labels& labels, double value) {
  FamilyOf(name, "gauge", help).samples += fmt::format("{}{} {}\n", name, LabelText(labels), FormatValue(value));
}

void TextWriter::Histogram(std::string_view name, std::string_view help, const Labels& labels,
                           const Histogram::Snapshot& s) {
  Family& f = FamilyOf(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < s.counts.size(); ++i) {
    cumulative += s.counts[i];
    const std::string le = i < s.bounds.size() ? FormatValue(double(s.bounds[i]) * s.scale) : "+Inf";
    f.samples += fmt::format("{}_bucket{} {}\n", name, LabelText(labels, "le", le), cumulative);
  }
  f.samples += fmt::format("{}_sum{} {}\n", name, LabelText(labels), FormatValue(double(s.sum) * s.scale));
  f.samples += fmt::format("{}_count{} {}\n", name, LabelText(labels), cumulative);
}

std::string TextWriter::Finish() const {
  std::string out;
  for (const Family& f : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, EscapeHelp(f.help), f.name, f.type);
    out += f.samples;
  }
  return out;
}

Registry::Entry* Registry::Find(std::string_view name, std::string_view help, const Labels& labels, int type) {
  const std::string key = Key(name, labels);
  auto it = index_.find(key);
  if (it != index_.end()) {
    Entry* e = entries_[it->second].get();
    const int has = e->counter ? 0 : e->gauge ? 1 : 2;
    if (has != type) std::abort();  // one name, one type
    return e;
  }
  auto e = std::make_unique<Entry>();
  e->name = std::string(name);
  e->help = std::string(help);
  e->labels = labels;
  index_.emplace(key, entries_.size());
  entries_.push_back(std::move(e));
  return entries_.back().get();
}

Counter* Registry::GetCounter(std::string_view name, std::string_view help, const Labels& labels) {
  MutexLock l(&mu_);
  Entry* e = Find(name, help, labels, 0);
  if (!e->counter) e->counter = std::make_unique<metrics::Counter>();
  return e->counter.get();
}

Gauge* Registry::GetGauge(std::string_view name, std::string_view help, const Labels& labels) {
  MutexLock l(&mu_);
  Entry* e = Find(name, help, labels, 1);
  if (!e->gauge) e->gauge = std::make_unique<metrics::Gauge>();
  return e->gauge.get();
}

Histogram* Registry::GetHistogram(std::string_view name, std::string_view help, const Labels& labels,
                                  std::span<const uint64_t> bounds, double scale) {
  MutexLock l(&mu_);
  Entry* e = Find(name, help, labels, 2);
  if (!e->histogram) e->histogram = std::make_unique<metrics::Histogram>(bounds, scale);
  return e->histogram.get();
}

void Registry::WriteTo(TextWriter* w) const {
  MutexLock l(&mu_);
  for (const auto& e : entries_) {
    if (e->counter) w->Counter(e->name, e->help, e->labels, e->counter->value());
    else if (e->gauge) w->Gauge(e->name, e->help, e->labels, double(e->gauge->value()));
    else if (e->histogram) w->Histogram(e->name, e->help, e->labels, e->histogram->snapshot());
  }
}

}  // namespace floe::metrics
