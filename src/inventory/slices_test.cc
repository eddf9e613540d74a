// Unit tests for naming, attribute building/clamping and slice splitting.
#include "inventory/slices.h"

#include <set>

#include "gtest/gtest.h"

namespace knd::inventory {
namespace {

const char kDomain[] = "knd.k8s.cni.cncf.io";

Device Veth(const std::string& ifname) {
  Device d;
  d.ifname = ifname;
  d.kind = "veth";
  d.is_virtual = true;
  d.mtu = 1500;
  d.mac = "02:00:00:00:00:01";
  d.operstate = "up";
  return d;
}

TEST(NamingTest, PciDnsAndHashNames) {
  Device pci = Veth("ens1f0");
  pci.pci_address = "0000:3B:00.1";
  EXPECT_EQ(BaseDeviceName(pci), "pci-0000-3b-00-1");
  EXPECT_EQ(BaseDeviceName(Veth("eth0")), "eth0");
  std::string hashed = BaseDeviceName(Veth("Eth_0"));  // upper case and '_' are not DNS
  EXPECT_EQ(hashed.rfind("net-", 0), 0u);
  EXPECT_EQ(hashed.size(), 20u);
  EXPECT_TRUE(IsDnsLabel(hashed));
  EXPECT_EQ(hashed, BaseDeviceName(Veth("Eth_0")));  // stable
  EXPECT_NE(hashed, BaseDeviceName(Veth("Eth_1")));
  EXPECT_EQ(BaseDeviceName(Veth("-x")).rfind("net-", 0), 0u);
  EXPECT_EQ(PciDeviceName("0000:03:00"), "");
  EXPECT_EQ(PciDeviceName("virtio0"), "");
}

TEST(NamingTest, NamesAreUniqueAndOrderIndependent) {
  Device a = Veth("port0"), b = Veth("port1"), c = Veth("pci-0000-03-00-0");
  a.pci_address = "0000:03:00.0";  // two netdevs of one PCI function
  b.pci_address = "0000:03:00.0";
  std::vector<Device> v1 = {a, b, c}, v2 = {c, b, a};
  AssignNames(v1);
  AssignNames(v2);
  std::set<std::string> names;
  for (const auto& d : v1) {
    names.insert(d.name);
    EXPECT_TRUE(IsDnsLabel(d.name)) << d.name;
  }
  EXPECT_EQ(names.size(), 3u);
  // "pci-0000-03-00-0" sorts before "port0", so the ifName holder keeps it.
  EXPECT_EQ(v1[2].name, "pci-0000-03-00-0");
  EXPECT_EQ(v1[0].name.rfind("net-", 0), 0u);
  for (const auto& d : v1) {
    for (const auto& e : v2) {
      if (d.ifname == e.ifname) {
        EXPECT_EQ(d.name, e.name);
      }
    }
  }
}

TEST(ClampTest, StringsAndLists) {
  EXPECT_EQ(ClampString(std::string(100, 'x')).size(), 64u);
  EXPECT_EQ(ClampString("short"), "short");
  // The kernel's bytes: an interface renamed in a pod can come back as anything but '/'.
  EXPECT_EQ(ClampString("net\xFF"), "net\xEF\xBF\xBD");
  std::string wide;
  for (int i = 0; i < 40; ++i) wide += "\xC3\xA4";  // 80 bytes of "ä"
  EXPECT_EQ(ClampString(wide).size(), 64u) << "cut between two-byte characters";
  EXPECT_EQ(ClampString("x" + wide).size(), 63u) << "never inside one";
  std::vector<std::string> ips;
  for (int i = 0; i < 10; ++i) ips.push_back("10.0.0." + std::to_string(10 + i) + "/24");
  std::string joined = JoinClamped(ips);
  EXPECT_LE(joined.size(), 64u);
  // Whole entries only: every comma-separated part is one of the inputs.
  size_t start = 0;
  int parts = 0;
  while (start <= joined.size()) {
    size_t comma = joined.find(',', start);
    std::string part =
        joined.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    EXPECT_NE(std::find(ips.begin(), ips.end(), part), ips.end()) << part;
    ++parts;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  EXPECT_EQ(parts, 5);  // 5 * 12 + 4 commas = 64 fits exactly; a sixth would make 77
  EXPECT_EQ(JoinClamped({"b/1", "a/1"}), "a/1,b/1");   // sorted
  EXPECT_EQ(JoinClamped({std::string(70, '1')}), "");  // a single oversize entry: omitted
}

TEST(AttributesTest, TypesKeysAndOmission) {
  Device d = Veth("eth1");
  d.name = "eth1";
  d.ipv4 = {"192.0.2.2/24"};
  nlohmann::json j = DeviceToJson(d, kDomain);
  EXPECT_EQ(j["name"], "eth1");
  const auto& a = j["attributes"];
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/ifName"], (nlohmann::json{{"string", "eth1"}}));
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/mtu"], (nlohmann::json{{"int", 1500}}));
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/virtual"], (nlohmann::json{{"bool", true}}));
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/type"], (nlohmann::json{{"string", "veth"}}));
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/ipv4"], (nlohmann::json{{"string", "192.0.2.2/24"}}));
  EXPECT_EQ(a["k8s.cni.cncf.io/deviceID"], (nlohmann::json{{"string", "eth1"}}));
  // No value, no attribute.
  EXPECT_FALSE(a.contains("knd.k8s.cni.cncf.io/ipv6"));
  EXPECT_FALSE(a.contains("knd.k8s.cni.cncf.io/speedMbps"));
  EXPECT_FALSE(a.contains("knd.k8s.cni.cncf.io/numaNode"));
  EXPECT_FALSE(a.contains("resource.kubernetes.io/numaNode"));
  EXPECT_FALSE(a.contains("resource.kubernetes.io/pcieRoot"));
  EXPECT_FALSE(a.contains("k8s.cni.cncf.io/resourceName"));
  // The domain follows --driver-name.
  EXPECT_TRUE(DeviceToJson(d, "net.example.com")["attributes"].contains("net.example.com/ifName"));
}

TEST(AttributesTest, NumaNodeAlsoUnderTheStandardName) {
  Device d = Veth("eth1");
  d.name = "eth1";
  d.numa_node = 1;
  nlohmann::json a = DeviceToJson(d, kDomain)["attributes"];
  EXPECT_EQ(a["resource.kubernetes.io/numaNode"], (nlohmann::json{{"int", 1}}));
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/numaNode"], (nlohmann::json{{"int", 1}}));  // kept
  d.numa_node = -1;  // no NUMA affinity: neither
  a = DeviceToJson(d, kDomain)["attributes"];
  EXPECT_FALSE(a.contains("resource.kubernetes.io/numaNode"));
}

TEST(AttributesTest, SharedParentIsMultiAllocatableWithCapacity) {
  Device d = Veth("eth1");
  d.name = "eth1";
  nlohmann::json plain = DeviceToJson(d, kDomain);
  EXPECT_EQ(plain["attributes"]["knd.k8s.cni.cncf.io/shared"], (nlohmann::json{{"bool", false}}));
  EXPECT_FALSE(plain.contains("allowMultipleAllocations"));
  EXPECT_FALSE(plain.contains("capacity"));

  d.shared = Device::Shared{16, "", ""};
  nlohmann::json j = DeviceToJson(d, kDomain);
  EXPECT_EQ(j["attributes"]["knd.k8s.cni.cncf.io/shared"], (nlohmann::json{{"bool", true}}));
  EXPECT_EQ(j["allowMultipleAllocations"], true);
  // One share per child: validValues [1] with default 1 (a claim can ask for no more).
  EXPECT_EQ(j["capacity"], nlohmann::json::parse(R"({"knd.k8s.cni.cncf.io/children":
      {"value": "16", "requestPolicy": {"default": "1", "validValues": ["1"]}}})"));

  d.shared = Device::Shared{4, "25G", "1G"};
  j = DeviceToJson(d, kDomain);
  EXPECT_EQ(j["capacity"]["knd.k8s.cni.cncf.io/bandwidth"],
            nlohmann::json::parse(R"({"value": "25G", "requestPolicy": {"default": "1G"}})"));
  // Capacities count against the same limit as attributes.
  nlohmann::json small = DeviceToJson(d, kDomain, 5);
  EXPECT_EQ(small["attributes"].size() + small["capacity"].size(), 5u);
  EXPECT_EQ(small["capacity"].size(), 2u);
}

TEST(AttributesTest, EveryValueFitsAndCountIsBounded) {
  Device d = Veth("eth1");
  d.name = "eth1";
  d.pci_address = "0000:03:00.0";
  d.pcie_root = "pci0000:00";
  d.pci_vendor = "0x15b3";
  d.pci_device = "0x1017";
  d.driver = std::string(80, 'd');  // absurd, but must not break the slice
  d.numa_node = 1;
  d.speed_mbps = 100000;
  d.sriov = true;
  d.sriov_num_vfs = 8;
  d.is_sriov_vf = true;
  d.pf_name = "ens1f0";
  d.rdma_device = "mlx5_0";
  d.resource_name = "example.com/sriov_net_a";
  for (int i = 0; i < 20; ++i) d.ipv6.push_back("2001:db8::" + std::to_string(i) + "/64");
  d.ipv4 = {"192.0.2.2/24"};
  nlohmann::json j = DeviceToJson(d, kDomain);
  const auto& a = j["attributes"];
  EXPECT_LE(a.size(), kMaxAttributesPerDevice);
  for (const auto& [k, v] : a.items()) {
    EXPECT_EQ(v.size(), 1u) << k;
    if (v.contains("string")) {
      EXPECT_LE(v["string"].get<std::string>().size(), 64u) << k;
    }
  }
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/driver"]["string"].get<std::string>().size(), 64u);
  EXPECT_EQ(a["resource.kubernetes.io/pciBusID"]["string"], "0000:03:00.0");
  EXPECT_EQ(a["k8s.cni.cncf.io/deviceID"]["string"], "0000:03:00.0");
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/rdma"]["bool"], true);
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/sriovVfs"]["int"], 8);
  // With a smaller budget the lowest-priority attributes go, deterministically.
  nlohmann::json small = DeviceToJson(d, kDomain, 5);
  ASSERT_EQ(small["attributes"].size(), 5u);
  EXPECT_TRUE(small["attributes"].contains("resource.kubernetes.io/pcieRoot"));
  EXPECT_TRUE(small["attributes"].contains("knd.k8s.cni.cncf.io/ifName"));
  EXPECT_FALSE(small["attributes"].contains("knd.k8s.cni.cncf.io/ipv6"));
  EXPECT_EQ(small, DeviceToJson(d, kDomain, 5));
}

std::vector<Device> Many(int n) {
  std::vector<Device> v;
  for (int i = 0; i < n; ++i) {
    Device d = Veth("v" + std::to_string(i));
    d.name = d.ifname;
    v.push_back(d);
  }
  return v;
}

void CheckSlices(int n, size_t want_slices) {
  auto slices = BuildSlices("node-a", kDomain, Many(n), 7);
  ASSERT_EQ(slices.size(), want_slices);
  std::set<std::string> names, slice_names;
  std::string prev;
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto& s = slices[i];
    EXPECT_EQ(s["apiVersion"], "resource.k8s.io/v1");
    EXPECT_EQ(s["kind"], "ResourceSlice");
    EXPECT_EQ(s["metadata"]["name"], "node-a-knd-k8s-cni-cncf-io-" + std::to_string(i));
    EXPECT_EQ(s["spec"]["driver"], kDomain);
    EXPECT_EQ(s["spec"]["nodeName"], "node-a");
    EXPECT_EQ(s["spec"]["pool"]["name"], "node-a");
    EXPECT_EQ(s["spec"]["pool"]["generation"], 7);
    EXPECT_EQ(s["spec"]["pool"]["resourceSliceCount"], static_cast<int64_t>(want_slices));
    EXPECT_LE(s["spec"]["devices"].size(), 128u);
    slice_names.insert(s["metadata"]["name"]);
    for (const auto& d : s["spec"]["devices"]) {
      std::string name = d["name"];
      EXPECT_LT(prev, name);  // sorted across slices: a stable split
      prev = name;
      names.insert(name);
    }
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(n));
  EXPECT_EQ(slice_names.size(), want_slices);
}

TEST(BuildSlicesTest, SplitsAt128) {
  CheckSlices(200, 2);
  CheckSlices(300, 3);
  CheckSlices(128, 1);
  CheckSlices(129, 2);
  CheckSlices(3, 1);
  auto empty = BuildSlices("n", kDomain, {}, 1);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0]["spec"]["devices"].empty());
  EXPECT_EQ(empty[0]["spec"]["pool"]["resourceSliceCount"], 1);
}

TEST(BuildSlicesTest, AnInterfaceNameThatIsNotUtf8StillSerialises) {
  // A NIC renamed in a pod and returned by the kernel under that name (bytes, not UTF-8): the
  // slice must serialise (nlohmann::json::dump throws on invalid UTF-8) and stay valid JSON.
  Device d;
  d.ifname = "net\xFF\xFE";
  d.mac = "02:00:00:00:00:01";
  std::vector<Device> devs{d};
  AssignNames(devs);
  auto slices = BuildSlices("n", kDomain, devs, 1);
  std::string out;
  ASSERT_NO_THROW(out = slices[0].dump());
  auto back = nlohmann::json::parse(out);
  const auto& attrs = back["spec"]["devices"][0]["attributes"];
  EXPECT_EQ(attrs[std::string(kDomain) + "/ifName"]["string"], "net\xEF\xBF\xBD\xEF\xBF\xBD");
  // The device name is a DNS label, whatever the interface name.
  EXPECT_EQ(back["spec"]["devices"][0]["name"].get<std::string>().find('\xFF'), std::string::npos);
}

TEST(BuildSlicesTest, SplitIsIndependentOfInputOrder) {
  auto v = Many(200);
  auto a = BuildSlices("n", kDomain, v, 1);
  std::reverse(v.begin(), v.end());
  EXPECT_EQ(a, BuildSlices("n", kDomain, v, 1));
}

}  // namespace
}  // namespace knd::inventory
