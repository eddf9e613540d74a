// The pod network hooks: what knd does for a pod when the runtime creates, stops and removes
// its sandbox, and after a restart. Works on plans (src/state) and an Attacher (src/attach);
// knows nothing of NRI messages, so it is tested with a fake attacher.
//
// Hook contracts (the runtime gives each hook its request timeout, 2 s by default, and retries
// nothing; a hook that outlives it gets knd disconnected and the pod started without it):
//  - Attach (RunPodSandbox): for every plan that lists this pod, every device not yet attached
//    is moved into the pod netns and configured. The host snapshot is persisted before the
//    device leaves the host. All or nothing per pod: if one device fails, the ones attached in
//    this call go back to the host, and the error names pod, claim, device and step. A pod
//    without knd claims is not touched. Repeating the hook is harmless.
//  - Detach (StopPodSandbox, RemovePodSandbox): every device attached to this pod goes back to
//    the host as it was. Works when the netns is already gone. Errors leave the device marked
//    attached so the next hook (RemovePodSandbox) or the next reconcile retries.
//  - CNI devices (config `cni`: a NAD resolved in Prepare, or an inline conflist) are attached by
//    running the conflist (ADD) with CNI_IFNAME = the in-pod name and CNI_NETNS = the pod netns;
//    "Attaching" is persisted before ADD, and a failed ADD is followed by a DEL of the whole
//    list. Detach runs DEL always, also when the netns is gone (CNI_NETNS is then empty).
//  - Time: Attach starts no device after 70% of the runtime's request timeout and gives CNI
//    plugins only what is left of that, then fails the pod (rolled back) with an error naming
//    the timeout, so the runtime fails the sandbox and the kubelet retries it, instead of the
//    runtime dropping knd and starting the pod without its devices. Rollback and Detach's CNI
//    DELs get up to 90% of it.
//  - Addresses and routes of an IPAM allocation made in Prepare (DevicePlan.ipam_result) are
//    applied at a native attach like configured ones.
//  - Reconcile (NRI Synchronize, i.e. after every (re)connect): devices of pods that are no
//    longer running go back to the host; an attach interrupted by a crash is completed (undone
//    and redone); devices of pods that were prepared but have no sandbox yet are left alone.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "attach/attacher.h"
#include "cni/executor.h"
#include "state/plan_store.h"

namespace knd::nri {

struct PodInfo {
  std::string uid;
  std::string namespace_;
  std::string name;
  std::string netns;            // empty for hostNetwork pods
  std::string sandbox_id = {};  // runtime's sandbox id (CNI K8S_POD_INFRA_CONTAINER_ID)
};

// Told about every attach and detach, native and CNI; implementations only queue work (status,
// events, network-status) and never block the hook.
class AttachObserver {
 public:
  virtual ~AttachObserver() = default;
  virtual void Attached(const PodInfo& pod, const state::ClaimPlan& plan,
                        const state::DevicePlan& dev) = 0;
  virtual void Detached(const PodInfo& pod, const state::ClaimPlan& plan,
                        const state::DevicePlan& dev) = 0;
  virtual void AttachFailed(const PodInfo& pod, const state::ClaimPlan& plan,
                            const state::DevicePlan& dev, const absl::Status& error) = 0;
};

class PodNetwork {
 public:
  // `cni` runs the plugins of CNI devices; without it a CNI device fails to attach.
  PodNetwork(state::PlanStore& plans, attach::Attacher& attacher, cni::Executor* cni = nullptr)
      : plans_(plans), attacher_(attacher), cni_(cni) {}

  // nullptr = none. Set before the hooks run.
  void SetObserver(AttachObserver* o) { observer_.store(o); }
  // The runtime's NRI request timeout (ConfigureRequest.request_timeout); <= 0 keeps the NRI
  // default of 2 s.
  void SetRuntimeTimeout(std::chrono::milliseconds t);

  absl::Status Attach(const PodInfo& pod);
  absl::Status Detach(const PodInfo& pod);
  absl::Status Reconcile(const std::vector<PodInfo>& running);
  // Used by Unprepare: returns every device of `plan` that is still attached to the host.
  absl::Status DetachClaim(const state::ClaimPlan& plan);

 private:
  using Clock = std::chrono::steady_clock;
  // What one hook may spend: `work` is when no more attach work starts, `cleanup` when DELs
  // (rollback, detach) must be over. {} = no limit (reconcile, Unprepare).
  struct Budget {
    Clock::time_point work{}, cleanup{};
  };
  Budget HookBudget() const;
  // The hint appended to errors caused by the hook's budget.
  std::string TimeoutHint() const;
  // `st` with TimeoutHint() appended when it is DeadlineExceeded (a budget ran out).
  absl::Status WithTimeoutHint(absl::Status st) const;

  // Detaches device `index` of claim `claim_uid` and records the outcome in its plan.
  absl::Status DetachDevice(const state::ClaimPlan& plan, size_t index, const std::string& netns,
                            Clock::time_point deadline = {});
  absl::Status AttachDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                            const Budget& budget);
  absl::Status AttachCniDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                               const Budget& budget);
  absl::Status DelCni(const PodInfo& pod, const state::ClaimPlan& plan,
                      const state::DevicePlan& dev, const std::string& netns,
                      Clock::time_point deadline);
  // Reads device `index` of claim `claim_uid` back from the store for the observer.
  void Notify(const PodInfo& pod, const std::string& claim_uid, size_t index,
              const absl::Status* error);
  std::shared_ptr<std::mutex> PodLock(const std::string& uid);

  state::PlanStore& plans_;
  attach::Attacher& attacher_;
  cni::Executor* cni_;
  std::atomic<AttachObserver*> observer_{nullptr};
  static constexpr int64_t kNriDefaultRequestTimeoutMs = 2000;  // NRI's own default
  std::atomic<int64_t> runtime_timeout_ms_{kNriDefaultRequestTimeoutMs};
  std::mutex locks_mu_;
  std::map<std::string, std::weak_ptr<std::mutex>> pod_locks_;
};

// Whether a device is attached by CNI plugins (its config has a `cni` section).
bool IsCniDevice(const state::DevicePlan& dev);

// The CNI_ARGS knd passes (as containerd does): IgnoreUnknown, K8S_POD_NAMESPACE, K8S_POD_NAME,
// K8S_POD_INFRA_CONTAINER_ID (when the sandbox id is known), K8S_POD_UID.
std::vector<std::pair<std::string, std::string>> CniArgs(const PodInfo& pod);

// "pod ns/name claim ns/name device D": the identity every hook error and log line carries.
std::string Where(const PodInfo& pod, const state::ClaimPlan& plan, const state::DevicePlan& dev);

}  // namespace knd::nri
