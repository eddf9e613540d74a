// The NRI hooks the driver implements. The Plugin (plugin.h) calls these from its ttrpc
// worker thread, one at a time, in the order the runtime sends events.
//
// Contract for implementers:
//  * Fast: the runtime gives each call 2 s (ConfigureRequest.request_timeout) and then drops
//    the plugin silently; do slow work in NodePrepareResources, not here.
//  * Idempotent: runtimes retry, and after a reconnect Synchronize replays the world.
//  * An error from RunPodSandbox / CreateContainer fails the CRI call (the pod does not
//    start); errors from Stop/Remove are only logged by containerd but fail CRI-O's stop.
//  * StopPodSandbox may arrive after the pod netns is gone (CRI-O) or before CNI DEL
//    (containerd).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nri/api.pb.h"

namespace knd::nri {

namespace api = ::nri::pkg::api::v1alpha1;

class Handler {
 public:
  virtual ~Handler() = default;

  // Once per connection, before Synchronize. `request_timeout` is what the runtime allows each
  // call (0 when the runtime did not say).
  virtual absl::Status Configure(const std::string& runtime_name,
                                 const std::string& runtime_version,
                                 std::chrono::milliseconds request_timeout) = 0;
  // The runtime's current pods and containers, once per connection (a split sync is
  // reassembled before this is called).
  virtual absl::Status Synchronize(const std::vector<api::PodSandbox>& pods,
                                   const std::vector<api::Container>& containers) = 0;
  virtual absl::Status RunPodSandbox(const api::PodSandbox& pod) = 0;
  virtual absl::Status StopPodSandbox(const api::PodSandbox& pod) = 0;
  virtual absl::Status RemovePodSandbox(const api::PodSandbox& pod) = 0;
  virtual absl::StatusOr<api::ContainerAdjustment> CreateContainer(
      const api::PodSandbox& pod, const api::Container& container) = 0;
};

}  // namespace knd::nri
