// knd's Prometheus metrics: counters, gauges and histograms with labels, and families computed
// at scrape time, rendered in the text exposition format (version 0.0.4). A thin layer over
// prometheus-cpp (Debian's prometheus-cpp-dev, core library only): its registry, families and
// text serializer do the work; this header keeps knd's call sites short (label values in the
// order of the family's label names) and adds what the library lacks, scrape-time families.
// Thread-safe.
//
//   static auto& prepares = metrics::Default().Histogram(
//       "knd_dra_prepare_duration_seconds", "Time to prepare one claim.", {"api", "outcome"});
//   prepares.Observe({"v1", "success"}, seconds);
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace knd::metrics {

using Labels = std::vector<std::string>;  // values, in the order of the family's label names

// One family of the registry. Label values are fitted to the family's names (missing ones are
// empty, extra ones dropped) and made valid UTF-8, so a caller's mistake or a kernel's bytes
// cannot corrupt the exposition.
template <typename T>
class FamilyOf {
 public:
  FamilyOf(prometheus::Family<T>& family, std::vector<std::string> names)
      : family_(family), names_(std::move(names)) {}

 protected:
  prometheus::Labels Map(const Labels& values) const;
  prometheus::Family<T>& family_;
  const std::vector<std::string> names_;
};

class CounterFamily : public FamilyOf<prometheus::Counter> {
 public:
  using FamilyOf::FamilyOf;
  void Inc(const Labels& labels, double by = 1);
  double Value(const Labels& labels) const;  // 0 for a label set never incremented
};

class GaugeFamily : public FamilyOf<prometheus::Gauge> {
 public:
  using FamilyOf::FamilyOf;
  void Set(const Labels& labels, double v);
  double Value(const Labels& labels) const;
};

class HistogramFamily : public FamilyOf<prometheus::Histogram> {
 public:
  HistogramFamily(prometheus::Family<prometheus::Histogram>& family, std::vector<std::string> names,
                  std::vector<double> bounds)
      : FamilyOf(family, std::move(names)), bounds_(std::move(bounds)) {}
  void Observe(const Labels& labels, double v);
  uint64_t Count(const Labels& labels) const;

 private:
  const prometheus::Histogram::BucketBoundaries bounds_;
};

// Latency buckets (seconds) for operations from ~100 µs (a netlink exchange) to 10 s.
std::vector<double> LatencyBuckets();

class Registry {
 public:
  Registry();
  ~Registry();

  // Families are created on first use and live as long as the registry; asking again for the
  // same name returns the same family (the help text and labels of the first call win).
  CounterFamily& Counter(const std::string& name, const std::string& help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& Gauge(const std::string& name, const std::string& help,
                     std::vector<std::string> label_names = {});
  HistogramFamily& Histogram(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names = {},
                             std::vector<double> bounds = LatencyBuckets());
  // Gauges computed at scrape time (e.g. devices published).
  void GaugeFunc(const std::string& name, const std::string& help, std::function<double()> fn);
  // Counters kept elsewhere (e.g. a component's stats), read at scrape time: one sample per
  // label set `fn` returns. `fn` must be cheap and must not call back into the registry.
  using Samples = std::vector<std::pair<Labels, double>>;
  void CounterFunc(const std::string& name, const std::string& help,
                   std::vector<std::string> label_names, std::function<Samples()> fn);
  // The same for gauges (e.g. an info metric whose labels are only known at scrape time).
  void GaugeFunc(const std::string& name, const std::string& help,
                 std::vector<std::string> label_names, std::function<Samples()> fn);

  // Text exposition format, families sorted by name.
  std::string Render() const;

 private:
  struct Func;
  void AddFunc(const std::string& name, Func f);

  prometheus::Registry registry_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<CounterFamily>> counters_;
  std::map<std::string, std::unique_ptr<GaugeFamily>> gauges_;
  std::map<std::string, std::unique_ptr<HistogramFamily>> histograms_;
  std::map<std::string, Func> funcs_;
};

// The process-wide registry the driver exposes on /metrics.
Registry& Default();

}  // namespace knd::metrics
