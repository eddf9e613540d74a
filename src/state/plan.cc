#include "state/plan.h"

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace knd::state {
namespace {

using nlohmann::json;

std::optional<DeviceState> ParseState(const std::string& s) {
  for (DeviceState d : {DeviceState::kPrepared, DeviceState::kAttaching, DeviceState::kAttached,
                        DeviceState::kDetached, DeviceState::kFailed}) {
    if (ToString(d) == s) return d;
  }
  return std::nullopt;
}

// An integer field into `out`: missing -> `def`; an integer that fits out's type -> it; a
// float, a string or an integer out of range throws (reported by ClaimPlanFromJson).
// nlohmann's own value()/get<int>() casts a float to the integer type, which is undefined
// behaviour when it does not fit (found by state_files_fuzz: 1.8e37 as preparedAtUnix).
template <typename T, typename D>
void SetInt(const json& j, const char* key, T& out, D def) {
  auto it = j.find(key);
  if (it == j.end()) {
    out = static_cast<T>(def);
    return;
  }
  if (it->is_number_unsigned()) {
    if (uint64_t v = it->get<uint64_t>(); std::in_range<T>(v)) {
      out = static_cast<T>(v);
      return;
    }
  } else if (it->is_number_integer()) {
    if (int64_t v = it->get<int64_t>(); std::in_range<T>(v)) {
      out = static_cast<T>(v);
      return;
    }
  }
  throw std::invalid_argument(
      absl::StrCat(key, ": expected an integer of its range, got ", it->dump()));
}

json RouteToJson(const IpRoute& r) {
  return {{"destination", r.destination},
          {"gateway", r.gateway},
          {"table", r.table},
          {"metric", r.metric},
          {"scope", r.scope}};
}

IpRoute RouteFromJson(const json& j) {
  IpRoute r;
  r.destination = j.at("destination").get<std::string>();
  r.gateway = j.value("gateway", std::string());
  SetInt(j, "table", r.table, 254);
  SetInt(j, "metric", r.metric, 0);
  SetInt(j, "scope", r.scope, 0);
  return r;
}

// Missing keys take their defaults (older files, hand-edited files); wrong types throw and are
// reported by ClaimPlanFromJson.
DevicePlan DeviceFromJson(const json& j) {
  DevicePlan d;
  d.request = j.value("request", std::string());
  d.pool = j.value("pool", std::string());
  d.device = j.at("device").get<std::string>();
  if (auto it = j.find("identity"); it != j.end()) {
    d.identity.pci_address = it->value("pciAddress", std::string());
    d.identity.perm_mac = it->value("permMac", std::string());
    d.identity.mac = it->value("mac", std::string());
    SetInt(*it, "ifindex", d.identity.ifindex, 0);
    d.identity.ifname = it->value("ifname", std::string());
  }
  d.config = j.value("config", json());
  d.ipam_result = j.value("ipamResult", json());
  std::string st = j.value("state", std::string(ToString(DeviceState::kPrepared)));
  auto parsed = ParseState(st);
  if (!parsed) throw std::invalid_argument(absl::StrCat("unknown device state \"", st, "\""));
  d.state = *parsed;
  d.pod_uid = j.value("podUid", std::string());
  d.share_id = j.value("shareID", std::string());
  if (auto it = j.find("child"); it != j.end() && it->is_object()) {
    ChildPlan c;
    c.type = it->at("type").get<std::string>();
    c.mode = it->value("mode", std::string());
    SetInt(*it, "vlanId", c.vlan_id, 0);
    c.mac = it->value("mac", std::string());
    d.child = std::move(c);
  }
  if (auto it = j.find("rdma"); it != j.end() && it->is_object()) {
    d.rdma_device = it->value("device", std::string());
    d.rdma_char_devices = it->value("charDevices", std::vector<std::string>());
  }
  if (auto it = j.find("vfio"); it != j.end() && it->is_object()) {
    VfioPlan v;
    v.kernel_driver = it->at("kernelDriver").get<std::string>();
    v.group = it->value("group", std::string());
    v.device_nodes = it->value("deviceNodes", std::vector<std::string>());
    d.vfio = std::move(v);
  }
  if (auto it = j.find("host"); it != j.end() && !it->is_null()) {
    HostSnapshot h;
    h.ifname = it->value("ifname", std::string());
    SetInt(*it, "mtu", h.mtu, 0);
    SetInt(*it, "gsoMaxSize", h.gso_max_size, 0);
    SetInt(*it, "groMaxSize", h.gro_max_size, 0);
    SetInt(*it, "gsoIPv4MaxSize", h.gso_ipv4_max_size, 0);
    SetInt(*it, "groIPv4MaxSize", h.gro_ipv4_max_size, 0);
    h.mac = it->value("mac", std::string());
    h.up = it->value("up", false);
    h.addresses = it->value("addresses", std::vector<std::string>());
    for (const auto& r : it->value("routes", json::array())) h.routes.push_back(RouteFromJson(r));
    if (auto sc = it->find("sysctls"); sc != it->end() && sc->is_object()) {
      for (const auto& [k, v] : sc->items()) {
        if (v.is_string()) h.sysctls[k] = v.get<std::string>();
      }
    }
    for (const auto& [key, out] : {std::pair{"ethtoolFeatures", &h.ethtool_features},
                                   std::pair{"ethtoolPrivateFlags", &h.ethtool_private_flags}}) {
      auto ef = it->find(key);
      if (ef == it->end() || !ef->is_object()) continue;
      for (const auto& [k, v] : ef->items()) {
        if (v.is_boolean()) (*out)[k] = v.get<bool>();
      }
    }
    for (const auto& [key, out] : {std::pair{"ethtoolChannels", &h.ethtool_channels},
                                   std::pair{"ethtoolRings", &h.ethtool_rings}}) {
      auto ec = it->find(key);
      if (ec == it->end() || !ec->is_object()) continue;
      for (const auto& [k, v] : ec->items()) {
        if (v.is_number_unsigned() && v.get<uint64_t>() <= UINT32_MAX) {
          (*out)[k] = v.get<uint32_t>();
        }
      }
    }
    if (auto v = it->find("vf"); v != it->end() && v->is_object()) {
      VfSnapshot vf;
      vf.pf_pci = v->value("pfPciAddress", std::string());
      SetInt(*v, "index", vf.index, 0);
      vf.mac = v->value("mac", std::string());
      SetInt(*v, "vlan", vf.vlan, 0);
      SetInt(*v, "qos", vf.qos, 0);
      if (v->contains("spoofCheck")) vf.spoof_check = v->at("spoofCheck").get<bool>();
      if (v->contains("trust")) vf.trust = v->at("trust").get<bool>();
      if (v->contains("linkState")) {
        uint32_t link_state = 0;
        SetInt(*v, "linkState", link_state, 0);
        vf.link_state = link_state;
      }
      SetInt(*v, "minTxRate", vf.min_tx_rate, 0);
      SetInt(*v, "maxTxRate", vf.max_tx_rate, 0);
      h.vf = std::move(vf);
    }
    d.host = std::move(h);
  }
  if (auto it = j.find("result"); it != j.end() && !it->is_null()) {
    AttachResult r;
    r.netns = it->value("netns", std::string());
    r.ifname = it->value("ifname", std::string());
    r.mac = it->value("mac", std::string());
    r.ips = it->value("ips", std::vector<std::string>());
    r.cni_result = it->value("cniResult", json());
    d.result = std::move(r);
  }
  d.attached_by = j.value("attachedBy", std::string());
  d.note = j.value("note", std::string());
  return d;
}

}  // namespace

std::string_view ToString(DeviceState s) {
  switch (s) {
    case DeviceState::kPrepared:
      return "Prepared";
    case DeviceState::kAttaching:
      return "Attaching";
    case DeviceState::kAttached:
      return "Attached";
    case DeviceState::kDetached:
      return "Detached";
    case DeviceState::kFailed:
      return "Failed";
  }
  return "Unknown";
}

json ToJson(const ClaimPlan& plan) {
  json devices = json::array();
  for (const DevicePlan& d : plan.devices) {
    json jd = {{"request", d.request},
               {"pool", d.pool},
               {"device", d.device},
               {"identity",
                {{"pciAddress", d.identity.pci_address},
                 {"permMac", d.identity.perm_mac},
                 {"mac", d.identity.mac},
                 {"ifindex", d.identity.ifindex},
                 {"ifname", d.identity.ifname}}},
               {"config", d.config},
               {"ipamResult", d.ipam_result},
               {"state", std::string(ToString(d.state))},
               {"podUid", d.pod_uid},
               {"note", d.note}};
    if (!d.attached_by.empty()) jd["attachedBy"] = d.attached_by;
    if (!d.share_id.empty()) jd["shareID"] = d.share_id;
    if (d.child) {
      json c = {{"type", d.child->type}};
      if (!d.child->mode.empty()) c["mode"] = d.child->mode;
      if (d.child->vlan_id != 0) c["vlanId"] = d.child->vlan_id;
      if (!d.child->mac.empty()) c["mac"] = d.child->mac;
      jd["child"] = std::move(c);
    }
    if (!d.rdma_device.empty()) {
      jd["rdma"] = {{"device", d.rdma_device}, {"charDevices", d.rdma_char_devices}};
    }
    if (d.vfio) {
      jd["vfio"] = {{"kernelDriver", d.vfio->kernel_driver},
                    {"group", d.vfio->group},
                    {"deviceNodes", d.vfio->device_nodes}};
    }
    if (d.host) {
      json routes = json::array();
      for (const auto& r : d.host->routes) routes.push_back(RouteToJson(r));
      jd["host"] = {{"ifname", d.host->ifname},
                    {"mtu", d.host->mtu},
                    {"mac", d.host->mac},
                    {"up", d.host->up},
                    {"addresses", d.host->addresses},
                    {"routes", routes}};
      if (!d.host->sysctls.empty()) jd["host"]["sysctls"] = d.host->sysctls;
      if (!d.host->ethtool_features.empty()) {
        jd["host"]["ethtoolFeatures"] = d.host->ethtool_features;
      }
      if (!d.host->ethtool_channels.empty()) {
        jd["host"]["ethtoolChannels"] = d.host->ethtool_channels;
      }
      if (!d.host->ethtool_rings.empty()) jd["host"]["ethtoolRings"] = d.host->ethtool_rings;
      if (!d.host->ethtool_private_flags.empty()) {
        jd["host"]["ethtoolPrivateFlags"] = d.host->ethtool_private_flags;
      }
      if (d.host->gso_max_size != 0) jd["host"]["gsoMaxSize"] = d.host->gso_max_size;
      if (d.host->gro_max_size != 0) jd["host"]["groMaxSize"] = d.host->gro_max_size;
      if (d.host->gso_ipv4_max_size != 0) {
        jd["host"]["gsoIPv4MaxSize"] = d.host->gso_ipv4_max_size;
      }
      if (d.host->gro_ipv4_max_size != 0) {
        jd["host"]["groIPv4MaxSize"] = d.host->gro_ipv4_max_size;
      }
      if (const std::optional<VfSnapshot>& vf = d.host->vf) {
        json jv = {{"pfPciAddress", vf->pf_pci},
                   {"index", vf->index},
                   {"mac", vf->mac},
                   {"vlan", vf->vlan},
                   {"qos", vf->qos},
                   {"minTxRate", vf->min_tx_rate},
                   {"maxTxRate", vf->max_tx_rate}};
        if (vf->spoof_check) jv["spoofCheck"] = *vf->spoof_check;
        if (vf->trust) jv["trust"] = *vf->trust;
        if (vf->link_state) jv["linkState"] = *vf->link_state;
        jd["host"]["vf"] = std::move(jv);
      }
    }
    if (d.result) {
      jd["result"] = {{"netns", d.result->netns},
                      {"ifname", d.result->ifname},
                      {"mac", d.result->mac},
                      {"ips", d.result->ips},
                      {"cniResult", d.result->cni_result}};
    }
    devices.push_back(std::move(jd));
  }
  json pods = json::array();
  for (const PodRef& p : plan.pods) {
    pods.push_back({{"uid", p.uid}, {"namespace", p.namespace_}, {"name", p.name}});
  }
  return {{"version", kPlanVersion},
          {"claimUid", plan.claim_uid},
          {"claimNamespace", plan.claim_namespace},
          {"claimName", plan.claim_name},
          {"pods", pods},
          {"devices", devices},
          {"cdiDeviceIds", plan.cdi_device_ids},
          {"preparedAtUnix", plan.prepared_at_unix}};
}

absl::StatusOr<ClaimPlan> ClaimPlanFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("plan: expected a JSON object");
  // Every plan knd ever wrote carries its version: without one, the file is no plan of knd's
  // (corrupt); with another one, it is a plan this knd cannot read, and says so.
  auto v = j.find("version");
  if (v == j.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan: no format version (this knd reads version ", kPlanVersion, ")"));
  }
  if (!v->is_number_integer() || v->get<int64_t>() != kPlanVersion) {
    return absl::FailedPreconditionError(absl::StrCat("plan: unsupported version ", v->dump(),
                                                      " (this knd reads version ", kPlanVersion,
                                                      "; a newer knd wrote it?)"));
  }
  // The file is knd's own; a type mismatch means corruption. nlohmann's typed getters throw,
  // so this is the one place that turns their exceptions into a Status.
  try {
    ClaimPlan p;
    p.claim_uid = j.at("claimUid").get<std::string>();
    if (p.claim_uid.empty()) return absl::InvalidArgumentError("plan: empty claimUid");
    p.claim_namespace = j.value("claimNamespace", std::string());
    p.claim_name = j.value("claimName", std::string());
    for (const auto& jp : j.value("pods", json::array())) {
      p.pods.push_back({jp.at("uid").get<std::string>(), jp.value("namespace", std::string()),
                        jp.value("name", std::string())});
    }
    for (const auto& jd : j.value("devices", json::array()))
      p.devices.push_back(DeviceFromJson(jd));
    p.cdi_device_ids = j.value("cdiDeviceIds", std::vector<std::string>());
    SetInt(j, "preparedAtUnix", p.prepared_at_unix, 0);
    return p;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("plan: ", e.what()));
  }
}

std::string InPodName(const DevicePlan& d) {
  if (d.result && !d.result->ifname.empty()) return d.result->ifname;
  if (auto it = d.config.find("interface"); it != d.config.end() && it->is_object()) {
    if (auto n = it->find("name"); n != it->end() && n->is_string() && !n->empty()) {
      return n->get<std::string>();
    }
  }
  return d.identity.ifname;
}

}  // namespace knd::state
