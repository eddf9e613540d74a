#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace knd::metrics {
namespace {

std::string FormatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string LabelSet(const std::vector<std::string>& names, const Labels& values,
                     const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += extra_name + "=\"" + extra_value + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}

// Pads or cuts `labels` to the family's arity, so a caller's mistake cannot corrupt output.
Labels Fit(const Labels& labels, size_t n) {
  Labels out = labels;
  out.resize(n);
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

void CounterFamily::Inc(const Labels& labels, double by) {
  std::lock_guard<std::mutex> l(mu_);
  values_[Fit(labels, names_.size())] += by;
}

double CounterFamily::Value(const Labels& labels) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = values_.find(Fit(labels, names_.size()));
  return it == values_.end() ? 0 : it->second;
}

void GaugeFamily::Set(const Labels& labels, double v) {
  std::lock_guard<std::mutex> l(mu_);
  values_[Fit(labels, names_.size())] = v;
}

double GaugeFamily::Value(const Labels& labels) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = values_.find(Fit(labels, names_.size()));
  return it == values_.end() ? 0 : it->second;
}

void HistogramFamily::Observe(const Labels& labels, double v) {
  std::lock_guard<std::mutex> l(mu_);
  Series& s = series_[Fit(labels, names_.size())];
  if (s.buckets.empty()) s.buckets.assign(bounds_.size(), 0);
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  if (it != bounds_.end()) ++s.buckets[static_cast<size_t>(it - bounds_.begin())];
  ++s.count;
  s.sum += v;
}

uint64_t HistogramFamily::Count(const Labels& labels) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = series_.find(Fit(labels, names_.size()));
  return it == series_.end() ? 0 : it->second.count;
}

CounterFamily& Registry::Counter(const std::string& name, const std::string& help,
                                 std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  if (!f.counter) {
    f.help = help;
    f.type = "counter";
    f.counter.reset(new CounterFamily(std::move(label_names)));
  }
  return *f.counter;
}

GaugeFamily& Registry::Gauge(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  if (!f.gauge) {
    f.help = help;
    f.type = "gauge";
    f.gauge.reset(new GaugeFamily(std::move(label_names)));
  }
  return *f.gauge;
}

HistogramFamily& Registry::Histogram(const std::string& name, const std::string& help,
                                     std::vector<std::string> label_names,
                                     std::vector<double> bounds) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  if (!f.histogram) {
    f.help = help;
    f.type = "histogram";
    std::sort(bounds.begin(), bounds.end());
    f.histogram.reset(new HistogramFamily(std::move(label_names), std::move(bounds)));
  }
  return *f.histogram;
}

void Registry::GaugeFunc(const std::string& name, const std::string& help,
                         std::function<double()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = "gauge";
  f.func = std::move(fn);
}

void Registry::SamplesFunc(const std::string& name, const std::string& help, const char* type,
                           std::vector<std::string> label_names, std::function<Samples()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  Family& f = families_[name];
  f.help = help;
  f.type = type;
  f.func_labels = std::move(label_names);
  f.samples = std::move(fn);
}

void Registry::CounterFunc(const std::string& name, const std::string& help,
                           std::vector<std::string> label_names, std::function<Samples()> fn) {
  SamplesFunc(name, help, "counter", std::move(label_names), std::move(fn));
}

void Registry::GaugeFunc(const std::string& name, const std::string& help,
                         std::vector<std::string> label_names, std::function<Samples()> fn) {
  SamplesFunc(name, help, "gauge", std::move(label_names), std::move(fn));
}

std::string Registry::Render() const {
  std::lock_guard<std::mutex> l(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    if (f.func) {
      out += name + " " + FormatValue(f.func()) + "\n";
    } else if (f.samples) {
      for (const auto& [labels, v] : f.samples()) {
        out += name + LabelSet(f.func_labels, labels) + " " + FormatValue(v) + "\n";
      }
    } else if (f.counter || f.gauge) {
      const auto& names = f.counter ? f.counter->names_ : f.gauge->names_;
      std::mutex& mu = f.counter ? f.counter->mu_ : f.gauge->mu_;
      std::lock_guard<std::mutex> fl(mu);
      const auto& values = f.counter ? f.counter->values_ : f.gauge->values_;
      for (const auto& [labels, v] : values) {
        out += name + LabelSet(names, labels) + " " + FormatValue(v) + "\n";
      }
    } else if (f.histogram) {
      const HistogramFamily& h = *f.histogram;
      std::lock_guard<std::mutex> fl(h.mu_);
      for (const auto& [labels, s] : h.series_) {
        uint64_t cum = 0;
        for (size_t i = 0; i < h.bounds_.size(); ++i) {
          cum += s.buckets[i];
          out += name + "_bucket" + LabelSet(h.names_, labels, "le", FormatValue(h.bounds_[i])) +
                 " " + std::to_string(cum) + "\n";
        }
        out += name + "_bucket" + LabelSet(h.names_, labels, "le", "+Inf") + " " +
               std::to_string(s.count) + "\n";
        out += name + "_sum" + LabelSet(h.names_, labels) + " " + FormatValue(s.sum) + "\n";
        out += name + "_count" + LabelSet(h.names_, labels) + " " + std::to_string(s.count) + "\n";
      }
    }
  }
  return out;
}

Registry& Default() {
  static Registry* r = new Registry();  // never destroyed: threads may record during exit
  return *r;
}

}  // namespace knd::metrics
