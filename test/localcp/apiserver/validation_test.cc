// Unit tests of the stand-in API server's validation rules (pure functions).
#include "validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace knd::localcp {
namespace {

using ::testing::HasSubstr;

using nlohmann::json;

json Slice(int devices) {
  json s = {{"apiVersion", "resource.k8s.io/v1"},
            {"kind", "ResourceSlice"},
            {"metadata", {{"name", "n1-knd"}}},
            {"spec",
             {{"driver", "knd.k8s.cni.cncf.io"},
              {"nodeName", "n1"},
              {"pool", {{"name", "n1"}, {"generation", 1}, {"resourceSliceCount", 1}}},
              {"devices", json::array()}}}};
  for (int i = 0; i < devices; ++i) {
    s["spec"]["devices"].push_back(
        {{"name", "dev" + std::to_string(i)},
         {"attributes",
          {{"knd.k8s.cni.cncf.io/ifName", {{"string", "eth" + std::to_string(i)}}}}}});
  }
  return s;
}

std::string Joined(const FieldErrors& errs) { return InvalidMessage("X", "n", errs); }

TEST(ValidationTest, GoodSliceHasNoErrors) {
  EXPECT_TRUE(ValidateResourceSlice(Slice(128)).empty())
      << Joined(ValidateResourceSlice(Slice(128)));
}

TEST(ValidationTest, SliceLimitsAndRequiredFields) {
  EXPECT_EQ(Joined(ValidateResourceSlice(Slice(129))),
            "X \"n\" is invalid: spec.devices: Too many: 129: must have at most 128 items");
  json s = Slice(2);
  s["spec"]["devices"][0]["taints"] = {{{"key", "k"}, {"effect", "NoSchedule"}}};
  EXPECT_TRUE(ValidateResourceSlice(s).empty());
  for (int i = 2; i < 65; ++i) s["spec"]["devices"].push_back({{"name", "d" + std::to_string(i)}});
  EXPECT_NE(
      Joined(ValidateResourceSlice(s)).find("spec.devices: Too many: 65: must have at most 64"),
      std::string::npos);

  json bad = Slice(1);
  bad["spec"].erase("driver");
  bad["spec"]["pool"]["resourceSliceCount"] = 0;
  bad["spec"]["allNodes"] = true;
  std::string msg = Joined(ValidateResourceSlice(bad));
  EXPECT_NE(msg.find("spec.driver: Required value"), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.pool.resourceSliceCount: Invalid value: 0: must be greater than zero"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("multiple fields are set"), std::string::npos) << msg;

  json none = Slice(1);
  none["spec"].erase("nodeName");
  EXPECT_NE(Joined(ValidateResourceSlice(none)).find("spec: Required value: exactly one of"),
            std::string::npos);
}

TEST(ValidationTest, DeviceNamesAndAttributes) {
  json s = Slice(4);
  s["spec"]["devices"][1]["name"] = "Eth_1";
  s["spec"]["devices"][2]["name"] = "dev0";
  s["spec"]["devices"][3]["attributes"]["knd.k8s.cni.cncf.io/ipv4"] = {
      {"string", std::string(65, 'a')}};
  s["spec"]["devices"][0]["attributes"]["bad/name/x"] = {{"int", 1}};
  s["spec"]["devices"][0]["attributes"]["two"] = {{"int", 1}, {"bool", true}};
  s["spec"]["devices"][0]["attributes"]["ver"] = {{"version", "1.2"}};
  std::string msg = Joined(ValidateResourceSlice(s));
  EXPECT_NE(msg.find("spec.devices[1].name: Invalid value: \"Eth_1\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.devices[2].name: Duplicate value: \"dev0\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.devices[3].attributes[knd.k8s.cni.cncf.io/ipv4].string: Too long: may "
                     "not be more than 64 bytes"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("spec.devices[0].attributes[bad/name/x]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.devices[0].attributes[two]: Invalid value"), std::string::npos) << msg;
  EXPECT_NE(msg.find("spec.devices[0].attributes[ver].version: Invalid value: \"1.2\""),
            std::string::npos)
      << msg;

  json many = Slice(1);
  for (int i = 0; i < 32; ++i) {
    many["spec"]["devices"][0]["attributes"]["a" + std::to_string(i)] = {{"bool", true}};
  }
  EXPECT_EQ(
      Joined(ValidateResourceSlice(many)),
      "X \"n\" is invalid: spec.devices[0]: Invalid value: 33: the total number of attributes "
      "and capacities must not exceed 32");
  // Exactly at the limits is fine: 32 entries, a 64-byte string, a 32-char identifier.
  json edge = Slice(1);
  edge["spec"]["devices"][0]["attributes"] = json::object();
  for (int i = 0; i < 31; ++i) {
    edge["spec"]["devices"][0]["attributes"]["a" + std::to_string(i)] = {{"bool", true}};
  }
  edge["spec"]["devices"][0]["capacity"] = {{std::string(32, 'c'), {{"value", "10Gi"}}}};
  edge["spec"]["devices"][0]["attributes"]["a0"] = {{"string", std::string(64, 'x')}};
  EXPECT_TRUE(ValidateResourceSlice(edge).empty()) << Joined(ValidateResourceSlice(edge));
}

TEST(ValidationTest, ConsumableCapacityRequestPolicy) {
  // knd's shared parent: a child count and a bandwidth with defaults.
  json ok = Slice(1);
  json& dev = ok["spec"]["devices"][0];
  dev["allowMultipleAllocations"] = true;
  dev["capacity"] = {
      {"knd.k8s.cni.cncf.io/children",
       {{"value", "16"}, {"requestPolicy", {{"default", "1"}, {"validValues", {"1"}}}}}},
      {"knd.k8s.cni.cncf.io/bandwidth",
       {{"value", "25G"}, {"requestPolicy", {{"default", "1G"}}}}}};
  EXPECT_TRUE(ValidateResourceSlice(ok).empty()) << Joined(ValidateResourceSlice(ok));

  json single = ok;
  single["spec"]["devices"][0].erase("allowMultipleAllocations");
  EXPECT_THAT(Joined(ValidateResourceSlice(single)),
              HasSubstr("spec.devices[0].capacity[knd.k8s.cni.cncf.io/children].requestPolicy: "
                        "Forbidden: allowMultipleAllocations must be true"));

  json nodefault = ok;
  nodefault["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/children"]["requestPolicy"]
      .erase("default");
  EXPECT_THAT(Joined(ValidateResourceSlice(nodefault)),
              HasSubstr("requestPolicy.default: Required value: required when validValues is "
                        "defined"));

  json notin = ok;
  notin["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/children"]["requestPolicy"]
       ["default"] = "2";
  EXPECT_THAT(Joined(ValidateResourceSlice(notin)),
              HasSubstr("default value is not valid according to the requestPolicy"));

  json unsorted = ok;
  unsorted["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/children"]["requestPolicy"]
          ["validValues"] = {"2", "1"};
  EXPECT_THAT(Joined(ValidateResourceSlice(unsorted)),
              HasSubstr("values must be sorted in ascending order"));

  json larger = ok;
  larger["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/children"]["requestPolicy"]
        ["validValues"] = {"1", "32"};
  EXPECT_THAT(Joined(ValidateResourceSlice(larger)),
              HasSubstr("option is larger than capacity value: 16"));

  json both = ok;
  both["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/children"]["requestPolicy"]
      ["validRange"] = {{"min", "1"}};
  EXPECT_THAT(Joined(ValidateResourceSlice(both)),
              HasSubstr("exactly one policy can be specified"));

  json range = ok;
  range["spec"]["devices"][0]["capacity"]["knd.k8s.cni.cncf.io/bandwidth"]["requestPolicy"] = {
      {"default", "100M"}, {"validRange", {{"min", "1G"}, {"max", "50G"}}}};
  std::string got = Joined(ValidateResourceSlice(range));
  EXPECT_THAT(got, HasSubstr("default is less than min"));
  EXPECT_THAT(got, HasSubstr("max is larger than capacity value: 25G"));
}

TEST(ValidationTest, ClaimStatusDevices) {
  json claim = {
      {"metadata", {{"name", "c"}}},
      {"status",
       {{"allocation",
         {{"devices",
           {{"results",
             {{{"request", "r"}, {"driver", "a.example"}, {"pool", "n1"}, {"device", "d1"}}}}}}}},
        {"devices",
         {{{"driver", "a.example"},
           {"pool", "n1"},
           {"device", "d1"},
           {"conditions",
            {{{"type", "Ready"},
              {"status", "True"},
              {"reason", "Attached"},
              {"lastTransitionTime", "2026-01-01T00:00:00Z"}}}},
           {"networkData",
            {{"interfaceName", "net1"}, {"ips", {"192.0.2.5/24", "2001:db8::5/64"}}}}}}}}}};
  EXPECT_TRUE(ValidateResourceClaimStatus(claim).empty())
      << Joined(ValidateResourceClaimStatus(claim));

  json bad = claim;
  bad["status"]["devices"][0]["device"] = "d9";
  EXPECT_NE(
      Joined(ValidateResourceClaimStatus(bad))
          .find("status.devices[0]: Invalid value: {\"device\":\"d9\",\"driver\":\"a.example\","
                "\"pool\":\"n1\"}: must be an allocated device in the claim"),
      std::string::npos)
      << Joined(ValidateResourceClaimStatus(bad));

  bad = claim;
  bad["status"]["devices"][0]["conditions"][0].erase("reason");
  bad["status"]["devices"][0]["conditions"][0].erase("lastTransitionTime");
  bad["status"]["devices"][0]["networkData"]["ips"] = {"192.0.2.5"};
  std::string msg = Joined(ValidateResourceClaimStatus(bad));
  EXPECT_NE(msg.find("status.devices[0].conditions[0].reason: Required value"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("status.devices[0].conditions[0].lastTransitionTime: Required value"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("status.devices[0].networkData.ips[0]: Invalid value: \"192.0.2.5\""),
            std::string::npos)
      << msg;
}

TEST(ValidationTest, Helpers) {
  EXPECT_TRUE(IsCidr("10.0.0.1/8"));
  EXPECT_TRUE(IsCidr("2001:db8::1/128"));
  EXPECT_FALSE(IsCidr("10.0.0.1/33"));
  EXPECT_FALSE(IsCidr("10.0.0.1"));
  EXPECT_FALSE(IsCidr("x/24"));
  EXPECT_TRUE(IsSemver("1.2.3-rc.1+build.5"));
  EXPECT_FALSE(IsSemver("01.2.3"));
  EXPECT_TRUE(IsDnsLabel("pci-0000-00-01-0"));
  EXPECT_FALSE(IsDnsLabel(std::string(64, 'a')));
  EXPECT_TRUE(IsDnsSubdomain("knd.k8s.cni.cncf.io"));
  EXPECT_FALSE(IsCIdentifier("1abc"));
}

}  // namespace
}  // namespace knd::localcp
