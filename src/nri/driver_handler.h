// knd's NRI Handler: turns NRI pod events into PodNetwork calls.
//
// Synchronize must answer within the runtime's request timeout even when many devices need to
// go back to the host after a restart (a netdev move costs ~30 ms), so it only records the
// runtime's pods and starts the reconcile on a background thread. Hooks for individual pods
// serialize with it through PodNetwork's per-pod locks, and a pod that gets a hook after
// Synchronize is not reconciled from Synchronize's (older) list: Synchronize calls
// PodNetwork::BeginReconcile() before it returns, so every later hook counts.
//
// A failed attach fails RunPodSandbox, so the kubelet retries the sandbox — except on a runtime
// where a failed RunPodSandbox does lasting harm. containerd 2.0 to 2.2.5 keep the record of a
// sandbox that an NRI plugin failed; after the kubelet's successful retry two records share the
// sandbox's name, and containerd's next restart exits fatally ("failed to recover state: failed
// to reserve sandbox name"), taking the node down (containerd#13609, fixed in 2.2.6). There
// (policy kAuto), or always with kDefer, the hook lets the sandbox start without the device,
// and knd keeps attaching it in the background with backoff until it is in, or the sandbox
// stops. Containers that list the claim are held back by the netns guard meanwhile.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "nri/handler.h"
#include "nri/pod_network.h"

namespace knd::nri {

// The network namespace path of a sandbox ("" for hostNetwork pods).
std::string NetnsPath(const api::PodSandbox& pod);
PodInfo ToPodInfo(const api::PodSandbox& pod);

enum class SandboxFailurePolicy { kAuto, kFail, kDefer };
// "auto", "fail", "defer"; InvalidArgument otherwise.
absl::StatusOr<SandboxFailurePolicy> ParseSandboxFailurePolicy(const std::string& s);
// Whether this runtime keeps a record of a RunPodSandbox an NRI plugin failed, one that breaks
// its restart once the sandbox is retried: containerd >= 2.0 and < 2.2.6.
bool RuntimeLeaksFailedSandboxes(const std::string& runtime_name, const std::string& version);

class DriverHandler : public Handler {
 public:
  explicit DriverHandler(PodNetwork& pods,
                         SandboxFailurePolicy policy = SandboxFailurePolicy::kAuto);
  ~DriverHandler() override;

  absl::Status Configure(const std::string& runtime_name, const std::string& runtime_version,
                         std::chrono::milliseconds request_timeout) override;
  absl::Status Synchronize(const std::vector<api::PodSandbox>& pods,
                           const std::vector<api::Container>& containers) override;
  absl::Status RunPodSandbox(const api::PodSandbox& pod) override;
  absl::Status StopPodSandbox(const api::PodSandbox& pod) override;
  absl::Status RemovePodSandbox(const api::PodSandbox& pod) override;
  absl::StatusOr<api::ContainerAdjustment> CreateContainer(
      const api::PodSandbox& pod, const api::Container& container) override;

  // True once the reconcile after the latest Synchronize has finished (tests, /readyz).
  bool reconciled() const { return reconciled_.load(); }
  // Whether a failed attach lets the sandbox start (see above), for the current runtime.
  bool defers() const { return defer_.load(); }
  // Pods whose attach was deferred and is being retried.
  size_t deferred_pods() const;

 private:
  struct Deferred {
    PodInfo pod;
    std::chrono::steady_clock::time_point next;
    std::chrono::milliseconds delay;
  };
  void RetryLoop();

  PodNetwork& pods_;
  const SandboxFailurePolicy policy_;
  std::atomic<bool> defer_{false};
  std::thread reconcile_;
  std::atomic<bool> reconciled_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Deferred> deferred_;  // by pod uid
  std::thread retry_;
};

}  // namespace knd::nri
