// What a runtime that applies CDI specs (containerd, CRI-O, through runc) does with the
// createRuntime hooks of a container's CDI devices: resolve the qualified device ids in the
// CDI directory, then run every createRuntime hook with the container's OCI state on stdin,
// whose pid is a process in the pod's network namespace. A hook that exits non-zero fails
// the container creation, with its stderr in the error.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace knd::localcp {

// `netns` is the pod's network namespace path ("" = the runtime's own, for hostNetwork).
absl::Status RunCreateRuntimeHooks(const std::string& cdi_dir,
                                   const std::vector<std::string>& device_ids,
                                   const std::string& netns, const std::string& container_id);

}  // namespace knd::localcp
