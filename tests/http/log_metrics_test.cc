// The log writer's instruments (log::LogMetrics, shown on /metrics): every
// message of a group commit counted once, one fdatasync timed per commit,
// and a failed fdatasync counted as a sync error and a write error, against
// a stream on the fault-injecting file layer.
#include <gtest/gtest.h>

#include "log/stream.h"
#include "metrics/metrics.h"
#include "support/fault_env.h"

namespace floe::log {
namespace {

struct Instruments {
  metrics::Registry r;
  LogMetrics m{
      .fdatasync_ns = r.GetHistogram("s_seconds", "h", {}, metrics::LatencyBucketsNs(), 1e-9),
      .group_messages = r.GetHistogram("g", "h", {}, metrics::CountBuckets(), 1),
      .group_bytes = r.GetCounter("b_total", "h"),
      .write_errors = r.GetCounter("w_total", "h"),
      .sync_errors = r.GetCounter("e_total", "h"),
  };
};

TEST(LogMetricsTest, GroupCommitsAndFailedSyncsAreCounted) {
  Instruments in;
  test::FaultEnv env;
  StreamOptions o;
  o.env = &env;
  o.direct_io = false;
  o.metrics = &in.m;
  auto stream = Stream::Open("/s", o);
  ASSERT_TRUE(stream.has_value()) << stream.error().ToString();
  std::string payload(100, 'x');
  uint64_t stored = 0;
  for (int i = 0; i < 20; ++i) {
    std::vector<Message> batch(static_cast<size_t>(i % 5 + 1), Message{.payload = payload});
    AppendResult r = (*stream)->Append(batch);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    stored += batch.size();
  }
  const auto groups = in.m.group_messages->snapshot();
  EXPECT_EQ(groups.sum, stored);  // each message in exactly one group commit
  EXPECT_EQ(groups.count, (*stream)->stats().groups_written);
  EXPECT_EQ(in.m.fdatasync_ns->snapshot().count, groups.count);  // one fdatasync per group
  EXPECT_GT(in.m.group_bytes->value(), stored * payload.size());
  EXPECT_EQ(in.m.sync_errors->value(), 0u);
  EXPECT_EQ(in.m.write_errors->value(), 0u);

  env.FailSyncs(1);
  std::vector<Message> one(1, Message{.payload = payload});
  AppendResult failed = (*stream)->Append(one);
  EXPECT_FALSE(failed.status.ok());
  EXPECT_EQ(in.m.sync_errors->value(), 1u);
  EXPECT_EQ(in.m.write_errors->value(), 1u);
  EXPECT_EQ(in.m.group_messages->snapshot().sum, stored) << "a failed group is no stored message";
  AppendResult after = (*stream)->Append(one);
  EXPECT_TRUE(after.status.ok()) << after.status.ToString();
  EXPECT_EQ(in.m.group_messages->snapshot().sum, stored + 1);
}

}  // namespace
}  // namespace floe::log
