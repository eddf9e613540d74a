// Unit tests of `kndctl doctor` against a temporary node layout (fake kubelet dir, NRI
// socket, CNI dirs, sysfs and /proc status files).
#include "doctor.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace knd::kndctl {
namespace {

namespace fs = std::filesystem;

bool Has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class DoctorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kndctl-doctor-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (int fd : fds_) ::close(fd);
    fs::remove_all(dir_);
  }
  std::string P(const std::string& rel) { return dir_ + "/" + rel; }
  void Mkdir(const std::string& rel) { fs::create_directories(P(rel)); }
  void Write(const std::string& rel, const std::string& data,
             fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
    fs::create_directories(fs::path(P(rel)).parent_path());
    std::ofstream(P(rel)) << data;
    fs::permissions(P(rel), perms);
  }
  // A unix socket bound at `rel`; listening or not (a stale socket file).
  void Socket(const std::string& rel, bool listen) {
    fs::create_directories(fs::path(P(rel)).parent_path());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::string path = P(rel);
    ASSERT_LT(path.size(), sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
    if (listen) {
      ASSERT_EQ(::listen(fd, 4), 0);
      fds_.push_back(fd);
    } else {
      ::close(fd);
    }
  }
  DoctorOptions Layout() {
    DoctorOptions o;
    o.kubelet_dir = P("kubelet");
    o.nri_socket = P("nri/nri.sock");
    o.cdi_dir = P("cdi");
    o.cni_bin_dirs = {P("opt-cni-bin"), P("usr-lib-cni")};
    o.state_dir = P("knd");
    o.netns_guard = P("knd/bin/knd-netns-guard");
    o.sysfs_root = P("sys");
    o.capabilities = "cap_net_admin,cap_sys_admin=ep";
    o.probe_link_types = false;
    return o;
  }
  std::string dir_;
  std::vector<int> fds_;
};

TEST_F(DoctorTest, NriSocketMissingFailsWithFix) {
  Check c = CheckNriSocket(P("nri/nri.sock"));
  EXPECT_EQ(c.level, Level::kFail);
  EXPECT_EQ(c.name, "nri-socket");
  EXPECT_TRUE(Has(c.detail, P("nri/nri.sock") + " does not exist")) << c.detail;
  EXPECT_TRUE(Has(c.fix, "enable NRI in the container runtime")) << c.fix;
  EXPECT_TRUE(Has(c.fix, "enable_nri = true")) << c.fix;
}

TEST_F(DoctorTest, NriSocketListeningIsOk) {
  Socket("nri/nri.sock", /*listen=*/true);
  Check c = CheckNriSocket(P("nri/nri.sock"));
  EXPECT_EQ(c.level, Level::kOk) << c.detail;
  EXPECT_TRUE(Has(c.detail, "accepts connections"));
}

TEST_F(DoctorTest, NriSocketStaleFails) {
  Socket("nri/nri.sock", /*listen=*/false);
  Check c = CheckNriSocket(P("nri/nri.sock"));
  EXPECT_EQ(c.level, Level::kFail);
  EXPECT_TRUE(Has(c.detail, "nothing accepts connections")) << c.detail;
  Write("nri/plain", "x");
  c = CheckNriSocket(P("nri/plain"));
  EXPECT_EQ(c.level, Level::kFail);
  EXPECT_TRUE(Has(c.detail, "is not a unix socket")) << c.detail;
}

TEST_F(DoctorTest, KubeletDirs) {
  std::vector<Check> cs = CheckKubeletDirs(P("kubelet"));
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].level, Level::kFail);
  EXPECT_TRUE(Has(cs[0].fix, "--kubelet-dir"));
  Mkdir("kubelet/plugins");
  cs = CheckKubeletDirs(P("kubelet"));
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].level, Level::kOk) << cs[0].detail;
  EXPECT_EQ(cs[1].name, "kubelet-plugins-registry");
  EXPECT_EQ(cs[1].level, Level::kFail);
  EXPECT_TRUE(Has(cs[1].detail, "plugins_registry does not exist"));
  EXPECT_TRUE(Has(cs[1].fix, "the kubelet creates it at start"));
  Mkdir("kubelet/plugins_registry");
  cs = CheckKubeletDirs(P("kubelet"));
  EXPECT_EQ(cs[1].level, Level::kOk);
  EXPECT_TRUE(Has(cs[1].detail, "exists and is writable"));
}

TEST_F(DoctorTest, CniBinDirs) {
  std::vector<std::string> dirs = {P("opt-cni-bin"), P("usr-lib-cni")};
  std::vector<Check> cs = CheckCniBinDirs(dirs);
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].level, Level::kWarn);
  EXPECT_EQ(cs[1].level, Level::kWarn);
  EXPECT_TRUE(Has(cs[1].detail, "missing: host-device, static, host-local"));
  const auto exec = fs::perms::owner_all;
  Write("opt-cni-bin/host-device", "#!/bin/sh\n", exec);
  Write("opt-cni-bin/static", "#!/bin/sh\n", fs::perms::owner_read);  // not executable
  Write("usr-lib-cni/host-local", "#!/bin/sh\n", exec);
  cs = CheckCniBinDirs(dirs);
  EXPECT_EQ(cs[0].level, Level::kOk);
  EXPECT_EQ(cs[1].level, Level::kWarn);
  EXPECT_EQ(cs[1].detail, "missing: static");
  EXPECT_TRUE(Has(cs[1].fix, P("opt-cni-bin")));
  Write("usr-lib-cni/static", "#!/bin/sh\n", exec);
  cs = CheckCniBinDirs(dirs);
  EXPECT_EQ(cs[1].level, Level::kOk);
  EXPECT_EQ(cs[1].detail, "host-device (" + P("opt-cni-bin") + "), static (" + P("usr-lib-cni") +
                              "), host-local (" + P("usr-lib-cni") + ")");
}

TEST_F(DoctorTest, CdiAndStateDirs) {
  EXPECT_EQ(CheckCdiDir(P("cdi")).level, Level::kWarn);
  Mkdir("cdi");
  EXPECT_EQ(CheckCdiDir(P("cdi")).level, Level::kOk);
  Write("cdi-file", "x");
  EXPECT_EQ(CheckCdiDir(P("cdi-file")).level, Level::kFail);
  EXPECT_EQ(CheckStateDir(P("knd")).level, Level::kOk);
  Write("knd/plans/a.json", "{}");
  Check c = CheckStateDir(P("knd"));
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_TRUE(Has(c.detail, "1 plan(s)")) << c.detail;
}

TEST_F(DoctorTest, NetnsGuard) {
  EXPECT_EQ(CheckNetnsGuard("").level, Level::kOk);
  Check c = CheckNetnsGuard(P("bin/knd-netns-guard"));
  EXPECT_EQ(c.level, Level::kWarn) << "missing: pods may start without their NICs";
  EXPECT_TRUE(Has(c.fix, "--netns-guard-install-from")) << c.fix;
  Write("bin/knd-netns-guard", "#!/bin/sh\n");
  EXPECT_EQ(CheckNetnsGuard(P("bin/knd-netns-guard")).level, Level::kFail) << "not executable";
  ::chmod(P("bin/knd-netns-guard").c_str(), 0755);
  EXPECT_EQ(CheckNetnsGuard(P("bin/knd-netns-guard")).level, Level::kWarn) << "not ELF";
  // A dynamically linked program (this test) and the real, static guard.
  c = CheckNetnsGuard("/proc/self/exe");
  EXPECT_EQ(c.level, Level::kWarn);
  EXPECT_TRUE(Has(c.detail, "dynamically linked")) << c.detail;
  const char* bin = std::getenv("KND_BINARY_DIR");
  if (bin == nullptr) GTEST_SKIP() << "KND_BINARY_DIR not set (run through ctest)";
  const std::string guard = std::string(bin) + "/cmd/knd-netns-guard/knd-netns-guard";
  c = CheckNetnsGuard(guard);
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(c.level, Level::kWarn) << "a sanitizer build links it dynamically";
#else
  EXPECT_EQ(c.level, Level::kOk) << c.detail;
#endif
}

TEST_F(DoctorTest, Rdma) {
  Check c = CheckRdma(P("sys"));
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_EQ(c.detail, "no RDMA (ib_core not loaded)");
  // Shared is what knd supports (character devices for the pod); exclusive makes knd refuse
  // RDMA claims, and the check says how to get out of it.
  Write("sys/module/ib_core/parameters/netns_mode", "Y\n");
  c = CheckRdma(P("sys"));
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_TRUE(Has(c.detail, "shared"));
  EXPECT_TRUE(Has(c.detail, "no RDMA isolation"));
  Write("sys/module/ib_core/parameters/netns_mode", "N\n");
  c = CheckRdma(P("sys"));
  EXPECT_EQ(c.level, Level::kWarn);
  EXPECT_TRUE(Has(c.detail, "refuses claims of RDMA devices"));
  EXPECT_TRUE(Has(c.fix, "rdma system set netns shared"));
}

TEST_F(DoctorTest, Vfio) {
  Check c = CheckVfio(P("sys"));
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_TRUE(Has(c.detail, "no IOMMU")) << c.detail;
  EXPECT_TRUE(Has(c.detail, "sriov.driver vfio-pci are refused")) << c.detail;
  Mkdir("sys/kernel/iommu_groups/0");
  Mkdir("sys/kernel/iommu_groups/1");
  c = CheckVfio(P("sys"));
  EXPECT_TRUE(Has(c.detail, "IOMMU on (2 groups), vfio-pci not loaded")) << c.detail;
  EXPECT_TRUE(Has(c.detail, "modprobe vfio-pci")) << c.detail;
  Mkdir("sys/bus/pci/drivers/vfio-pci");
  c = CheckVfio(P("sys"));
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_TRUE(Has(c.detail, "vfio-pci loaded: VFs can be bound")) << c.detail;
}

TEST_F(DoctorTest, Capabilities) {
  EXPECT_EQ(CheckCapabilities("cap_net_admin,cap_sys_admin=ep").level, Level::kOk);
  EXPECT_EQ(CheckCapabilities("all=ep").level, Level::kOk);
  // Permitted but not effective does not count.
  Check c = CheckCapabilities("cap_net_admin=ep cap_sys_admin=p");
  EXPECT_EQ(c.level, Level::kFail);
  EXPECT_EQ(c.detail, "missing CAP_SYS_ADMIN");
  EXPECT_EQ(CheckCapabilities("=").detail, "missing CAP_NET_ADMIN, CAP_SYS_ADMIN");
  c = CheckCapabilities("cap_no_such_thing=ep");
  EXPECT_EQ(c.level, Level::kWarn);
  EXPECT_TRUE(Has(c.detail, "is not a capability set")) << c.detail;
  // This process's own set is read (whatever it holds).
  c = CheckCapabilities("");
  EXPECT_NE(c.level, Level::kWarn) << c.detail;
}

TEST(LinkTypesCheckTest, Summaries) {
  Check c =
      LinkTypesCheck({{"veth", true, ""}, {"dummy", false, "not supported by this kernel"}}, "");
  EXPECT_EQ(c.level, Level::kOk);
  EXPECT_EQ(c.detail, "veth yes, dummy no (dummy: not supported by this kernel)");
  c = LinkTypesCheck({{"veth", false, "not supported by this kernel"}}, "");
  EXPECT_EQ(c.level, Level::kWarn);
  EXPECT_TRUE(Has(c.fix, "modprobe veth"));
  c = LinkTypesCheck({}, "cannot create a throwaway netns: Operation not permitted");
  EXPECT_EQ(c.level, Level::kWarn);
  EXPECT_TRUE(Has(c.detail, "not checked"));
}

TEST_F(DoctorTest, WholeRunOnAGoodAndABadLayout) {
  DoctorOptions o = Layout();
  Mkdir("kubelet/plugins");
  Mkdir("kubelet/plugins_registry");
  Mkdir("cdi");
  std::vector<Check> checks = RunDoctor(o);
  EXPECT_EQ(DoctorExitCode(checks), 1);  // no NRI socket
  std::string text = RenderDoctorText(checks);
  EXPECT_TRUE(Has(text, "[FAIL] nri-socket: " + P("nri/nri.sock") +
                            " does not exist: the runtime has NRI disabled or is not running"
                            " — fix: enable NRI in the container runtime"))
      << text;
  EXPECT_TRUE(Has(text, "[ok] kubelet-plugins-registry: ")) << text;
  EXPECT_TRUE(Has(text, "[warn] cni-plugins: missing: host-device, static, host-local — fix: "))
      << text;
  EXPECT_TRUE(Has(text, "[ok] rdma-netns-mode: no RDMA")) << text;
  EXPECT_TRUE(Has(text, "[ok] vfio: no IOMMU")) << text;
  EXPECT_TRUE(Has(text, "[warn] netns-guard: " + P("knd/bin/knd-netns-guard") + " does not exist"))
      << text;
  EXPECT_TRUE(Has(text, "1 failed, 3 warning(s)")) << text;
  nlohmann::json j = DoctorToJson(checks);
  EXPECT_EQ(j["ok"], false);
  bool seen = false;
  for (const auto& c : j["checks"]) {
    if (c["name"] != "nri-socket") continue;
    seen = true;
    EXPECT_EQ(c["level"], "FAIL");
    EXPECT_TRUE(Has(c["fix"].get<std::string>(), "enable NRI"));
  }
  EXPECT_TRUE(seen);

  Socket("nri/nri.sock", /*listen=*/true);
  checks = RunDoctor(o);
  EXPECT_EQ(DoctorExitCode(checks), 0) << RenderDoctorText(checks);
  EXPECT_EQ(DoctorToJson(checks)["ok"], true);
}

}  // namespace
}  // namespace knd::kndctl
