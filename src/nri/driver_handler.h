// knd's NRI Handler: turns NRI pod events into PodNetwork calls.
//
// Synchronize must answer within the runtime's request timeout even when many devices need to
// go back to the host after a restart (a netdev move costs ~30 ms), so it only records the
// runtime's pods and starts the reconcile on a background thread; hooks for individual pods
// serialize with it through PodNetwork's per-pod locks.
#pragma once

#include <atomic>
#include <thread>

#include "nri/handler.h"
#include "nri/pod_network.h"

namespace knd::nri {

// The network namespace path of a sandbox ("" for hostNetwork pods).
std::string NetnsPath(const api::PodSandbox& pod);
PodInfo ToPodInfo(const api::PodSandbox& pod);

class DriverHandler : public Handler {
 public:
  explicit DriverHandler(PodNetwork& pods) : pods_(pods) {}
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

 private:
  PodNetwork& pods_;
  std::thread reconcile_;
  std::atomic<bool> reconciled_{false};
};

}  // namespace knd::nri
