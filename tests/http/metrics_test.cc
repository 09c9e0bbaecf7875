// src/metrics: counters and histograms under concurrent updates, the text
// format's escaping and grouping, and the registry's one-metric-per-series.
#include "metrics/metrics.h"

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace floe::metrics {
namespace {

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  Counter* c = r.GetCounter("t_total", "help", {{"stream", "a"}});
  const uint64_t bounds[] = {10, 100};
  Histogram* h = r.GetHistogram("t_seconds", "help", {}, bounds, 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (uint64_t i = 0; i < 100000; ++i) {
        c->Add();
        h->Observe(i % 200);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 400000u);
  auto s = h->snapshot();
  EXPECT_EQ(s.count, 400000u);
  // Per 200 values: 0..10 (11) in le=10, 11..100 (90) in le=100, 101..199 (99) in +Inf.
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{11 * 2000, 90 * 2000, 99 * 2000}));
  EXPECT_EQ(s.sum, 4u * 500 * (199 * 200 / 2));
}

TEST(MetricsTest, TheSameSeriesIsOneMetric) {
  Registry r;
  EXPECT_EQ(r.GetCounter("x_total", "h", {{"a", "1"}}), r.GetCounter("x_total", "h", {{"a", "1"}}));
  EXPECT_NE(r.GetCounter("x_total", "h", {{"a", "1"}}), r.GetCounter("x_total", "h", {{"a", "2"}}));
  EXPECT_DEATH(r.GetGauge("x_total", "h", {{"a", "1"}}), "");
}

TEST(MetricsTest, TextFormatGroupsFamiliesAndEscapes) {
  TextWriter w;
  w.Gauge("g", "a gauge", {{"stream", "x"}}, 1.5);
  w.Counter("c_total", "a \\ counter\nhelp", {}, 7);
  w.Gauge("g", "a gauge", {{"stream", "we\"ird\\\n"}}, 2);
  Histogram h(std::vector<uint64_t>{1000, 2000}, 1e-6);
  h.Observe(500);
  h.Observe(5000);
  w.Histogram("h_seconds", "a histogram", {{"k", "v"}}, h.snapshot());
  EXPECT_EQ(w.Finish(),
            "# HELP g a gauge\n# TYPE g gauge\n"
            "g{stream=\"x\"} 1.5\n"
            "g{stream=\"we\\\"ird\\\\\\n\"} 2\n"
            "# HELP c_total a \\\\ counter\\nhelp\n# TYPE c_total counter\nc_total 7\n"
            "# HELP h_seconds a histogram\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{k=\"v\",le=\"0.001\"} 1\n"
            "h_seconds_bucket{k=\"v\",le=\"0.002\"} 1\n"
            "h_seconds_bucket{k=\"v\",le=\"+Inf\"} 2\n"
            "h_seconds_sum{k=\"v\"} 0.0055\n"
            "h_seconds_count{k=\"v\"} 2\n");
}

TEST(MetricsTest, Names) {
  EXPECT_TRUE(ValidName("floe_x:y_1"));
  EXPECT_FALSE(ValidName("1x"));
  EXPECT_FALSE(ValidName("a-b"));
  EXPECT_FALSE(ValidName(""));
}

}  // namespace
}  // namespace floe::metrics
