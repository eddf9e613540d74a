#include "doctor.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/ipvlan.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vlan.h>
#include <netlink/route/link/vxlan.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "netlink/query.h"
#include "netlink/socket.h"
#include "netns/netns.h"

namespace knd::kndctl {
namespace {

using nlohmann::json;

Check Ok(std::string name, std::string detail) {
  return Check{std::move(name), Level::kOk, std::move(detail), ""};
}
Check Warn(std::string name, std::string detail, std::string fix) {
  return Check{std::move(name), Level::kWarn, std::move(detail), std::move(fix)};
}
Check Fail(std::string name, std::string detail, std::string fix) {
  return Check{std::move(name), Level::kFail, std::move(detail), std::move(fix)};
}

std::string Errno(int err) { return std::strerror(err); }

bool IsDir(const std::string& path) {
  struct stat st = {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st = {};
  return ::stat(path.c_str(), &st) == 0;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st = {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Checks one directory that must exist and be writable by this process.
Check WritableDir(const std::string& name, const std::string& path,
                  const std::string& missing_fix) {
  if (!Exists(path)) return Fail(name, path + " does not exist", missing_fix);
  if (!IsDir(path)) return Fail(name, path + " is not a directory", "remove it; " + missing_fix);
  if (::access(path.c_str(), W_OK | X_OK) != 0) {
    int err = errno;
    return Fail(name, absl::StrCat(path, " is not writable: ", Errno(err)),
                "run knd-driver (and kndctl doctor) as root with " + path +
                    " mounted read-write (see docs/deploy.md)");
  }
  return Ok(name, path + " exists and is writable");
}

struct RtnlLinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using LinkPtr = std::unique_ptr<rtnl_link, RtnlLinkPut>;

// Creates `link` in the socket's namespace; "" on success, else the reason.
std::string AddLink(netlink::NlSock& sock, rtnl_link* link) {
  int err = rtnl_link_add(sock.get(), link, NLM_F_CREATE | NLM_F_EXCL);
  if (err == 0) return "";
  if (err == -NLE_OPNOTSUPP) return "not supported by this kernel (module missing?)";
  return nl_geterror(err);
}

LinkTypeProbe Probe(const std::string& kind, netlink::NlSock& sock, rtnl_link* link,
                    const std::string& name) {
  LinkTypeProbe p{kind, false, ""};
  if (link == nullptr) {
    p.error = "libnl cannot build a " + kind + " link";
    return p;
  }
  rtnl_link_set_name(link, name.c_str());
  p.error = AddLink(sock, link);
  p.supported = p.error.empty();
  if (p.supported) {
    // Deleting is part of the check; the namespace goes away afterwards anyway.
    LinkPtr del(rtnl_link_alloc());
    rtnl_link_set_name(del.get(), name.c_str());
    int err = rtnl_link_delete(sock.get(), del.get());
    if (err < 0) {
      p.supported = false;
      p.error = absl::StrCat("created, but delete failed: ", nl_geterror(err));
    }
  }
  return p;
}

struct DoctorFlags {
  DoctorOptions opts;
  std::string output = "text";
  bool no_link_probe = false;
};

int RunDoctorCommand(const DoctorFlags& f) {
  DoctorOptions opts = f.opts;
  opts.probe_link_types = !f.no_link_probe;
  std::vector<Check> checks = RunDoctor(opts);
  if (f.output == "json") {
    std::cout << DumpJson(DoctorToJson(checks), 2) << "\n";
  } else {
    std::cout << RenderDoctorText(checks);
  }
  return DoctorExitCode(checks);
}

}  // namespace

std::string_view ToString(Level l) {
  switch (l) {
    case Level::kOk:
      return "ok";
    case Level::kWarn:
      return "warn";
    case Level::kFail:
      return "FAIL";
  }
  return "FAIL";
}

Check CheckNriSocket(const std::string& path) {
  const std::string name = "nri-socket";
  const std::string enable_fix =
      "enable NRI in the container runtime and restart it: containerd 2.x "
      "[plugins.\"io.containerd.nri.v1.nri\"] disable = false; CRI-O [crio.nri] enable_nri = "
      "true (see docs/deploy.md); if the runtime uses another socket, pass --nri-socket";
  struct stat st = {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Fail(name, path + " does not exist: the runtime has NRI disabled or is not running",
                  enable_fix);
    }
    return Fail(name, absl::StrCat("stat ", path, ": ", Errno(err)),
                "run kndctl doctor as root (knd-driver runs as root, see docs/deploy.md)");
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(name, path + " is not a unix socket", enable_fix);
  }
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Fail(name, path + ": path too long for a unix socket", "use a shorter --nri-socket");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    int err = errno;
    return Fail(name, absl::StrCat("socket: ", Errno(err)), "check the process limits");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ECONNREFUSED) {
      return Fail(name,
                  path +
                      " exists but nothing accepts connections (stale socket: the runtime "
                      "stopped or restarted with NRI disabled)",
                  "restart the container runtime with NRI enabled; " + enable_fix);
    }
    if (err == EACCES || err == EPERM) {
      return Fail(name, absl::StrCat("connect ", path, ": ", Errno(err)),
                  "run as root (the runtime's NRI socket is root-only)");
    }
    return Fail(name, absl::StrCat("connect ", path, ": ", Errno(err)), enable_fix);
  }
  return Ok(name, path + " accepts connections (runtime NRI enabled)");
}

std::vector<Check> CheckKubeletDirs(const std::string& kubelet_dir) {
  const std::string root_fix =
      "pass --kubelet-dir with the kubelet's --root-dir and check that the kubelet runs";
  if (!IsDir(kubelet_dir)) {
    return {Fail("kubelet-dir", kubelet_dir + " does not exist or is not a directory", root_fix)};
  }
  std::vector<Check> out;
  out.push_back(WritableDir("kubelet-plugins", kubelet_dir + "/plugins",
                            "the kubelet creates it at start; " + root_fix));
  out.push_back(WritableDir("kubelet-plugins-registry", kubelet_dir + "/plugins_registry",
                            "the kubelet creates it at start (its plugin watcher); " + root_fix));
  return out;
}

std::vector<Check> CheckCniBinDirs(const std::vector<std::string>& dirs) {
  std::vector<std::string> present, missing;
  for (const std::string& d : dirs) (IsDir(d) ? present : missing).push_back(d);
  std::vector<Check> out;
  const std::string only_cni = "only claims with a `cni` config need CNI plugins";
  if (present.empty()) {
    out.push_back(Warn("cni-bin-dirs", "none of " + absl::StrJoin(dirs, ", ") + " exists",
                       "install the CNI reference plugins (containernetworking/plugins) into "
                       "/opt/cni/bin or pass --cni-bin-dir; " +
                           only_cni));
  } else {
    std::string detail = "found " + absl::StrJoin(present, ", ");
    if (!missing.empty()) absl::StrAppend(&detail, " (absent: ", absl::StrJoin(missing, ", "), ")");
    out.push_back(Ok("cni-bin-dirs", detail));
  }
  std::vector<std::string> found, not_found;
  for (const char* plugin : {"host-device", "static", "host-local"}) {
    std::string where;
    for (const std::string& d : present) {
      if (IsExecutableFile(d + "/" + plugin)) {
        where = d;
        break;
      }
    }
    if (where.empty()) {
      not_found.push_back(plugin);
    } else {
      found.push_back(absl::StrCat(plugin, " (", where, ")"));
    }
  }
  if (not_found.empty()) {
    out.push_back(Ok("cni-plugins", absl::StrJoin(found, ", ")));
  } else {
    out.push_back(Warn("cni-plugins", "missing: " + absl::StrJoin(not_found, ", "),
                       "install the CNI reference plugins (containernetworking/plugins) into " +
                           (present.empty() ? std::string("/opt/cni/bin") : present.front()) +
                           "; " + only_cni));
  }
  return out;
}

Check CheckCdiDir(const std::string& dir) {
  if (!Exists(dir)) {
    return Warn("cdi-dir", dir + " does not exist (knd-driver creates it)",
                "create it (mkdir -p " + dir +
                    ") and make sure the runtime reads it (containerd cdi_spec_dirs, CRI-O "
                    "cdi_spec_dirs; both read /var/run/cdi by default), then restart the runtime");
  }
  return WritableDir("cdi-dir", dir, "create it");
}

Check CheckStateDir(const std::string& dir) {
  if (!Exists(dir)) {
    return Ok("state-dir", dir + " does not exist yet (knd-driver creates it at start)");
  }
  Check c = WritableDir("state-dir", dir, "create it");
  if (c.level == Level::kOk) {
    size_t plans = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/plans", ec)) {
      if (e.path().extension() == ".json" && e.path().filename().string().front() != '.') ++plans;
    }
    absl::StrAppend(&c.detail, "; ", plans, " plan(s) (see kndctl status)");
  }
  return c;
}

namespace {

// Whether an ELF file asks for a dynamic loader (has a PT_INTERP program header), read with
// libelf. nullopt when it is not an ELF file libelf can read.
std::optional<bool> ElfIsDynamic(const std::string& path) {
  if (elf_version(EV_CURRENT) == EV_NONE) return std::nullopt;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  std::unique_ptr<Elf, decltype(&elf_end)> elf(elf_begin(fd.get(), ELF_C_READ, nullptr), elf_end);
  size_t phnum = 0;
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF || elf_getphdrnum(elf.get(), &phnum) != 0) {
    return std::nullopt;
  }
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &ph) == nullptr) return std::nullopt;
    if (ph.p_type == PT_INTERP) return true;
  }
  return false;
}

}  // namespace

Check CheckNetnsGuard(const std::string& path) {
  const char* kName = "netns-guard";
  if (path.empty()) return Ok(kName, "not checked (--netns-guard \"\")");
  if (!Exists(path)) {
    return Warn(kName,
                path +
                    " does not exist: without it a pod that the runtime starts while "
                    "knd-driver is down or not connected runs without its NICs",
                "run knd-driver with --netns-guard " + path +
                    " --netns-guard-install-from /usr/bin/knd-netns-guard (the DaemonSet does)");
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return Fail(kName,
                path +
                    " is not executable: every container that uses a knd claim fails to "
                    "start (the runtime cannot run the CDI hook)",
                "restart knd-driver (it installs the guard again), or chmod 0755 " + path);
  }
  std::optional<bool> dynamic = ElfIsDynamic(path);
  if (!dynamic.has_value()) {
    return Warn(kName, path + " is not an ELF executable",
                "restart knd-driver to install it again");
  }
  if (*dynamic) {
    return Warn(kName,
                path +
                    " is dynamically linked: the runtime runs it on the host, whose "
                    "libraries may not match",
                "install the static knd-netns-guard from the knd image");
  }
  return Ok(kName, path + " (static)");
}

Check CheckRdma(const std::string& sysfs_root) {
  const std::string path = sysfs_root + "/module/ib_core/parameters/netns_mode";
  absl::StatusOr<std::string> mode = ReadFile(path);
  if (!mode.ok()) {
    if (!Exists(sysfs_root + "/module/ib_core")) {
      return Ok("rdma-netns-mode", "no RDMA (ib_core not loaded)");
    }
    return Warn("rdma-netns-mode",
                "cannot read " + path + ": " + std::string(mode.status().message()),
                "check that sysfs is mounted at --sysfs-root");
  }
  std::string v(absl::StripAsciiWhitespace(*mode));
  // ib_core's netns_mode is a bool: Y (1) = shared, N (0) = exclusive. knd gives pods the
  // character devices of their RDMA devices and does not move RDMA devices between namespaces,
  // which only shared mode lets a pod use (docs/sriov-rdma.md).
  if (v == "Y" || v == "1") {
    return Ok("rdma-netns-mode",
              "shared: pods get their RDMA devices as character devices; every namespace on the "
              "node sees every RDMA device (no RDMA isolation between pods)");
  }
  if (v == "N" || v == "0") {
    return Warn("rdma-netns-mode",
                "exclusive: knd refuses claims of RDMA devices, because it does not move RDMA "
                "devices into pod namespaces and a pod could not see them",
                "switch to shared mode: `rdma system set netns shared` (persist with `options "
                "ib_core netns_mode=1` in /etc/modprobe.d), or exclude RDMA devices in the node "
                "config (exclude: {rdma: true})");
  }
  return Warn("rdma-netns-mode", "unexpected value \"" + v + "\" in " + path,
              "check with `rdma system show`");
}

Check CheckVfio(const std::string& sysfs_root) {
  const std::string name = "vfio";
  // Every PCI function sits in an IOMMU group when the IOMMU is on; knd binds a VF to vfio-pci
  // only then (never in vfio's unsafe no-IOMMU mode; docs/sriov-rdma.md).
  size_t groups = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(sysfs_root + "/kernel/iommu_groups", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++groups;
  }
  if (groups == 0) {
    return Ok(name,
              "no IOMMU (off or absent): claims whose config sets sriov.driver vfio-pci are "
              "refused; VFs move into pods as netdevs");
  }
  if (!Exists(sysfs_root + "/bus/pci/drivers/vfio-pci")) {
    return Ok(name, absl::StrCat("IOMMU on (", groups,
                                 " groups), vfio-pci not loaded: claims whose config sets "
                                 "sriov.driver vfio-pci are refused until `modprobe vfio-pci`"));
  }
  return Ok(name, absl::StrCat("IOMMU on (", groups,
                               " groups), vfio-pci loaded: VFs can be bound to vfio-pci for "
                               "userspace drivers (sriov.driver)"));
}

Check CheckCapabilities(const std::string& caps_text) {
  const std::string name = "capabilities";
  std::unique_ptr<struct _cap_struct, decltype(&cap_free)> caps(
      caps_text.empty() ? cap_get_proc() : cap_from_text(caps_text.c_str()), cap_free);
  if (!caps) {
    return Warn(
        name,
        caps_text.empty()
            ? "cannot read this process's capabilities: " + std::string(std::strerror(errno))
            : "\"" + caps_text + "\" is not a capability set (libcap text form)",
        "run on Linux");
  }
  std::vector<std::string> missing;
  for (auto [cap, cap_name] :
       {std::pair{CAP_NET_ADMIN, "CAP_NET_ADMIN"}, std::pair{CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}}) {
    cap_flag_value_t v = CAP_CLEAR;
    if (cap_get_flag(caps.get(), cap, CAP_EFFECTIVE, &v) != 0 || v != CAP_SET) {
      missing.push_back(cap_name);
    }
  }
  if (!missing.empty()) {
    return Fail(name, "missing " + absl::StrJoin(missing, ", "),
                "run as root with NET_ADMIN and SYS_ADMIN, as the knd DaemonSet does (see "
                "docs/deploy.md); without them neither knd-driver nor these checks work");
  }
  return Ok(name, "CAP_NET_ADMIN and CAP_SYS_ADMIN present");
}

std::vector<LinkTypeProbe> ProbeLinkTypes(std::string& setup_error) {
  setup_error.clear();
  std::vector<LinkTypeProbe> out;
  absl::StatusOr<netns::ScopedNetns> ns = netns::ScopedNetns::Create("kndctl-doctor");
  if (!ns.ok()) {
    setup_error = "cannot create a throwaway netns: " + std::string(ns.status().message());
    return out;
  }
  absl::StatusOr<netns::Netns> handle = netns::Netns::Open(ns->path());
  if (!handle.ok()) {
    setup_error = std::string(handle.status().message());
    return out;
  }
  absl::StatusOr<netlink::NlSock> sock = netlink::OpenRouteSocketIn(*handle);
  if (!sock.ok()) {
    setup_error = std::string(sock.status().message());
    return out;
  }
  // veth first: it is the parent of the stacked types.
  const std::string parent = "kd-parent";
  LinkPtr veth(rtnl_link_veth_alloc());
  if (veth != nullptr) {
    LinkPtr peer(rtnl_link_veth_get_peer(veth.get()));
    if (peer != nullptr) rtnl_link_set_name(peer.get(), "kd-peer");
  }
  out.push_back(Probe("veth", *sock, veth.get(), "kd-veth"));
  // A second veth pair stays as the parent of macvlan, vlan and ipvlan.
  int parent_ifindex = 0;
  if (out.back().supported) {
    LinkPtr p(rtnl_link_veth_alloc());
    LinkPtr pp(rtnl_link_veth_get_peer(p.get()));
    rtnl_link_set_name(pp.get(), "kd-parent-peer");
    rtnl_link_set_name(p.get(), parent.c_str());
    if (AddLink(*sock, p.get()).empty()) {
      absl::StatusOr<netlink::Link> l = netlink::GetLinkByName(*sock, parent);
      if (l.ok()) parent_ifindex = l->ifindex;
    }
  }
  auto stacked = [&](const std::string& kind, rtnl_link* link) {
    if (parent_ifindex == 0) {
      return LinkTypeProbe{kind, false, "not checked (needs a veth parent)"};
    }
    rtnl_link_set_link(link, parent_ifindex);
    return Probe(kind, *sock, link, "kd-" + kind);
  };
  {
    LinkPtr l(rtnl_link_macvlan_alloc());
    out.push_back(stacked("macvlan", l.get()));
  }
  {
    LinkPtr l(rtnl_link_vxlan_alloc());
    if (l != nullptr) rtnl_link_vxlan_set_id(l.get(), 4242);
    out.push_back(Probe("vxlan", *sock, l.get(), "kd-vxlan"));
  }
  {
    LinkPtr l(rtnl_link_alloc());
    if (l != nullptr && rtnl_link_set_type(l.get(), "dummy") < 0) l.reset();
    out.push_back(Probe("dummy", *sock, l.get(), "kd-dummy"));
  }
  {
    LinkPtr l(rtnl_link_vlan_alloc());
    if (l != nullptr) rtnl_link_vlan_set_id(l.get(), 42);
    out.push_back(stacked("vlan", l.get()));
  }
  {
    LinkPtr l(rtnl_link_ipvlan_alloc());
    out.push_back(stacked("ipvlan", l.get()));
  }
  return out;  // `ns` is deleted here, with whatever is left in it.
}

Check LinkTypesCheck(const std::vector<LinkTypeProbe>& probes, const std::string& setup_error) {
  const std::string name = "kernel-link-types";
  if (!setup_error.empty()) {
    return Warn(name, "not checked: " + setup_error,
                "run kndctl doctor as root (CAP_SYS_ADMIN + CAP_NET_ADMIN) to probe link types");
  }
  std::vector<std::string> parts, missing;
  bool veth = false;
  for (const LinkTypeProbe& p : probes) {
    parts.push_back(p.kind + (p.supported ? " yes" : " no"));
    if (p.kind == "veth") veth = p.supported;
    if (!p.supported) missing.push_back(p.kind + ": " + p.error);
  }
  std::string detail = absl::StrJoin(parts, ", ");
  if (!veth) {
    return Warn(name, detail + " (" + absl::StrJoin(missing, "; ") + ")",
                "load the veth module (modprobe veth); knd still moves physical NICs, but "
                "veth-based setups and tests need it");
  }
  if (!missing.empty()) absl::StrAppend(&detail, " (", absl::StrJoin(missing, "; "), ")");
  return Ok(name, detail);
}

std::vector<Check> RunDoctor(const DoctorOptions& opts) {
  std::vector<Check> out;
  out.push_back(CheckCapabilities(opts.capabilities));
  out.push_back(CheckNriSocket(opts.nri_socket));
  for (Check& c : CheckKubeletDirs(opts.kubelet_dir)) out.push_back(std::move(c));
  out.push_back(CheckCdiDir(opts.cdi_dir));
  out.push_back(CheckStateDir(opts.state_dir));
  out.push_back(CheckNetnsGuard(opts.netns_guard));
  for (Check& c : CheckCniBinDirs(opts.cni_bin_dirs)) out.push_back(std::move(c));
  if (opts.probe_link_types) {
    std::string setup_error;
    std::vector<LinkTypeProbe> probes = ProbeLinkTypes(setup_error);
    out.push_back(LinkTypesCheck(probes, setup_error));
  }
  out.push_back(CheckRdma(opts.sysfs_root));
  out.push_back(CheckVfio(opts.sysfs_root));
  return out;
}

std::string RenderDoctorText(const std::vector<Check>& checks) {
  std::string out;
  size_t fails = 0, warns = 0;
  for (const Check& c : checks) {
    absl::StrAppend(&out, "[", std::string(ToString(c.level)), "] ", c.name, ": ", c.detail);
    if (c.level != Level::kOk && !c.fix.empty()) absl::StrAppend(&out, " — fix: ", c.fix);
    absl::StrAppend(&out, "\n");
    if (c.level == Level::kFail) ++fails;
    if (c.level == Level::kWarn) ++warns;
  }
  absl::StrAppend(&out, "\n", checks.size(), " checks: ", fails, " failed, ", warns,
                  " warning(s)\n");
  return out;
}

json DoctorToJson(const std::vector<Check>& checks) {
  json arr = json::array();
  for (const Check& c : checks) {
    json j = {{"name", c.name}, {"level", std::string(ToString(c.level))}, {"detail", c.detail}};
    if (!c.fix.empty()) j["fix"] = c.fix;
    arr.push_back(std::move(j));
  }
  return {{"ok", DoctorExitCode(checks) == 0}, {"checks", arr}};
}

int DoctorExitCode(const std::vector<Check>& checks) {
  for (const Check& c : checks) {
    if (c.level == Level::kFail) return 1;
  }
  return 0;
}

void AddDoctorCommand(CLI::App& app, int& rc) {
  auto f = std::make_shared<DoctorFlags>();
  CLI::App* cmd =
      app.add_subcommand("doctor", "Check this node for what knd needs and say what to fix");
  cmd->add_option("--kubelet-dir", f->opts.kubelet_dir, "kubelet root (its --root-dir)")
      ->capture_default_str();
  cmd->add_option("--nri-socket", f->opts.nri_socket, "container runtime's NRI socket")
      ->capture_default_str();
  cmd->add_option("--cdi-dir", f->opts.cdi_dir, "runtime's dynamic CDI spec dir")
      ->capture_default_str();
  cmd->add_option("--cni-bin-dir", f->opts.cni_bin_dirs,
                  "CNI plugin directory (repeat for several; replaces the default list)")
      ->capture_default_str();
  cmd->add_option("--state-dir", f->opts.state_dir, "knd-driver's state directory")
      ->capture_default_str();
  cmd->add_option("--netns-guard", f->opts.netns_guard,
                  "knd-driver's --netns-guard path (\"\" skips the check)")
      ->capture_default_str();
  cmd->add_option("--sysfs-root", f->opts.sysfs_root, "sysfs mount")->capture_default_str();
  cmd->add_flag("--no-link-probe", f->no_link_probe,
                "skip the kernel link-type probe (it creates a throwaway netns)");
  cmd->add_option("-o,--output", f->output, "Output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->callback([f, &rc] { rc = RunDoctorCommand(*f); });
}

}  // namespace knd::kndctl
