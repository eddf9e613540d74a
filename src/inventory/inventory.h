// The driver's live inventory: the latest scan, plus the devices that are in pods right now,
// and the claimed devices that went missing.
//
// A device moved into a pod netns disappears from the host's netlink view, but it must stay
// in the ResourceSlice with the same attributes (lessons-from-peers #13: otherwise the
// scheduler sees a different pool). So every rescan keeps the last-known copy of each device
// that is in a pod (Whereabouts::kInPod, from the plan store, checked against the pod netns),
// and the last-known copies are saved to a cache file so a restarted driver still knows them.
//
// Publish only what exists: a claimed device that is neither on the host nor in a live pod (a
// veth that died with its pod's netns, a NIC that was unplugged) stays published for
// `lost_grace` (it may be on its way: a CNI DEL returning it, a netns being torn down) and is
// then withdrawn, so the scheduler gives it to nobody else; `on_lost` is told once. It stays
// known (Find, LostReason) while a claim still names it, and is published again the moment a
// scan finds it. An unclaimed device that vanishes is simply gone.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "inventory/discovery.h"

namespace knd::inventory {

nlohmann::json DeviceToCacheJson(const Device& d);
absl::StatusOr<Device> DeviceFromCacheJson(const nlohmann::json& j);

// The device cache file: {"version": kDeviceCacheVersion, "devices": [DeviceToCacheJson...]}.
// The releases before it wrote a bare array of devices (no version); that form is still read.
inline constexpr int kDeviceCacheVersion = 1;
std::string DeviceCacheToText(const std::vector<Device>& devices);
// Parses a cache file's content (`path` names it in errors). A version this knd does not read,
// or content that is not a device cache, is FailedPrecondition: never guessed at.
absl::StatusOr<std::vector<Device>> DeviceCacheFromText(std::string_view text,
                                                        const std::string& path);
// Reads the cache file: no file = no devices (first start); an unreadable file is an error.
absl::StatusOr<std::vector<Device>> LoadDeviceCache(const std::string& path);

// Where a device that the last scan did not find on the host is, as the claims see it.
enum class Whereabouts {
  kUnclaimed,  // no claim names it: gone
  kClaimed,    // a claim names it, but it is in no pod: missing
  kInPod,      // in a live pod (or on its way in)
};

struct InventoryOptions {
  std::string cache_path;  // "" = no persistence
  // Tells where a device is that the scan did not find. nullptr = every such device is gone.
  std::function<Whereabouts(const std::string& device)> where = nullptr;
  std::chrono::milliseconds lost_grace = std::chrono::seconds(10);
  // Told once per device when it is withdrawn as lost (with how it was last seen).
  std::function<void(const Device&, const std::string& why)> on_lost = nullptr;
  std::function<std::chrono::steady_clock::time_point()> now = nullptr;  // tests
};

class Inventory {
 public:
  using Clock = std::chrono::steady_clock;
  using ScanFn = std::function<absl::StatusOr<std::vector<Device>>()>;

  // Loads the cache of the previous run if there is one. A cache it cannot read (a version
  // it does not know, corrupt content) is neither used nor overwritten: cache_status() says
  // why, and the driver refuses to start on it.
  Inventory(ScanFn scan, InventoryOptions opts);

  // OK, or why the cache of the previous run could not be read (names the file and, for a
  // format this knd does not read, the version found and the versions it reads).
  absl::Status cache_status() const { return cache_status_; }

  // Scans; on failure keeps the previous view and returns the error.
  absl::Status Rescan();
  std::vector<Device> Devices() const;  // what is published, sorted by name
  // A device the inventory knows: on the host, in a pod, or claimed and missing.
  std::optional<Device> Find(const std::string& name) const;

  // A claimed device that the scans have been missing (`lost`: for longer than the grace,
  // withdrawn from the slice).
  struct Missing {
    Device device;
    Clock::time_point since;
    bool lost = false;
  };
  std::vector<Missing> MissingDevices() const;
  // Why the device counts as lost (withdrawn), or nullopt when it is not lost.
  std::optional<std::string> LostReason(const std::string& name) const;
  // When the next missing device's grace ends (the caller rescans then), if any.
  std::optional<Clock::time_point> NextReview() const;

 private:
  Clock::time_point Now() const { return opts_.now ? opts_.now() : Clock::now(); }

  ScanFn scan_;
  const InventoryOptions opts_;
  absl::Status cache_status_;  // set by the constructor only
  mutable std::mutex mu_;
  std::map<std::string, Device> known_ ABSL_GUARDED_BY(mu_);  // last-known, by name
  std::vector<Device> current_ ABSL_GUARDED_BY(mu_);          // what is published
  struct MissingSince {
    Clock::time_point since;
    bool lost = false;
  };
  std::map<std::string, MissingSince> missing_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knd::inventory
