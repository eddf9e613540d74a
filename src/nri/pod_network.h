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
//    and redone); devices of pods that were prepared but have no sandbox yet are left alone;
//    a running pod whose devices are not in it (the runtime started it while knd was not
//    connected: containerd goes on without a plugin that is down or dies mid-hook) gets them
//    now — late, but its containers that list the claim were refused by the netns guard and
//    are retried by the kubelet, and the rest at least get the network they were promised.
//  - Reconcile vs hooks: the reconcile runs on its own thread while the hooks go on, and its
//    list of running pods is as old as Synchronize. Per pod, the later word wins: the pod is
//    reconciled under the same pod lock the hooks take, from the plans as they are under that
//    lock, and not at all if a hook for it came after Synchronize (that hook already did what
//    the pod needs, with newer facts than the list). A hook that comes while its pod is being
//    reconciled waits for the lock and then acts on what the reconcile left.
//  - A device is in one pod at a time: Attach never takes a device out of another pod (it
//    fails this pod, naming the pod that has it). A claim the kubelet prepared for an earlier
//    pod and now also gives to this one (the kubelet does not call Prepare again for a claim
//    already prepared on the node) is taken over by this pod once the earlier pod's devices
//    are back on the host, after checking the claim's UID with the API.
//  - Multus (containerd and CRI-O run the pod's CNI, Multus with it, before NRI
//    RunPodSandbox): a device that is already in the pod netns when the hook runs — handed to
//    a NAD by Multus's DRA support — is found by identity and recorded as attached by Multus
//    (attachedBy "multus", or found there although knd was to attach it); knd does not move
//    it, and leaves its teardown to Multus's CNI DEL.
//  - knd holds every pod netns it moved a device into open until the device is out again. A
//    runtime that deletes the netns without a StopPodSandbox hook (containerd after its own
//    restart sends no NRI StopPodSandbox or RemovePodSandbox for the sandboxes it recovered;
//    CRI-O deletes the netns first; knd was not connected) then does not destroy the
//    namespace — a veth would die with it — and ReleaseOrphans, run periodically, gives the
//    devices of such a namespace back through the held handle.
//  - Every Detach reads the device's plan afresh under the pod lock: a device that another
//    path (StopPodSandbox, Unprepare, a handover in Prepare) has already returned is left
//    alone, so a stale copy of a plan can never take a device out of its next pod.
//  - A CNI device that is on the host before ADD gets a host snapshot; after DEL (which gives
//    it back, e.g. host-device) its name, MTU, MAC, addresses, admin state and routes are
//    restored like a native detach.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "attach/attacher.h"
#include "cni/executor.h"
#include "netns/netns.h"
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

  // The claims a pod uses, by name (the pod watch); nullopt = not known.
  using PodClaimsFn = std::function<std::optional<std::vector<std::string>>(const PodInfo&)>;
  // The UID of claim ns/name (an API read; only for a claim the kubelet gives a second pod).
  using ClaimUidFn =
      std::function<absl::StatusOr<std::string>(const std::string& ns, const std::string& name)>;
  // Both set (before the hooks run) = claims prepared for an earlier pod are taken over by a
  // later pod of the same claim (contract above). Unset = a pod gets only the claims
  // prepared for it.
  void SetClaimLookup(PodClaimsFn pod_claims, ClaimUidFn claim_uid) {
    pod_claims_ = std::move(pod_claims);
    claim_uid_ = std::move(claim_uid);
  }
  // The runtime's NRI request timeout (ConfigureRequest.request_timeout); <= 0 keeps the NRI
  // default of 2 s.
  void SetRuntimeTimeout(std::chrono::milliseconds t);

  // The hooks. Each runs under the pod's lock.
  absl::Status Attach(const PodInfo& pod);
  absl::Status Detach(const PodInfo& pod);
  // Reconcile against `running`, the runtime's pods at NRI Synchronize. Ordering with the
  // hooks (which keep coming while a reconcile runs on its own thread): each pod is
  // reconciled under its pod lock, from the plans as they are then, and a pod that had a hook
  // (Attach, Detach) since BeginReconcile() is left alone, because the hook saw newer facts
  // than `running` (a pod started since is missing from it; one stopped since is still in
  // it). Call BeginReconcile() when the snapshot is taken, before the next hook can run;
  // without it Reconcile counts from its own start.
  void BeginReconcile();
  absl::Status Reconcile(const std::vector<PodInfo>& running);
  // Tests only: called by Reconcile for each pod it looks at, just before it takes that pod's
  // lock (where a hook can come in between).
  void SetReconcilePodHookForTest(std::function<void(const std::string& pod_uid)> fn) {
    reconcile_pod_hook_ = std::move(fn);
  }
  // Used by Unprepare: returns every device of `plan` that is still attached to the host.
  absl::Status DetachClaim(const state::ClaimPlan& plan);
  // Used by Prepare to hand a device over: returns device `index` of `plan` from its pod (a
  // pod that is gone) to the host. NotFound = it did not survive its netns.
  absl::Status ReleaseDevice(const state::ClaimPlan& plan, size_t index);
  // Returns the devices in pod netns that the runtime has deleted while knd holds them (see
  // the contract above). Cheap when there are none: one open+fstat per held netns.
  absl::Status ReleaseOrphans();
  // Number of pod netns knd holds open (for metrics and tests).
  size_t held_netns() const;

 private:
  // A CNI DEL of an interrupted ADD failed: true (and logged) when the device is on the host
  // anyway, so the DEL has nothing left to undo.
  bool OnHostAfterFailedDel(const state::DevicePlan& dev, const absl::Status& del,
                            const std::string& where);
  // Holds `netns` open (no-op if held). Called with a pod's knd-attached devices in it.
  void HoldNetns(const std::string& netns);
  // Closes the held netns when no device that knd attached is in it any more.
  void MaybeReleaseNetns(const std::string& netns);
  // The path to use for `netns`: itself while it still names the held namespace, else
  // /proc/<pid>/fd/<held fd> (usable by knd and by the CNI plugins it runs).
  std::string UsableNetns(const std::string& netns) const;
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

  // Detaches device `index` of claim `claim_uid` (read afresh; the caller holds the pod lock)
  // if it is still in pod `pod_uid` ("" = any pod), and records the outcome in its plan.
  // `netns` is used when the plan has no attach result.
  absl::Status DetachDevice(const std::string& claim_uid, size_t index, const std::string& pod_uid,
                            const std::string& netns, Clock::time_point deadline = {});
  // Records device `index` as attached by Multus with `found` (what is in the pod).
  absl::Status RecordMultus(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                            state::AttachResult found, const std::string& note);
  absl::Status AttachMultusDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index);
  // Claims this pod uses that were prepared for an earlier pod: taken over (added to `plans`
  // and to the plan's pods), or an error when their devices are still in that pod.
  absl::Status AdoptClaims(const PodInfo& pod, std::vector<state::ClaimPlan>& plans);
  absl::Status AttachDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                            const Budget& budget);
  absl::Status AttachCniDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                               const Budget& budget);
  // A child of a shared parent, created in the pod (the plan's ChildPlan).
  absl::Status AttachChildDevice(const PodInfo& pod, const state::ClaimPlan& plan, size_t index,
                                 const config::NetworkConfig& cfg);
  absl::Status DelCni(const PodInfo& pod, const state::ClaimPlan& plan,
                      const state::DevicePlan& dev, const std::string& netns,
                      Clock::time_point deadline);
  // Changes device `index` of claim `claim_uid` in the store (InternalError if the plan has
  // no such device any more).
  absl::Status UpdateDevice(const std::string& claim_uid, size_t index,
                            const std::function<void(state::DevicePlan&)>& fn);
  // Reads device `index` of claim `claim_uid` back from the store for the observer.
  void Notify(const PodInfo& pod, const std::string& claim_uid, size_t index,
              const absl::Status* error);
  std::shared_ptr<std::mutex> PodLock(const std::string& uid);
  // Attach with the pod lock held by the caller.
  absl::Status AttachLocked(const PodInfo& pod);
  // Reconciles one pod (`pod` = its snapshot entry, nullptr = not running); takes its lock.
  absl::Status ReconcilePod(const std::string& uid, const PodInfo* pod);
  // Records that a hook for pod `uid` ran (caller holds the pod lock).
  void NoteHook(const std::string& uid);
  bool HookedSinceSnapshot(const std::string& uid) const;

  state::PlanStore& plans_;
  attach::Attacher& attacher_;
  cni::Executor* cni_;
  std::atomic<AttachObserver*> observer_{nullptr};
  PodClaimsFn pod_claims_;
  ClaimUidFn claim_uid_;
  static constexpr int64_t kNriDefaultRequestTimeoutMs = 2000;  // NRI's own default
  std::atomic<int64_t> runtime_timeout_ms_{kNriDefaultRequestTimeoutMs};
  std::mutex locks_mu_;
  std::map<std::string, std::weak_ptr<std::mutex>> pod_locks_;
  // Pods that had a hook since the reconcile's snapshot; tracked only while one is pending,
  // so the set stays as small as the hooks of one reconcile's duration.
  mutable std::mutex hooked_mu_;
  bool reconciling_ = false;
  std::set<std::string> hooked_;
  std::function<void(const std::string&)> reconcile_pod_hook_;
  mutable std::mutex held_mu_;
  std::map<std::string, netns::Netns> held_;  // pod netns path -> the namespace, held open
};

// Whether a device is attached by CNI plugins (its config has a `cni` section).
bool IsCniDevice(const state::DevicePlan& dev);

// The CNI_ARGS knd passes (as containerd does): IgnoreUnknown, K8S_POD_NAMESPACE, K8S_POD_NAME,
// K8S_POD_INFRA_CONTAINER_ID (when the sandbox id is known), K8S_POD_UID.
std::vector<std::pair<std::string, std::string>> CniArgs(const PodInfo& pod);

// "pod ns/name claim ns/name device D": the identity every hook error and log line carries.
std::string Where(const PodInfo& pod, const state::ClaimPlan& plan, const state::DevicePlan& dev);

}  // namespace knd::nri
