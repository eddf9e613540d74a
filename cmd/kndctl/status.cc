#include "status.h"

#include <dirent.h>
#include <linux/magic.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "common/text.h"
#include "netlink/ops.h"
#include "netlink/socket.h"
#include "netns/netns.h"

namespace knd::kndctl {
namespace {

using nlohmann::json;

bool MacEq(const std::string& a, const std::string& b) {
  return !a.empty() && !b.empty() && NormalizeMac(a) == NormalizeMac(b);
}

void AddUnique(std::vector<std::string>& v, const std::string& s) {
  if (!s.empty() && std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

class SystemLiveView : public LiveView {
 public:
  SystemLiveView(std::string host_netns, std::string sysfs_root)
      : host_netns_(std::move(host_netns)), sysfs_root_(std::move(sysfs_root)) {}

  absl::StatusOr<std::vector<netlink::Link>> HostLinks() override {
    if (!host_.has_value()) host_ = ReadHost();
    return *host_;
  }

  absl::StatusOr<std::vector<netlink::Link>> LinksIn(const std::string& netns_path) override {
    auto it = pods_.find(netns_path);
    if (it == pods_.end()) it = pods_.emplace(netns_path, ReadNetns(netns_path)).first;
    return it->second;
  }

  std::vector<std::string> PciNetdevNames(const std::string& bdf) override {
    std::vector<std::string> names;
    if (bdf.empty() || bdf.find('/') != std::string::npos) return names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(
             sysfs_root_ + "/bus/pci/devices/" + bdf + "/net", ec)) {
      names.push_back(e.path().filename());
    }
    return names;
  }

  std::string PciDriver(const std::string& bdf) override {
    if (bdf.empty() || bdf.find('/') != std::string::npos) return "";
    std::error_code ec;
    std::filesystem::path target =
        std::filesystem::read_symlink(sysfs_root_ + "/bus/pci/devices/" + bdf + "/driver", ec);
    return ec ? "" : target.filename().string();
  }

 private:
  absl::StatusOr<std::vector<netlink::Link>> ReadHost() {
    if (!host_netns_.empty()) return ReadNetns(host_netns_);
    ASSIGN_OR_RETURN(netlink::NlSock sock, netlink::OpenRouteSocket());
    return netlink::ListLinks(sock);
  }

  static absl::StatusOr<std::vector<netlink::Link>> ReadNetns(const std::string& path) {
    struct statfs sfs = {};
    if (::statfs(path.c_str(), &sfs) != 0) {
      if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("netns ", path, " is gone"));
      return ErrnoStatus(absl::StrCat("statfs ", path));
    }
    // A bind mount that was unmounted leaves a plain empty file behind.
    if (sfs.f_type != NSFS_MAGIC && sfs.f_type != PROC_SUPER_MAGIC) {
      return absl::NotFoundError(
          absl::StrCat("netns ", path, " is gone (no longer a namespace file)"));
    }
    ASSIGN_OR_RETURN(netns::Netns ns, netns::Netns::Open(path));
    ASSIGN_OR_RETURN(netlink::NlSock sock, netlink::OpenRouteSocketIn(ns));
    return netlink::ListLinks(sock);
  }

  const std::string host_netns_;
  const std::string sysfs_root_;
  std::optional<absl::StatusOr<std::vector<netlink::Link>>> host_;
  std::map<std::string, absl::StatusOr<std::vector<netlink::Link>>> pods_;
};

std::string ConfiguredIfname(const state::DevicePlan& dev) {
  if (dev.result.has_value() && !dev.result->ifname.empty()) return dev.result->ifname;
  if (dev.config.is_object()) {
    auto itf = dev.config.find("interface");
    if (itf != dev.config.end() && itf->is_object()) {
      auto name = itf->find("name");
      if (name != itf->end() && name->is_string()) return name->get<std::string>();
    }
  }
  return dev.identity.ifname;
}

std::string ConfiguredMac(const state::DevicePlan& dev) {
  if (!dev.config.is_object()) return "";
  auto itf = dev.config.find("interface");
  if (itf == dev.config.end() || !itf->is_object()) return "";
  auto mac = itf->find("hardwareAddr");
  return mac != itf->end() && mac->is_string() ? mac->get<std::string>() : "";
}

std::string Mode(const state::DevicePlan& dev) {
  if (dev.vfio) return "vfio";
  if (dev.config.is_object()) {
    auto cni = dev.config.find("cni");
    if (cni != dev.config.end() && !cni->is_null()) return "cni";
  }
  return "native";
}

LinkWant HostWant(const state::DevicePlan& dev, LiveView& live) {
  LinkWant w;
  w.pci_names = live.PciNetdevNames(dev.identity.pci_address);
  w.perm_mac = dev.identity.perm_mac;
  AddUnique(w.macs, dev.identity.mac);
  if (dev.host.has_value()) AddUnique(w.macs, dev.host->mac);
  AddUnique(w.names, dev.identity.ifname);
  if (dev.host.has_value()) AddUnique(w.names, dev.host->ifname);
  return w;
}

LinkWant PodWant(const state::DevicePlan& dev) {
  LinkWant w;
  w.perm_mac = dev.identity.perm_mac;
  if (dev.result.has_value()) AddUnique(w.macs, dev.result->mac);
  AddUnique(w.macs, ConfiguredMac(dev));
  AddUnique(w.macs, dev.identity.mac);
  AddUnique(w.names, ConfiguredIfname(dev));
  return w;
}

// Looks for the device in `links` (a query result); nullopt also when the query failed
// (callers that must tell the two apart look at the result themselves).
std::optional<LinkMatch> Find(const absl::StatusOr<std::vector<netlink::Link>>& links,
                              const LinkWant& want) {
  if (!links.ok()) return std::nullopt;
  return FindLink(*links, want);
}

void SetFound(StatusRow& row, Live live, const LinkMatch& m, std::string detail) {
  row.live = live;
  row.matched_by = m.by;
  row.live_detail = std::move(detail);
}

// Expected on the host (Prepared, Detached, Failed).
void CheckOnHost(const state::DevicePlan& dev, LiveView& live, StatusRow& row) {
  absl::StatusOr<std::vector<netlink::Link>> host = live.HostLinks();
  if (!host.ok()) {
    row.live = Live::kUnknown;
    row.live_detail = absl::StrCat("cannot list host links: ", host.status().ToString());
    return;
  }
  if (std::optional<LinkMatch> m = FindLink(*host, HostWant(dev, live))) {
    std::string detail = absl::StrCat("on the host as ", m->link.name);
    if (!dev.identity.ifname.empty() && m->link.name != dev.identity.ifname) {
      absl::StrAppend(&detail, " (prepared as ", dev.identity.ifname, ")");
    }
    SetFound(row, Live::kOk, *m, std::move(detail));
    return;
  }
  if (dev.result.has_value() && !dev.result->netns.empty()) {
    if (std::optional<LinkMatch> m = Find(live.LinksIn(dev.result->netns), PodWant(dev))) {
      SetFound(row, Live::kInPod, *m,
               absl::StrCat("still in ", dev.result->netns, " as ", m->link.name,
                            ", expected on the host"));
      return;
    }
  }
  row.live = Live::kMissing;
  row.live_detail = "not on the host";
}

void CheckAttached(const state::DevicePlan& dev, LiveView& live, StatusRow& row) {
  if (!dev.result.has_value() || dev.result->netns.empty()) {
    row.live = Live::kUnknown;
    row.live_detail = "plan says Attached but records no pod netns";
    return;
  }
  const std::string& netns = dev.result->netns;
  const std::string& want_name = dev.result->ifname;
  absl::StatusOr<std::vector<netlink::Link>> pod = live.LinksIn(netns);
  if (pod.ok()) {
    if (std::optional<LinkMatch> m = FindLink(*pod, PodWant(dev))) {
      if (want_name.empty() || m->link.name == want_name) {
        SetFound(row, Live::kOk, *m, absl::StrCat("in ", netns, " as ", m->link.name));
      } else {
        SetFound(row, Live::kRenamed, *m,
                 absl::StrCat("in ", netns, " as ", m->link.name, ", plan says ", want_name));
      }
      return;
    }
  } else if (!absl::IsNotFound(pod.status())) {
    row.live = Live::kUnknown;
    row.live_detail = absl::StrCat("cannot list links of ", netns, ": ", pod.status().ToString());
    return;
  }
  // Not in the pod netns (or the netns is gone): is it back on the host?
  std::string where =
      pod.ok() ? absl::StrCat("not in ", netns) : std::string(pod.status().message());
  absl::StatusOr<std::vector<netlink::Link>> host = live.HostLinks();
  if (std::optional<LinkMatch> m = Find(host, HostWant(dev, live))) {
    SetFound(row, Live::kInHost, *m,
             absl::StrCat(where, "; the device is on the host as ", m->link.name));
    return;
  }
  row.live = pod.ok() ? Live::kMissing : Live::kNetnsGone;
  row.live_detail =
      host.ok() ? absl::StrCat(where, " and not on the host")
                : absl::StrCat(where, "; cannot list host links: ", host.status().ToString());
}

void CheckAttaching(const state::DevicePlan& dev, LiveView& live, StatusRow& row) {
  absl::StatusOr<std::vector<netlink::Link>> host = live.HostLinks();
  if (std::optional<LinkMatch> m = Find(host, HostWant(dev, live))) {
    SetFound(row, Live::kOk, *m,
             absl::StrCat("on the host as ", m->link.name, " (attach in progress or interrupted)"));
    return;
  }
  if (dev.result.has_value() && !dev.result->netns.empty()) {
    if (std::optional<LinkMatch> m = Find(live.LinksIn(dev.result->netns), PodWant(dev))) {
      SetFound(row, Live::kOk, *m, absl::StrCat("in ", dev.result->netns, " as ", m->link.name));
      return;
    }
  }
  row.live = host.ok() ? Live::kMissing : Live::kUnknown;
  row.live_detail = host.ok() ? "not on the host (attach in progress, or in the pod netns)"
                              : absl::StrCat("cannot list host links: ", host.status().ToString());
}

std::string PodLabel(const StatusRow& r) {
  if (!r.pod_name.empty()) {
    return r.pod_namespace.empty() ? r.pod_name : absl::StrCat(r.pod_namespace, "/", r.pod_name);
  }
  if (!r.pod_uid.empty()) return absl::StrCat("uid:", r.pod_uid);
  return "-";
}

std::string ClaimLabel(const StatusRow& r) {
  if (!r.claim_name.empty()) return absl::StrCat(r.claim_namespace, "/", r.claim_name);
  return absl::StrCat("uid:", r.claim_uid);
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

struct StatusFlags {
  std::string state_dir = "/var/lib/knd";
  std::string output = "text";
  std::string host_netns;
  std::string sysfs_root = "/sys";
};

int RunStatus(const StatusFlags& f) {
  absl::StatusOr<PlanFiles> files = ReadPlans(f.state_dir);
  if (!files.ok()) {
    std::cerr << "kndctl status: " << files.status().ToString()
              << " (is knd-driver deployed on this node? see --state-dir)\n";
    return 1;
  }
  std::unique_ptr<LiveView> live = NewSystemLiveView(f.host_netns, f.sysfs_root);
  StatusReport report;
  report.state_dir = f.state_dir;
  report.rows = BuildRows(files->plans, *live);
  report.problems = std::move(files->problems);
  if (f.output == "json") {
    std::cout << DumpJson(StatusToJson(report), 2) << "\n";
  } else {
    std::cout << RenderStatusText(report);
  }
  return 0;
}

}  // namespace

std::unique_ptr<LiveView> NewSystemLiveView(std::string host_netns, std::string sysfs_root) {
  return std::make_unique<SystemLiveView>(std::move(host_netns), std::move(sysfs_root));
}

std::optional<LinkMatch> FindLink(const std::vector<netlink::Link>& links, const LinkWant& want) {
  for (const std::string& name : want.pci_names) {
    for (const netlink::Link& l : links) {
      if (l.name == name) return LinkMatch{l, "pci"};
    }
  }
  // A permanent MAC is the device's own: when we know it, nothing else may stand in for it.
  if (!want.perm_mac.empty()) {
    for (const netlink::Link& l : links) {
      if (MacEq(l.perm_mac, want.perm_mac)) return LinkMatch{l, "permanent mac"};
    }
    return std::nullopt;
  }
  if (!want.macs.empty()) {
    for (const std::string& mac : want.macs) {
      for (const netlink::Link& l : links) {
        if (MacEq(l.mac, mac)) return LinkMatch{l, "mac"};
      }
    }
    return std::nullopt;
  }
  for (const std::string& name : want.names) {
    for (const netlink::Link& l : links) {
      if (l.name == name) return LinkMatch{l, "name"};
    }
  }
  return std::nullopt;
}

std::string_view ToString(Live l) {
  switch (l) {
    case Live::kOk:
      return "ok";
    case Live::kRenamed:
      return "renamed";
    case Live::kInHost:
      return "in host netns";
    case Live::kInPod:
      return "in pod netns";
    case Live::kNetnsGone:
      return "netns gone";
    case Live::kMissing:
      return "missing";
    case Live::kUnknown:
      return "unknown";
  }
  return "unknown";
}

bool IsMismatch(Live l) { return l != Live::kOk; }

absl::StatusOr<PlanFiles> ReadPlans(const std::string& state_dir) {
  DIR* top = ::opendir(state_dir.c_str());
  if (top == nullptr) return ErrnoStatus(absl::StrCat("state dir ", state_dir));
  ::closedir(top);
  PlanFiles out;
  const std::string dir = state_dir + "/plans";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return out;  // no claim prepared yet
    return ErrnoStatus(absl::StrCat("plan dir ", dir));
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    // Temp files of an interrupted atomic write start with '.'; ".corrupt" files were moved
    // aside by the driver and are not plans any more.
    if (n.empty() || n.front() == '.' || !absl::EndsWith(n, ".json")) continue;
    names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir, "/", name);
    absl::StatusOr<std::string> data = ReadFile(path);
    if (!data.ok()) {
      out.problems.push_back(data.status().ToString());
      continue;
    }
    json j = json::parse(*data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      out.problems.push_back(absl::StrCat(path, ": not valid JSON"));
      continue;
    }
    absl::StatusOr<state::ClaimPlan> plan = state::ClaimPlanFromJson(j);
    if (!plan.ok()) {
      out.problems.push_back(absl::StrCat(path, ": ", plan.status().message()));
      continue;
    }
    out.plans.push_back(*std::move(plan));
  }
  return out;
}

// A VF that Prepare binds to vfio-pci has no netdev until Unprepare: where it is, is the PCI
// driver it is bound to.
void CheckVfio(const state::DevicePlan& dev, LiveView& live, StatusRow& row) {
  const std::string driver = live.PciDriver(dev.identity.pci_address);
  if (driver == "vfio-pci") {
    row.live = Live::kOk;
    row.matched_by = "pci";
    row.live_detail = absl::StrCat("VF ", dev.identity.pci_address, " on vfio-pci (IOMMU group ",
                                   dev.vfio->group.empty() ? "?" : dev.vfio->group, ")");
    return;
  }
  if (dev.vfio->group.empty() && driver == dev.vfio->kernel_driver) {
    row.live = Live::kOk;
    row.matched_by = "pci";
    row.live_detail = absl::StrCat("VF ", dev.identity.pci_address, " on ", driver,
                                   ", not bound to vfio-pci yet (Prepare in progress or stopped)");
    return;
  }
  row.live = Live::kMissing;
  row.live_detail = absl::StrCat("VF ", dev.identity.pci_address, " is not on vfio-pci (driver: ",
                                 driver.empty() ? "none, or the VF is gone" : driver, ")");
}

void CheckLive(const state::DevicePlan& dev, LiveView& live, StatusRow& row) {
  if (dev.vfio) {
    CheckVfio(dev, live, row);
    return;
  }
  switch (dev.state) {
    case state::DeviceState::kAttached:
      CheckAttached(dev, live, row);
      return;
    case state::DeviceState::kAttaching:
      CheckAttaching(dev, live, row);
      return;
    case state::DeviceState::kPrepared:
    case state::DeviceState::kDetached:
    case state::DeviceState::kFailed:
      CheckOnHost(dev, live, row);
      return;
  }
}

std::vector<StatusRow> BuildRows(const std::vector<state::ClaimPlan>& plans, LiveView& live) {
  std::vector<StatusRow> rows;
  for (const state::ClaimPlan& plan : plans) {
    for (const state::DevicePlan& dev : plan.devices) {
      StatusRow r;
      r.claim_namespace = plan.claim_namespace;
      r.claim_name = plan.claim_name;
      r.claim_uid = plan.claim_uid;
      const state::PodRef* pod = nullptr;
      for (const state::PodRef& p : plan.pods) {
        if (!dev.pod_uid.empty() && p.uid == dev.pod_uid) pod = &p;
      }
      if (pod == nullptr && dev.pod_uid.empty() && plan.pods.size() == 1) pod = &plan.pods[0];
      if (pod != nullptr) {
        r.pod_namespace = pod->namespace_;
        r.pod_name = pod->name;
        r.pod_uid = pod->uid;
      } else if (!dev.pod_uid.empty()) {
        r.pod_uid = dev.pod_uid;
      } else if (!plan.pods.empty()) {
        // A claim shared by several pods, none attached yet.
        std::vector<std::string> names;
        for (const state::PodRef& p : plan.pods) names.push_back(p.name);
        r.pod_namespace = plan.pods.front().namespace_;
        r.pod_name = absl::StrJoin(names, ",");
      }
      r.request = dev.request;
      r.device = dev.device;
      r.ifname = ConfiguredIfname(dev);
      r.mode = Mode(dev);
      r.state = std::string(state::ToString(dev.state));
      if (dev.result.has_value()) r.netns = dev.result->netns;
      r.note = dev.note;
      CheckLive(dev, live, r);
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::string RenderStatusText(const StatusReport& report) {
  std::string out;
  if (report.rows.empty()) {
    absl::StrAppend(&out, "No device plans in ", report.state_dir,
                    "/plans: knd has prepared no claim on this node.\n");
  } else {
    std::vector<std::vector<std::string>> table = {
        {"POD", "CLAIM", "REQUEST", "DEVICE", "IFNAME", "MODE", "STATE", "LIVE"}};
    for (const StatusRow& r : report.rows) {
      std::string live(ToString(r.live));
      if (IsMismatch(r.live)) live = absl::StrCat("! ", live);
      table.push_back({PodLabel(r), ClaimLabel(r), OrDash(r.request), OrDash(r.device),
                       OrDash(r.ifname), r.mode, r.state, live});
    }
    std::vector<size_t> width(table.front().size(), 0);
    for (const auto& line : table) {
      for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
    }
    for (const auto& line : table) {
      std::string text;
      for (size_t i = 0; i < line.size(); ++i) {
        text += line[i];
        if (i + 1 < line.size()) text += std::string(width[i] - line[i].size() + 2, ' ');
      }
      absl::StrAppend(&out, text, "\n");
    }
    size_t mismatches = 0;
    for (const StatusRow& r : report.rows) mismatches += IsMismatch(r.live) ? 1 : 0;
    if (mismatches > 0) {
      absl::StrAppend(&out, "\nMismatches (plan vs. live system):\n");
      for (const StatusRow& r : report.rows) {
        if (!IsMismatch(r.live)) continue;
        absl::StrAppend(&out, "  claim ", ClaimLabel(r), " device ", OrDash(r.device), ": ",
                        std::string(ToString(r.live)), " - ", r.live_detail, "\n");
      }
    }
    bool notes = false;
    for (const StatusRow& r : report.rows) {
      if (r.note.empty()) continue;
      if (!notes) absl::StrAppend(&out, "\nNotes:\n");
      notes = true;
      absl::StrAppend(&out, "  claim ", ClaimLabel(r), " device ", OrDash(r.device), ": ", r.note,
                      "\n");
    }
    absl::StrAppend(&out, "\n", report.rows.size(), " device(s), ", mismatches, " mismatch(es)\n");
  }
  if (!report.problems.empty()) {
    absl::StrAppend(&out, "\nUnreadable plan files:\n");
    for (const std::string& p : report.problems) absl::StrAppend(&out, "  ", p, "\n");
  }
  return out;
}

json StatusToJson(const StatusReport& report) {
  json devices = json::array();
  for (const StatusRow& r : report.rows) {
    json d = {
        {"pod", {{"namespace", r.pod_namespace}, {"name", r.pod_name}, {"uid", r.pod_uid}}},
        {"claim", {{"namespace", r.claim_namespace}, {"name", r.claim_name}, {"uid", r.claim_uid}}},
        {"request", r.request},
        {"device", r.device},
        {"interfaceName", r.ifname},
        {"mode", r.mode},
        {"state", r.state},
        {"netns", r.netns},
        {"live",
         {{"status", std::string(ToString(r.live))},
          {"ok", !IsMismatch(r.live)},
          {"detail", r.live_detail},
          {"matchedBy", r.matched_by}}},
        {"note", r.note},
    };
    devices.push_back(std::move(d));
  }
  return {{"stateDir", report.state_dir}, {"devices", devices}, {"problems", report.problems}};
}

void AddStatusCommand(CLI::App& app, int& rc) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* cmd = app.add_subcommand(
      "status", "Every device plan on this node, checked against the live system");
  cmd->add_option("--state-dir", flags->state_dir, "knd-driver's state directory")
      ->capture_default_str();
  cmd->add_option("-o,--output", flags->output, "Output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--host-netns", flags->host_netns,
                  "Network namespace that counts as the host (default: this process's)")
      ->check(CLI::ExistingPath);
  cmd->add_option("--sysfs-root", flags->sysfs_root, "sysfs of the host (PCI lookups)")
      ->capture_default_str();
  cmd->callback([flags, &rc] { rc = RunStatus(*flags); });
}

}  // namespace knd::kndctl
