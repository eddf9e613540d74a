// The driver's live inventory: the latest scan, plus the devices that are in pods right now.
//
// A device moved into a pod netns disappears from the host's netlink view, but it must stay
// in the ResourceSlice with the same attributes (lessons-from-peers #13: otherwise the
// scheduler sees a different pool). So every rescan keeps the last-known copy of each device
// that `pinned()` names (devices given to pods, from the plan store), and the last-known
// copies are saved to a cache file so a restarted driver still publishes them.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "inventory/discovery.h"

namespace knd::inventory {

nlohmann::json DeviceToCacheJson(const Device& d);
absl::StatusOr<Device> DeviceFromCacheJson(const nlohmann::json& j);

class Inventory {
 public:
  using PinnedFn = std::function<std::set<std::string>()>;

  // `cache_path` may be empty (no persistence). Loads the cache if it exists.
  Inventory(Scanner scanner, std::string cache_path, PinnedFn pinned);

  // Scans; on failure keeps the previous view and returns the error.
  absl::Status Rescan();
  std::vector<Device> Devices() const;  // sorted by name
  std::optional<Device> Find(const std::string& name) const;

 private:
  Scanner scanner_;
  const std::string cache_path_;
  PinnedFn pinned_;
  mutable std::mutex mu_;
  std::map<std::string, Device> known_ ABSL_GUARDED_BY(mu_);  // last-known, by name
  std::vector<Device> current_ ABSL_GUARDED_BY(mu_);          // what is published
};

}  // namespace knd::inventory
