// The cluster's decisions, carried out: a stream this node gains is opened
// (recovered) and served; one it loses is closed and its clients moved on.
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "broker/core.h"

namespace floe::broker {

Status Broker::Core::OpenStream(const std::string& name, int64_t valid_until_steady_ms) {
  auto entry = registry->Open(name);
  if (!entry) return entry.error();
  (*entry)->SetValidUntil(valid_until_steady_ms);
  fmt::print("floe: node {} serves stream {} (frontier {})\n", options.node_id, name, (*entry)->log().frontier());
  std::fflush(stdout);
  return Status::OK();
}

void Broker::Core::SetValidUntil(const std::string& name, int64_t valid_until_steady_ms) {
  if (auto e = registry->Get(name)) e->SetValidUntil(valid_until_steady_ms);
}

void Broker::Core::CloseStream(const std::string& name, const std::string& redirect) {
  auto entry = registry->Close(name);  // owned() is false from here on
  if (!entry) return;
  metrics.streams_closed->Add();
  Evict(entry, redirect);
  entry->WakeAll();
  // The log closes (and its directory lock goes) when the last session lets
  // go of the entry; wait a little for that, so the next owner can open it
  // at once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (entry.use_count() > 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  fmt::print("floe: node {} no longer serves stream {}{}\n", options.node_id, name,
             entry.use_count() > 1 ? " (still closing)" : "");
  std::fflush(stdout);
}

void Broker::Core::Evict(const std::shared_ptr<StreamEntry>& entry, const std::string& redirect) {
  for (auto& p : sessions.Peers()) p->Evict(entry, redirect);
}

std::shared_ptr<StreamEntry> Broker::Core::Served(const std::string& stream) {
  auto entry = registry->Get(stream);
  return entry && entry->owned() ? entry : nullptr;
}

Failure Broker::Core::Locate(const std::string& stream) {
  auto config = bank->Get(StreamKey(stream));
  if (!config) {
    if (config.error().IsNotFound()) return {Code::kUnknownStream, fmt::format("no stream named '{}'", stream), {}};
    return {Code::kUnavailable, "reading the bank: " + config.error().ToString(), {}};
  }
  auto owner = cluster->OwnerOf(stream);
  if (owner && owner->live && owner->node != options.node_id && !owner->address.empty())
    return {Code::kNotOwner, fmt::format("stream {} is served by node {} at {}", stream, owner->node, owner->address),
            owner->address};
  cluster->Want(stream);
  return {Code::kUnavailable, fmt::format("stream {} has no serving node right now; retry", stream), {}};
}

void Broker::LocateStream(std::string stream, std::function<void(Outcome<Placement>)> done) {
  Core* core = core_.get();
  asio::post(core->bank_pool, [core, stream = std::move(stream), done = std::move(done)] {
    Placement p;
    if (core->Served(stream)) {
      p.here = true;
      p.node = core->options.node_id;
      return done(p);
    }
    auto owner = core->cluster->OwnerOf(stream);
    if (!owner && !owner.error().IsNotFound())
      return done(Fail(Code::kUnavailable, "reading the bank: " + owner.error().ToString()));
    if (owner && owner->live && owner->node != core->options.node_id) {
      p.node = owner->node;
      p.address = owner->address;
      p.mqtt_address = owner->mqtt_address;
      return done(p);
    }
    core->cluster->Want(stream);  // nobody serves it: this node tries
    done(p);
  });
}

}  // namespace floe::broker
