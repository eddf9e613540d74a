#include "common/metrics.h"

#include <algorithm>

#include "common/text.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace knd::metrics {

template <typename T>
prometheus::Labels FamilyOf<T>::Map(const Labels& values) const {
  prometheus::Labels out;
  for (size_t i = 0; i < names_.size(); ++i) {
    out.emplace(names_[i], i < values.size() ? ValidUtf8(values[i]) : std::string());
  }
  return out;
}

template class FamilyOf<prometheus::Counter>;
template class FamilyOf<prometheus::Gauge>;
template class FamilyOf<prometheus::Histogram>;

void CounterFamily::Inc(const Labels& labels, double by) { family_.Add(Map(labels)).Increment(by); }

double CounterFamily::Value(const Labels& labels) const {
  prometheus::Labels m = Map(labels);
  return family_.Has(m) ? family_.Add(m).Value() : 0;
}

void GaugeFamily::Set(const Labels& labels, double v) { family_.Add(Map(labels)).Set(v); }

double GaugeFamily::Value(const Labels& labels) const {
  prometheus::Labels m = Map(labels);
  return family_.Has(m) ? family_.Add(m).Value() : 0;
}

void HistogramFamily::Observe(const Labels& labels, double v) {
  family_.Add(Map(labels), bounds_).Observe(v);
}

uint64_t HistogramFamily::Count(const Labels& labels) const {
  prometheus::Labels m = Map(labels);
  return family_.Has(m) ? family_.Add(m, bounds_).Collect().histogram.sample_count : 0;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

// A family computed at scrape time: one value, or one sample per label set.
struct Registry::Func {
  std::string help;
  prometheus::MetricType type = prometheus::MetricType::Gauge;
  std::vector<std::string> label_names;
  std::function<double()> value;
  std::function<Samples()> samples;
};

Registry::Registry() = default;
Registry::~Registry() = default;

CounterFamily& Registry::Counter(const std::string& name, const std::string& help,
                                 std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> l(mu_);
  std::unique_ptr<CounterFamily>& f = counters_[name];
  if (!f) {
    f = std::make_unique<CounterFamily>(
        prometheus::BuildCounter().Name(name).Help(help).Register(registry_),
        std::move(label_names));
  }
  return *f;
}

GaugeFamily& Registry::Gauge(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> l(mu_);
  std::unique_ptr<GaugeFamily>& f = gauges_[name];
  if (!f) {
    f = std::make_unique<GaugeFamily>(
        prometheus::BuildGauge().Name(name).Help(help).Register(registry_), std::move(label_names));
  }
  return *f;
}

HistogramFamily& Registry::Histogram(const std::string& name, const std::string& help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bounds) {
  std::lock_guard<std::mutex> l(mu_);
  std::unique_ptr<HistogramFamily>& f = histograms_[name];
  if (!f) {
    std::sort(bounds.begin(), bounds.end());
    f = std::make_unique<HistogramFamily>(
        prometheus::BuildHistogram().Name(name).Help(help).Register(registry_),
        std::move(label_names), std::move(bounds));
  }
  return *f;
}

void Registry::AddFunc(const std::string& name, Func f) {
  std::lock_guard<std::mutex> l(mu_);
  funcs_[name] = std::move(f);
}

void Registry::GaugeFunc(const std::string& name, const std::string& help,
                         std::function<double()> fn) {
  AddFunc(name, {help, prometheus::MetricType::Gauge, {}, std::move(fn), {}});
}

void Registry::CounterFunc(const std::string& name, const std::string& help,
                           std::vector<std::string> label_names, std::function<Samples()> fn) {
  AddFunc(name, {help, prometheus::MetricType::Counter, std::move(label_names), {}, std::move(fn)});
}

void Registry::GaugeFunc(const std::string& name, const std::string& help,
                         std::vector<std::string> label_names, std::function<Samples()> fn) {
  AddFunc(name, {help, prometheus::MetricType::Gauge, std::move(label_names), {}, std::move(fn)});
}

std::string Registry::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_.Collect();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& entry : funcs_) {
      const Func& f = entry.second;  // not a structured binding: clang 14 cannot capture one
      prometheus::MetricFamily mf;
      mf.name = entry.first;
      mf.help = f.help;
      mf.type = f.type;
      auto add = [&](const std::vector<prometheus::ClientMetric::Label>& labels, double v) {
        prometheus::ClientMetric m;
        m.label = labels;
        (f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = v;
        mf.metric.push_back(std::move(m));
      };
      if (f.value) {
        add({}, f.value());
      } else {
        for (const auto& [values, v] : f.samples()) {
          std::vector<prometheus::ClientMetric::Label> labels;
          for (size_t i = 0; i < f.label_names.size(); ++i) {
            labels.push_back(
                {f.label_names[i], i < values.size() ? ValidUtf8(values[i]) : std::string()});
          }
          add(labels, v);
        }
      }
      families.push_back(std::move(mf));
    }
  }
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return prometheus::TextSerializer().Serialize(families);
}

Registry& Default() {
  static Registry* r = new Registry();  // never destroyed: threads may record during exit
  return *r;
}

}  // namespace knd::metrics
