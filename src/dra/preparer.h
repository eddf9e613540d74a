// The DRA Prepare/Unprepare logic, independent of gRPC: turns a claim the kubelet names
// ({namespace, uid, name}) into a persisted attach plan (state::ClaimPlan) for the NRI side,
// and undoes it.
//
// Hook contract (what the kubelet expects, docs/wire-facts.md §1.3):
//  - Prepare runs before the pod sandbox exists; the plan is on disk BEFORE it answers, so a
//    driver restart between Prepare and RunPodSandbox loses nothing.
//  - Both calls are idempotent: the kubelet retries. A second Prepare of a claim whose plan
//    exists returns the same devices without reading the API or allocating anything again;
//    Unprepare of an unknown claim is success.
//  - A refused claim changes nothing (no plan, no CDI spec) and the error names the claim,
//    the request and the field at fault.
//  - IPAM (config `ipam`) runs here, before the plan is written: one CNI IPAM ADD per device
//    with a container id stable per claim UID + device, so a repeated Prepare (even after a
//    crash before the plan was written) gets the same address. Unprepare releases it (DEL),
//    also for a claim whose pod vanished while knd was down: the plan on disk is enough.
//  - A NetworkAttachmentDefinition named in `cni.networkAttachment` is read here and its
//    conflist stored in the plan (cni.config, with cni::kNadKey naming the NAD), so the NRI
//    hook never calls the API inside its 2 s budget.
//  - One claim is never prepared and unprepared at the same time; different claims run in
//    parallel (the gRPC server calls in from several threads).
//  - Prepare is the gate for the sandbox (wire-facts §9: a failed RunPodSandbox costs the node
//    a sandbox record and a CNI ADD/DEL each time): it answers only when every device can be
//    attached now. A device on the host (found by identity, under any name) is ready. A device
//    still in another claim's pod — the scheduler hands a device to the next pod before the
//    old sandbox is stopped — is taken back at once when that pod is gone from the API or has
//    finished (the API has released the device; nothing runs in that pod any more), else
//    waited for (StopPodSandbox or the old claim's Unprepare brings it home) until
//    `device_wait` is over. Then, or for a device that is gone from the node, Prepare fails
//    with an error naming claim, device and reason; the kubelet retries Prepare without
//    creating any sandbox.
//    A device on the host is then asked whether it can take what its config asks of the
//    device itself (`check_device`: ethtool features it cannot change, more channels or ring
//    entries than it has): a claim it cannot serve is refused here, not at RunPodSandbox.
//  - A VF whose config says sriov.driver: vfio-pci is taken from its kernel driver here, not at
//    RunPodSandbox: the plan is on disk first (kernel driver, then the host snapshot), then the
//    PF applies the VF's sriov settings, then vfio-pci gets it, and the claim's CDI spec gives
//    the containers its VFIO group's character devices. The NRI hook only records it in the
//    pod. Unprepare gives it back to its kernel driver with its host settings.
//  - A claim serves one pod: reserved for more than one running pod, it is refused (sharing a
//    NIC needs virtual children, not the same netdev in two pods). Reserved pods that are gone
//    or have finished do not count.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cni/executor.h"
#include "config/network_config.h"
#include "inventory/device.h"
#include "inventory/rdma.h"
#include "kube/client.h"
#include "kube/pod_cache.h"
#include "state/cdi.h"
#include "state/plan.h"
#include "state/plan_store.h"

namespace knd::dra {

// CDI kind of the specs knd writes (one spec per claim, state/cdi.h).
inline constexpr char kCdiKind[] = "knd.k8s.cni.cncf.io/net";

// The claim as the kubelet names it.
struct ClaimRef {
  std::string namespace_;
  std::string uid;
  std::string name;
};

// One prepared device, as returned to the kubelet.
struct PreparedDevice {
  std::vector<std::string> request_names;  // base request names (no "/<sub>")
  std::string pool;
  std::string device;
  std::vector<std::string> cdi_ids;
  std::string share_id = {};  // the allocation's shareID (a share of a shared parent)
  bool operator==(const PreparedDevice&) const = default;
};

class Preparer {
 public:
  // Finds a device of the latest inventory scan by its DRA device name.
  using Resolver = std::function<std::optional<inventory::Device>(const std::string&)>;
  // Called by Unprepare with the plan before it is deleted (the NRI side detaches a device
  // that is still attached). An error aborts the Unprepare; the kubelet retries.
  using UnprepareHook = std::function<absl::Status(const state::ClaimPlan&)>;

  // Called when Prepare refuses or fails a claim, with a stable reason for an Event
  // (kube::event_reason: InvalidConfig, DeviceNotFound, DeviceBusy, NADNotFound, IPAMFailed,
  // PrepareFailed) and the error the kubelet gets.
  using FailureHook =
      std::function<void(const ClaimRef&, const std::string& reason, const absl::Status&)>;
  // Is the device on the host now (a live lookup by identity)?
  using OnHostFn = std::function<absl::StatusOr<bool>(const state::DeviceIdentity&)>;
  // Can the device, on the host now, take what its config asks of the device itself
  // (attach::Attacher::CheckDevice)?
  using CheckDeviceFn =
      std::function<absl::Status(const state::DeviceIdentity&, const config::NetworkConfig&)>;
  // Takes device `index` of `holder` (a plan of another claim, device in a pod that is gone)
  // back to the host: the NRI side's detach, under that pod's lock. NotFound = the device
  // did not survive its pod (a virtual device).
  using ReleaseFn = std::function<absl::Status(const state::ClaimPlan& holder, size_t index)>;
  // Why a device is known to be gone from the node (the inventory's lost devices), or nullopt.
  using LostFn = std::function<std::optional<std::string>(const std::string& device)>;
  // What a pod needs to use an RDMA device (inventory::ReadRdmaFacts on the node's sysfs).
  using RdmaFn = std::function<absl::StatusOr<inventory::RdmaFacts>(const std::string& rdma)>;

  struct Options {
    std::string driver_name;
    std::string node_name;  // also the pool name
    std::string cdi_dir;    // runtime's dynamic CDI dir; empty = no CDI specs at all
    UnprepareHook on_unprepare;
    FailureHook on_failure = nullptr;
    cni::Executor* cni = nullptr;  // runs `ipam`; without it a claim with `ipam` is refused
    // This node's pods as a watch sees them; a pod it has not seen (or not with the reserved
    // UID) is read from the API. Without it every reserved pod is read.
    const kube::PodCache* pods = nullptr;
    // Host path of knd-netns-guard. When set (and cdi_dir too), every claim gets a CDI spec
    // whose device runs it as an OCI createRuntime hook: a container of the pod fails to
    // start when the claim's interfaces are not in the pod netns (the runtime dropped the NRI
    // hook), instead of running without its network.
    std::string netns_guard = {};
    // The gate (see the contract above). Without `on_host` Prepare does not check where a
    // device is (tests of other parts).
    OnHostFn on_host = nullptr;
    // Called for a device knd moves into the pod once it is on the host: an error refuses the
    // claim (InvalidConfig) before anything is allocated or written. A child of a shared
    // parent is checked when it is made, in the pod. Unset: not checked.
    CheckDeviceFn check_device = nullptr;
    ReleaseFn release = nullptr;
    LostFn lost = nullptr;
    // When set, a device with an RDMA device gets its character devices in the claim's CDI
    // spec (CDI device "rdma"); Prepare refuses it when the node's RDMA subsystem is in
    // exclusive netns mode (knd does not move RDMA devices). Unset: RDMA is not looked at.
    RdmaFn rdma = nullptr;
    // How long one NodePrepareResources call may wait for devices to come back from pods that
    // are stopping; well inside the kubelet's 45 s call timeout.
    std::chrono::milliseconds device_wait = std::chrono::seconds(10);
    // What claims may run through CNI themselves (the node config's claimCni); unset: no
    // inline cni.config or ipam from a claim.
    std::optional<config::ClaimCniPolicy> claim_cni = std::nullopt;
    // Binding a VF to vfio-pci and back (NetworkConfig sriov.driver). Without `bind` such a
    // claim is refused.
    struct Vfio {
      // Could the VF at this PCI address be bound (the driver is loaded, the VF has an IOMMU
      // group of its own)? Changes nothing; an error refuses the claim.
      std::function<absl::Status(const std::string& pci_address)> check;
      // Takes the VF from its kernel driver: its host settings go to `persist` before anything
      // changes, then the PF applies `sriov`, then vfio-pci gets the VF. Returns `d.vfio` with
      // the IOMMU group and its device nodes. A VF already on vfio-pci is only checked.
      std::function<absl::StatusOr<state::VfioPlan>(
          const state::DevicePlan& d, const config::SriovConfig& sriov,
          const std::function<absl::Status(const state::HostSnapshot&)>& persist)>
          bind;
      // Gives the VF back to its kernel driver and restores `d.host` (idempotent).
      std::function<absl::Status(const state::DevicePlan& d)> give_back;
    };
    Vfio vfio = {};
  };

  Preparer(kube::Client& kube, state::PlanStore& plans, Resolver resolver, Options opts);

  using Clock = std::chrono::steady_clock;

  // Prepares one claim. Errors are per claim (InvalidArgument/FailedPrecondition for a claim
  // we refuse, NotFound/Unavailable for API or inventory trouble, Unavailable for a device
  // still in another pod); the message is meant for `kubectl describe pod` and names claim,
  // request and field. Waits for busy devices until `deadline` ({} = now + device_wait).
  absl::StatusOr<std::vector<PreparedDevice>> Prepare(const ClaimRef& claim,
                                                      Clock::time_point deadline = {});

  // Releases one claim: hook, CDI spec, plan. Absent plan = success.
  absl::Status Unprepare(const ClaimRef& claim);

  // Answers every claim of a batch, keyed by UID; the value is an error message or the devices.
  struct Result {
    std::vector<PreparedDevice> devices;
    std::string error;  // non-empty = failed
  };
  std::map<std::string, Result> PrepareBatch(const std::vector<ClaimRef>& claims);
  std::map<std::string, std::string> UnprepareBatch(const std::vector<ClaimRef>& claims);

  const Options& options() const { return opts_; }

 private:
  // Serializes work on one claim UID; other UIDs proceed in parallel.
  class ClaimLock;
  std::shared_ptr<std::mutex> LockFor(const std::string& uid);
  void ReleaseLock(const std::string& uid);

  // Prepare without the failure hook; `reason` says which step failed.
  absl::StatusOr<std::vector<PreparedDevice>> PrepareClaim(const ClaimRef& claim,
                                                           Clock::time_point deadline,
                                                           std::string& reason);
  absl::StatusOr<state::ClaimPlan> BuildPlan(const ClaimRef& claim);
  // The child a claim gets on shared parent `parent`: type and mode from `child` (macvlan
  // bridge by default), a MAC stable per claim and request; refuses what cannot apply to a
  // child (cni, attachedBy multus, sriov, an MTU above the parent's, passthru next to others).
  absl::StatusOr<state::ChildPlan> PlanChild(const inventory::Device& parent,
                                             const config::NetworkConfig& cfg,
                                             const std::string& claim_uid,
                                             const std::string& request,
                                             const std::string& req_where) const;
  // For a plan on disk with vfio devices (sriov.driver): binds those not bound yet (persisting
  // the host snapshot before and the group after each), writes the CDI spec and persists the
  // plan. On failure gives every VF back, removes the CDI spec and the plan, returns the error.
  absl::Status FinishVfio(state::ClaimPlan& plan);
  // Gives every vfio device of `plan` back to its kernel driver; the first error.
  absl::Status GiveBackVfio(const state::ClaimPlan& plan);
  // The gate for one device of `plan` (contract above).
  absl::Status AwaitDevice(const state::ClaimPlan& plan, const state::DevicePlan& d,
                           Clock::time_point deadline);
  // opts_.check_device for `d` when knd moves it, the error prefixed with claim, request and
  // device.
  absl::Status CheckDevice(const state::ClaimPlan& plan, const state::DevicePlan& d);
  // Is the pod that holds device `index` of `holder` gone from the API, or finished? Reads
  // the pod from the API at most once per `*next_read` interval when the pod watch has not
  // got it under that UID.
  bool HolderPodDone(const state::ClaimPlan& holder, size_t index, Clock::time_point* next_read);
  std::vector<PreparedDevice> Answer(const state::ClaimPlan& plan) const;
  // IPAM ADD for every device of `plan` that asks for it; all or nothing.
  absl::Status AllocateIpam(state::ClaimPlan& plan);
  // IPAM DEL for every device of `plan` that has `ipam`; returns the first error.
  absl::Status ReleaseIpam(const state::ClaimPlan& plan);
  // Writes the claim's CDI spec (the guard hook with opts_.netns_guard, the RDMA character
  // devices) and sets plan.cdi_device_ids; nothing to write = no spec.
  absl::Status WriteClaimCdi(state::ClaimPlan& plan);
  // The CDI device that runs knd-netns-guard for the claim's interfaces; none when knd
  // attaches none of them itself.
  std::optional<state::CdiDevice> GuardDevice(const state::ClaimPlan& plan) const;
  // GET the NAD and return its normalized conflist (tagged with cni::kNadKey).
  absl::StatusOr<nlohmann::json> ReadNad(const std::string& ns, const std::string& name,
                                         const std::string& req_where);

  kube::Client& kube_;
  state::PlanStore& plans_;
  Resolver resolver_;
  Options opts_;

  std::mutex locks_mu_;
  struct LockEntry {
    std::shared_ptr<std::mutex> mu;
    int users = 0;
  };
  std::map<std::string, LockEntry> locks_ ABSL_GUARDED_BY(locks_mu_);
};

// "<main>/<sub>" -> "<main>"; a name without '/' is returned unchanged.
std::string BaseRequestName(const std::string& request);

}  // namespace knd::dra
