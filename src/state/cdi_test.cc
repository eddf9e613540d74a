// CDI spec writer: the spec must be one every supported runtime accepts (lowest version, valid
// names, known keys), replaced atomically, and removable twice.
#include "state/cdi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/file_util.h"

namespace knd::state {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kKind[] = "knd.k8s.cni.cncf.io/net";
constexpr char kUid[] = "0b1e8c9a-5d3f-4c6e-9a7b-1f2e3d4c5b6a";

CdiDevice Env(const std::string& name) {
  return {name, json{{"env", {"KND_NET_" + name + "=net1"}}}};
}

class CdiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-cdi-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string SpecFile() const {
    return dir_ + "/knd.k8s.cni.cncf.io-net_" + std::string(kUid) + ".json";
  }
  std::string dir_;
};

TEST_F(CdiTest, WritesSpecAndReturnsQualifiedIds) {
  auto ids = WriteClaimSpec(dir_, kKind, kUid, {Env("pci-0000-03-00-1"), Env("veth0")});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ::testing::ElementsAre(
                        "knd.k8s.cni.cncf.io/net=" + std::string(kUid) + "-pci-0000-03-00-1",
                        "knd.k8s.cni.cncf.io/net=" + std::string(kUid) + "-veth0"));
  auto text = ReadFile(SpecFile());
  ASSERT_TRUE(text.ok()) << text.status();
  json spec = json::parse(*text);
  // Device names start with a digit (the UID): 0.5.0 is the lowest that allows it.
  EXPECT_EQ(spec["cdiVersion"], "0.5.0");
  EXPECT_EQ(spec["kind"], kKind);
  ASSERT_EQ(spec["devices"].size(), 2u);
  EXPECT_EQ(spec["devices"][1]["containerEdits"]["env"][0], "KND_NET_veth0=net1");
  // Only keys the CDI schema knows (runtimes parse strictly).
  for (const auto& [k, v] : spec.items()) {
    EXPECT_THAT(k, ::testing::AnyOf("cdiVersion", "kind", "devices")) << k;
  }
}

TEST_F(CdiTest, VersionSelection) {
  auto v = [](const std::string& kind, json edits) {
    auto spec = BuildClaimSpec(kind, kUid, {{"d", std::move(edits)}});
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? (*spec)["cdiVersion"].get<std::string>() : "";
  };
  json env = {{"env", {"A=1"}}};
  EXPECT_EQ(v("knd.k8s.cni.cncf.io/net", env), "0.5.0");
  EXPECT_EQ(v("example.com/net.rdma", env), "0.6.0");  // '.' in the class part
  EXPECT_EQ(v("example.com/net", {{"additionalGids", {44}}}), "0.7.0");
  EXPECT_EQ(v("example.com/net", {{"intelRdt", {{"closID", "c1"}}}}), "0.7.0");
  EXPECT_EQ(v("example.com/net",
              {{"mounts", {{{"hostPath", "/a"}, {"containerPath", "/b"}, {"type", "bind"}}}}}),
            "0.5.0");
  EXPECT_EQ(v("example.com/net", {{"deviceNodes",
                                   {{{"path", "/dev/infiniband/uverbs0"},
                                     {"hostPath", "/dev/infiniband/uverbs0"},
                                     {"permissions", "rw"}}}}}),
            "0.5.0");
  EXPECT_EQ(MinimumCdiVersion(
                json{{"kind", "a.b/c"}, {"annotations", {{"x", "y"}}}, {"devices", json::array()}}),
            "0.6.0");
}

TEST_F(CdiTest, NameValidation) {
  for (std::string bad : {"knd", "/net", "knd/", "1knd/net", "knd/net/x", "kn d/net", "knd-/net",
                          "knd/net_", "knd/n@t"}) {
    EXPECT_FALSE(ValidateCdiKind(bad).ok()) << bad;
    EXPECT_FALSE(WriteClaimSpec(dir_, bad, kUid, {Env("a")}).ok()) << bad;
  }
  EXPECT_TRUE(ValidateCdiKind("knd.k8s.cni.cncf.io/net").ok());
  EXPECT_TRUE(ValidateCdiKind("a_b-c.d/e-f_g.h1").ok());

  for (std::string bad : {"", "-a", "a-", "a/b", "a b", "a=b", ".a"}) {
    EXPECT_FALSE(ValidateCdiDeviceName(bad).ok()) << bad;
  }
  EXPECT_TRUE(ValidateCdiDeviceName("0abc-d_e.f:g").ok());
  // A device suffix that would make an invalid name is refused, and nothing is written.
  auto r = WriteClaimSpec(dir_, kKind, kUid, {Env("ok"), {"b@d", json{{"env", {"A=1"}}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("contains '@'"));
  EXPECT_FALSE(fs::exists(SpecFile()));
  // Claim UIDs that could escape the directory.
  EXPECT_FALSE(WriteClaimSpec(dir_, kKind, "../x", {Env("a")}).ok());
  EXPECT_FALSE(RemoveClaimSpec(dir_, kKind, "a/b").ok());
  // The same device twice would make the runtime drop both.
  EXPECT_FALSE(WriteClaimSpec(dir_, kKind, kUid, {Env("a"), Env("a")}).ok());
}

TEST_F(CdiTest, RefusesEditsRuntimesWouldReject) {
  struct Case {
    json edits;
    std::string error;
  };
  const Case cases[] = {
      {json::object(), "empty container edits"},
      {json{{"env", json::array()}}, "empty container edits"},
      {json{{"netDevices", {{{"hostInterfaceName", "eth1"}, {"name", "net1"}}}}},
       "netDevices needs cdiVersion 1.1.0"},
      {json{{"envs", {"A=1"}}}, "containerEdits.envs: not a CDI field"},
      {json{{"env", {"NOVALUE"}}}, "is not KEY=VALUE"},
      {json{{"env", {"=x"}}}, "is not KEY=VALUE"},
      {json{{"deviceNodes", {{{"hostPath", "/dev/x"}}}}}, "deviceNodes[0].path: required"},
      {json{{"deviceNodes", {{{"path", "/dev/x"}, {"permissions", "rwx"}}}}}, "subset of"},
      {json{{"hooks", {{{"hookName", "preStart"}, {"path", "/bin/true"}}}}}, "unknown hook"},
      {json{{"hooks", {{{"hookName", "createContainer"}, {"path", "bin/true"}}}}},
       "must be absolute"},
      {json{{"mounts", {{{"hostPath", "/a"}}}}}, "mounts[0].containerPath: required"},
      {json{{"intelRdt", {{"schemata", {"L3:0=f"}}}}}, "intelRdt.schemata: not a CDI field"},
      {json{{"additionalGids", {-1}}}, "expected uint32"},
  };
  for (const auto& c : cases) {
    auto r = WriteClaimSpec(dir_, kKind, kUid, {{"d", c.edits}});
    ASSERT_FALSE(r.ok()) << c.edits.dump();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error)) << c.edits.dump();
  }
  EXPECT_FALSE(fs::exists(SpecFile()));
  // A valid hook (the "NIC must be there" guard of lessons §1) is accepted.
  auto ok = WriteClaimSpec(dir_, kKind, kUid,
                           {{"d", json{{"hooks",
                                        {{{"hookName", "createContainer"},
                                          {"path", "/usr/bin/knd-check"},
                                          {"args", {"knd-check", "net1"}},
                                          {"timeout", 5}}}}}}});
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(CdiTest, AtomicReplaceAndRemoveTwice) {
  ASSERT_TRUE(WriteClaimSpec(dir_, kKind, kUid, {Env("a"), Env("b")}).ok());
  auto ids = WriteClaimSpec(dir_, kKind, kUid, {Env("c")});
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 1u);
  json spec = json::parse(*ReadFile(SpecFile()));
  ASSERT_EQ(spec["devices"].size(), 1u);
  EXPECT_EQ(spec["devices"][0]["name"], std::string(kUid) + "-c");
  // The directory holds just the spec: no temp file the runtime could pick up.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().extension(), ".json");
    ++files;
  }
  EXPECT_EQ(files, 1);

  EXPECT_TRUE(RemoveClaimSpec(dir_, kKind, kUid).ok());
  EXPECT_FALSE(fs::exists(SpecFile()));
  EXPECT_TRUE(RemoveClaimSpec(dir_, kKind, kUid).ok());
}

TEST_F(CdiTest, EmptyDeviceListRemovesStaleSpec) {
  ASSERT_TRUE(WriteClaimSpec(dir_, kKind, kUid, {Env("a")}).ok());
  auto ids = WriteClaimSpec(dir_, kKind, kUid, {});
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
  EXPECT_FALSE(fs::exists(SpecFile()));
}

TEST_F(CdiTest, CreatesMissingDirectory) {
  std::string sub = dir_ + "/var/run/cdi";
  ASSERT_TRUE(WriteClaimSpec(sub, kKind, kUid, {Env("a")}).ok());
  EXPECT_TRUE(fs::exists(sub + "/knd.k8s.cni.cncf.io-net_" + std::string(kUid) + ".json"));
}

}  // namespace
}  // namespace knd::state
