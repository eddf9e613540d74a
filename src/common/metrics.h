// A small Prometheus metrics registry: counters, gauges and histograms with labels, rendered
// in the text exposition format (version 0.0.4). Debian 12 has no C++ Prometheus client, so
// this is the minimum knd needs; it is thread-safe and allocation-free on the hot path once a
// label combination exists.
//
//   static auto& prepares = metrics::Default().Histogram(
//       "knd_dra_prepare_duration_seconds", "Time to prepare one claim.", {"api", "outcome"});
//   prepares.Observe({"v1", "success"}, seconds);
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace knd::metrics {

using Labels = std::vector<std::string>;  // values, in the order of the family's label names

class CounterFamily {
 public:
  void Inc(const Labels& labels, double by = 1);
  double Value(const Labels& labels) const;

 private:
  friend class Registry;
  CounterFamily(std::vector<std::string> names) : names_(std::move(names)) {}
  std::vector<std::string> names_;
  mutable std::mutex mu_;
  std::map<Labels, double> values_;
};

class GaugeFamily {
 public:
  void Set(const Labels& labels, double v);
  double Value(const Labels& labels) const;

 private:
  friend class Registry;
  GaugeFamily(std::vector<std::string> names) : names_(std::move(names)) {}
  std::vector<std::string> names_;
  mutable std::mutex mu_;
  std::map<Labels, double> values_;
};

class HistogramFamily {
 public:
  void Observe(const Labels& labels, double v);
  uint64_t Count(const Labels& labels) const;

 private:
  friend class Registry;
  struct Series {
    std::vector<uint64_t> buckets;  // cumulative counts are computed at render time
    uint64_t count = 0;
    double sum = 0;
  };
  HistogramFamily(std::vector<std::string> names, std::vector<double> bounds)
      : names_(std::move(names)), bounds_(std::move(bounds)) {}
  std::vector<std::string> names_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, Series> series_;
};

// Latency buckets (seconds) for operations from ~100 µs (a netlink exchange) to 10 s.
std::vector<double> LatencyBuckets();

class Registry {
 public:
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
  void SamplesFunc(const std::string& name, const std::string& help, const char* type,
                   std::vector<std::string> label_names, std::function<Samples()> fn);
  struct Family {
    std::string help;
    std::string type;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
    std::function<double()> func;
    std::vector<std::string> func_labels;
    std::function<Samples()> samples;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// The process-wide registry the driver exposes on /metrics.
Registry& Default();

// Escapes a label value for the exposition format (backslash, quote, newline).
std::string EscapeLabelValue(const std::string& v);

}  // namespace knd::metrics
