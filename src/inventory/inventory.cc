#include "inventory/inventory.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/text.h"

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
  if (d.shared) {
    j["shared"] = {{"maxChildren", d.shared->max_children},
                   {"bandwidth", d.shared->bandwidth},
                   {"bandwidthPerChild", d.shared->bandwidth_per_child}};
  }
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
  if (j.contains("shared") && j["shared"].is_object()) {
    const nlohmann::json& s = j["shared"];
    Device::Shared sh;
    if (s.contains("maxChildren") && s["maxChildren"].is_number_integer()) {
      sh.max_children = s["maxChildren"].get<int64_t>();
    }
    if (s.contains("bandwidth") && s["bandwidth"].is_string()) sh.bandwidth = s["bandwidth"];
    if (s.contains("bandwidthPerChild") && s["bandwidthPerChild"].is_string()) {
      sh.bandwidth_per_child = s["bandwidthPerChild"];
    }
    d.shared = std::move(sh);
  }
  return d;
}

std::string DeviceCacheToText(const std::vector<Device>& devices) {
  nlohmann::json list = nlohmann::json::array();
  for (const Device& d : devices) list.push_back(DeviceToCacheJson(d));
  return DumpJson(nlohmann::json{{"version", kDeviceCacheVersion}, {"devices", std::move(list)}});
}

absl::StatusOr<std::vector<Device>> DeviceCacheFromText(std::string_view text,
                                                        const std::string& path) {
  const std::string what = absl::StrCat("device cache ", path);
  const std::string reads = absl::StrCat("this knd reads version ", kDeviceCacheVersion,
                                         " and the unversioned list of earlier releases");
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json* list = nullptr;
  if (j.is_array()) {
    list = &j;  // the releases before the versioned format
  } else if (j.is_object() && j.contains("version")) {
    const nlohmann::json& v = j["version"];
    if (!v.is_number_integer() || v.get<int64_t>() != kDeviceCacheVersion) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": unsupported format version ",
                                                        DumpJson(v), " (", reads,
                                                        "; a newer knd wrote it?)"));
    }
    if (!j.contains("devices") || !j["devices"].is_array()) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": version ", kDeviceCacheVersion, " without a \"devices\" list"));
    }
    list = &j["devices"];
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": ", j.is_discarded() ? "not valid JSON" : "no format version", " (", reads, ")"));
  }
  std::vector<Device> out;
  for (size_t i = 0; i < list->size(); ++i) {
    auto d = DeviceFromCacheJson((*list)[i]);
    if (!d.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": entry ", i, ": ", d.status().message()));
    }
    out.push_back(*std::move(d));
  }
  return out;
}

absl::StatusOr<std::vector<Device>> LoadDeviceCache(const std::string& path) {
  auto raw = ReadFile(path);
  if (absl::IsNotFound(raw.status())) return std::vector<Device>{};  // first start
  if (!raw.ok()) return Annotate(raw.status(), "device cache");
  return DeviceCacheFromText(*raw, path);
}

Inventory::Inventory(ScanFn scan, InventoryOptions opts)
    : scan_(std::move(scan)), opts_(std::move(opts)) {
  if (opts_.cache_path.empty()) return;
  auto cached = LoadDeviceCache(opts_.cache_path);
  if (!cached.ok()) {
    cache_status_ = absl::Status(
        cached.status().code(),
        absl::StrCat(cached.status().message(),
                     ". knd does not guess at it: run a knd that reads it, or remove the file to "
                     "start without it (the devices it knew in pods then drop out of the "
                     "ResourceSlice until they are back on the host)"));
    // Left as it is (it may be a newer knd's, needed when that knd is back).
    spdlog::error("{}; not using it, and not overwriting it", std::string(cache_status_.message()));
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  for (Device& d : *cached) {
    std::string name = d.name;
    known_[name] = std::move(d);
  }
}

absl::Status Inventory::Rescan() {
  auto scanned = scan_();
  if (!scanned.ok()) return Annotate(scanned.status(), "scan network devices");
  std::vector<Device> next = std::move(*scanned);
  std::set<std::string> names;
  for (const auto& d : next) names.insert(d.name);
  // Where the devices the scan did not find are (asked outside the lock: it reads the plans
  // and may look into pod namespaces).
  std::map<std::string, Whereabouts> where;
  {
    std::vector<std::string> absent;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [name, d] : known_) {
        if (names.count(name) == 0) absent.push_back(name);
      }
    }
    for (const std::string& name : absent) {
      where[name] = opts_.where ? opts_.where(name) : Whereabouts::kUnclaimed;
    }
  }
  const Clock::time_point now = Now();
  std::vector<std::pair<Device, std::string>> newly_lost;
  std::map<std::string, Device> known;
  std::vector<Device> published = next;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& d : next) {
      known[d.name] = d;
      missing_.erase(d.name);  // found (again)
    }
    for (const auto& [name, w] : where) {
      auto it = known_.find(name);
      if (it == known_.end()) continue;
      if (w == Whereabouts::kUnclaimed) {
        missing_.erase(name);
        continue;  // gone, and nobody holds it
      }
      known[name] = it->second;
      if (w == Whereabouts::kInPod) {
        missing_.erase(name);
        published.push_back(it->second);  // in a pod: keep publishing it as it was
        continue;
      }
      MissingSince& m = missing_.try_emplace(name, MissingSince{now, false}).first->second;
      if (!m.lost && now - m.since >= opts_.lost_grace) {
        m.lost = true;
        newly_lost.emplace_back(it->second, "");
      }
      if (!m.lost) published.push_back(it->second);  // in doubt: still published
    }
    for (auto it = missing_.begin(); it != missing_.end();) {
      it = known.count(it->first) ? std::next(it) : missing_.erase(it);
    }
    std::sort(published.begin(), published.end(),
              [](const Device& a, const Device& b) { return a.name < b.name; });
    known_ = known;
    current_ = published;
  }
  for (auto& [d, why] : newly_lost) {
    why = absl::StrCat("not on the host and in no pod for ",
                       std::chrono::duration_cast<std::chrono::seconds>(opts_.lost_grace).count(),
                       " s (last seen as ", d.ifname.empty() ? d.name : d.ifname,
                       d.mac.empty() ? "" : absl::StrCat(", mac ", d.mac), ")");
    spdlog::warn("device {} is lost: {}; withdrawn from the ResourceSlice", d.name, why);
    if (opts_.on_lost) opts_.on_lost(d, why);
  }
  if (!opts_.cache_path.empty() && cache_status_.ok()) {
    std::vector<Device> cache;
    for (const auto& [name, d] : known) cache.push_back(d);
    absl::Status st = WriteFileAtomic(opts_.cache_path, DeviceCacheToText(cache));
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

std::vector<Inventory::Missing> Inventory::MissingDevices() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Missing> out;
  for (const auto& [name, m] : missing_) {
    auto it = known_.find(name);
    if (it != known_.end()) out.push_back({it->second, m.since, m.lost});
  }
  return out;
}

std::optional<std::string> Inventory::LostReason(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = missing_.find(name);
  if (it == missing_.end() || !it->second.lost) return std::nullopt;
  const Clock::time_point now = Now();
  return absl::StrCat(
      "it has been neither on the host nor in a pod for ",
      std::chrono::duration_cast<std::chrono::seconds>(now - it->second.since).count(),
      " s, and is withdrawn from the ResourceSlice");
}

std::optional<Inventory::Clock::time_point> Inventory::NextReview() const {
  std::lock_guard<std::mutex> l(mu_);
  std::optional<Clock::time_point> next;
  for (const auto& [name, m] : missing_) {
    if (m.lost) continue;
    Clock::time_point t = m.since + opts_.lost_grace;
    if (!next || t < *next) next = t;
  }
  return next;
}

}  // namespace knd::inventory
