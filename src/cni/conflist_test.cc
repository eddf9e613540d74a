#include "cni/conflist.h"

#include <gtest/gtest.h>

namespace knd::cni {
namespace {

using nlohmann::json;

TEST(ConfList, SinglePluginConfigBecomesAList) {
  json single = json::parse(R"({"cniVersion": "0.4.0", "name": "net1", "type": "macvlan",
                               "master": "eth1", "ipam": {"type": "host-local"}})");
  auto list = NormalizeConfList(single, "NAD ns/net1 spec.config");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ((*list)["name"], "net1");
  EXPECT_EQ((*list)["cniVersion"], "0.4.0");
  ASSERT_EQ((*list)["plugins"].size(), 1u);
  const json& p = (*list)["plugins"][0];
  EXPECT_EQ(p["type"], "macvlan");
  EXPECT_EQ(p["master"], "eth1");
  EXPECT_FALSE(p.contains("name"));
  EXPECT_FALSE(p.contains("cniVersion"));
}

TEST(ConfList, ListIsKeptAsIs) {
  json in = json::parse(R"({"cniVersion": "1.0.0", "name": "n", "plugins": [
      {"type": "bridge", "bridge": "br0"}, {"type": "tuning"}]})");
  auto list = NormalizeConfList(in, "cfg");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, in);
}

TEST(ConfList, RefusesBadInputNamingTheField) {
  struct Case {
    const char* json;
    const char* want;
  } cases[] = {
      {R"([1])", "cfg: expected an object"},
      {R"({"name": "n"})", "neither a network config list"},
      {R"({"plugins": [{"type": "x"}]})", "cfg: name: required field is missing"},
      {R"({"name": "bad name", "plugins": [{"type": "x"}]})", "name: network name"},
      {R"({"name": "n", "plugins": []})", "plugins: must list at least one plugin"},
      {R"({"name": "n", "plugins": [{"type": "../../bin/sh"}]})", "plugins[0].type"},
      {R"({"name": "n", "plugins": [{"type": "/bin/sh"}]})", "must not contain '/'"},
      {R"({"name": "n", "plugins": [{"type": ""}]})", "plugins[0].type: must not be empty"},
      {R"({"name": "n", "plugins": [{"type": "a"}, {"kind": "b"}]})",
       "plugins[1].type: required field is missing"},
      {R"({"name": "n", "plugins": [{"type": "a", "ipam": {"type": "../x"}}]})",
       "plugins[0].ipam.type"},
      {R"({"name": "n", "cniVersion": 1, "plugins": [{"type": "a"}]})", "cniVersion"},
      {R"({"name": "n", "disableCheck": "yes", "plugins": [{"type": "a"}]})",
       "disableCheck: expected a boolean, got a string"},
      {R"({"name": "n", "plugins": [{"type": "a", "capabilities": []}]})",
       "plugins[0].capabilities"},
  };
  for (const auto& c : cases) {
    auto got = NormalizeConfList(json::parse(c.json), "cfg");
    ASSERT_FALSE(got.ok()) << c.json;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(got.status().message()).find(c.want), std::string::npos)
        << c.json << " -> " << got.status();
  }
  auto bad = ParseConfList("{not json", "NAD a/b spec.config");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("NAD a/b spec.config: is not valid JSON"),
            std::string::npos);
}

TEST(ConfList, PluginTypeIsAFileName) {
  EXPECT_FALSE(InvalidPluginType("host-local").has_value());
  EXPECT_FALSE(InvalidPluginType("my_plugin.v2").has_value());
  for (const char* bad : {"", "/", ".", "..", "a/b", "..x", "a b", "a\nb"}) {
    EXPECT_TRUE(InvalidPluginType(bad).has_value()) << bad;
  }
}

TEST(ConfList, Versions) {
  EXPECT_LT(CompareVersions("0.3.1", "0.4.0"), 0);
  EXPECT_LT(CompareVersions("0.4.0", "1.0.0"), 0);
  EXPECT_GT(CompareVersions("1.1.0", "1.0.0"), 0);
  EXPECT_EQ(CompareVersions("1.0.0", "1.0.0"), 0);
  EXPECT_LT(CompareVersions("garbage", "0.1.0"), 0);

  json fixed = {{"name", "n"}, {"cniVersion", "0.4.0"}, {"plugins", {{{"type", "a"}}}}};
  EXPECT_EQ(*PickVersion(fixed, {{}}), "0.4.0");
  // cniVersions (1.1): highest that knd and every plugin speaks.
  json multi = {{"name", "n"},
                {"cniVersions", {"1.0.0", "1.1.0", "0.4.0"}},
                {"plugins", {{{"type", "a"}}, {{"type", "b"}}}}};
  EXPECT_EQ(*PickVersion(multi, {{}, {}}), "1.1.0");
  EXPECT_EQ(*PickVersion(multi, {{"0.4.0", "1.0.0"}, {"1.0.0", "1.1.0"}}), "1.0.0");
  EXPECT_FALSE(PickVersion(multi, {{"0.3.1"}, {}}).ok());
  // No version at all: negotiated from what the plugins answer to VERSION.
  json open = {{"name", "n"}, {"plugins", {{{"type", "a"}}}}};
  EXPECT_EQ(*PickVersion(open, {{"0.3.1", "0.4.0", "1.0.0"}}), "1.0.0");
  EXPECT_EQ(*PickVersion(open, {{}}), "1.1.0");
}

TEST(ConfList, PluginStdinInjectsNameVersionCapabilitiesAndPrevResult) {
  json list = json::parse(R"({"cniVersion": "1.0.0", "name": "net", "plugins": [
      {"type": "a", "capabilities": {"deviceID": true, "mac": false}, "x": 1},
      {"type": "b", "runtimeConfig": {"keep": 1}, "capabilities": {"ips": true}}]})");
  json caps = {{"deviceID", "0000:03:00.1"}, {"mac", "02:00:00:00:00:01"}};
  json a = PluginStdin(list, 0, "1.0.0", caps, nullptr);
  EXPECT_EQ(a, json::parse(R"({"type": "a", "x": 1, "name": "net", "cniVersion": "1.0.0",
                               "runtimeConfig": {"deviceID": "0000:03:00.1"}})"));
  json prev = {{"cniVersion", "1.0.0"}, {"ips", json::array()}};
  json b = PluginStdin(list, 1, "1.0.0", caps, prev);
  EXPECT_EQ(b["prevResult"], prev);
  EXPECT_EQ(b["runtimeConfig"], json({{"keep", 1}}));  // "ips" is not provided by the runtime
  EXPECT_FALSE(b.contains("capabilities"));
}

TEST(ConfList, IpamStdin) {
  json ipam = {{"type", "host-local"}, {"ranges", json::array()}};
  EXPECT_EQ(IpamStdin(ipam, "knd", "1.0.0"),
            json({{"cniVersion", "1.0.0"}, {"name", "knd"}, {"ipam", ipam}}));
}

TEST(ConfList, HandDeviceLikeMultus) {
  json list = json::parse(R"({"name": "n", "plugins": [
      {"type": "sriov", "capabilities": {"deviceID": true}},
      {"type": "host-device", "device": "stale", "hwaddr": "02:00:00:00:00:09",
       "capabilities": {"deviceID": true}},
      {"type": "tuning"}]})");
  json pci = HandDevice(list, {"0000:03:00.1", "0000:03:00.1", "ens1f1"});
  EXPECT_EQ(pci["plugins"][0]["deviceID"], "0000:03:00.1");
  EXPECT_EQ(pci["plugins"][0]["runtimeConfig"]["deviceID"], "0000:03:00.1");
  EXPECT_EQ(pci["plugins"][1]["pciBusID"], "0000:03:00.1");
  EXPECT_FALSE(pci["plugins"][1].contains("device"));
  EXPECT_FALSE(pci["plugins"][1].contains("hwaddr"));
  EXPECT_EQ(pci["plugins"][1]["runtimeConfig"]["deviceID"], "0000:03:00.1");
  EXPECT_EQ(pci["plugins"][2]["deviceID"], "0000:03:00.1");
  EXPECT_FALSE(pci["plugins"][2].contains("runtimeConfig"));  // no capability declared

  json veth = HandDevice(list, {"eth1", "", "eth1"});
  EXPECT_EQ(veth["plugins"][1]["device"], "eth1");
  EXPECT_FALSE(veth["plugins"][1].contains("pciBusID"));
  // host-device reads runtimeConfig.deviceID as a PCI address: not for a non-PCI device.
  EXPECT_FALSE(veth["plugins"][1].contains("runtimeConfig"));
  EXPECT_EQ(veth["plugins"][0]["runtimeConfig"]["deviceID"], "eth1");
}

TEST(ConfList, ParseResultPicksTheSandboxInterface) {
  json r = json::parse(R"({"cniVersion": "1.0.0",
      "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:aa"},
                     {"name": "veth1", "mac": "02:00:00:00:00:bb"},
                     {"name": "net1", "mac": "02:00:00:00:00:cc", "sandbox": "/run/netns/p"}],
      "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2},
              {"address": "10.1.0.1/24", "interface": 0}],
      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.1.0.254"}]})");
  auto p = ParseResult(r, "net1");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->mac, "02:00:00:00:00:cc");
  EXPECT_EQ(p->ips, std::vector<std::string>{"10.1.0.5/24"});
  EXPECT_EQ(p->gateways, std::vector<std::string>{"10.1.0.1"});
  ASSERT_EQ(p->routes.size(), 2u);
  EXPECT_EQ(p->routes[1].gw, "10.1.0.254");

  // An IPAM result names no interface: every address counts.
  json ipam = json::parse(R"({"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.7/24"},
                              {"address": "2001:db8::7/64"}]})");
  auto q = ParseResult(ipam, "net1");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->ips, (std::vector<std::string>{"192.0.2.7/24", "2001:db8::7/64"}));
  EXPECT_EQ(q->mac, "");

  EXPECT_FALSE(ParseResult(json::parse(R"({"ips": [{"gateway": "1.2.3.4"}]})"), "x").ok());
  EXPECT_FALSE(ParseResult(json::array(), "x").ok());
}

TEST(ConfList, FormatError) {
  EXPECT_EQ(FormatError(json::parse(R"({"cniVersion": "1.0.0", "code": 7, "msg": "bad config",
                                         "details": "master eth9 not found"})")),
            "code 7: bad config: master eth9 not found");
  EXPECT_EQ(FormatError(json::parse(R"({"msg": "only msg"})")), "only msg");
}

}  // namespace
}  // namespace knd::cni
