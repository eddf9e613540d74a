#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace knd::metrics {
namespace {

TEST(MetricsTest, CounterAndGaugeRenderWithLabels) {
  Registry r;
  auto& c = r.Counter("knd_attaches_total", "Attaches.", {"mode", "outcome"});
  c.Inc({"native", "success"});
  c.Inc({"native", "success"});
  c.Inc({"cni", "error"}, 3);
  r.Gauge("knd_up", "Up.").Set({}, 1);
  std::string out = r.Render();
  EXPECT_NE(out.find("# HELP knd_attaches_total Attaches.\n# TYPE knd_attaches_total counter\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("knd_attaches_total{mode=\"native\",outcome=\"success\"} 2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("knd_attaches_total{mode=\"cni\",outcome=\"error\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("# TYPE knd_up gauge\nknd_up 1\n"), std::string::npos) << out;
  // Families are sorted by name.
  EXPECT_LT(out.find("knd_attaches_total"), out.find("knd_up"));
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  auto& h = r.Histogram("knd_op_seconds", "Op.", {"op"}, {0.1, 1});
  h.Observe({"prepare"}, 0.05);
  h.Observe({"prepare"}, 0.5);
  h.Observe({"prepare"}, 5);
  std::string out = r.Render();
  EXPECT_NE(out.find("knd_op_seconds_bucket{op=\"prepare\",le=\"0.1\"} 1\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("knd_op_seconds_bucket{op=\"prepare\",le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("knd_op_seconds_bucket{op=\"prepare\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("knd_op_seconds_sum{op=\"prepare\"} 5.55\n"), std::string::npos) << out;
  EXPECT_NE(out.find("knd_op_seconds_count{op=\"prepare\"} 3\n"), std::string::npos);
  EXPECT_EQ(h.Count({"prepare"}), 3u);
}

TEST(MetricsTest, LabelValuesAreEscapedAndArityIsForced) {
  Registry r;
  auto& c = r.Counter("knd_errors_total", "Errors.", {"reason"});
  c.Inc({"a\"b\\c\nd"});
  c.Inc({"x", "extra-ignored"});
  std::string out = r.Render();
  EXPECT_NE(out.find("knd_errors_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("knd_errors_total{reason=\"x\"} 1\n"), std::string::npos) << out;
  // A kernel name is bytes: the exposition stays UTF-8 (U+FFFD for the bad byte).
  c.Inc({"eth\xff"});
  out = r.Render();
  EXPECT_NE(out.find("knd_errors_total{reason=\"eth\xef\xbf\xbd\"} 1\n"), std::string::npos) << out;
  EXPECT_EQ(c.Value({"eth\xff"}), 1);
}

TEST(MetricsTest, SameNameReturnsSameFamilyAndGaugeFuncIsReadAtScrape) {
  Registry r;
  EXPECT_EQ(&r.Counter("c", "h"), &r.Counter("c", "other help"));
  double v = 1;
  r.GaugeFunc("knd_devices", "Devices.", [&] { return v; });
  v = 7;
  EXPECT_NE(r.Render().find("knd_devices 7\n"), std::string::npos);
}

TEST(MetricsTest, CounterFuncRendersOneSamplePerLabelSet) {
  Registry r;
  uint64_t creates = 2;
  r.CounterFunc("knd_writes_total", "Writes.", {"verb"}, [&] {
    return Registry::Samples{{{"create"}, double(creates)}, {{"delete"}, 0}};
  });
  creates = 5;
  std::string out = r.Render();
  EXPECT_NE(out.find("# TYPE knd_writes_total counter\n"), std::string::npos) << out;
  EXPECT_NE(out.find("knd_writes_total{verb=\"create\"} 5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("knd_writes_total{verb=\"delete\"} 0\n"), std::string::npos) << out;
}

TEST(MetricsTest, LabelledGaugeFuncIsAGaugeWithTheLabelsOfEachScrape) {
  Registry r;
  std::string version;
  r.GaugeFunc("knd_runtime_info", "Runtime.", {"version"}, [&] {
    if (version.empty()) return Registry::Samples{};
    return Registry::Samples{{{version}, 1}};
  });
  EXPECT_EQ(r.Render().find("knd_runtime_info{"), std::string::npos);
  version = "v2.1.9";
  std::string out = r.Render();
  EXPECT_NE(out.find("# TYPE knd_runtime_info gauge\n"), std::string::npos) << out;
  EXPECT_NE(out.find("knd_runtime_info{version=\"v2.1.9\"} 1\n"), std::string::npos) << out;
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto& c = r.Counter("n", "n", {"t"});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c.Inc({"x"});
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.Value({"x"}), 40000);
}

}  // namespace
}  // namespace knd::metrics
