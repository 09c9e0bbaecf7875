// Many stream leases held by one node: in-process Clusters on a real SQLite
// bank (the default backend, one fdatasync'd commit per write) with a Host
// that records the validity it is given. Keeping N leases must cost one bank
// commit per renewal tick, not N: with a commit each, a tick of thousands of
// leases outlasts the lease period and leases lapse (issue 13: 1,783 of
// 5,000 at once), so another node may take them.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster/cluster.h"
#include "support/temp_dir.h"

namespace floe::cluster {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

class ValidityHost : public Host {
 public:
  Status OpenStream(const std::string& name, int64_t valid_until) override {
    std::lock_guard l(mu_);
    open_.insert(name);
    valid_[name] = valid_until;
    return Status::OK();
  }
  void SetValidUntil(const std::string& name, int64_t valid_until) override {
    std::lock_guard l(mu_);
    valid_[name] = valid_until;
  }
  void CloseStream(const std::string& name, const std::string&) override {
    std::lock_guard l(mu_);
    open_.erase(name);
  }
  uint32_t SessionCount() override { return 0; }
  uint64_t PublishedTotal() override { return 0; }
  size_t Serving() {
    std::lock_guard l(mu_);
    return open_.size();
  }
  // Streams served whose validity has run out at `now` (steady ms).
  size_t Lapsed(int64_t now) {
    std::lock_guard l(mu_);
    size_t n = 0;
    for (const std::string& name : open_) n += valid_[name] <= now;
    return n;
  }

 private:
  std::mutex mu_;
  std::set<std::string> open_;
  std::map<std::string, int64_t> valid_;
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

// streams/m<i> for i < n, in commits of 1,000.
void CreateStreams(bank::Bank& bank, int n) {
  for (int from = 0; from < n; from += 1000) {
    std::vector<bank::Op> ops;
    for (int i = from; i < std::min(n, from + 1000); ++i) ops.push_back(bank::Op::Put(fmt::format("streams/m{}", i), "c"));
    ASSERT_TRUE(bank.Commit(ops).has_value());
  }
}

// Node a holds every stream; node b, on another handle, takes any lease that
// lapses. For ten lease periods a's validity never runs out for any stream,
// b takes none, and every lease is still a's first epoch. The lease is short
// (500 ms: a tick every 167 ms, validity 450 ms from the renewal) so that a
// commit per lease lapses them even on a fast disk (3,000 of them at
// 0.15 ms take 450 ms), while one commit for all has time to spare.
TEST(ManyLeasesTest, ThousandsOfLeasesNeverLapseWhileAnotherNodeWaitsForThem) {
  const int n = EnvInt("FLOE_MANY_LEASES", 3000);
  constexpr int64_t kLease = 500;
  test::TempDir dir;
  auto bank_a = bank::OpenBank("sqlite:" + dir.path() + "/bank.db");
  auto bank_b = bank::OpenBank("sqlite:" + dir.path() + "/bank.db");
  ASSERT_TRUE(bank_a && bank_b);
  CreateStreams(**bank_a, n);
  ValidityHost host_a, host_b;
  Cluster a(bank_a->get(), ClusterOptions{.node_id = "a", .address = "x:1", .lease_ms = kLease, .auto_balance = false},
            &host_a);
  const auto t0 = Clock::now();
  ASSERT_TRUE(a.Start().ok());
  fmt::print("[          ] node a took {} streams in its first round in {} ms\n", n, MsSince(t0));
  ASSERT_EQ(host_a.Serving(), static_cast<size_t>(n));
  Cluster b(bank_b->get(), ClusterOptions{.node_id = "b", .address = "x:2", .lease_ms = kLease, .auto_balance = false},
            &host_b);
  ASSERT_TRUE(b.Start().ok());

  size_t max_lapsed = 0;
  const auto watch = Clock::now();
  while (MsSince(watch) < 10 * kLease) {
    max_lapsed = std::max(max_lapsed, host_a.Lapsed(SteadyMs()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const Cluster::RenewStats st = a.renew_stats();
  fmt::print("[          ] {} leases: {} renewal ticks, last {} ms, slowest {} ms (lease {} ms); at most {} "
             "streams past their validity at once; node b took {}\n",
             n, st.ticks, st.last_ms, st.max_ms, kLease, max_lapsed, host_b.Serving());
  EXPECT_EQ(max_lapsed, 0u) << "streams ran out of validity while held";
  EXPECT_EQ(host_b.Serving(), 0u) << "the other node took lapsed leases";
  EXPECT_EQ(host_a.Serving(), static_cast<size_t>(n));
  EXPECT_GE(st.ticks, 6u) << "the renewer fell behind its period (" << kLease / 3 << " ms)";
  EXPECT_EQ(st.last_leases, static_cast<size_t>(n));
  size_t not_first_epoch = 0;
  for (int i = 0; i < n; ++i) {
    auto l = (*bank_b)->GetLease(StreamLeaseName(fmt::format("m{}", i)));
    not_first_epoch += !l || l->owner != "a" || l->epoch != 1;
  }
  EXPECT_EQ(not_first_epoch, 0u) << "leases changed hands";
  b.Stop(false);
  a.Stop(false);
}

// The numbers: one renewal tick of a Cluster holding 1,000 and 5,000 leases
// (the default lease period), and, on the same bank, the same number of
// leases renewed the old way, one commit each.
TEST(ManyLeasesTest, OneRenewalTickAtOneAndFiveThousandLeases) {
  for (int n : {1000, 5000}) {
    test::TempDir dir;
    auto bank = bank::OpenBank("sqlite:" + dir.path() + "/bank.db");
    ASSERT_TRUE(bank.has_value());
    CreateStreams(**bank, n);
    ValidityHost host;
    constexpr int64_t kLease = 3000;
    Cluster c(bank->get(), ClusterOptions{.node_id = "a", .address = "x:1", .lease_ms = kLease, .auto_balance = false},
              &host);
    ASSERT_TRUE(c.Start().ok());
    ASSERT_EQ(host.Serving(), static_cast<size_t>(n));
    const uint64_t ticks0 = c.renew_stats().ticks;
    const auto deadline = Clock::now() + std::chrono::milliseconds(4 * kLease);
    while (c.renew_stats().ticks < ticks0 + 3 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const Cluster::RenewStats st = c.renew_stats();
    c.Stop(true);

    // The old tick: every lease renewed with a commit of its own.
    std::vector<bank::Lease> leases;
    for (int i = 0; i < n; ++i) {
      auto l = (*bank)->AcquireLease(fmt::format("base/{}", i), "a", kLease, WallMs());
      ASSERT_TRUE(l.has_value());
      leases.push_back(*l);
    }
    const auto one_by_one = Clock::now();
    for (bank::Lease& l : leases) {
      auto r = (*bank)->RenewLease(l, kLease, WallMs());
      ASSERT_TRUE(r.has_value());
      l = *r;
    }
    const int64_t old_ms = MsSince(one_by_one);
    const auto batch = Clock::now();
    auto renewed = (*bank)->RenewLeases(leases, kLease, WallMs());
    const int64_t batch_ms = MsSince(batch);
    for (const auto& r : renewed) ASSERT_TRUE(r.has_value());
    fmt::print("[          ] {} leases: one Cluster renewal tick {} ms (slowest of {}: {} ms); RenewLeases {} ms; "
               "one commit each {} ms (lease {} ms, a tick every {} ms)\n",
               n, st.last_ms, st.ticks, st.max_ms, batch_ms, old_ms, kLease, kLease / 3);
    EXPECT_GE(st.ticks, ticks0 + 3);
    EXPECT_EQ(st.last_leases, static_cast<size_t>(n));
    EXPECT_LT(st.max_ms, kLease / 3) << "a renewal tick does not fit in its period";
  }
}

}  // namespace
}  // namespace floe::cluster
