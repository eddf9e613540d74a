#include "nri/pod_network.h"

#include <spdlog/spdlog.h>

#include <set>

#include "common/status.h"
#include "config/network_config.h"
#include "netns/netns.h"

namespace knd::nri {

using state::DeviceState;

namespace {

bool OnPod(const state::DevicePlan& d) {
  return d.state == DeviceState::kAttaching || d.state == DeviceState::kAttached;
}

// The in-pod name a device has (or was going to have) in the pod netns.
std::string PodIfName(const state::DevicePlan& d) {
  if (d.result && !d.result->ifname.empty()) return d.result->ifname;
  auto it = d.config.find("interface");
  if (it != d.config.end() && it->is_object() && it->contains("name") &&
      (*it)["name"].is_string()) {
    return (*it)["name"].get<std::string>();
  }
  return d.identity.ifname;
}

PodInfo PodOf(const state::ClaimPlan& plan, const std::string& uid) {
  for (const auto& p : plan.pods) {
    if (p.uid == uid) return {p.uid, p.namespace_, p.name, ""};
  }
  return {uid, "", "", ""};
}

}  // namespace

std::string Where(const PodInfo& pod, const state::ClaimPlan& plan, const state::DevicePlan& dev) {
  std::string pod_name = pod.name.empty() ? "uid " + pod.uid : pod.namespace_ + "/" + pod.name;
  return "pod " + pod_name + " claim " + plan.claim_namespace + "/" + plan.claim_name + " device " +
         dev.device;
}

std::shared_ptr<std::mutex> PodNetwork::PodLock(const std::string& uid) {
  std::lock_guard<std::mutex> l(locks_mu_);
  auto& weak = pod_locks_[uid];
  auto lock = weak.lock();
  if (!lock) {
    lock = std::make_shared<std::mutex>();
    weak = lock;
  }
  // Drop entries of pods nobody holds any more.
  for (auto it = pod_locks_.begin(); it != pod_locks_.end();) {
    it = it->second.expired() ? pod_locks_.erase(it) : std::next(it);
  }
  return lock;
}

absl::Status PodNetwork::AttachDevice(const PodInfo& pod, const state::ClaimPlan& plan,
                                      size_t index) {
  const state::DevicePlan& dev = plan.devices[index];
  const std::string where = Where(pod, plan, dev);
  ASSIGN_OR_RETURN(config::NetworkConfig cfg, config::Decode(dev.config, where));
  attach::AttachRequest req{dev.identity, pod.netns, cfg, where};
  auto persist = [&](const state::HostSnapshot& snap) {
    return plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
      if (index >= p.devices.size()) return absl::InternalError("plan changed under attach");
      auto& d = p.devices[index];
      d.state = DeviceState::kAttaching;
      d.pod_uid = pod.uid;
      d.host = snap;
      d.result.reset();
      d.note.clear();
      return absl::OkStatus();
    });
  };
  auto result = attacher_.Attach(req, persist);
  if (!result.ok()) {
    absl::Status st = Annotate(result.status(), where);
    (void)plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
      auto& d = p.devices[index];
      // The attacher rolled back: the device is on the host again.
      d.state = DeviceState::kFailed;
      d.pod_uid.clear();
      d.note = std::string(st.message());
      return absl::OkStatus();
    });
    return st;
  }
  RETURN_IF_ERROR(plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
    auto& d = p.devices[index];
    d.state = DeviceState::kAttached;
    d.pod_uid = pod.uid;
    d.result = *result;
    return absl::OkStatus();
  }));
  spdlog::info("{}: attached as {} in {}", where, result->ifname, pod.netns);
  return absl::OkStatus();
}

absl::Status PodNetwork::Attach(const PodInfo& pod) {
  auto lock = PodLock(pod.uid);
  std::lock_guard<std::mutex> l(*lock);
  std::vector<state::ClaimPlan> plans = plans_.ForPod(pod.uid);
  if (plans.empty()) return absl::OkStatus();  // not a pod of ours
  if (pod.netns.empty()) {
    return absl::FailedPreconditionError(
        "pod " + pod.namespace_ + "/" + pod.name + " has no network namespace (hostNetwork?): " +
        "cannot attach claim " + plans[0].claim_namespace + "/" + plans[0].claim_name);
  }
  RETURN_IF_ERROR(
      Annotate(netns::ValidatePodNetns(pod.netns), "pod " + pod.namespace_ + "/" + pod.name));
  std::vector<std::pair<std::string, size_t>> done;  // attached in this call
  absl::Status failure;
  for (const auto& plan : plans) {
    for (size_t i = 0; i < plan.devices.size() && failure.ok(); ++i) {
      const auto& dev = plan.devices[i];
      if (dev.state == DeviceState::kAttached && dev.pod_uid == pod.uid) {
        auto there = attacher_.IsAttached(pod.netns, PodIfName(dev));
        if (there.ok() && *there) continue;  // repeated hook
      }
      if (dev.state == DeviceState::kAttaching ||
          (dev.state == DeviceState::kAttached && dev.pod_uid != pod.uid)) {
        // Interrupted attach (crash) or a stale attachment: give it back first.
        absl::Status st = DetachDevice(plan, i, dev.result ? dev.result->netns : pod.netns);
        if (!st.ok() && !absl::IsNotFound(st)) {
          failure = st;
          break;
        }
        auto fresh = plans_.Get(plan.claim_uid);
        if (!fresh.ok()) {
          failure = fresh.status();
          break;
        }
        failure = AttachDevice(pod, *fresh, i);
      } else {
        failure = AttachDevice(pod, plan, i);
      }
      if (failure.ok()) done.emplace_back(plan.claim_uid, i);
    }
    if (!failure.ok()) break;
  }
  if (failure.ok()) return absl::OkStatus();
  // All or nothing: give back what this call attached.
  for (const auto& [claim_uid, index] : done) {
    auto plan = plans_.Get(claim_uid);
    if (plan.ok()) (void)DetachDevice(*plan, index, pod.netns);
  }
  spdlog::error("{}", failure.ToString());
  return failure;
}

absl::Status PodNetwork::DetachDevice(const state::ClaimPlan& plan, size_t index,
                                      const std::string& netns) {
  const state::DevicePlan& dev = plan.devices[index];
  PodInfo pod = PodOf(plan, dev.pod_uid);
  const std::string where = Where(pod, plan, dev);
  absl::Status st;
  if (!dev.host) {
    st = absl::InternalError("no host snapshot recorded");
  } else {
    st = attacher_.Detach(dev.identity, *dev.host, netns, PodIfName(dev), where);
  }
  if (!st.ok() && !absl::IsNotFound(st)) {
    spdlog::error("{}: detach failed: {}", where, st.ToString());
    (void)plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
      p.devices[index].note = "detach failed: " + std::string(st.message());
      return absl::OkStatus();
    });
    return st;
  }
  RETURN_IF_ERROR(plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
    auto& d = p.devices[index];
    d.state = DeviceState::kDetached;
    d.pod_uid.clear();
    d.result.reset();
    d.note = st.ok() ? "" : std::string(st.message());
    return absl::OkStatus();
  }));
  if (st.ok()) {
    spdlog::info("{}: returned to the host", where);
  } else {
    spdlog::warn("{}: {}", where, st.ToString());
  }
  return st;
}

absl::Status PodNetwork::Detach(const PodInfo& pod) {
  auto lock = PodLock(pod.uid);
  std::lock_guard<std::mutex> l(*lock);
  absl::Status first;
  for (const auto& plan : plans_.ForPod(pod.uid)) {
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const auto& dev = plan.devices[i];
      if (!OnPod(dev) || dev.pod_uid != pod.uid) continue;
      std::string netns = dev.result ? dev.result->netns : pod.netns;
      absl::Status st = DetachDevice(plan, i, netns);
      if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
    }
  }
  return first;
}

absl::Status PodNetwork::DetachClaim(const state::ClaimPlan& plan) {
  absl::Status first;
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    const auto& dev = plan.devices[i];
    if (!OnPod(dev)) continue;
    auto lock = PodLock(dev.pod_uid);
    std::lock_guard<std::mutex> l(*lock);
    absl::Status st = DetachDevice(plan, i, dev.result ? dev.result->netns : "");
    if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
  }
  return first;
}

absl::Status PodNetwork::Reconcile(const std::vector<PodInfo>& running) {
  std::map<std::string, PodInfo> by_uid;
  for (const auto& p : running) by_uid[p.uid] = p;
  absl::Status first;
  for (const auto& plan : plans_.List()) {
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const auto& dev = plan.devices[i];
      if (!OnPod(dev)) continue;  // prepared-but-not-started pods are left alone
      auto it = by_uid.find(dev.pod_uid);
      absl::Status st;
      if (it == by_uid.end()) {
        spdlog::info("reconcile: pod uid {} is gone; returning claim {}/{} device {} to the host",
                     dev.pod_uid, plan.claim_namespace, plan.claim_name, dev.device);
        auto lock = PodLock(dev.pod_uid);
        std::lock_guard<std::mutex> l(*lock);
        st = DetachDevice(plan, i, dev.result ? dev.result->netns : "");
      } else if (dev.state == DeviceState::kAttaching) {
        spdlog::info("reconcile: completing interrupted attach of claim {}/{} device {}",
                     plan.claim_namespace, plan.claim_name, dev.device);
        st = Attach(it->second);
      }
      if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
    }
  }
  return first;
}

}  // namespace knd::nri
