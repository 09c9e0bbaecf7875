// The Broker's life: opening the bank and the registry, joining the
// cluster, the stop sequence, the peers and the node's counters.
#include "broker/broker.h"

#include <filesystem>

#include <fmt/format.h>

#include "broker/core.h"

namespace floe::broker {

Result<std::unique_ptr<Broker>> Broker::Open(const BrokerOptions& options) {
  auto core = std::make_unique<Core>(options);
  std::error_code fec;
  std::filesystem::create_directories(options.data_dir + "/streams", fec);
  if (fec) return Err(Status::IOError(fmt::format("creating {}: {}", options.data_dir, fec.message())));
  auto bank = bank::OpenBank(options.bank.empty() ? "sqlite:" + options.data_dir + "/bank.db" : options.bank);
  if (!bank) return Err(bank.error());
  core->bank = std::move(*bank);
  core->registry = std::make_unique<Registry>(
      RegistryOptions{.data_dir = options.data_dir,
                      .direct_io = options.direct_io,
                      .max_message_bytes = options.max_message_bytes,
                      .env = options.env,
                      .disk_reserve_bytes = options.disk_reserve_bytes,
                      .log_metrics = &core->metrics.log},
      core->bank.get());
  Core* c = core.get();
  core->writer = std::make_unique<BankWriter>(core->bank.get(), [c](const std::string& stream) -> std::optional<bank::Op> {
    if (!c->cluster) return std::nullopt;
    return c->cluster->Fence(stream);
  }, core->metrics.bank_commit, core->metrics.bank_commit_failures);
  return std::unique_ptr<Broker>(new Broker(std::move(core)));
}

Broker::Broker(std::unique_ptr<Core> core) : core_(std::move(core)) {}

Broker::~Broker() {
  if (!core_->stopping.load()) BeginStop();
  Flush();
  Finish();
}

Status Broker::StartCluster(const std::string& address, const std::string& mqtt_address) {
  core_->cluster = std::make_unique<cluster::Cluster>(
      core_->bank.get(),
      cluster::ClusterOptions{core_->options.node_id, address, core_->options.lease_ms, core_->options.auto_balance,
                              mqtt_address, core_->options.home, core_->options.peer_dead,
                              core_->options.placed_with},
      core_.get());
  Status s = core_->cluster->Start();
  if (s.ok()) core_->joined.store(true, std::memory_order_release);
  return s;
}

void Broker::BeginStop() {
  core_->stopping = true;
  // No more takeovers or renewals; the leases are given up in Finish.
  if (core_->cluster) core_->cluster->Stop(false);
}

void Broker::Flush() {
  if (core_->writer) core_->writer->Stop();  // answers and sessions persisted, their callbacks run
}

void Broker::Finish() {
  if (core_->finished.exchange(true)) return;
  core_->bank_pool.join();
  core_->file_pool.join();
  core_->sessions.Clear();
  if (core_->registry) core_->registry->CloseAll();
  // Other nodes may take the streams at once.
  if (core_->cluster) core_->cluster->Stop(true);
}

bool Broker::stopping() const { return core_->stopping.load(); }
uint64_t Broker::inflight_bytes() const { return core_->inflight_bytes.load(); }

size_t Broker::Attach(std::shared_ptr<Peer> peer) { return core_->sessions.Attach(std::move(peer)); }
void Broker::Detach(const Peer* peer) { core_->sessions.Detach(peer); }
size_t Broker::peer_count() { return core_->sessions.peer_count(); }
std::vector<std::shared_ptr<Peer>> Broker::Peers() { return core_->sessions.Peers(); }

Broker::Stats Broker::stats() const {
  Stats s;
  s.published = core_->published.load();
  if (core_->writer) {
    s.bank_commits = core_->writer->commits();
    s.bank_records = core_->writer->records();
  }
  if (core_->cluster) s.takeovers = core_->cluster->takeovers();
  return s;
}

}  // namespace floe::broker
