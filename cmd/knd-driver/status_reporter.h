// Makes what the hooks did visible through the API: the claim's status.devices[] (KEP-4817),
// the pod's k8s.v1.cni.cncf.io/network-status annotation, and Events on the claim and pod.
//
// It is the PodNetwork's AttachObserver and the Preparer's failure hook. Every call only
// queues work for the background writers (claim status, network-status, events), so the NRI
// hooks and the kubelet calls never wait for the API server.
//
// What is written, per claim prepared on this node:
//  - status.devices[]: one entry per device of the claim: Ready=True with networkData
//    (in-pod name, IPs, MAC) once attached; Ready=False with the reason (AttachFailed,
//    DetachFailed) and the error otherwise; all our entries are removed once no device of the
//    claim is in a pod any more.
//  - network-status: the claim's attached devices, under the attachment key
//    "<claim ns>/<claim name>", named "<ns>/<nad>" for a NAD-backed device and
//    "<claim ns>/<claim name>/<request>" otherwise.
//  - Events: Normal Attached on the pod; Warning AttachFailed / CNIPluginFailed /
//    DetachFailed on the pod and on the claim; Warning <prepare reason> on the claim when
//    Prepare refuses it.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "dra/preparer.h"
#include "kube/claim_status.h"
#include "kube/events.h"
#include "kube/network_status.h"
#include "nri/pod_network.h"
#include "state/plan.h"
#include "state/plan_store.h"

namespace knd::driver {

class StatusReporter : public nri::AttachObserver {
 public:
  StatusReporter(std::string driver_name, kube::ClaimStatusWriter& claims,
                 kube::NetworkStatusWriter& network_status, kube::EventRecorder& events)
      : driver_name_(std::move(driver_name)),
        claims_(claims),
        network_status_(network_status),
        events_(events) {}

  void Attached(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                const state::DevicePlan& dev) override;
  void Detached(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                const state::DevicePlan& dev) override;
  void AttachFailed(const nri::PodInfo& pod, const state::ClaimPlan& plan,
                    const state::DevicePlan& dev, const absl::Status& error) override;

  // Preparer::Options::on_failure: a Warning event on the claim.
  void PrepareFailed(const dra::ClaimRef& claim, const std::string& reason,
                     const absl::Status& error);

  // Called after every attach and detach (e.g. to refresh the kubelet's device health). Set
  // before the hooks run.
  void SetOnChange(std::function<void()> fn) { on_change_ = std::move(fn); }

  // Writes the status and network-status of a plan as it is on disk.
  void Resync(const state::ClaimPlan& plan);

  // Why the shared parent `device` cannot carry its children's traffic (link down, gone), or
  // nullopt when it can: a child in a pod reports Ready=False (ParentUnhealthy) meanwhile.
  // Set before the hooks run. ParentHealthChanged rewrites the status of every claim with a
  // child of `device` in a pod.
  using ParentHealthFn = std::function<std::optional<std::string>(const std::string& device)>;
  void SetParentHealth(ParentHealthFn fn) { parent_health_ = std::move(fn); }
  void ParentHealthChanged(const std::string& device, const state::PlanStore& plans);

  // Across restarts, nothing unwritten is lost and nothing written is written again:
  // SaveUnwritten (at a clean stop) records in `marker` the claims whose status or
  // network-status is not on the server yet; ResyncAfterStart rewrites exactly those and
  // removes the marker. Without a marker (a crash, or the first start) it rewrites every plan
  // with a device in a pod, and so does a marker it cannot read (another format version,
  // not JSON): the marker only spares writes, so it is never worth refusing a start over.
  static constexpr int kStatusMarkerVersion = 1;
  void ResyncAfterStart(const std::string& marker, const state::PlanStore& plans);
  absl::Status SaveUnwritten(const std::string& marker, const state::PlanStore& plans);

 private:
  // Status entries of every device of `plan`; `failed` (may be null) is the device whose
  // operation just failed, with its error.
  void WriteClaimStatus(const state::ClaimPlan& plan, const state::DevicePlan* failed,
                        const absl::Status* error);
  // The claim's entries in the network-status of the pod `pod_uid`.
  void WriteNetworkStatus(const state::ClaimPlan& plan, const kube::PodRef& pod);

  std::string driver_name_;
  kube::ClaimStatusWriter& claims_;
  kube::NetworkStatusWriter& network_status_;
  kube::EventRecorder& events_;
  std::function<void()> on_change_;
  ParentHealthFn parent_health_;
};

// The network-status "name" of a device: "<ns>/<nad>" when it runs a NAD's plugins, else
// "<claim ns>/<claim name>/<request>".
std::string NetworkName(const state::ClaimPlan& plan, const state::DevicePlan& dev);

}  // namespace knd::driver
