#include "kube/network_status.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "kube/http_util.h"

namespace knd::kube {

using nlohmann::json;

json NetworkStatusJson(const NetworkStatusEntry& e) {
  json j = {{"name", e.name}};
  if (!e.interface.empty()) j["interface"] = e.interface;
  if (!e.ips.empty()) {
    json ips = json::array();
    for (const std::string& ip : e.ips) ips.push_back(ip.substr(0, ip.find('/')));
    j["ips"] = std::move(ips);
  }
  if (!e.mac.empty()) j["mac"] = e.mac;
  if (e.mtu > 0) j["mtu"] = e.mtu;
  j["dns"] = json::object();
  if (!e.gateway.empty()) j["gateway"] = e.gateway;
  if (!e.pci_address.empty()) {
    j["device-info"] = {
        {"type", "pci"}, {"version", "1.1.0"}, {"pci", {{"pci-address", e.pci_address}}}};
  }
  return j;
}

absl::StatusOr<std::string> MergeNetworkStatus(const std::string& current, const std::string& key,
                                               const std::vector<json>& entries) {
  json list = json::array();
  if (!current.empty()) {
    list = json::parse(current, nullptr, /*allow_exceptions=*/false);
    if (!list.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat("annotation ", kNetworkStatusAnnotation,
                                                     " is not a JSON list; left as it is"));
    }
  }
  auto ours = [&](const json& e) {
    return e.is_object() && e.contains(kNetworkStatusKeyField) && e[kNetworkStatusKeyField] == key;
  };
  json out = json::array();
  bool placed = false;
  auto place = [&] {
    for (json e : entries) {
      e[kNetworkStatusKeyField] = key;
      out.push_back(std::move(e));
    }
    placed = true;
  };
  for (const json& e : list) {
    if (!ours(e)) {
      out.push_back(e);
    } else if (!placed) {
      place();
    }
  }
  if (!placed) place();
  if (out.empty()) return std::string();
  return DumpJson(out);
}

NetworkStatusWriter::NetworkStatusWriter(Client& client, NetworkStatusWriterOptions opts)
    : client_(client), opts_(opts) {}

NetworkStatusWriter::~NetworkStatusWriter() { Stop(); }

void NetworkStatusWriter::Start() {
  worker_.Start([this] { Loop(); });
}

void NetworkStatusWriter::Stop() { worker_.Stop(); }

void NetworkStatusWriter::AddOrReplace(const PodRef& pod, const std::string& key,
                                       const std::vector<NetworkStatusEntry>& entries) {
  std::vector<json> js;
  js.reserve(entries.size());
  for (const NetworkStatusEntry& e : entries) js.push_back(NetworkStatusJson(e));
  Enqueue(pod, key, std::move(js));
}

void NetworkStatusWriter::Remove(const PodRef& pod, const std::string& key) {
  Enqueue(pod, key, {});
}

void NetworkStatusWriter::Enqueue(const PodRef& pod, const std::string& key,
                                  std::vector<json> entries) {
  {
    std::lock_guard<std::mutex> l(mu_);
    Update& u = queue_[absl::StrCat(pod.uid, "\n", key)];
    u.pod = pod;
    u.key = key;
    u.entries = std::move(entries);
    u.attempts = 0;
    u.not_before = Clock::time_point{};
    u.seq = ++seq_;
  }
  cv_.notify_all();
}

bool NetworkStatusWriter::WaitIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [this] { return !busy_ && queue_.empty(); });
}

std::vector<std::string> NetworkStatusWriter::PendingPods() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  for (const auto& [id, u] : queue_) {
    if (out.empty() || out.back() != u.pod.uid) out.push_back(u.pod.uid);  // ids sort by pod
  }
  return out;
}

NetworkStatusStats NetworkStatusWriter::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

absl::Status NetworkStatusWriter::Write(const PodRef& pod, const std::string& key,
                                        const std::vector<json>& entries) {
  const std::string path = absl::StrCat("/api/v1/namespaces/", pod.ns, "/pods/", pod.name);
  const std::string what = absl::StrCat("pod ", pod.ns, "/", pod.name, " (uid ", pod.uid, ")");
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, opts_.conflict_attempts); ++attempt) {
    absl::StatusOr<json> got = client_.Get(path);
    if (!got.ok()) return got.status();
    const json& md = (*got)["metadata"];
    std::string uid = JsonString(md, "uid");
    if (uid != pod.uid) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": metadata.uid is \"", uid, "\": a different pod"));
    }
    std::string current;
    if (md.contains("annotations") && md["annotations"].is_object() &&
        md["annotations"].contains(kNetworkStatusAnnotation) &&
        md["annotations"][kNetworkStatusAnnotation].is_string()) {
      current = md["annotations"][kNetworkStatusAnnotation].get<std::string>();
    }
    absl::StatusOr<std::string> merged = MergeNetworkStatus(current, key, entries);
    if (!merged.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", std::string(merged.status().message())));
    }
    if (*merged == current) return absl::OkStatus();  // nothing to change
    json value = merged->empty() ? json(nullptr) : json(*merged);
    json patch = {{"metadata",
                   {{"uid", pod.uid},
                    {"resourceVersion", JsonString(md, "resourceVersion")},
                    {"annotations", {{kNetworkStatusAnnotation, value}}}}}};
    absl::StatusOr<json> r = client_.MergePatch(path, patch);
    if (r.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      stats_.patches++;
      return absl::OkStatus();
    }
    last = r.status();
    if (!absl::IsAborted(last)) return last;
    std::lock_guard<std::mutex> l(mu_);
    stats_.conflicts++;  // someone else wrote the pod in between: read again
  }
  return last;
}

void NetworkStatusWriter::Loop() {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    Clock::time_point now = Clock::now();
    Clock::time_point next = Clock::time_point::max();
    std::string id;
    for (const auto& [k, u] : queue_) {
      if (u.not_before <= now) {
        id = k;
        break;
      }
      next = std::min(next, u.not_before);
    }
    if (id.empty()) {
      if (next == Clock::time_point::max()) {
        cv_.wait(l);
      } else {
        cv_.wait_until(l, next);
      }
      continue;
    }
    Update u = queue_[id];
    busy_ = true;
    l.unlock();
    absl::Status st = Write(u.pod, u.key, u.entries);
    l.lock();
    busy_ = false;
    auto it = queue_.find(id);
    if (it == queue_.end() || it->second.seq != u.seq) {
      cv_.notify_all();
      continue;  // superseded while we wrote: the newer state goes next
    }
    const bool drop = absl::IsNotFound(st) || absl::IsFailedPrecondition(st) ||
                      absl::IsInvalidArgument(st) || it->second.attempts + 1 >= opts_.max_attempts;
    if (st.ok()) {
      queue_.erase(it);
    } else if (drop) {
      stats_.dropped++;
      spdlog::warn("pod {}/{}: network-status for {} not written, giving up: {}", u.pod.ns,
                   u.pod.name, u.key, std::string(st.message()));
      queue_.erase(it);
    } else {
      stats_.failures++;
      auto delay = internal::BackoffDelay(it->second.attempts, opts_.backoff_initial,
                                          opts_.backoff_max, unit(rng));
      it->second.attempts++;
      it->second.not_before = Clock::now() + delay;
      spdlog::warn("pod {}/{}: writing network-status for {} failed (retry in {} ms): {}", u.pod.ns,
                   u.pod.name, u.key, delay.count(), std::string(st.message()));
    }
    cv_.notify_all();
  }
}

}  // namespace knd::kube
