// Streams bound to MQTT topic filters (`floe stream create … --mqtt-topics`,
// docs/mqtt.md "Topics onto streams"): which stream a PUBLISH goes to, and
// which streams a subscription must read. The choice itself is two pure
// functions (tested alone); `Bindings` keeps the node's cached view of every
// stream's filters, so a PUBLISH never reads the bank.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio.hpp>

#include "base/mutex.h"
#include "broker/broker.h"

namespace floe::frontend::mqtt {

struct Binding {
  std::string filter;
  std::string stream;
};

// The stream a PUBLISH on `topic` goes to: among the bindings whose filter
// matches it, the most specific filter (mqtt::CompareSpecificity: level by
// level a literal beats '+' beats '#'), then the smaller stream name (two
// filters of equal specificity that match one topic are the same filter:
// each literal level equals the topic's, each wildcard is one byte); `fallback` (the default MQTT stream) when
// none matches.
const std::string& RouteTopic(const std::vector<Binding>& bindings, std::string_view topic,
                              const std::string& fallback);

// The bound streams some of `filters` (subscription filters, "$share/" ones
// by their {filter} part) can read messages from: those with a binding
// filter that overlaps one of them (mqtt::FiltersOverlap). Sorted, unique;
// the default stream is not among them unless it is bound itself.
std::vector<std::string> StreamsFor(const std::vector<Binding>& bindings, const std::vector<std::string_view>& filters);

// The node's view of the bindings: every stream's filters, read from the
// bank at start and again every kRefreshMs (one range read of streams/:
// streams other nodes create or delete), and changed at once for each
// stream this node creates or deletes (Broker::AddStreamListener), before
// the creating client is answered. Any thread.
class Bindings : public std::enable_shared_from_this<Bindings> {
 public:
  static constexpr int kRefreshMs = 1000;
  struct View {
    uint64_t version = 0;  // grows whenever the bindings change
    std::vector<Binding> bindings;
  };
  Bindings(asio::io_context& io, broker::Broker* broker) : broker_(broker), timer_(io) {}
  void Start();
  // A stream this node created (`config`) or deleted (nullptr).
  void Apply(const std::string& name, const StreamConfig* config) EXCLUDES(mu_);
  void Stop();
  // The current view (empty before the first read).
  std::shared_ptr<const View> view() const EXCLUDES(mu_);
  // `fn` runs (on a core thread) once a read of the bank begun after this
  // call is in the view, or failed.
  void Refresh(std::function<void()> fn) EXCLUDES(mu_);
  // `fn` runs once the first read is in the view (at once if it is).
  void WhenLoaded(std::function<void()> fn) EXCLUDES(mu_);

 private:
  void Load();
  void Tick();

  broker::Broker* const broker_;
  asio::steady_timer timer_;
  mutable Mutex mu_;
  std::shared_ptr<const View> view_ GUARDED_BY(mu_) = std::make_shared<View>();
  bool loaded_ GUARDED_BY(mu_) = false;
  bool loading_ GUARDED_BY(mu_) = false;
  bool stopped_ GUARDED_BY(mu_) = false;
  // Apply calls so far: a bank read begun before the last one may predate
  // its change, and is not taken (another read follows).
  uint64_t applied_ GUARDED_BY(mu_) = 0;
  uint64_t applied_at_load_ GUARDED_BY(mu_) = 0;
  std::vector<std::function<void()>> on_load_ GUARDED_BY(mu_);   // waiting for the read under way to end
  std::vector<std::function<void()>> next_load_ GUARDED_BY(mu_);  // waiting for a read not begun yet
};

}  // namespace floe::frontend::mqtt
