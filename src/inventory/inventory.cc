#include "inventory/inventory.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/file_util.h"
#include "common/status.h"

namespace knd::inventory {

nlohmann::json DeviceToCacheJson(const Device& d) {
  nlohmann::json j = {{"name", d.name},
                      {"ifname", d.ifname},
                      {"ifindex", d.ifindex},
                      {"mac", d.mac},
                      {"permMac", d.perm_mac},
                      {"mtu", d.mtu},
                      {"kind", d.kind},
                      {"operstate", d.operstate},
                      {"driver", d.driver},
                      {"pciAddress", d.pci_address},
                      {"pciVendor", d.pci_vendor},
                      {"pciDevice", d.pci_device},
                      {"pcieRoot", d.pcie_root},
                      {"sriov", d.sriov},
                      {"sriovTotalVfs", d.sriov_total_vfs},
                      {"sriovNumVfs", d.sriov_num_vfs},
                      {"isSriovVf", d.is_sriov_vf},
                      {"pfName", d.pf_name},
                      {"virtual", d.is_virtual},
                      {"rdmaDevice", d.rdma_device},
                      {"ipv4", d.ipv4},
                      {"ipv6", d.ipv6},
                      {"resourceName", d.resource_name}};
  if (d.speed_mbps) j["speedMbps"] = *d.speed_mbps;
  if (d.numa_node) j["numaNode"] = *d.numa_node;
  return j;
}

absl::StatusOr<Device> DeviceFromCacheJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return absl::InvalidArgumentError("device cache entry without a name");
  }
  Device d;
  auto str = [&](const char* k, std::string& out) {
    if (j.contains(k) && j[k].is_string()) out = j[k].get<std::string>();
  };
  auto num = [&](const char* k, auto& out) {
    if (j.contains(k) && j[k].is_number_integer()) out = j[k].get<std::decay_t<decltype(out)>>();
  };
  auto flag = [&](const char* k, bool& out) {
    if (j.contains(k) && j[k].is_boolean()) out = j[k].get<bool>();
  };
  auto list = [&](const char* k, std::vector<std::string>& out) {
    if (!j.contains(k) || !j[k].is_array()) return;
    for (const auto& v : j[k]) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  };
  str("name", d.name);
  str("ifname", d.ifname);
  num("ifindex", d.ifindex);
  str("mac", d.mac);
  str("permMac", d.perm_mac);
  num("mtu", d.mtu);
  str("kind", d.kind);
  str("operstate", d.operstate);
  str("driver", d.driver);
  str("pciAddress", d.pci_address);
  str("pciVendor", d.pci_vendor);
  str("pciDevice", d.pci_device);
  str("pcieRoot", d.pcie_root);
  flag("sriov", d.sriov);
  num("sriovTotalVfs", d.sriov_total_vfs);
  num("sriovNumVfs", d.sriov_num_vfs);
  flag("isSriovVf", d.is_sriov_vf);
  str("pfName", d.pf_name);
  flag("virtual", d.is_virtual);
  str("rdmaDevice", d.rdma_device);
  list("ipv4", d.ipv4);
  list("ipv6", d.ipv6);
  str("resourceName", d.resource_name);
  if (j.contains("speedMbps") && j["speedMbps"].is_number_integer()) {
    d.speed_mbps = j["speedMbps"].get<int64_t>();
  }
  if (j.contains("numaNode") && j["numaNode"].is_number_integer()) {
    d.numa_node = j["numaNode"].get<int>();
  }
  return d;
}

Inventory::Inventory(Scanner scanner, std::string cache_path, PinnedFn pinned)
    : scanner_(std::move(scanner)), cache_path_(std::move(cache_path)), pinned_(std::move(pinned)) {
  if (cache_path_.empty()) return;
  auto raw = ReadFile(cache_path_);
  if (!raw.ok()) return;  // first start
  auto j = nlohmann::json::parse(*raw, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) {
    spdlog::warn("ignoring unreadable device cache {}", cache_path_);
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& e : j) {
    auto d = DeviceFromCacheJson(e);
    if (d.ok()) known_[d->name] = *d;
  }
}

absl::Status Inventory::Rescan() {
  auto scanned = scanner_.Scan();
  if (!scanned.ok()) return Annotate(scanned.status(), "scan network devices");
  std::set<std::string> pinned = pinned_ ? pinned_() : std::set<std::string>{};
  std::vector<Device> next = std::move(*scanned);
  std::set<std::string> names;
  for (const auto& d : next) names.insert(d.name);
  nlohmann::json cache = nlohmann::json::array();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& name : pinned) {
      if (names.count(name)) continue;
      auto it = known_.find(name);
      if (it != known_.end()) {
        next.push_back(it->second);  // in a pod: keep publishing it as it was
        names.insert(name);
      }
    }
    std::sort(next.begin(), next.end(),
              [](const Device& a, const Device& b) { return a.name < b.name; });
    std::map<std::string, Device> known;
    for (const auto& d : next) {
      known[d.name] = d;
      cache.push_back(DeviceToCacheJson(d));
    }
    known_ = std::move(known);
    current_ = next;
  }
  if (!cache_path_.empty()) {
    absl::Status st = WriteFileAtomic(cache_path_, cache.dump());
    if (!st.ok()) spdlog::warn("cannot save device cache: {}", st.ToString());
  }
  return absl::OkStatus();
}

std::vector<Device> Inventory::Devices() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

std::optional<Device> Inventory::Find(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = known_.find(name);
  if (it == known_.end()) return std::nullopt;
  return it->second;
}

}  // namespace knd::inventory
