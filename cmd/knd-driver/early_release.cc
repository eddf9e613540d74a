#include "early_release.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "kube/pod_cache.h"

namespace knd::driver {

void EarlyRelease::Start() {
  worker_.Start([this] { Loop(); });
}

void EarlyRelease::PodGone(const std::string& ns, const std::string& name, const std::string& uid) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.size() >= 4096) return;  // the next Prepare hands over whatever is missed
    queue_.push_back({ns, name, uid});
  }
  cv_.notify_all();
}

void EarlyRelease::Loop() {
  for (;;) {
    Pod pod;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (!cv_.wait_for(l, kOrphanScan, [this] { return stop_ || !queue_.empty(); })) {
        l.unlock();
        absl::Status st = pods_.ReleaseOrphans();
        if (!st.ok()) spdlog::warn("returning devices of deleted pod netns: {}", st.ToString());
        continue;
      }
      if (stop_) return;
      pod = std::move(queue_.front());
      queue_.pop_front();
    }
    Handle(pod);
  }
}

void EarlyRelease::Handle(const Pod& pod) {
  std::vector<std::pair<state::ClaimPlan, size_t>> held;
  for (const state::ClaimPlan& plan : plans_.List()) {
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      if (state::InPod(plan.devices[i]) && plan.devices[i].pod_uid == pod.uid) {
        held.emplace_back(plan, i);
      }
    }
  }
  if (held.empty()) return;  // not a pod with knd devices: no API read
  absl::StatusOr<nlohmann::json> got =
      api_.Get(absl::StrCat("/api/v1/namespaces/", pod.ns, "/pods/", pod.name));
  if (got.ok()) {
    kube::PodFacts f = kube::PodFactsOf(*got);
    if (f.uid == pod.uid && !f.Terminal()) return;  // still there and running: not ours to take
  } else if (!absl::IsNotFound(got.status())) {
    spdlog::warn(
        "pod {}/{}: cannot confirm that it is gone ({}); its devices come back with "
        "its sandbox stop",
        pod.ns, pod.name, got.status().ToString());
    return;
  }
  for (const auto& [plan, index] : held) {
    spdlog::info("pod {}/{} is over: returning claim {}/{} device {} to the host now", pod.ns,
                 pod.name, plan.claim_namespace, plan.claim_name, plan.devices[index].device);
    absl::Status st = pods_.ReleaseDevice(plan, index);
    if (!st.ok() && !absl::IsNotFound(st)) {
      spdlog::warn("pod {}/{}: returning device {} early: {} (its sandbox stop retries)", pod.ns,
                   pod.name, plan.devices[index].device, st.ToString());
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    ++released_;
  }
}

}  // namespace knd::driver
