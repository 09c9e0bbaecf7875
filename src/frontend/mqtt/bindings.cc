#include "frontend/mqtt/bindings.h"

#include <algorithm>
#include <tuple>

#include "mqtt/topic.h"

namespace floe::frontend::mqtt {

const std::string& RouteTopic(const std::vector<Binding>& bindings, std::string_view topic,
                              const std::string& fallback) {
  const Binding* best = nullptr;
  for (const Binding& b : bindings) {
    if (!::floe::mqtt::TopicMatches(b.filter, topic)) continue;
    if (best) {
      const int c = ::floe::mqtt::CompareSpecificity(b.filter, best->filter);
      if (c > 0) continue;
      if (c == 0 && b.stream >= best->stream) continue;
    }
    best = &b;
  }
  return best ? best->stream : fallback;
}

std::vector<std::string> StreamsFor(const std::vector<Binding>& bindings, const std::vector<std::string_view>& filters) {
  std::vector<std::string> out;
  for (const Binding& b : bindings)
    for (std::string_view f : filters)
      if (::floe::mqtt::FiltersOverlap(f, b.filter)) {
        out.push_back(b.stream);
        break;
      }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {
bool BindingLess(const Binding& a, const Binding& b) {
  return std::tie(a.stream, a.filter) < std::tie(b.stream, b.filter);
}
}  // namespace

void Bindings::Start() {
  std::weak_ptr<Bindings> weak = weak_from_this();
  broker_->AddStreamListener([weak](const std::string& name, const StreamConfig* config) {
    if (auto self = weak.lock()) self->Apply(name, config);
  });
  Tick();
}

void Bindings::Apply(const std::string& name, const StreamConfig* config) {
  MutexLock l(&mu_);
  ++applied_;
  std::vector<Binding> bindings;
  for (const Binding& b : view_->bindings)
    if (b.stream != name) bindings.push_back(b);
  if (config)
    for (const auto& f : config->mqtt_topics) bindings.push_back({f, name});
  std::sort(bindings.begin(), bindings.end(), BindingLess);
  auto same = [](const Binding& a, const Binding& b) { return a.filter == b.filter && a.stream == b.stream; };
  const auto& old = view_->bindings;
  if (std::equal(old.begin(), old.end(), bindings.begin(), bindings.end(), same)) return;
  auto v = std::make_shared<View>();
  v->version = view_->version + 1;
  v->bindings = std::move(bindings);
  view_ = std::move(v);
}

void Bindings::Stop() {
  MutexLock l(&mu_);
  stopped_ = true;
  timer_.cancel();
}

std::shared_ptr<const Bindings::View> Bindings::view() const {
  MutexLock l(&mu_);
  return view_;
}

void Bindings::Tick() {
  {
    MutexLock l(&mu_);
    if (stopped_) return;
  }
  Load();
  timer_.expires_after(std::chrono::milliseconds(kRefreshMs));
  timer_.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->Tick();
  });
}

void Bindings::Refresh(std::function<void()> fn) {
  {
    MutexLock l(&mu_);
    next_load_.push_back(std::move(fn));
    if (loading_) return;  // the read that ends next begins another
  }
  Load();
}

void Bindings::WhenLoaded(std::function<void()> fn) {
  {
    MutexLock l(&mu_);
    if (!loaded_) {
      next_load_.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

void Bindings::Load() {
  {
    MutexLock l(&mu_);
    if (loading_) return;
    loading_ = true;
    applied_at_load_ = applied_;
    on_load_.swap(next_load_);
    next_load_.clear();
  }
  auto self = shared_from_this();
  broker_->ListStreamConfigs([self](broker::Outcome<std::vector<std::pair<std::string, StreamConfig>>> r) {
    std::vector<std::function<void()>> done;
    bool again = false;
    {
      MutexLock l(&self->mu_);
      const bool stale = self->applied_ != self->applied_at_load_;  // read before a change of ours
      if (stale) self->next_load_.push_back([] {});                 // read again
      if (r && !stale) {
        std::vector<Binding> bindings;
        for (const auto& [name, config] : *r)
          for (const auto& f : config.mqtt_topics) bindings.push_back({f, name});
        std::sort(bindings.begin(), bindings.end(), BindingLess);
        auto same = [](const Binding& a, const Binding& b) { return a.filter == b.filter && a.stream == b.stream; };
        const auto& old = self->view_->bindings;
        if (!std::equal(old.begin(), old.end(), bindings.begin(), bindings.end(), same)) {
          auto v = std::make_shared<View>();
          v->version = self->view_->version + 1;
          v->bindings = std::move(bindings);
          self->view_ = std::move(v);
        }
        self->loaded_ = true;
      }
      self->loading_ = false;
      done.swap(self->on_load_);
      // A failed first read leaves the waiters for the next one.
      if (!self->loaded_) {
        for (auto& f : done) self->next_load_.push_back(std::move(f));
        done.clear();
      }
      again = self->loaded_ && !self->next_load_.empty();
    }
    for (auto& f : done) f();
    if (again) self->Load();
  });
}

}  // namespace floe::frontend::mqtt
