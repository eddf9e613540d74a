#include "status_reporter.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cni/conflist.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace knd::driver {
namespace {

using nlohmann::json;
using state::DeviceState;

std::string ClaimName(const state::ClaimPlan& plan) {
  return absl::StrCat(plan.claim_namespace, "/", plan.claim_name);
}

// What happened to one device, for messages: "claim ns/name request "r" device "d"".
std::string DeviceWhere(const state::ClaimPlan& plan, const state::DevicePlan& dev) {
  return absl::StrCat("claim ", ClaimName(plan), " request \"", dev.request, "\" device \"",
                      dev.device, "\"");
}

int ConfiguredMtu(const state::DevicePlan& dev) {
  const json& c = dev.config;
  if (c.is_object() && c.contains("interface") && c["interface"].is_object() &&
      c["interface"].contains("mtu") && c["interface"]["mtu"].is_number_integer()) {
    return c["interface"]["mtu"].get<int>();
  }
  return 0;
}

// The pod a device of `plan` is in, as the plan names it.
std::optional<kube::PodRef> PodOf(const state::ClaimPlan& plan, const std::string& uid) {
  for (const auto& p : plan.pods) {
    if (p.uid == uid) return kube::PodRef{p.namespace_, p.name, p.uid};
  }
  return std::nullopt;
}

// attaches/detaches by mode and outcome.
void Count(const char* op, const state::DevicePlan& dev, bool ok) {
  static auto& c = metrics::Default().Counter(
      "knd_attachments_total", "Device attaches and detaches, by mode (native, cni) and outcome.",
      {"op", "mode", "outcome"});
  c.Inc({op, nri::IsCniDevice(dev) ? "cni" : "native", ok ? "success" : "error"});
}

}  // namespace

std::string NetworkName(const state::ClaimPlan& plan, const state::DevicePlan& dev) {
  if (nri::IsCniDevice(dev)) {
    const json& cni = dev.config["cni"];
    if (cni.contains("config") && cni["config"].is_object() &&
        cni["config"].contains(cni::kNadKey) && cni["config"][cni::kNadKey].is_string()) {
      return cni["config"][cni::kNadKey].get<std::string>();
    }
  }
  return absl::StrCat(ClaimName(plan), "/", dev.request);
}

void StatusReporter::WriteClaimStatus(const state::ClaimPlan& plan, const state::DevicePlan* failed,
                                      const absl::Status* error) {
  const auto now = std::chrono::system_clock::now();
  std::vector<json> entries;
  bool any_in_pod = false;
  for (const state::DevicePlan& d : plan.devices) {
    kube::DeviceStatus s;
    s.driver = driver_name_;
    s.pool = d.pool;
    s.device = d.device;
    s.share_id = d.share_id;
    if (failed != nullptr && failed->device == d.device && failed->pool == d.pool &&
        failed->share_id == d.share_id) {
      s.ready = false;
      s.reason = d.state == DeviceState::kAttached ? kube::event_reason::kDetachFailed
                                                   : kube::event_reason::kAttachFailed;
      s.message = error != nullptr ? std::string(error->message()) : d.note;
      any_in_pod = true;  // keep the failure visible
    } else if (d.state == DeviceState::kAttached) {
      s.ready = true;
      if (std::optional<std::string> why;
          d.child && parent_health_ && (why = parent_health_(d.device))) {
        s.ready = false;
        s.reason = kube::event_reason::kParentUnhealthy;
        s.message = absl::StrCat("shared parent ", d.identity.ifname, ": ", *why);
      }
      if (d.result) {
        s.interface_name = d.result->ifname;
        s.ips = d.result->ips;
        s.hardware_address = d.result->mac;
        if (d.result->cni_result.is_object()) s.data = d.result->cni_result;
      }
      any_in_pod = true;
    } else if (d.state == DeviceState::kFailed) {
      s.ready = false;
      s.reason = kube::event_reason::kAttachFailed;
      s.message = d.note;
      any_in_pod = true;
    } else {
      s.ready = false;  // prepared, attaching, detached: "NotAttached"
      s.message = d.state == DeviceState::kAttaching ? "being attached" : "not in a pod";
    }
    entries.push_back(kube::DeviceStatusEntry(s, now));
  }
  if (any_in_pod) {
    claims_.Set(plan.claim_namespace, plan.claim_name, plan.claim_uid, std::move(entries));
  } else {
    claims_.Clear(plan.claim_namespace, plan.claim_name, plan.claim_uid);
  }
}

void StatusReporter::WriteNetworkStatus(const state::ClaimPlan& plan, const kube::PodRef& pod) {
  std::vector<kube::NetworkStatusEntry> entries;
  for (const state::DevicePlan& d : plan.devices) {
    if (d.state != DeviceState::kAttached || d.pod_uid != pod.uid || !d.result) continue;
    // Multus attached it and writes its own entry for the NAD: one interface, one entry.
    if (d.attached_by == state::kAttachedByMultus) continue;
    kube::NetworkStatusEntry e;
    e.name = NetworkName(plan, d);
    e.interface = d.result->ifname;
    e.ips = d.result->ips;
    e.mac = d.result->mac;
    e.mtu = ConfiguredMtu(d);
    if (!d.child) e.pci_address = d.identity.pci_address;  // a child is no PCI device
    entries.push_back(std::move(e));
  }
  if (entries.empty()) {
    network_status_.Remove(pod, ClaimName(plan));
  } else {
    network_status_.AddOrReplace(pod, ClaimName(plan), entries);
  }
}

void StatusReporter::Attached(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                              const state::DevicePlan& dev) {
  Count("attach", dev, true);
  WriteClaimStatus(plan, nullptr, nullptr);
  WriteNetworkStatus(plan, {pod.namespace_, pod.name, pod.uid});
  std::string what = absl::StrCat(DeviceWhere(plan, dev), " attached");
  if (dev.result) {
    absl::StrAppend(&what, " as ", dev.result->ifname);
    if (!dev.result->ips.empty()) {
      absl::StrAppend(&what, " (", absl::StrJoin(dev.result->ips, ", "), ")");
    }
  }
  events_.Record(kube::PodObject(pod.namespace_, pod.name, pod.uid), kube::kEventNormal,
                 kube::event_reason::kAttached, what);
  if (on_change_) on_change_();
}

void StatusReporter::Detached(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                              const state::DevicePlan& dev) {
  Count("detach", dev, true);
  WriteClaimStatus(plan, nullptr, nullptr);
  WriteNetworkStatus(plan, {pod.namespace_, pod.name, pod.uid});
  if (on_change_) on_change_();
}

void StatusReporter::AttachFailed(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                                  const state::DevicePlan& dev, const absl::Status& error) {
  WriteClaimStatus(plan, &dev, &error);
  WriteNetworkStatus(plan, {pod.namespace_, pod.name, pod.uid});
  const bool detaching = dev.state == DeviceState::kAttached;
  Count(detaching ? "detach" : "attach", dev, false);
  const char* reason = detaching               ? kube::event_reason::kDetachFailed
                       : nri::IsCniDevice(dev) ? kube::event_reason::kCNIPluginFailed
                                               : kube::event_reason::kAttachFailed;
  // The hook's error starts with its own "pod … claim … device …" (for the log); the Event is
  // on the pod and the claim already, so it names claim, request and device once.
  absl::string_view cause = error.message();
  absl::ConsumePrefix(&cause, absl::StrCat(nri::Where(pod, plan, dev), ": "));
  const std::string msg = absl::StrCat(DeviceWhere(plan, dev), ": ", cause);
  events_.Record(kube::PodObject(pod.namespace_, pod.name, pod.uid), kube::kEventWarning, reason,
                 msg);
  events_.Record(kube::ClaimObject(plan.claim_namespace, plan.claim_name, plan.claim_uid),
                 kube::kEventWarning, reason, msg);
  if (on_change_) on_change_();
}

void StatusReporter::PrepareFailed(const dra::ClaimRef& claim, const std::string& reason,
                                   const absl::Status& error) {
  events_.Record(kube::ClaimObject(claim.namespace_, claim.name, claim.uid), kube::kEventWarning,
                 reason, std::string(error.message()));
}

void StatusReporter::Resync(const state::ClaimPlan& plan) {
  bool in_pod = false;
  for (const state::DevicePlan& d : plan.devices) {
    in_pod = in_pod || d.state == DeviceState::kAttached || d.state == DeviceState::kFailed;
  }
  if (!in_pod) return;  // nothing was written for it (or it was cleared already)
  WriteClaimStatus(plan, nullptr, nullptr);
  std::vector<std::string> pods;
  for (const state::DevicePlan& d : plan.devices) {
    if (d.state != DeviceState::kAttached) continue;
    bool seen = false;
    for (const auto& p : pods) seen = seen || p == d.pod_uid;
    if (seen) continue;
    pods.push_back(d.pod_uid);
    if (auto ref = PodOf(plan, d.pod_uid)) WriteNetworkStatus(plan, *ref);
  }
}

void StatusReporter::ParentHealthChanged(const std::string& device, const state::PlanStore& plans) {
  for (const state::ClaimPlan& plan : plans.List()) {
    bool child = false;
    for (const state::DevicePlan& d : plan.devices) {
      child = child || (d.child && d.device == device && d.state == DeviceState::kAttached);
    }
    if (child) WriteClaimStatus(plan, nullptr, nullptr);
  }
}

void StatusReporter::ResyncAfterStart(const std::string& marker, const state::PlanStore& plans) {
  absl::StatusOr<std::string> text = ReadFile(marker);
  std::set<std::string> listed;
  bool clean = text.ok();
  if (clean) {
    // {"version": 1, "claims": [...]}; the releases before the version wrote no "version".
    // A record it cannot read is not guessed at: it counts as none (everything is rewritten).
    json j = json::parse(*text, nullptr, false);
    const json* v = j.is_object() && j.contains("version") ? &j["version"] : nullptr;
    if (!j.is_object() || !j.contains("claims") || !j["claims"].is_array()) {
      spdlog::warn("status: {} is not a clean-stop record; writing every claim's status again",
                   marker);
      clean = false;
    } else if (v != nullptr && (!v->is_number_integer() || *v != kStatusMarkerVersion)) {
      spdlog::warn(
          "status: {} has format version {} (this knd reads version {}); writing every claim's "
          "status again",
          marker, v->dump(), kStatusMarkerVersion);
      clean = false;
    } else {
      for (const json& uid : j["claims"]) {
        if (uid.is_string()) listed.insert(uid.get<std::string>());
      }
    }
  }
  size_t n = 0;
  for (const state::ClaimPlan& plan : plans.List()) {
    if (clean && listed.count(plan.claim_uid) == 0) continue;
    Resync(plan);
    ++n;
  }
  spdlog::info("status: {}; {} claim(s) to write again",
               clean ? "the last stop was clean" : "no clean-stop record (first start or crash)",
               n);
  if (clean) {
    if (absl::Status st = RemoveFile(marker); !st.ok()) {
      spdlog::warn("status: removing {}: {}", marker, st.ToString());
    }
  }
}

absl::Status StatusReporter::SaveUnwritten(const std::string& marker,
                                           const state::PlanStore& plans) {
  std::set<std::string> uids;
  for (const std::string& uid : claims_.Pending()) uids.insert(uid);
  for (const std::string& pod : network_status_.PendingPods()) {
    for (const state::ClaimPlan& plan : plans.ForPod(pod)) uids.insert(plan.claim_uid);
  }
  json j = {{"version", kStatusMarkerVersion}, {"claims", json::array()}};
  for (const std::string& uid : uids) j["claims"].push_back(uid);
  return WriteFileAtomic(marker, DumpJson(j) + "\n");
}

}  // namespace knd::driver
