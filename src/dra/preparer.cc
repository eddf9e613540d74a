#include "dra/preparer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "common/text.h"
#include "config/network_config.h"
#include "kube/events.h"
#include "state/cdi.h"

namespace knd::dra {
namespace {

using nlohmann::json;

// Non-throwing accessors: the API hands us arbitrary JSON and a missing or mistyped field
// must become an error message, never an exception or an assert.
const json* Field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

const json& Arr(const json& j, const char* key) {
  static const json kEmpty = json::array();
  const json* f = Field(j, key);
  return f != nullptr && f->is_array() ? *f : kEmpty;
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// IPAM of a native attachment: stable per claim UID + device, so a repeated Prepare and the
// Unprepare after a restart address the same allocation.
cni::RuntimeConf IpamRuntime(const state::ClaimPlan& plan, const state::DevicePlan& d) {
  cni::RuntimeConf rt;
  rt.container_id = cni::IpamContainerId(plan.claim_uid, d.device);
  rt.ifname = state::InPodName(d);
  rt.args = {{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", plan.claim_namespace}};
  if (!plan.pods.empty()) {
    rt.args.emplace_back("K8S_POD_NAME", plan.pods[0].name);
    rt.args.emplace_back("K8S_POD_UID", plan.pods[0].uid);
  }
  return rt;
}

// The variable that carries a vfio-pci VF's PCI address to the containers:
// KND_PCI_ADDRESS_<REQUEST>, the request name upper-cased with '-' and '.' as '_'.
std::string VfioEnvName(const std::string& request) {
  std::string name = "KND_PCI_ADDRESS_";
  for (char c : request) {
    name += (c == '-' || c == '.') ? '_'
                                   : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

// A plan with a VF for vfio-pci that is not bound yet (its group is not known).
bool NeedsVfioBind(const state::ClaimPlan& plan) {
  for (const state::DevicePlan& d : plan.devices) {
    if (d.vfio && d.vfio->group.empty()) return true;
  }
  return false;
}

}  // namespace

std::string BaseRequestName(const std::string& request) {
  auto slash = request.find('/');
  return slash == std::string::npos ? request : request.substr(0, slash);
}

Preparer::Preparer(kube::Client& kube, state::PlanStore& plans, Resolver resolver, Options opts)
    : kube_(kube), plans_(plans), resolver_(std::move(resolver)), opts_(std::move(opts)) {}

// RAII holder of the per-claim mutex; the map entry goes away with its last user.
class Preparer::ClaimLock {
 public:
  ClaimLock(Preparer& p, const std::string& uid) : p_(p), uid_(uid), mu_(p.LockFor(uid)) {
    mu_->lock();
  }
  ~ClaimLock() {
    mu_->unlock();
    p_.ReleaseLock(uid_);
  }
  ClaimLock(const ClaimLock&) = delete;
  ClaimLock& operator=(const ClaimLock&) = delete;

 private:
  Preparer& p_;
  std::string uid_;
  std::shared_ptr<std::mutex> mu_;
};

std::shared_ptr<std::mutex> Preparer::LockFor(const std::string& uid) {
  std::lock_guard<std::mutex> l(locks_mu_);
  LockEntry& e = locks_[uid];
  if (!e.mu) e.mu = std::make_shared<std::mutex>();
  ++e.users;
  return e.mu;
}

void Preparer::ReleaseLock(const std::string& uid) {
  std::lock_guard<std::mutex> l(locks_mu_);
  auto it = locks_.find(uid);
  if (it != locks_.end() && --it->second.users == 0) locks_.erase(it);
}

std::vector<PreparedDevice> Preparer::Answer(const state::ClaimPlan& plan) const {
  std::vector<PreparedDevice> out;
  out.reserve(plan.devices.size());
  for (const auto& d : plan.devices) {
    // The plan keeps claim-level CDI ids (one CDI device per claim carries all container
    // edits); every device of the claim hands them out so any container that references
    // any request of the claim gets them.
    out.push_back(PreparedDevice{{d.request}, d.pool, d.device, plan.cdi_device_ids, d.share_id});
  }
  return out;
}

absl::StatusOr<std::vector<PreparedDevice>> Preparer::Prepare(const ClaimRef& claim,
                                                              Clock::time_point deadline) {
  if (deadline == Clock::time_point{}) deadline = Clock::now() + opts_.device_wait;
  std::string reason = kube::event_reason::kPrepareFailed;
  absl::StatusOr<std::vector<PreparedDevice>> r = PrepareClaim(claim, deadline, reason);
  if (!r.ok() && opts_.on_failure) opts_.on_failure(claim, reason, r.status());
  return r;
}

absl::StatusOr<std::vector<PreparedDevice>> Preparer::PrepareClaim(const ClaimRef& claim,
                                                                   Clock::time_point deadline,
                                                                   std::string& reason) {
  const std::string where = absl::StrCat("claim ", claim.namespace_, "/", claim.name);
  if (claim.uid.empty() || claim.namespace_.empty() || claim.name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the kubelet request lacks namespace, name or uid"));
  }
  ClaimLock lock(*this, claim.uid);

  // Retry of a claim we already prepared: answer from the plan, touch nothing.
  absl::StatusOr<state::ClaimPlan> existing = plans_.Get(claim.uid);
  if (existing.ok()) {
    if (existing->claim_namespace != claim.namespace_ || existing->claim_name != claim.name) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": uid ", claim.uid, " is already prepared as claim ",
                       existing->claim_namespace, "/", existing->claim_name));
    }
    if (NeedsVfioBind(*existing)) {
      // A Prepare that stopped (a crash) between writing the plan and binding its VFs.
      state::ClaimPlan plan = *std::move(existing);
      if (absl::Status st = FinishVfio(plan); !st.ok()) return st;
      return Answer(plan);
    }
    SPDLOG_DEBUG("{}: already prepared, answering from the plan", where);
    return Answer(*existing);
  }
  if (!absl::IsNotFound(existing.status())) {
    return Annotate(existing.status(), absl::StrCat(where, ": reading the plan"));
  }

  absl::StatusOr<state::ClaimPlan> built = BuildPlan(claim);
  if (!built.ok()) {
    const absl::Status& st = built.status();
    if (absl::IsInvalidArgument(st) || absl::IsFailedPrecondition(st)) {
      reason = kube::event_reason::kInvalidConfig;
    } else if (absl::IsNotFound(st) && absl::StrContains(st.message(), "(cni.networkAttachment)")) {
      reason = kube::event_reason::kNADNotFound;
    } else if (absl::IsNotFound(st) && absl::StrContains(st.message(), ": device ")) {
      reason = kube::event_reason::kDeviceNotFound;
    }
    return st;
  }
  state::ClaimPlan plan = *std::move(built);
  // Before anything is allocated or written: every device can be attached now.
  for (const state::DevicePlan& d : plan.devices) {
    if (absl::Status st = AwaitDevice(plan, d, deadline); !st.ok()) {
      reason = absl::IsUnavailable(st) ? kube::event_reason::kDeviceBusy
                                       : kube::event_reason::kDeviceNotFound;
      return st;
    }
    if (absl::Status st = CheckDevice(plan, d); !st.ok()) {
      reason = absl::IsNotFound(st) ? kube::event_reason::kDeviceNotFound
                                    : kube::event_reason::kInvalidConfig;
      return st;
    }
  }
  if (absl::Status st = AllocateIpam(plan); !st.ok()) {
    reason = kube::event_reason::kIPAMFailed;
    return st;
  }
  if (NeedsVfioBind(plan)) {
    // Crash-safe: the plan names each VF's kernel driver before any VF leaves it.
    if (absl::Status st = plans_.Put(plan); !st.ok()) {
      (void)ReleaseIpam(plan);
      return Annotate(st, absl::StrCat(where, ": persisting the plan"));
    }
    if (absl::Status st = FinishVfio(plan); !st.ok()) {
      (void)ReleaseIpam(plan);
      return st;
    }
    spdlog::info("{} (uid {}): prepared {} device(s)", where, claim.uid, plan.devices.size());
    return Answer(plan);
  }
  if (absl::Status st = WriteClaimCdi(plan); !st.ok()) {
    (void)ReleaseIpam(plan);
    return Annotate(st, absl::StrCat(where, ": writing the CDI spec"));
  }
  if (absl::Status st = plans_.Put(plan); !st.ok()) {
    // Nothing may stay allocated or written for a claim we answer with an error.
    if (!plan.cdi_device_ids.empty()) {
      (void)state::RemoveClaimSpec(opts_.cdi_dir, kCdiKind, plan.claim_uid);
    }
    (void)ReleaseIpam(plan);
    return Annotate(st, absl::StrCat(where, ": persisting the plan"));
  }
  spdlog::info("{} (uid {}): prepared {} device(s)", where, claim.uid, plan.devices.size());
  return Answer(plan);
}

absl::StatusOr<state::ClaimPlan> Preparer::BuildPlan(const ClaimRef& claim) {
  const std::string where = absl::StrCat("claim ", claim.namespace_, "/", claim.name);
  const std::string path = absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", claim.namespace_,
                                        "/resourceclaims/", claim.name);
  absl::StatusOr<json> got = kube_.Get(path);
  if (!got.ok()) return Annotate(got.status(), absl::StrCat(where, ": reading the claim"));
  const json& obj = *got;

  const json* meta = Field(obj, "metadata");
  const std::string api_uid = meta ? JsonString(*meta, "uid") : std::string();
  if (api_uid != claim.uid) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": UID mismatch: kubelet asked for ", claim.uid, ", API has ",
                     api_uid.empty() ? "none" : api_uid, " (claim was replaced)"));
  }
  const json* status = Field(obj, "status");
  const json* alloc = status ? Field(*status, "allocation") : nullptr;
  if (alloc == nullptr || !alloc->is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": status.allocation is missing (the claim is not allocated)"));
  }

  // Consumers: pods only (a pod is what the NRI side attaches to).
  state::ClaimPlan plan;
  plan.claim_uid = claim.uid;
  plan.claim_namespace = claim.namespace_;
  plan.claim_name = claim.name;
  const json& reserved = Arr(*status, "reservedFor");
  for (size_t i = 0; i < reserved.size(); ++i) {
    const json& r = reserved[i];
    const std::string resource = JsonString(r, "resource");
    const std::string group = JsonString(r, "apiGroup");
    if (resource != "pods" || !group.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": status.reservedFor[", i, "] is ", group.empty() ? "" : group + "/",
                       resource.empty() ? "(no resource)" : resource, " ",
                       Quote(JsonString(r, "name")), ": knd only serves claims reserved for pods"));
    }
    plan.pods.push_back(
        state::PodRef{JsonString(r, "uid"), claim.namespace_, JsonString(r, "name")});
  }
  if (plan.pods.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": status.reservedFor has no pod (the claim is not reserved)"));
  }
  // The consumers: reserved pods that still exist under their UID and have not finished.
  // A claim keeps a pod in reservedFor for a moment after it is gone or done.
  std::vector<state::PodRef> live;
  std::vector<kube::PodFacts> live_facts;
  absl::Status first_gone;
  for (const state::PodRef& pod : plan.pods) {
    const std::string pod_where =
        absl::StrCat(where, ": reserved pod ", pod.namespace_, "/", pod.name);
    std::optional<kube::PodFacts> facts;
    if (opts_.pods != nullptr) facts = opts_.pods->Lookup(pod.namespace_, pod.name, pod.uid);
    if (!facts) {
      // Not seen by the watch yet, or seen with another UID (the watch may trail a
      // re-creation): only the API can say.
      absl::StatusOr<json> p =
          kube_.Get(absl::StrCat("/api/v1/namespaces/", pod.namespace_, "/pods/", pod.name));
      if (absl::IsNotFound(p.status())) {
        if (first_gone.ok()) {
          first_gone = absl::FailedPreconditionError(
              absl::StrCat(pod_where, ": the pod does not exist (any more)"));
        }
        continue;
      }
      if (!p.ok()) return Annotate(p.status(), pod_where);
      facts = kube::PodFactsOf(*p);
    }
    if (facts->uid != pod.uid) {
      if (first_gone.ok()) {
        first_gone = absl::FailedPreconditionError(
            absl::StrCat(pod_where, ": UID mismatch: reservedFor has ", pod.uid, ", API has ",
                         facts->uid.empty() ? "none" : facts->uid, " (pod was replaced)"));
      }
      continue;
    }
    if (facts->Terminal()) {
      if (first_gone.ok()) {
        first_gone = absl::FailedPreconditionError(
            absl::StrCat(pod_where, ": the pod has finished (phase ", facts->phase, ")"));
      }
      continue;
    }
    if (facts->host_network) {
      return absl::InvalidArgumentError(
          absl::StrCat(pod_where,
                       ": spec.hostNetwork is true: a host-network pod has no network namespace "
                       "of its own to move a device into"));
    }
    live.push_back(pod);
    live_facts.push_back(*std::move(facts));
  }
  if (live.empty()) return first_gone;
  if (live.size() > 1) {
    std::string names;
    for (const state::PodRef& p : live) {
      absl::StrAppend(&names, names.empty() ? "" : ", ", p.namespace_, "/", p.name);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": status.reservedFor has ", live.size(), " running pods (", names,
        "): a network device can be in one pod only, so knd serves a claim to one pod; give "
        "each pod a claim of its own (a ResourceClaimTemplate)"));
  }
  plan.pods = std::move(live);

  // Opaque config for this driver, in allocation order (class entries before claim entries is
  // config::Resolve's job).
  const json* devices = Field(*alloc, "devices");
  const json& results = devices ? Arr(*devices, "results") : Arr(json(), "");
  const json& configs = devices ? Arr(*devices, "config") : Arr(json(), "");
  struct RawEntry {
    config::Entry entry;
    std::set<std::string> requests;
  };
  std::vector<RawEntry> entries;
  for (size_t i = 0; i < configs.size(); ++i) {
    const json& c = configs[i];
    const json* opaque = Field(c, "opaque");
    if (opaque == nullptr || JsonString(*opaque, "driver") != opts_.driver_name) continue;
    const std::string field = absl::StrCat("status.allocation.devices.config[", i, "]");
    const std::string source = JsonString(c, "source");
    RawEntry e;
    if (source == "FromClass") {
      e.entry.source = config::Source::kClass;
    } else if (source == "FromClaim") {
      e.entry.source = config::Source::kClaim;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, ".source is ",
                                                     Quote(source),
                                                     ", want \"FromClass\" or \"FromClaim\""));
    }
    for (const json& r : Arr(c, "requests")) {
      if (!r.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", field, ".requests holds a non-string entry"));
      }
      e.requests.insert(r.get<std::string>());
    }
    const json* params = Field(*opaque, "parameters");
    e.entry.parameters = params ? *params : json();
    entries.push_back(std::move(e));
  }

  std::map<std::string, std::string> pod_ifnames;  // in-pod name -> device, to catch clashes
  std::map<std::string, json> nads;  // "<ns>/<name>" -> conflist: one GET per NAD and claim
  for (size_t i = 0; i < results.size(); ++i) {
    const json& r = results[i];
    if (JsonString(r, "driver") != opts_.driver_name) continue;  // another driver's device
    const std::string field = absl::StrCat("status.allocation.devices.results[", i, "]");
    const std::string request = JsonString(r, "request");
    const std::string base = BaseRequestName(request);
    const std::string req_where = absl::StrCat(where, " request ", Quote(base));
    const std::string pool = JsonString(r, "pool");
    const std::string device = JsonString(r, "device");
    if (request.empty() || device.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", field, " lacks request or device"));
    }
    if (pool != opts_.node_name) {
      return absl::InvalidArgumentError(absl::StrCat(req_where, ": ", field, ".pool is ",
                                                     Quote(pool), ", not this node's pool ",
                                                     Quote(opts_.node_name)));
    }
    if (const json* admin = Field(r, "adminAccess");
        admin != nullptr && admin->is_boolean() && admin->get<bool>()) {
      // Admin access hands out devices that are allocated to others: for a netdev that would
      // mean taking it out of another pod.
      return absl::InvalidArgumentError(
          absl::StrCat(req_where, ": ", field,
                       ".adminAccess is true: knd does not give admin access to network "
                       "devices (a netdev can be in one pod only)"));
    }
    std::optional<inventory::Device> dev = resolver_(device);
    if (!dev) {
      return absl::NotFoundError(absl::StrCat(req_where, ": device ", Quote(device), " (", field,
                                              ".device) is not on node ", opts_.node_name));
    }

    // Entries that name this request (full "<main>/<sub>" or its base) or all requests; they
    // are handed to Resolve as "applies to this device".
    std::vector<config::Entry> applicable;
    for (const RawEntry& e : entries) {
      if (e.requests.empty() || e.requests.count(request) || e.requests.count(base)) {
        config::Entry copy = e.entry;
        copy.requests.clear();
        applicable.push_back(std::move(copy));
      }
    }
    ASSIGN_OR_RETURN(
        config::NetworkConfig cfg,
        config::Resolve(applicable,
                        config::Context{claim.namespace_, claim.name, base, "",
                                        opts_.claim_cni ? &*opts_.claim_cni : nullptr}));
    // A shared parent first: what may be combined with a child decides the errors below.
    std::optional<state::ChildPlan> child;
    if (dev->shared) {
      ASSIGN_OR_RETURN(child, PlanChild(*dev, cfg, claim.uid, base, req_where));
    } else if (cfg.child) {
      return absl::InvalidArgumentError(absl::StrCat(
          req_where, ": child: device ", Quote(device),
          " is not a shared parent (the node config's `shared` rules name those); use a "
          "DeviceClass that selects shared parents (shared == true)"));
    }
    if (config::AttachedByMultus(cfg)) {
      // Multus's DRA support maps a device to a NAD through this attribute; without it the
      // device can never be handed over and the pod would fail at sandbox creation.
      if (dev->resource_name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            req_where, ": attachedBy is \"multus\", but device ", Quote(device),
            " has no k8s.cni.cncf.io/resourceName attribute, so Multus cannot hand it to a "
            "NAD: give it one in the node config (resourceNames)"));
      }
      if (!live_facts[0].multus_networks) {
        return absl::FailedPreconditionError(absl::StrCat(
            req_where, ": attachedBy is \"multus\", but pod ", plan.pods[0].namespace_, "/",
            plan.pods[0].name, " has no ", kube::kMultusNetworksAnnotation,
            " annotation: Multus attaches the device only for a NAD listed there whose "
            "k8s.v1.cni.cncf.io/resourceName is ",
            Quote(dev->resource_name)));
      }
    }
    const std::string pod_ifname = cfg.interface.name.value_or(dev->ifname);
    auto [it, fresh] = pod_ifnames.emplace(pod_ifname, device);
    if (!fresh && !config::AttachedByMultus(cfg)) {
      return absl::InvalidArgumentError(absl::StrCat(
          req_where, ": interface name ", Quote(pod_ifname), " of device ", Quote(device),
          " is also used by device ", Quote(it->second), " of the same claim"));
    }

    state::DevicePlan d;
    d.request = base;
    d.pool = pool;
    d.device = device;
    d.identity =
        state::DeviceIdentity{dev->pci_address, dev->perm_mac, dev->mac, dev->ifindex, dev->ifname};
    // The attach path reads the conflist from the plan: a NAD is resolved into cni.config
    // here, an inline conflist is checked and normalized.
    if (cfg.cni && cfg.cni->network_attachment) {
      const config::NadRef nad = *cfg.cni->network_attachment;
      const std::string nad_ns = nad.namespace_.empty() ? claim.namespace_ : nad.namespace_;
      const std::string key = absl::StrCat(nad_ns, "/", nad.name);
      auto cached = nads.find(key);
      if (cached == nads.end()) {
        ASSIGN_OR_RETURN(json list, ReadNad(nad_ns, nad.name, req_where));
        cached = nads.emplace(key, std::move(list)).first;
      }
      cfg.cni->network_attachment.reset();
      cfg.cni->config = cached->second;
    } else if (cfg.cni && cfg.cni->config) {
      ASSIGN_OR_RETURN(
          cfg.cni->config,
          cni::NormalizeConfList(*cfg.cni->config, absl::StrCat(req_where, ": cni.config")));
    }
    if (cfg.sriov && !dev->is_sriov_vf) {
      return absl::InvalidArgumentError(absl::StrCat(
          req_where, ": sriov: device ", Quote(device),
          " is not an SR-IOV VF (the settings are made through a VF's PF); use a DeviceClass "
          "that selects VFs (isSriovVf == true)"));
    }
    const bool vfio = config::UsesVfio(cfg);
    if (vfio) {
      const std::string vf_where = absl::StrCat(req_where, ": sriov.driver \"", config::kVfioPci,
                                                "\": device ", Quote(device));
      if (!opts_.vfio.bind) {
        return absl::FailedPreconditionError(
            absl::StrCat(vf_where, ": this knd runs without VFIO support"));
      }
      if (dev->pci_address.empty() || dev->driver.empty() || dev->driver == config::kVfioPci) {
        return absl::FailedPreconditionError(
            absl::StrCat(vf_where, ": the VF's PCI address or kernel driver is not known (driver ",
                         Quote(dev->driver), ")"));
      }
      if (opts_.vfio.check) {
        if (absl::Status st = opts_.vfio.check(dev->pci_address); !st.ok()) {
          return absl::Status(st.code(), absl::StrCat(vf_where, ": ", st.message()));
        }
      }
      d.vfio = state::VfioPlan{dev->driver, "", {}};
    }
    // A VF on vfio-pci has no kernel RDMA device: its userspace driver does all.
    if (opts_.rdma && !dev->rdma_device.empty() && !vfio) {
      const std::string rdma_where = absl::StrCat(req_where, ": device ", Quote(device),
                                                  " (RDMA device ", Quote(dev->rdma_device), ")");
      absl::StatusOr<inventory::RdmaFacts> rdma = opts_.rdma(dev->rdma_device);
      if (!rdma.ok()) return Annotate(rdma.status(), rdma_where);
      if (!rdma->shared_netns) {
        return absl::FailedPreconditionError(absl::StrCat(
            rdma_where,
            ": the node's RDMA subsystem is in exclusive network-namespace mode, where an RDMA "
            "device is seen only in its own namespace, and knd does not move RDMA devices: the "
            "pod could not use it. Switch the node to shared mode (`rdma system set netns "
            "shared`, or the ib_core module option netns_mode=1) or do not publish RDMA devices "
            "on this node (node config exclude: {rdma: true})"));
      }
      d.rdma_device = dev->rdma_device;
      d.rdma_char_devices = std::move(rdma->char_devices);
    }
    d.share_id = JsonString(r, "shareID");
    d.child = std::move(child);
    d.config = config::ToJson(cfg);
    d.state = state::DeviceState::kPrepared;
    plan.devices.push_back(std::move(d));
  }
  if (plan.devices.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": status.allocation.devices.results has no device of driver ", opts_.driver_name));
  }
  // Plain netdevs need no container edits; the CDI devices are the netns guard and the RDMA
  // character devices (WriteClaimCdi).
  plan.prepared_at_unix = static_cast<int64_t>(std::time(nullptr));
  return plan;
}

absl::StatusOr<state::ChildPlan> Preparer::PlanChild(const inventory::Device& parent,
                                                     const config::NetworkConfig& cfg,
                                                     const std::string& claim_uid,
                                                     const std::string& request,
                                                     const std::string& req_where) const {
  const std::string what = absl::StrCat(req_where, ": device ", Quote(parent.name),
                                        " is a shared parent (a child is created in the pod)");
  // The child is knd's own: nothing else may create or move it.
  if (cfg.cni) {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ", so cni cannot be used on it: the child is made by knd (its type and mode "
                     "come from child in the DeviceClass); to keep running a macvlan NAD, use it "
                     "through Multus as before"));
  }
  if (config::AttachedByMultus(cfg)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ", so attachedBy cannot be \"multus\": Multus never takes it"));
  }
  if (cfg.sriov) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ", so sriov cannot be set (the VF settings are for a whole VF)"));
  }
  if (cfg.interface.mtu && parent.mtu > 0 && *cfg.interface.mtu > parent.mtu) {
    return absl::InvalidArgumentError(absl::StrCat(
        req_where, ": interface.mtu ", *cfg.interface.mtu, " is above the MTU ", parent.mtu,
        " of the shared parent ", Quote(parent.name), " (", parent.ifname, ")"));
  }
  const config::ChildConfig c = cfg.child.value_or(config::ChildConfig{});
  state::ChildPlan out;
  out.type = c.type.value_or(config::kChildMacvlan);
  if (out.type == config::kChildMacvlan) out.mode = c.mode.value_or("bridge");
  if (out.type == config::kChildIpvlan) out.mode = c.mode.value_or("l2");
  out.vlan_id = c.vlan_id.value_or(0);
  if (out.type == config::kChildMacvlan && !cfg.interface.hardware_addr) {
    // Stable per claim and request: a retried sandbox, a restart, the neighbours' ARP caches
    // and a DHCP server all see the same MAC. Locally administered, unicast.
    uint64_t h = Fnv1a64(absl::StrCat(claim_uid, "/", request));
    unsigned char b[6];
    for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(h >> (8 * i));
    b[0] = static_cast<unsigned char>((b[0] & 0xfc) | 0x02);
    out.mac = absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  }
  // passthru gives the child the parent itself (one child at most, and the kernel refuses a
  // second): checked against the children already prepared on this node.
  int others = 0;
  bool other_passthru = false;
  for (const state::ClaimPlan& p : plans_.List()) {
    if (p.claim_uid == claim_uid) continue;
    for (const state::DevicePlan& d : p.devices) {
      if (d.device != parent.name || !d.child) continue;
      ++others;
      other_passthru = other_passthru || d.child->mode == "passthru";
    }
  }
  if (other_passthru || (out.mode == "passthru" && others > 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": a macvlan in passthru mode takes the whole parent, and ",
                     other_passthru ? "another claim's child is in passthru mode"
                                    : absl::StrCat(others, " other claim(s) have children on it"),
                     "; give passthru classes a parent of their own (maxChildren: 1)"));
  }
  return out;
}

bool Preparer::HolderPodDone(const state::ClaimPlan& holder, size_t index,
                             Clock::time_point* next_read) {
  const std::string& uid = holder.devices[index].pod_uid;
  const state::PodRef* pod = nullptr;
  for (const state::PodRef& p : holder.pods) {
    if (p.uid == uid) pod = &p;
  }
  if (pod == nullptr || pod->name.empty()) return false;  // cannot tell: wait
  if (opts_.pods != nullptr) {
    if (std::optional<kube::PodFacts> f = opts_.pods->Lookup(pod->namespace_, pod->name, uid)) {
      return f->Terminal();
    }
  }
  // The watch does not have it under this UID: deleted, or the watch is behind. Ask the API,
  // but not on every round of the wait.
  const Clock::time_point now = Clock::now();
  if (now < *next_read) return false;
  *next_read = now + std::chrono::seconds(1);
  absl::StatusOr<json> p =
      kube_.Get(absl::StrCat("/api/v1/namespaces/", pod->namespace_, "/pods/", pod->name));
  if (absl::IsNotFound(p.status())) return true;
  if (!p.ok()) return false;
  kube::PodFacts f = kube::PodFactsOf(*p);
  return f.uid != uid || f.Terminal();
}

absl::Status Preparer::FinishVfio(state::ClaimPlan& plan) {
  const std::string where = absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name);
  absl::Status failed;
  for (state::DevicePlan& d : plan.devices) {
    if (!d.vfio || !d.vfio->group.empty()) continue;
    const std::string dev_where =
        absl::StrCat(where, " request ", Quote(d.request), " device ", Quote(d.device), " (VF ",
                     d.identity.pci_address, "): binding to ", config::kVfioPci);
    absl::StatusOr<config::NetworkConfig> cfg = config::Decode(d.config, dev_where);
    if (!cfg.ok()) {
      failed = cfg.status();
      break;
    }
    auto persist = [&](const state::HostSnapshot& snap) {
      d.host = snap;
      return plans_.Put(plan);
    };
    absl::StatusOr<state::VfioPlan> bound = opts_.vfio.bind(d, *cfg->sriov, persist);
    if (!bound.ok()) {
      failed = Annotate(bound.status(), dev_where);
      break;
    }
    d.vfio = *std::move(bound);
    if (absl::Status st = plans_.Put(plan); !st.ok()) {
      failed = Annotate(st, absl::StrCat(where, ": persisting the plan"));
      break;
    }
    spdlog::info("{}: VF {} is on {} (IOMMU group {})", where, d.identity.pci_address,
                 config::kVfioPci, d.vfio->group);
  }
  if (failed.ok()) {
    failed = Annotate(WriteClaimCdi(plan), absl::StrCat(where, ": writing the CDI spec"));
  }
  if (failed.ok()) {
    failed = Annotate(plans_.Put(plan), absl::StrCat(where, ": persisting the plan"));
  }
  if (failed.ok()) return failed;
  // Nothing may stay bound or written for a claim we answer with an error. A VF that cannot be
  // given back keeps the plan, so Unprepare (or the kubelet's retry) tries again.
  if (absl::Status back = GiveBackVfio(plan); !back.ok()) {
    spdlog::error("{}: {}", where, back.ToString());
    return absl::Status(failed.code(),
                        absl::StrCat(failed.message(), "; giving the VFs back: ", back.message()));
  }
  if (!opts_.cdi_dir.empty()) (void)state::RemoveClaimSpec(opts_.cdi_dir, kCdiKind, plan.claim_uid);
  (void)plans_.Delete(plan.claim_uid);
  return failed;
}

absl::Status Preparer::GiveBackVfio(const state::ClaimPlan& plan) {
  absl::Status first;
  for (const state::DevicePlan& d : plan.devices) {
    if (!d.vfio || !opts_.vfio.give_back) continue;
    absl::Status st = opts_.vfio.give_back(d);
    if (!st.ok() && first.ok()) {
      first = Annotate(st, absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name,
                                        " device ", Quote(d.device)));
    }
  }
  return first;
}

absl::Status Preparer::CheckDevice(const state::ClaimPlan& plan, const state::DevicePlan& d) {
  // CNI plugins and Multus configure what they attach; a child does not exist yet.
  if (!opts_.check_device || d.child || d.vfio || !d.attached_by.empty() ||
      d.config.contains("cni")) {
    return absl::OkStatus();
  }
  const std::string where =
      absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name, " request ",
                   Quote(d.request), " device ", Quote(d.device));
  absl::StatusOr<config::NetworkConfig> cfg = config::Decode(d.config, where);
  if (!cfg.ok()) return cfg.status();
  absl::Status st = opts_.check_device(d.identity, *cfg);
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat(where, " (", d.identity.ifname, "): ", st.message()));
}

absl::Status Preparer::AwaitDevice(const state::ClaimPlan& plan, const state::DevicePlan& d,
                                   Clock::time_point deadline) {
  if (!opts_.on_host) return absl::OkStatus();
  const std::string where =
      absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name, " request ",
                   Quote(d.request), " device ", Quote(d.device));
  const Clock::time_point start = Clock::now();
  Clock::time_point next_read{};
  int handovers = 0;  // a release that left the device held (a plan write failed?) is not spun on
  std::optional<state::PlanStore::Holder> holder;
  for (;;) {
    const uint64_t seen = plans_.Generation();
    // Lost: the inventory found it neither on the host nor in a live pod (also when a plan
    // still says it is in a pod whose netns is gone) for longer than its grace period.
    if (opts_.lost) {
      if (std::optional<std::string> why = opts_.lost(d.device)) {
        return absl::NotFoundError(
            absl::StrCat(where, ": the device is gone from node ", opts_.node_name, ": ", *why));
      }
    }
    // Children of a shared parent do not hold it against each other.
    holder = plans_.HolderOf(d.device, plan.claim_uid, /*children_hold=*/!d.child);
    if (!holder) {
      absl::StatusOr<bool> home = opts_.on_host(d.identity);
      if (!home.ok()) {
        return Annotate(home.status(), absl::StrCat(where, ": looking for the device on the host"));
      }
      if (*home) {
        if (Clock::now() - start > std::chrono::milliseconds(50)) {
          spdlog::info(
              "{}: the device is back on the host after {} ms", where,
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
        }
        return absl::OkStatus();
      }
    } else if (opts_.release && handovers < 3 && !holder->plan.devices[holder->index].vfio &&
               HolderPodDone(holder->plan, holder->index, &next_read)) {
      ++handovers;
      // The API gave the device to this claim and the pod that has it is gone or finished:
      // nothing runs there any more, so take it back now instead of waiting for that pod's
      // StopPodSandbox or Unprepare (which then find nothing to do).
      const state::DevicePlan& held = holder->plan.devices[holder->index];
      spdlog::info("{}: taking the device back from pod uid {} of claim {}/{}, which is gone",
                   where, held.pod_uid, holder->plan.claim_namespace, holder->plan.claim_name);
      absl::Status st = opts_.release(holder->plan, holder->index);
      if (!st.ok() && !absl::IsNotFound(st)) {
        return absl::UnavailableError(absl::StrCat(
            where, ": taking the device back from the pod (gone or finished) of claim ",
            holder->plan.claim_namespace, "/", holder->plan.claim_name, ": ", st.message()));
      }
      continue;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) break;
    plans_.WaitForChange(seen, std::min(deadline, now + std::chrono::milliseconds(100)));
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  if (holder) {
    const state::DevicePlan& held = holder->plan.devices[holder->index];
    if (held.vfio) {
      // Only the holder's Unprepare gives a VF back from vfio-pci: its pod's process may
      // still have it open.
      return absl::UnavailableError(absl::StrCat(
          where, ": the VF is on ", config::kVfioPci, " for claim ", holder->plan.claim_namespace,
          "/", holder->plan.claim_name, ", which the kubelet has not unprepared yet; waited ",
          waited, " ms (the kubelet retries)"));
    }
    std::string pod = absl::StrCat("uid ", held.pod_uid);
    for (const state::PodRef& p : holder->plan.pods) {
      if (p.uid == held.pod_uid) pod = absl::StrCat(p.namespace_, "/", p.name);
    }
    return absl::UnavailableError(
        absl::StrCat(where, ": the device is still in pod ", pod, " (claim ",
                     holder->plan.claim_namespace, "/", holder->plan.claim_name,
                     "), which has not stopped; waited ", waited, " ms (the kubelet retries)"));
  }
  return absl::UnavailableError(absl::StrCat(where, ": the device is not on node ", opts_.node_name,
                                             " (not on the host, in no pod); waited ", waited,
                                             " ms (the kubelet retries)"));
}

absl::Status Preparer::WriteClaimCdi(state::ClaimPlan& plan) {
  if (opts_.cdi_dir.empty()) return absl::OkStatus();
  std::vector<state::CdiDevice> devices;
  if (!opts_.netns_guard.empty()) {
    if (std::optional<state::CdiDevice> guard = GuardDevice(plan)) {
      devices.push_back(*std::move(guard));
    }
  }
  // RDMA: the containers get the devices' character devices (the runtime reads type, major
  // and minor from the host node). Several devices of one claim share one list.
  std::vector<std::string> nodes;
  for (const state::DevicePlan& d : plan.devices) {
    for (const std::string& n : d.rdma_char_devices) {
      if (std::find(nodes.begin(), nodes.end(), n) == nodes.end()) nodes.push_back(n);
    }
  }
  // VFs on vfio-pci: the VFIO container and each VF's group, and the VFs' PCI addresses (what
  // a DPDK application is started with), one variable per request.
  std::vector<std::string> vfio_nodes;
  json env = json::array();
  for (const state::DevicePlan& d : plan.devices) {
    if (!d.vfio) continue;
    for (const std::string& n : d.vfio->device_nodes) {
      if (std::find(vfio_nodes.begin(), vfio_nodes.end(), n) == vfio_nodes.end()) {
        vfio_nodes.push_back(n);
      }
    }
    env.push_back(absl::StrCat(VfioEnvName(d.request), "=", d.identity.pci_address));
  }
  if (!vfio_nodes.empty()) {
    json dn = json::array();
    for (const std::string& n : vfio_nodes) dn.push_back({{"path", n}, {"permissions", "rw"}});
    devices.push_back(
        state::CdiDevice{"vfio", {{"deviceNodes", std::move(dn)}, {"env", std::move(env)}}});
  }
  if (!nodes.empty()) {
    json dn = json::array();
    for (const std::string& n : nodes) dn.push_back({{"path", n}, {"permissions", "rw"}});
    devices.push_back(state::CdiDevice{"rdma", {{"deviceNodes", std::move(dn)}}});
  }
  if (devices.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(plan.cdi_device_ids,
                   state::WriteClaimSpec(opts_.cdi_dir, kCdiKind, plan.claim_uid, devices));
  return absl::OkStatus();
}

std::optional<state::CdiDevice> Preparer::GuardDevice(const state::ClaimPlan& plan) const {
  json args = json::array(
      {"knd-netns-guard", "--claim", absl::StrCat(plan.claim_namespace, "/", plan.claim_name)});
  for (const state::DevicePlan& d : plan.devices) {
    // A device Multus attaches does not depend on knd's hook: Multus runs in the runtime's CNI
    // step and a failure there fails the sandbox. Its in-pod name is Multus's to choose.
    if (absl::StatusOr<config::NetworkConfig> cfg = config::Decode(d.config, "");
        cfg.ok() && config::AttachedByMultus(*cfg)) {
      continue;
    }
    if (d.vfio) continue;  // no interface in the pod: its CDI device nodes are the check
    args.push_back("--ifname");
    args.push_back(state::InPodName(d));
    // The same device under another name also counts: the pod's CNI (Multus) may have moved
    // it before knd's hook, which then records it as Multus's.
    if (!d.identity.mac.empty()) {
      args.push_back("--mac");
      args.push_back(d.identity.mac);
    }
  }
  if (args.size() == 3) return std::nullopt;  // nothing for the guard to check
  state::CdiDevice guard;
  guard.name = "netns";
  guard.container_edits = {{"hooks", json::array({{{"hookName", "createRuntime"},
                                                   {"path", opts_.netns_guard},
                                                   {"args", args},
                                                   {"timeout", 10}}})}};
  return guard;
}

absl::StatusOr<json> Preparer::ReadNad(const std::string& ns, const std::string& name,
                                       const std::string& req_where) {
  const std::string what = absl::StrCat(req_where, ": NetworkAttachmentDefinition ", ns, "/", name,
                                        " (cni.networkAttachment)");
  absl::StatusOr<json> nad = kube_.Get(absl::StrCat("/apis/k8s.cni.cncf.io/v1/namespaces/", ns,
                                                    "/network-attachment-definitions/", name));
  if (absl::IsNotFound(nad.status())) {
    return absl::NotFoundError(absl::StrCat(what, " does not exist"));
  }
  if (!nad.ok()) return Annotate(nad.status(), what);
  const json* spec = Field(*nad, "spec");
  const std::string text = spec ? JsonString(*spec, "config") : std::string();
  if (text.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": spec.config is empty (NADs that refer to a CNI config file on the node are not "
        "supported; put the config into spec.config)"));
  }
  ASSIGN_OR_RETURN(json list, cni::ParseConfList(text, absl::StrCat(what, ": spec.config")));
  list[cni::kNadKey] = absl::StrCat(ns, "/", name);
  return list;
}

absl::Status Preparer::AllocateIpam(state::ClaimPlan& plan) {
  const std::string where = absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name);
  std::vector<size_t> done;
  absl::Status failure;
  for (size_t i = 0; i < plan.devices.size() && failure.ok(); ++i) {
    state::DevicePlan& d = plan.devices[i];
    const json* ipam = Field(d.config, "ipam");
    if (ipam == nullptr) continue;
    const std::string dev_where =
        absl::StrCat(where, " request ", Quote(d.request), " device ", Quote(d.device), ": ipam");
    if (opts_.cni == nullptr) {
      failure = absl::FailedPreconditionError(
          absl::StrCat(dev_where, ": knd runs without a CNI executor"));
      break;
    }
    absl::StatusOr<json> r = opts_.cni->IpamAdd(*ipam, cni::kIpamNetworkName, IpamRuntime(plan, d));
    if (!r.ok()) {
      failure = Annotate(r.status(), dev_where);
      break;
    }
    d.ipam_result = *std::move(r);
    done.push_back(i);
  }
  if (failure.ok()) return absl::OkStatus();
  for (size_t i : done) {
    const state::DevicePlan& d = plan.devices[i];
    absl::Status st =
        opts_.cni->IpamDel(*Field(d.config, "ipam"), cni::kIpamNetworkName, IpamRuntime(plan, d));
    if (!st.ok())
      spdlog::error("{}: releasing IPAM of device {}: {}", where, d.device, st.ToString());
  }
  return failure;
}

absl::Status Preparer::ReleaseIpam(const state::ClaimPlan& plan) {
  const std::string where = absl::StrCat("claim ", plan.claim_namespace, "/", plan.claim_name);
  absl::Status first;
  for (const state::DevicePlan& d : plan.devices) {
    const json* ipam = Field(d.config, "ipam");
    if (ipam == nullptr) continue;
    const std::string dev_where = absl::StrCat(where, " request ", Quote(d.request), " device ",
                                               Quote(d.device), ": releasing ipam");
    absl::Status st = opts_.cni == nullptr
                          ? absl::FailedPreconditionError("knd runs without a CNI executor")
                          : opts_.cni->IpamDel(*ipam, cni::kIpamNetworkName, IpamRuntime(plan, d));
    if (!st.ok() && first.ok()) first = Annotate(st, dev_where);
  }
  return first;
}

absl::Status Preparer::Unprepare(const ClaimRef& claim) {
  const std::string where = absl::StrCat("claim ", claim.namespace_, "/", claim.name);
  if (claim.uid.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the kubelet request lacks a uid"));
  }
  ClaimLock lock(*this, claim.uid);
  absl::StatusOr<state::ClaimPlan> plan = plans_.Get(claim.uid);
  if (absl::IsNotFound(plan.status())) {
    // Never prepared, or done. A crash between the CDI spec and the plan of a Prepare can
    // have left the spec alone: remove it too.
    if (opts_.cdi_dir.empty()) return absl::OkStatus();
    return Annotate(state::RemoveClaimSpec(opts_.cdi_dir, kCdiKind, claim.uid),
                    absl::StrCat(where, ": removing the CDI spec"));
  }
  if (!plan.ok()) return Annotate(plan.status(), absl::StrCat(where, ": reading the plan"));
  if (opts_.on_unprepare) {
    RETURN_IF_ERROR(Annotate(opts_.on_unprepare(*plan), absl::StrCat(where, ": releasing")));
  }
  // After the detach (the address leaves the pod first), before the plan goes: an error keeps
  // the plan so the kubelet's retry releases the lease.
  RETURN_IF_ERROR(ReleaseIpam(*plan));
  // After the pod's containers are gone (the kubelet unprepares then): an error keeps the plan.
  RETURN_IF_ERROR(Annotate(GiveBackVfio(*plan), where + ": giving the VFs back"));
  if (!opts_.cdi_dir.empty()) {
    RETURN_IF_ERROR(Annotate(state::RemoveClaimSpec(opts_.cdi_dir, kCdiKind, claim.uid),
                             absl::StrCat(where, ": removing the CDI spec")));
  }
  RETURN_IF_ERROR(Annotate(plans_.Delete(claim.uid), absl::StrCat(where, ": deleting the plan")));
  spdlog::info("{} (uid {}): unprepared", where, claim.uid);
  return absl::OkStatus();
}

std::map<std::string, Preparer::Result> Preparer::PrepareBatch(
    const std::vector<ClaimRef>& claims) {
  std::map<std::string, Result> out;
  // One wait budget for the whole call: the kubelet's call timeout covers the batch.
  const Clock::time_point deadline = Clock::now() + opts_.device_wait;
  for (const ClaimRef& c : claims) {
    absl::StatusOr<std::vector<PreparedDevice>> r = Prepare(c, deadline);
    Result& res = out[c.uid];
    if (r.ok()) {
      res.devices = std::move(*r);
    } else {
      res.error = std::string(r.status().message());
      spdlog::warn("prepare failed: {}", res.error);
    }
  }
  return out;
}

std::map<std::string, std::string> Preparer::UnprepareBatch(const std::vector<ClaimRef>& claims) {
  std::map<std::string, std::string> out;
  for (const ClaimRef& c : claims) {
    absl::Status st = Unprepare(c);
    out[c.uid] = st.ok() ? std::string() : std::string(st.message());
    if (!st.ok()) spdlog::warn("unprepare failed: {}", std::string(st.message()));
  }
  return out;
}

}  // namespace knd::dra
