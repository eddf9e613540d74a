// `kndctl doctor`: checks this node for what knd-driver needs and says what to fix.
//
// One result per check: ok, warn (works, but something is limited or will need attention) or
// FAIL (knd-driver will not work). The command exits 1 when any check FAILs. What each check
// means and how to fix it is in docs/troubleshooting.md.
//
// Every check reads only what it is given (paths come from flags), so tests run them against
// a temporary directory layout. The kernel link-type probe is the one check that changes
// anything: it creates links in a throwaway network namespace and deletes the namespace.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace knd::kndctl {

enum class Level { kOk, kWarn, kFail };
std::string_view ToString(Level l);  // "ok", "warn", "FAIL"

struct Check {
  std::string name;
  Level level = Level::kOk;
  std::string detail;
  std::string fix;  // empty for ok
};

struct DoctorOptions {
  std::string kubelet_dir = "/var/lib/kubelet";
  std::string nri_socket = "/var/run/nri/nri.sock";
  std::string cdi_dir = "/var/run/cdi";
  // knd-driver looks for CNI plugins in /opt/cni/bin, then in the image's /usr/lib/cni.
  std::vector<std::string> cni_bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  std::string state_dir = "/var/lib/knd";
  // Where the DaemonSet's knd-driver installs the netns guard ("" = not checked).
  std::string netns_guard = "/var/lib/knd/bin/knd-netns-guard";
  std::string sysfs_root = "/sys";
  // The capability set to check, in libcap's text form (e.g. "cap_net_admin=ep"); "" checks
  // this process's own.
  std::string capabilities;
  bool probe_link_types = true;
};

// The NRI socket exists, is a socket and accepts a connection.
Check CheckNriSocket(const std::string& path);
// <kubelet_dir>/plugins and <kubelet_dir>/plugins_registry exist and are writable.
std::vector<Check> CheckKubeletDirs(const std::string& kubelet_dir);
// At least one CNI bin dir exists; host-device, static and host-local are found in one.
std::vector<Check> CheckCniBinDirs(const std::vector<std::string>& dirs);
// The CDI spec dir exists and is writable.
Check CheckCdiDir(const std::string& dir);
// knd's state dir is writable (or can be created).
Check CheckStateDir(const std::string& dir);
// The netns guard knd-driver names in CDI specs: an executable, statically linked file (the
// runtime runs it on the host). Missing is a warning (pods may start without their NICs while
// knd is down); present but not executable fails every container that uses a claim.
Check CheckNetnsGuard(const std::string& path);
// ib_core's netns_mode (exclusive lets RDMA devices follow their netdev into pods).
Check CheckRdma(const std::string& sysfs_root);
// Whether VFs can be bound to vfio-pci (NetworkConfig sriov.driver): the IOMMU is on (IOMMU
// groups exist) and the vfio-pci driver is loaded. Always ok: most nodes need neither; the
// detail says what a vfio-pci claim gets.
Check CheckVfio(const std::string& sysfs_root);
// CAP_NET_ADMIN and CAP_SYS_ADMIN in the effective set of `caps_text` (libcap's text form), or
// of this process when it is empty.
Check CheckCapabilities(const std::string& caps_text);

// Result of creating one link type in a throwaway netns.
struct LinkTypeProbe {
  std::string kind;
  bool supported = false;
  std::string error;  // why not, when !supported
};
// Creates veth, macvlan, vxlan, dummy, vlan and ipvlan links in a throwaway netns (then
// deletes them and the netns). Returns an error string in `setup_error` when the namespace
// itself cannot be made (no privileges).
std::vector<LinkTypeProbe> ProbeLinkTypes(std::string& setup_error);
// Turns probe results into a check: ok when veth works, the detail lists every type.
Check LinkTypesCheck(const std::vector<LinkTypeProbe>& probes, const std::string& setup_error);

std::vector<Check> RunDoctor(const DoctorOptions& opts);

std::string RenderDoctorText(const std::vector<Check>& checks);
nlohmann::json DoctorToJson(const std::vector<Check>& checks);
int DoctorExitCode(const std::vector<Check>& checks);  // 1 if any FAIL, else 0

// Registers `kndctl doctor`; the exit code goes to `rc`.
void AddDoctorCommand(CLI::App& app, int& rc);

}  // namespace knd::kndctl
