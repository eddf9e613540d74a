// The pod network hooks: what knd does for a pod when the runtime creates, stops and removes
// its sandbox, and after a restart. Works on plans (src/state) and an Attacher (src/attach);
// knows nothing of NRI messages, so it is tested with a fake attacher.
//
// Hook contracts (the runtime gives each hook 2 s and retries nothing):
//  - Attach (RunPodSandbox): for every plan that lists this pod, every device not yet attached
//    is moved into the pod netns and configured. The host snapshot is persisted before the
//    device leaves the host. All or nothing per pod: if one device fails, the ones attached in
//    this call go back to the host, and the error names pod, claim, device and step. A pod
//    without knd claims is not touched. Repeating the hook is harmless.
//  - Detach (StopPodSandbox, RemovePodSandbox): every device attached to this pod goes back to
//    the host as it was. Works when the netns is already gone. Errors leave the device marked
//    attached so the next hook (RemovePodSandbox) or the next reconcile retries.
//  - Reconcile (NRI Synchronize, i.e. after every (re)connect): devices of pods that are no
//    longer running go back to the host; an attach interrupted by a crash is completed (undone
//    and redone); devices of pods that were prepared but have no sandbox yet are left alone.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "attach/attacher.h"
#include "state/plan_store.h"

namespace knd::nri {

struct PodInfo {
  std::string uid;
  std::string namespace_;
  std::string name;
  std::string netns;  // empty for hostNetwork pods
};

class PodNetwork {
 public:
  PodNetwork(state::PlanStore& plans, attach::Attacher& attacher)
      : plans_(plans), attacher_(attacher) {}

  absl::Status Attach(const PodInfo& pod);
  absl::Status Detach(const PodInfo& pod);
  absl::Status Reconcile(const std::vector<PodInfo>& running);
  // Used by Unprepare: returns every device of `plan` that is still attached to the host.
  absl::Status DetachClaim(const state::ClaimPlan& plan);

 private:
  // Detaches device `index` of claim `claim_uid` and records the outcome in its plan.
  absl::Status DetachDevice(const state::ClaimPlan& plan, size_t index, const std::string& netns);
  absl::Status AttachDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index);
  std::shared_ptr<std::mutex> PodLock(const std::string& uid);

  state::PlanStore& plans_;
  attach::Attacher& attacher_;
  std::mutex locks_mu_;
  std::map<std::string, std::weak_ptr<std::mutex>> pod_locks_;
};

// "pod ns/name claim ns/name device D": the identity every hook error and log line carries.
std::string Where(const PodInfo& pod, const state::ClaimPlan& plan, const state::DevicePlan& dev);

}  // namespace knd::nri
