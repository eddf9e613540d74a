#include "inventory/slices.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/text.h"

namespace knd::inventory {

bool IsDnsLabel(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

std::string PciDeviceName(const std::string& a) {
  // dddd:bb:dd.f
  if (a.size() != 12 || a[4] != ':' || a[7] != ':' || a[10] != '.') return "";
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
    char c = a[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return "";
  }
  std::string out = absl::StrCat("pci-", a.substr(0, 4), "-", a.substr(5, 2), "-", a.substr(8, 2),
                                 "-", a.substr(11, 1));
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

namespace {
std::string HashName(const std::string& ifname) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(Fnv1a64(ifname)));
  return absl::StrCat("net-", buf);
}
}  // namespace

std::string BaseDeviceName(const Device& d) {
  std::string pci = PciDeviceName(d.pci_address);
  if (!pci.empty()) return pci;
  if (IsDnsLabel(d.ifname)) return d.ifname;
  return HashName(d.ifname);
}

void AssignNames(std::vector<Device>& devices) {
  // Decide in ifName order so the outcome does not depend on the input order.
  std::vector<size_t> order(devices.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return devices[a].ifname < devices[b].ifname; });
  std::map<std::string, size_t> taken;
  // First pass: every device wants its base name; the smallest ifName gets it.
  for (size_t i : order) {
    devices[i].name = BaseDeviceName(devices[i]);
    taken.emplace(devices[i].name, i);
  }
  for (size_t i : order) {
    auto it = taken.find(devices[i].name);
    if (it->second == i) continue;
    std::string alt = HashName(devices[i].ifname);
    // ifNames are unique in a namespace, so two hash names cannot clash in practice; a
    // numeric suffix keeps the guarantee anyway.
    for (int n = 2; taken.count(alt) > 0; ++n)
      alt = absl::StrCat(HashName(devices[i].ifname), "-", n);
    devices[i].name = alt;
    taken.emplace(alt, i);
  }
}

std::string ClampString(const std::string& v, size_t max) {
  // Interface names are the kernel's bytes: make them UTF-8 first, then cut between characters.
  return ClampUtf8(ValidUtf8(v), max);
}

std::string JoinClamped(std::vector<std::string> entries, size_t max) {
  std::sort(entries.begin(), entries.end());
  std::string out;
  for (const auto& e : entries) {
    size_t need = out.empty() ? e.size() : out.size() + 1 + e.size();
    if (need > max) break;
    if (!out.empty()) out += ",";
    out += e;
  }
  return out;
}

std::vector<Attribute> DeviceAttributes(const Device& d, const std::string& domain) {
  std::vector<Attribute> out;
  auto str = [&](const std::string& key, const std::string& v) {
    if (!v.empty()) out.emplace_back(key, nlohmann::json{{"string", ClampString(v)}});
  };
  auto own_str = [&](const std::string& id, const std::string& v) {
    str(absl::StrCat(domain, "/", id), v);
  };
  auto own_int = [&](const std::string& id, int64_t v) {
    out.emplace_back(absl::StrCat(domain, "/", id), nlohmann::json{{"int", v}});
  };
  auto own_bool = [&](const std::string& id, bool v) {
    out.emplace_back(absl::StrCat(domain, "/", id), nlohmann::json{{"bool", v}});
  };
  // Priority order: what DeviceClasses and Multus select on comes first, so that if the
  // attribute budget ever runs out the least useful ones go.
  str("resource.kubernetes.io/pcieRoot", d.pcie_root);
  str("resource.kubernetes.io/pciBusID", d.pci_address);
  str("k8s.cni.cncf.io/deviceID", d.pci_address.empty() ? d.ifname : d.pci_address);
  str("k8s.cni.cncf.io/resourceName", d.resource_name);
  own_str("ifName", d.ifname);
  own_str("type", d.kind);
  own_str("driver", d.driver);
  own_str("pciAddress", d.pci_address);
  own_str("pciVendor", d.pci_vendor);
  own_str("pciDevice", d.pci_device);
  if (d.numa_node) own_int("numaNode", *d.numa_node);
  // The standard NUMA attribute (KEP-6072), in its scalar form (no feature gate); a device
  // without NUMA affinity (numa_node -1) has none.
  if (d.numa_node && *d.numa_node >= 0) {
    out.emplace_back("resource.kubernetes.io/numaNode", nlohmann::json{{"int", *d.numa_node}});
  }
  own_bool("shared", d.shared.has_value());
  own_bool("virtual", d.is_virtual);
  own_bool("rdma", !d.rdma_device.empty());
  own_str("rdmaDevice", d.rdma_device);
  own_bool("sriov", d.sriov);
  if (d.sriov) own_int("sriovVfs", d.sriov_num_vfs);
  own_bool("isSriovVf", d.is_sriov_vf);
  own_str("pfName", d.pf_name);
  if (d.speed_mbps) own_int("speedMbps", *d.speed_mbps);
  if (d.mtu > 0) own_int("mtu", d.mtu);
  own_str("mac", d.mac);
  own_str("state", d.operstate);
  own_str("ipv4", JoinClamped(d.ipv4));
  own_str("ipv6", JoinClamped(d.ipv6));
  return out;
}

nlohmann::json DeviceCapacity(const Device::Shared& sh, const std::string& domain) {
  nlohmann::json c = nlohmann::json::object();
  // Every child is one share: a claim may not ask for several (validValues), and one that asks
  // for none consumes one (default).
  c[absl::StrCat(domain, "/", kChildrenCapacity)] = {
      {"value", std::to_string(sh.max_children)},
      {"requestPolicy", {{"default", "1"}, {"validValues", nlohmann::json::array({"1"})}}}};
  if (!sh.bandwidth.empty()) {
    // Without a default, a claim that asks for no bandwidth would consume all of it.
    c[absl::StrCat(domain, "/", kBandwidthCapacity)] = {
        {"value", sh.bandwidth},
        {"requestPolicy",
         {{"default", sh.bandwidth_per_child.empty() ? "0" : sh.bandwidth_per_child}}}};
  }
  return c;
}

nlohmann::json DeviceToJson(const Device& d, const std::string& domain, size_t max_attributes) {
  std::vector<Attribute> attrs = DeviceAttributes(d, domain);
  nlohmann::json capacity;
  if (d.shared) capacity = DeviceCapacity(*d.shared, domain);
  // The API counts attributes and capacities together against one limit.
  const size_t budget = max_attributes > capacity.size() ? max_attributes - capacity.size() : 0;
  if (attrs.size() > budget) attrs.resize(budget);
  nlohmann::json a = nlohmann::json::object();
  for (auto& [k, v] : attrs) a[k] = std::move(v);
  nlohmann::json out{{"name", d.name}, {"attributes", std::move(a)}};
  if (d.shared) {
    out["allowMultipleAllocations"] = true;
    out["capacity"] = std::move(capacity);
  }
  return out;
}

std::vector<nlohmann::json> BuildSlices(const std::string& node_name,
                                        const std::string& driver_name, std::vector<Device> devices,
                                        int64_t generation, size_t per_slice) {
  if (per_slice == 0) per_slice = kMaxDevicesPerSlice;
  std::sort(devices.begin(), devices.end(),
            [](const Device& a, const Device& b) { return a.name < b.name; });
  size_t count = devices.empty() ? 1 : (devices.size() + per_slice - 1) / per_slice;
  std::string prefix =
      absl::StrCat(node_name, "-", absl::StrReplaceAll(driver_name, {{".", "-"}}), "-");
  std::vector<nlohmann::json> out;
  for (size_t i = 0; i < count; ++i) {
    nlohmann::json devs = nlohmann::json::array();
    for (size_t j = i * per_slice; j < devices.size() && j < (i + 1) * per_slice; ++j) {
      devs.push_back(DeviceToJson(devices[j], driver_name));
    }
    out.push_back(nlohmann::json{{"apiVersion", "resource.k8s.io/v1"},
                                 {"kind", "ResourceSlice"},
                                 {"metadata", {{"name", absl::StrCat(prefix, i)}}},
                                 {"spec",
                                  {{"driver", driver_name},
                                   {"nodeName", node_name},
                                   {"pool",
                                    {{"name", node_name},
                                     {"generation", generation},
                                     {"resourceSliceCount", static_cast<int64_t>(count)}}},
                                   {"devices", std::move(devs)}}}});
  }
  return out;
}

}  // namespace knd::inventory
