// Gives a pod's devices back to the host the moment the pod is over, instead of when its
// sandbox is stopped.
//
// On a real node (wire-facts §9) the kubelet deletes a finished pod from the API before its
// StopPodSandbox and NodeUnprepareResources arrive, and the scheduler can give the device to
// the next pod in between. The next Prepare hands the device over itself when it gets there
// (dra::Preparer), but a device that is already home costs that Prepare nothing: so when the
// pod watch says a pod of this node was deleted or has finished, this worker confirms it with
// the API (a watch is never trusted alone to take a device out of a pod), and returns every
// device knd put into that pod. The sandbox stop and the Unprepare that come later find
// nothing to do. A pod that still exists and runs is never touched.
//
// The same worker returns, every second, the devices of pod netns that the runtime deleted
// without a StopPodSandbox hook (nri::PodNetwork::ReleaseOrphans).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "kube/client.h"
#include "kube/worker_thread.h"
#include "nri/pod_network.h"
#include "state/plan_store.h"

namespace knd::driver {

class EarlyRelease {
 public:
  EarlyRelease(kube::Client& api, const state::PlanStore& plans, nri::PodNetwork& pods)
      : api_(api), plans_(plans), pods_(pods) {}
  ~EarlyRelease() { worker_.Stop(); }

  void Start();
  void Stop() { worker_.Stop(); }

  // The pod watch says this pod is over. Cheap: queues.
  void PodGone(const std::string& ns, const std::string& name, const std::string& uid);

  uint64_t released() const {
    std::lock_guard<std::mutex> l(mu_);
    return released_;
  }

 private:
  static constexpr std::chrono::seconds kOrphanScan{1};
  struct Pod {
    std::string ns, name, uid;
  };
  void Loop();
  void Handle(const Pod& pod);

  kube::Client& api_;
  const state::PlanStore& plans_;
  nri::PodNetwork& pods_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<Pod> queue_;
  uint64_t released_ = 0;
  kube::WorkerThread worker_{mu_, cv_, stop_};
};

}  // namespace knd::driver
