#include "nri/pod_network.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/text.h"
#include "config/network_config.h"
#include "netns/netns.h"

namespace knd::nri {

using state::DeviceState;

namespace {

bool AttachedByMultusConfig(const state::DevicePlan& d) {
  return JsonString(d.config, "attachedBy") == config::kAttachedByMultus;
}

std::string PodName(const state::ClaimPlan& plan, const std::string& uid) {
  for (const auto& p : plan.pods) {
    if (p.uid == uid && !p.name.empty()) return p.namespace_ + "/" + p.name;
  }
  return "uid " + uid;
}

PodInfo PodOf(const state::ClaimPlan& plan, const std::string& uid) {
  for (const auto& p : plan.pods) {
    if (p.uid == uid) return {p.uid, p.namespace_, p.name, ""};
  }
  return {uid, "", "", ""};
}

// The conflist Prepare stored for a CNI device (a NAD is resolved into cni.config there).
absl::StatusOr<nlohmann::json> StoredConfList(const state::DevicePlan& d) {
  const nlohmann::json& cfg = d.config;
  auto cni = cfg.find("cni");
  if (cni == cfg.end() || !cni->is_object()) {
    return absl::FailedPreconditionError("the plan has no cni section");
  }
  auto list = cni->find("config");
  if (list == cni->end() || !list->is_object()) {
    return absl::FailedPreconditionError(
        "the plan holds no resolved CNI config (the NetworkAttachmentDefinition was not read in "
        "Prepare); unprepare and prepare the claim again");
  }
  return *list;
}

cni::DeviceHandoff Handoff(const state::DevicePlan& d) {
  const std::string& pci = d.identity.pci_address;
  return {pci.empty() ? d.identity.ifname : pci, pci, d.identity.ifname};
}

cni::RuntimeConf CniRuntime(const PodInfo& pod, const state::ClaimPlan& plan,
                            const state::DevicePlan& d, const std::string& netns) {
  cni::RuntimeConf rt;
  rt.container_id = cni::AttachmentContainerId(pod.uid, plan.claim_uid, d.request);
  rt.netns = netns;
  rt.ifname = state::InPodName(d);
  rt.args = CniArgs(pod);
  cni::DeviceHandoff h = Handoff(d);
  if (!h.device_id.empty()) rt.capability_args["deviceID"] = h.device_id;
  return rt;
}

// Addresses and routes of the IPAM allocation made in Prepare, merged into the config the
// native attacher applies (configured entries win on equal addresses / destinations).
absl::Status MergeIpam(const state::DevicePlan& d, const std::string& ifname,
                       config::NetworkConfig& cfg) {
  if (!d.ipam_result.is_object()) return absl::OkStatus();
  ASSIGN_OR_RETURN(cni::ParsedResult r, cni::ParseResult(d.ipam_result, ifname));
  std::vector<std::string> addrs = cfg.interface.addresses.value_or(std::vector<std::string>{});
  std::string gw4, gw6;
  for (size_t i = 0; i < r.ips.size(); ++i) {
    if (std::find(addrs.begin(), addrs.end(), r.ips[i]) == addrs.end()) addrs.push_back(r.ips[i]);
    const std::string& gw = i < r.gateways.size() ? r.gateways[i] : std::string();
    if (gw.empty()) continue;
    std::string& slot = gw.find(':') == std::string::npos ? gw4 : gw6;
    if (slot.empty()) slot = gw;
  }
  cfg.interface.addresses = std::move(addrs);
  std::vector<config::Route> routes = cfg.routes.value_or(std::vector<config::Route>{});
  for (const auto& rr : r.routes) {
    bool have = false;
    for (const auto& c : routes) have = have || c.destination == rr.dst;
    if (have) continue;
    config::Route route;
    route.destination = rr.dst;
    // CNI: a route without gw uses the default gateway of its family.
    const std::string& gw =
        !rr.gw.empty() ? rr.gw : (rr.dst.find(':') == std::string::npos ? gw4 : gw6);
    if (!gw.empty()) route.gateway = gw;
    routes.push_back(std::move(route));
  }
  if (!routes.empty()) cfg.routes = std::move(routes);
  return absl::OkStatus();
}

}  // namespace

bool IsCniDevice(const state::DevicePlan& dev) {
  return dev.config.is_object() && dev.config.contains("cni") && dev.config["cni"].is_object();
}

std::vector<std::pair<std::string, std::string>> CniArgs(const PodInfo& pod) {
  std::vector<std::pair<std::string, std::string>> args = {
      {"IgnoreUnknown", "1"},
      {"K8S_POD_NAMESPACE", pod.namespace_},
      {"K8S_POD_NAME", pod.name},
  };
  if (!pod.sandbox_id.empty()) args.emplace_back("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id);
  args.emplace_back("K8S_POD_UID", pod.uid);
  return args;
}

std::string Where(const PodInfo& pod, const state::ClaimPlan& plan, const state::DevicePlan& dev) {
  std::string pod_name = pod.name.empty() ? "uid " + pod.uid : pod.namespace_ + "/" + pod.name;
  return "pod " + pod_name + " claim " + plan.claim_namespace + "/" + plan.claim_name + " device " +
         dev.device;
}

std::shared_ptr<std::mutex> PodNetwork::PodLock(const std::string& uid) {
  std::lock_guard<std::mutex> l(locks_mu_);
  auto& weak = pod_locks_[uid];
  auto lock = weak.lock();
  if (!lock) {
    lock = std::make_shared<std::mutex>();
    weak = lock;
  }
  // Drop entries of pods nobody holds any more.
  for (auto it = pod_locks_.begin(); it != pod_locks_.end();) {
    it = it->second.expired() ? pod_locks_.erase(it) : std::next(it);
  }
  return lock;
}

absl::Status PodNetwork::UpdateDevice(const std::string& claim_uid, size_t index,
                                      const std::function<void(state::DevicePlan&)>& fn) {
  return plans_.Update(claim_uid, [&](state::ClaimPlan& p) {
    if (index >= p.devices.size()) return absl::InternalError("plan changed under attach");
    fn(p.devices[index]);
    return absl::OkStatus();
  });
}

void PodNetwork::SetRuntimeTimeout(std::chrono::milliseconds t) {
  runtime_timeout_ms_ = t.count() > 0 ? t.count() : kNriDefaultRequestTimeoutMs;
}

PodNetwork::Budget PodNetwork::HookBudget() const {
  const auto t = std::chrono::milliseconds(runtime_timeout_ms_.load());
  const Clock::time_point now = Clock::now();
  return {now + t * 7 / 10, now + t * 9 / 10};
}

std::string PodNetwork::TimeoutHint() const {
  return absl::StrCat(
      "; the runtime allows each NRI hook ", runtime_timeout_ms_.load(),
      " ms: raise containerd's plugin_request_timeout or CRI-O's nri_plugin_request_timeout, or "
      "make the pod's CNI plugins faster");
}

absl::Status PodNetwork::WithTimeoutHint(absl::Status st) const {
  if (!absl::IsDeadlineExceeded(st)) return st;
  return absl::DeadlineExceededError(absl::StrCat(st.message(), TimeoutHint()));
}

absl::Status PodNetwork::AttachDevice(const PodInfo& pod, const state::ClaimPlan& plan,
                                      size_t index, const Budget& budget) {
  const state::DevicePlan& dev = plan.devices[index];
  if (AttachedByMultusConfig(dev)) return AttachMultusDevice(pod, plan, index);
  if (dev.vfio) {
    // Prepare bound it to vfio-pci and the containers get its VFIO group (CDI): there is no
    // netdev to move. Recorded as in the pod, for the claim's status and network-status.
    state::AttachResult r;
    r.netns = pod.netns;
    RETURN_IF_ERROR(UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      d.state = DeviceState::kAttached;
      d.pod_uid = pod.uid;
      d.result = r;
      d.note.clear();
    }));
    spdlog::info("{}: VF on vfio-pci (IOMMU group {}) given to the pod", Where(pod, plan, dev),
                 dev.vfio->group);
    Notify(pod, plan.claim_uid, index, nullptr);
    return absl::OkStatus();
  }
  if (IsCniDevice(dev)) return AttachCniDevice(pod, plan, index, budget);
  const std::string where = Where(pod, plan, dev);
  absl::StatusOr<config::NetworkConfig> cfg = config::Decode(dev.config, where);
  absl::Status bad = cfg.status();
  if (bad.ok()) {
    bad = Annotate(MergeIpam(dev, state::InPodName(dev), *cfg),
                   where + ": the IPAM result of Prepare");
  }
  if (!bad.ok()) {
    Notify(pod, plan.claim_uid, index, &bad);
    return bad;
  }
  if (dev.child) return AttachChildDevice(pod, plan, index, *cfg);
  attach::AttachRequest req{dev.identity, pod.netns, *cfg, where};
  auto persist = [&](const state::HostSnapshot& snap) {
    return UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      d.state = DeviceState::kAttaching;
      d.pod_uid = pod.uid;
      d.host = snap;
      d.result.reset();
      d.attached_by.clear();
      d.note.clear();
    });
  };
  auto result = attacher_.Attach(req, persist);
  if (absl::IsNotFound(result.status())) {
    // Not on the host: the pod's CNI may have moved it already (Multus's DRA support hands a
    // device to a NAD with the device's resourceName). Then it is there: record, not move.
    absl::StatusOr<std::optional<state::AttachResult>> found =
        attacher_.FindInPod(pod.netns, dev.identity);
    if (found.ok() && found->has_value()) {
      spdlog::warn(
          "{}: the device is already in the pod as {} (moved by the pod's CNI, e.g. Multus); "
          "recording it as attached by Multus. Set attachedBy: multus in the claim's or "
          "class's NetworkConfig to say so.",
          where, (*found)->ifname);
      return RecordMultus(pod, plan, index, **std::move(found),
                          "attached by the pod's CNI (Multus) before knd's hook");
    }
  }
  if (!result.ok()) {
    absl::Status st = result.status();  // the attacher names `where` itself
    (void)UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      // The attacher rolled back: the device is on the host again.
      d.state = DeviceState::kFailed;
      d.pod_uid.clear();
      d.note = std::string(st.message());
    });
    Notify(pod, plan.claim_uid, index, &st);
    return st;
  }
  RETURN_IF_ERROR(UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
    d.state = DeviceState::kAttached;
    d.pod_uid = pod.uid;
    d.result = *result;
  }));
  spdlog::info("{}: attached as {} in {}", where, result->ifname, pod.netns);
  Notify(pod, plan.claim_uid, index, nullptr);
  return absl::OkStatus();
}

absl::Status PodNetwork::AttachChildDevice(const PodInfo& pod, const state::ClaimPlan& plan,
                                           size_t index, const config::NetworkConfig& cfg) {
  const state::DevicePlan& dev = plan.devices[index];
  const std::string where = Where(pod, plan, dev);
  attach::AttachRequest req{dev.identity, pod.netns, cfg, where, dev.child};
  // Before the child exists: the plan names the netns and the name, so a crash is cleaned up
  // (the child is deleted there, or went with the netns).
  auto persist = [&] {
    return UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      d.state = DeviceState::kAttaching;
      d.pod_uid = pod.uid;
      d.host.reset();
      state::AttachResult r;
      r.netns = pod.netns;
      r.ifname = state::InPodName(dev);
      d.result = std::move(r);
      d.attached_by.clear();
      d.note.clear();
    });
  };
  absl::StatusOr<state::AttachResult> result = attacher_.AttachChild(req, persist);
  if (!result.ok()) {
    absl::Status st = result.status();
    (void)UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      d.state = DeviceState::kFailed;  // the attacher deleted what it created
      d.pod_uid.clear();
      d.result.reset();
      d.note = std::string(st.message());
    });
    Notify(pod, plan.claim_uid, index, &st);
    return st;
  }
  RETURN_IF_ERROR(UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
    d.state = DeviceState::kAttached;
    d.pod_uid = pod.uid;
    d.result = *result;
  }));
  spdlog::info("{}: {} {} created on {} in {}", where, dev.child->type, result->ifname,
               dev.identity.ifname, pod.netns);
  Notify(pod, plan.claim_uid, index, nullptr);
  return absl::OkStatus();
}

absl::Status PodNetwork::AttachCniDevice(const PodInfo& pod, const state::ClaimPlan& plan,
                                         size_t index, const Budget& budget) {
  const state::DevicePlan& dev = plan.devices[index];
  const std::string where = Where(pod, plan, dev);
  absl::StatusOr<nlohmann::json> list = StoredConfList(dev);
  absl::Status st = list.status();
  if (st.ok() && cni_ == nullptr) st = absl::FailedPreconditionError("no CNI executor configured");
  if (!st.ok()) {
    st = Annotate(st, where);
    Notify(pod, plan.claim_uid, index, &st);
    return st;
  }
  // The device's host settings, to restore after DEL (host-device gives a device back down and
  // with the MTU it had in the pod). Not on the host: maybe the pod's CNI (Multus) took it.
  std::optional<state::HostSnapshot> snap;
  if (absl::StatusOr<state::HostSnapshot> taken = attacher_.Snapshot(dev.identity); taken.ok()) {
    snap = *std::move(taken);
  } else if (absl::IsNotFound(taken.status())) {
    absl::StatusOr<std::optional<state::AttachResult>> found =
        attacher_.FindInPod(pod.netns, dev.identity);
    if (found.ok() && found->has_value()) {
      spdlog::warn(
          "{}: the device is already in the pod as {} (moved by the pod's CNI, e.g. "
          "Multus); not running the claim's CNI plugins on it",
          where, (*found)->ifname);
      return RecordMultus(pod, plan, index, **std::move(found),
                          "attached by the pod's CNI (Multus) before knd's hook");
    }
  } else {
    spdlog::warn("{}: no host snapshot before CNI ADD: {}", where, taken.status().ToString());
  }
  const nlohmann::json handed = cni::HandDevice(*list, Handoff(dev));
  cni::RuntimeConf rt = CniRuntime(pod, plan, dev, pod.netns);
  rt.deadline = budget.work;
  // Crash safety: the plan says "Attaching" (with netns and ifname) before any plugin runs, so
  // a restart DELs whatever an interrupted ADD left.
  RETURN_IF_ERROR(Annotate(UpdateDevice(plan.claim_uid, index,
                                        [&](state::DevicePlan& d) {
                                          d.state = DeviceState::kAttaching;
                                          d.pod_uid = pod.uid;
                                          d.host = snap;
                                          d.attached_by.clear();
                                          state::AttachResult r;
                                          r.netns = pod.netns;
                                          r.ifname = rt.ifname;
                                          d.result = std::move(r);
                                          d.note.clear();
                                        }),
                           where + ": persisting the attach"));
  absl::StatusOr<nlohmann::json> added = cni_->Add(handed, rt);
  absl::StatusOr<cni::ParsedResult> parsed =
      added.ok() ? cni::ParseResult(*added, rt.ifname) : added.status();
  if (!parsed.ok()) {
    st = WithTimeoutHint(Annotate(parsed.status(), where));
    // The spec wants a DEL after a failed ADD: it undoes what the plugins before the failing
    // one did. If that DEL fails too, the device stays "Attaching" so Detach retries it.
    rt.deadline = budget.cleanup;
    absl::Status del = cni_->Del(handed, rt);
    if (!del.ok() && OnHostAfterFailedDel(dev, del, where)) del = absl::OkStatus();
    (void)UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      if (del.ok()) {
        d.state = DeviceState::kFailed;
        d.pod_uid.clear();
        d.result.reset();
        d.host.reset();
        d.note = std::string(st.message());
      } else {
        d.note = absl::StrCat(st.message(), "; CNI DEL after the failed ADD: ", del.message());
      }
    });
    if (!del.ok()) spdlog::error("{}: CNI DEL after a failed ADD: {}", where, del.ToString());
    if (del.ok() && snap) {
      absl::Status rs = attacher_.Restore(dev.identity, *snap);
      if (!rs.ok() && !absl::IsNotFound(rs)) {
        spdlog::warn("{}: restoring the device after the failed ADD: {}", where, rs.ToString());
      }
    }
    Notify(pod, plan.claim_uid, index, &st);
    return st;
  }
  state::AttachResult res;
  res.netns = pod.netns;
  res.ifname = rt.ifname;
  res.mac = parsed->mac;
  res.ips = parsed->ips;
  res.cni_result = *added;
  RETURN_IF_ERROR(UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
    d.state = DeviceState::kAttached;
    d.pod_uid = pod.uid;
    d.result = res;
  }));
  spdlog::info("{}: attached by CNI network {} as {} in {}", where, list->value("name", ""),
               rt.ifname, pod.netns);
  Notify(pod, plan.claim_uid, index, nullptr);
  return absl::OkStatus();
}

absl::Status PodNetwork::RecordMultus(const PodInfo& pod, const state::ClaimPlan& plan,
                                      size_t index, state::AttachResult found,
                                      const std::string& note) {
  const std::string where = Where(pod, plan, plan.devices[index]);
  RETURN_IF_ERROR(Annotate(UpdateDevice(plan.claim_uid, index,
                                        [&](state::DevicePlan& d) {
                                          d.state = DeviceState::kAttached;
                                          d.pod_uid = pod.uid;
                                          d.attached_by = state::kAttachedByMultus;
                                          d.host.reset();
                                          d.result = found;
                                          d.note = note;
                                        }),
                           where + ": recording the attach"));
  spdlog::info("{}: attached by Multus as {} in {}", where, found.ifname, pod.netns);
  Notify(pod, plan.claim_uid, index, nullptr);
  return absl::OkStatus();
}

absl::Status PodNetwork::AttachMultusDevice(const PodInfo& pod, const state::ClaimPlan& plan,
                                            size_t index) {
  const state::DevicePlan& dev = plan.devices[index];
  const std::string where = Where(pod, plan, dev);
  absl::StatusOr<std::optional<state::AttachResult>> found =
      attacher_.FindInPod(pod.netns, dev.identity);
  absl::Status st = found.status();
  if (st.ok() && found->has_value()) {
    return RecordMultus(pod, plan, index, **std::move(found), "attached by Multus");
  }
  if (st.ok()) {
    absl::StatusOr<bool> home = attacher_.OnHost(dev.identity);
    st = absl::FailedPreconditionError(absl::StrCat(
        where, ": attachedBy is \"multus\", but ",
        home.ok() && *home
            ? "the device is still on the host after the pod's CNI ran: Multus did not hand it "
              "to a NAD. List a NAD whose k8s.v1.cni.cncf.io/resourceName is the device's "
              "k8s.cni.cncf.io/resourceName in the pod's k8s.v1.cni.cncf.io/networks annotation"
            : "the device is neither in the pod nor on the host"));
  } else {
    st = Annotate(st, where + ": looking for the device in the pod");
  }
  Notify(pod, plan.claim_uid, index, &st);
  return st;
}

absl::Status PodNetwork::DelCni(const PodInfo& pod, const state::ClaimPlan& plan,
                                const state::DevicePlan& dev, const std::string& netns,
                                Clock::time_point deadline) {
  if (cni_ == nullptr) return absl::FailedPreconditionError("no CNI executor configured");
  ASSIGN_OR_RETURN(nlohmann::json list, StoredConfList(dev));
  cni::RuntimeConf rt = CniRuntime(pod, plan, dev, netns);
  rt.deadline = deadline;
  return cni_->Del(cni::HandDevice(list, Handoff(dev)), rt);
}

void PodNetwork::Notify(const PodInfo& pod, const std::string& claim_uid, size_t index,
                        const absl::Status* error) {
  AttachObserver* o = observer_.load();
  if (o == nullptr) return;
  absl::StatusOr<state::ClaimPlan> plan = plans_.Get(claim_uid);
  if (!plan.ok() || index >= plan->devices.size()) return;
  const state::DevicePlan& dev = plan->devices[index];
  if (error != nullptr) {
    o->AttachFailed(pod, *plan, dev, *error);
  } else if (dev.state == DeviceState::kAttached) {
    o->Attached(pod, *plan, dev);
  } else {
    o->Detached(pod, *plan, dev);
  }
}

absl::Status PodNetwork::AdoptClaims(const PodInfo& pod, std::vector<state::ClaimPlan>& plans) {
  if (!pod_claims_ || !claim_uid_) return absl::OkStatus();
  std::optional<std::vector<std::string>> names = pod_claims_(pod);
  if (!names || names->empty()) return absl::OkStatus();
  std::set<std::string> covered;
  for (const auto& p : plans) {
    if (p.claim_namespace == pod.namespace_) covered.insert(p.claim_name);
  }
  std::vector<std::string> uncovered;
  for (const std::string& name : *names) {
    if (covered.count(name) == 0) uncovered.push_back(name);
  }
  if (uncovered.empty()) return absl::OkStatus();  // the usual pod: no copy of every plan
  const std::vector<state::ClaimPlan> all = plans_.List();
  for (const std::string& name : uncovered) {
    if (covered.count(name) > 0) continue;
    for (const state::ClaimPlan& plan : all) {
      if (plan.claim_namespace != pod.namespace_ || plan.claim_name != name) continue;
      // A plan of an older claim of the same name may still be around: only the claim this
      // pod really uses may be taken over.
      absl::StatusOr<std::string> uid = claim_uid_(pod.namespace_, name);
      if (!uid.ok()) {
        return Annotate(uid.status(), absl::StrCat("pod ", pod.namespace_, "/", pod.name,
                                                   ": claim ", pod.namespace_, "/", name,
                                                   " was prepared for another pod; reading it"));
      }
      if (*uid != plan.claim_uid) continue;
      for (const state::DevicePlan& d : plan.devices) {
        if (state::InPod(d) && d.pod_uid != pod.uid) {
          return absl::FailedPreconditionError(absl::StrCat(
              "pod ", pod.namespace_, "/", pod.name, ": claim ", plan.claim_namespace, "/",
              plan.claim_name, " device ", d.device, " is in pod ", PodName(plan, d.pod_uid),
              ": a network device is in one pod at a time, so knd serves a claim to one pod; "
              "give each pod a claim of its own (a ResourceClaimTemplate)"));
        }
      }
      RETURN_IF_ERROR(plans_.Update(plan.claim_uid, [&](state::ClaimPlan& p) {
        p.pods.push_back({pod.uid, pod.namespace_, pod.name});
        return absl::OkStatus();
      }));
      spdlog::info("pod {}/{}: takes over claim {}/{}, prepared for an earlier pod", pod.namespace_,
                   pod.name, plan.claim_namespace, plan.claim_name);
      ASSIGN_OR_RETURN(state::ClaimPlan fresh, plans_.Get(plan.claim_uid));
      plans.push_back(std::move(fresh));
      covered.insert(name);
      break;
    }
  }
  return absl::OkStatus();
}

void PodNetwork::NoteHook(const std::string& uid) {
  std::lock_guard<std::mutex> l(hooked_mu_);
  if (reconciling_) hooked_.insert(uid);
}

bool PodNetwork::HookedSinceSnapshot(const std::string& uid) const {
  std::lock_guard<std::mutex> l(hooked_mu_);
  return hooked_.count(uid) > 0;
}

void PodNetwork::BeginReconcile() {
  std::lock_guard<std::mutex> l(hooked_mu_);
  reconciling_ = true;
  hooked_.clear();
}

absl::Status PodNetwork::Attach(const PodInfo& pod) {
  auto lock = PodLock(pod.uid);
  std::lock_guard<std::mutex> l(*lock);
  NoteHook(pod.uid);
  return AttachLocked(pod);
}

absl::Status PodNetwork::AttachLocked(const PodInfo& pod) {
  std::vector<state::ClaimPlan> plans = plans_.ForPod(pod.uid);
  if (absl::Status st = AdoptClaims(pod, plans); !st.ok()) {
    spdlog::error("{}", st.ToString());
    return st;
  }
  if (plans.empty()) return absl::OkStatus();  // not a pod of ours
  if (pod.netns.empty()) {
    return absl::FailedPreconditionError(
        "pod " + pod.namespace_ + "/" + pod.name + " has no network namespace (hostNetwork?): " +
        "cannot attach claim " + plans[0].claim_namespace + "/" + plans[0].claim_name);
  }
  RETURN_IF_ERROR(
      Annotate(netns::ValidatePodNetns(pod.netns), "pod " + pod.namespace_ + "/" + pod.name));
  const Budget budget = HookBudget();
  std::vector<std::pair<std::string, size_t>> done;  // attached in this call
  absl::Status failure;
  for (const auto& plan : plans) {
    for (size_t i = 0; i < plan.devices.size() && failure.ok(); ++i) {
      const auto& dev = plan.devices[i];
      if (state::InPod(dev) && dev.pod_uid != pod.uid) {
        // Never out of another pod: that pod would lose its network under its feet.
        failure = absl::FailedPreconditionError(
            absl::StrCat(Where(pod, plan, dev), ": the device is in pod ",
                         PodName(plan, dev.pod_uid), ": a network device is in one pod at a time"));
        Notify(pod, plan.claim_uid, i, &failure);
        break;
      }
      if (dev.state == DeviceState::kAttached && dev.result && dev.result->netns == pod.netns) {
        // Repeated hook for the same sandbox.
        if (dev.attached_by == state::kAttachedByMultus || dev.vfio) continue;
        auto there = attacher_.IsAttached(pod.netns, state::InPodName(dev));
        if (there.ok() && *there) continue;
      }
      if (Clock::now() >= budget.work) {
        // Better a pod that fails (and is retried) than one the runtime starts without its
        // devices after dropping a hook that took too long.
        failure = absl::DeadlineExceededError(
            absl::StrCat(Where(pod, plan, dev), ": not attached: the pod's devices took too long",
                         TimeoutHint()));
        Notify(pod, plan.claim_uid, i, &failure);
        break;
      }
      if (state::InPod(dev)) {
        // An attach interrupted by a crash, or an earlier sandbox of this pod (a retried
        // RunPodSandbox gets a new netns; a CNI attachment is never ADDed twice without a
        // DEL in between): give it back first.
        absl::Status st = DetachDevice(plan.claim_uid, i, pod.uid, pod.netns, budget.cleanup);
        if (!st.ok() && !absl::IsNotFound(st)) {
          failure = st;
          break;
        }
      }
      auto fresh = plans_.Get(plan.claim_uid);
      if (!fresh.ok()) {
        failure = fresh.status();
        break;
      }
      failure = AttachDevice(pod, *fresh, i, budget);
      if (failure.ok()) done.emplace_back(plan.claim_uid, i);
    }
    if (!failure.ok()) break;
  }
  if (failure.ok()) {
    HoldNetns(pod.netns);
    MaybeReleaseNetns(pod.netns);  // only Multus's devices in it: not ours to hold
    return absl::OkStatus();
  }
  // All or nothing: give back what this call attached.
  for (const auto& [claim_uid, index] : done) {
    (void)DetachDevice(claim_uid, index, pod.uid, pod.netns, budget.cleanup);
  }
  spdlog::error("{}", failure.ToString());
  return failure;
}

absl::Status PodNetwork::DetachDevice(const std::string& claim_uid, size_t index,
                                      const std::string& pod_uid, const std::string& fallback_netns,
                                      Clock::time_point deadline) {
  absl::StatusOr<state::ClaimPlan> got = plans_.Get(claim_uid);
  if (absl::IsNotFound(got.status())) return absl::OkStatus();  // unprepared meanwhile
  if (!got.ok()) return got.status();
  const state::ClaimPlan& plan = *got;
  if (index >= plan.devices.size()) return absl::OkStatus();
  const state::DevicePlan& dev = plan.devices[index];
  // Someone else gave it back already (or it moved on to another pod): nothing to do.
  if (!state::InPod(dev) || (!pod_uid.empty() && dev.pod_uid != pod_uid)) {
    return absl::OkStatus();
  }
  const std::string recorded = dev.result ? dev.result->netns : fallback_netns;
  const std::string netns = UsableNetns(recorded);
  PodInfo pod = PodOf(plan, dev.pod_uid);
  const std::string where = Where(pod, plan, dev);
  absl::Status st;
  std::string note;
  if (dev.attached_by == state::kAttachedByMultus) {
    // Multus moved it in; its CNI DEL (after this hook on containerd, before it on CRI-O)
    // moves it out.
    note = "left to Multus (its CNI DEL gives the device back)";
  } else if (dev.vfio) {
    note = "stays on vfio-pci until the claim is unprepared";
  } else if (IsCniDevice(dev)) {
    // DEL always, also with the netns gone (the executor then passes no netns).
    st = WithTimeoutHint(Annotate(DelCni(pod, plan, dev, netns, deadline), where));
    // "Container unknown" is what a plugin says about an attachment that is already gone.
    if (absl::IsNotFound(st)) st = absl::OkStatus();
    if (!st.ok() && dev.state == DeviceState::kAttaching && OnHostAfterFailedDel(dev, st, where)) {
      st = absl::OkStatus();
    }
    if (st.ok() && dev.host) {
      // The plugins gave the device back (host-device does, without its host settings).
      absl::Status rs = attacher_.Restore(dev.identity, *dev.host);
      if (!rs.ok() && !absl::IsNotFound(rs)) {
        note = absl::StrCat("CNI DEL done; restoring the host settings: ", rs.message());
        spdlog::warn("{}: {}", where, note);
      }
    }
  } else if (dev.child) {
    st = attacher_.DetachChild(netns, state::InPodName(dev), *dev.child, where);
  } else if (!dev.host) {
    st = absl::InternalError("no host snapshot recorded");
  } else {
    st = attacher_.Detach(dev.identity, *dev.host, netns, state::InPodName(dev), where);
  }
  if (!st.ok() && !absl::IsNotFound(st)) {
    spdlog::error("{}: detach failed: {}", where, st.ToString());
    (void)UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
      d.note = "detach failed: " + std::string(st.message());
    });
    return st;
  }
  if (!st.ok()) note = std::string(st.message());
  RETURN_IF_ERROR(UpdateDevice(plan.claim_uid, index, [&](state::DevicePlan& d) {
    d.state = DeviceState::kDetached;
    d.pod_uid.clear();
    d.result.reset();
    d.attached_by.clear();
    d.note = note;
  }));
  if (st.ok()) {
    spdlog::info("{}: {}", where,
                 dev.attached_by == state::kAttachedByMultus ? "detached (left to Multus)"
                 : dev.vfio                                  ? "VF left on vfio-pci"
                 : IsCniDevice(dev)                          ? "CNI DEL done"
                 : dev.child                                 ? "child deleted"
                                                             : "returned to the host");
  } else {
    spdlog::warn("{}: {}", where, st.ToString());
  }
  Notify(pod, plan.claim_uid, index, nullptr);
  MaybeReleaseNetns(recorded);
  return st;
}

bool PodNetwork::OnHostAfterFailedDel(const state::DevicePlan& dev, const absl::Status& del,
                                      const std::string& where) {
  // An ADD that never got as far as moving the device (a plugin killed or timed out first):
  // some plugins (host-device) then fail their DEL for want of the interface in the pod. The
  // device is home; the DEL has nothing left to undo.
  absl::StatusOr<bool> home = attacher_.OnHost(dev.identity);
  if (!home.ok() || !*home) return false;
  spdlog::info("{}: CNI DEL failed ({}), but the device is on the host: nothing to undo", where,
               del.ToString());
  return true;
}

void PodNetwork::HoldNetns(const std::string& netns) {
  std::lock_guard<std::mutex> l(held_mu_);
  if (netns.empty() || held_.count(netns)) return;
  auto ns = netns::Netns::Open(netns);
  if (!ns.ok()) {
    spdlog::warn("cannot hold pod netns {}: {}", netns, ns.status().ToString());
    return;
  }
  held_.emplace(netns, std::move(*ns));
}

void PodNetwork::MaybeReleaseNetns(const std::string& netns) {
  if (netns.empty()) return;
  {
    std::lock_guard<std::mutex> l(held_mu_);
    if (!held_.count(netns)) return;
  }
  for (const auto& plan : plans_.List()) {
    for (const auto& d : plan.devices) {
      if (state::InPod(d) && d.result && d.result->netns == netns &&
          d.attached_by != state::kAttachedByMultus) {
        return;  // still in use
      }
    }
  }
  std::lock_guard<std::mutex> l(held_mu_);
  held_.erase(netns);
}

std::string PodNetwork::UsableNetns(const std::string& netns) const {
  std::lock_guard<std::mutex> l(held_mu_);
  auto it = held_.find(netns);
  if (it == held_.end()) return netns;
  auto now = netns::Netns::Open(netns);
  if (now.ok() && now->SameAs(it->second)) return netns;
  return absl::StrCat("/proc/", ::getpid(), "/fd/", it->second.fd());
}

size_t PodNetwork::held_netns() const {
  std::lock_guard<std::mutex> l(held_mu_);
  return held_.size();
}

absl::Status PodNetwork::ReleaseOrphans() {
  std::set<std::string> orphans;
  {
    std::lock_guard<std::mutex> l(held_mu_);
    for (const auto& [path, ns] : held_) {
      auto now = netns::Netns::Open(path);
      if (!now.ok() || !now->SameAs(ns)) orphans.insert(path);
    }
  }
  if (orphans.empty()) return absl::OkStatus();
  absl::Status first;
  for (const auto& plan : plans_.List()) {
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const auto& dev = plan.devices[i];
      if (!state::InPod(dev) || !dev.result || !orphans.count(dev.result->netns)) continue;
      spdlog::warn(
          "pod uid {}: its network namespace {} was deleted without a StopPodSandbox hook "
          "(the runtime restarted, or deleted it first); returning claim {}/{} device {}",
          dev.pod_uid, dev.result->netns, plan.claim_namespace, plan.claim_name, dev.device);
      auto lock = PodLock(dev.pod_uid);
      std::lock_guard<std::mutex> l(*lock);
      absl::Status st = DetachDevice(plan.claim_uid, i, dev.pod_uid, "");
      if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
    }
  }
  // Namespaces with nothing of ours left (e.g. only Multus's devices) are let go too.
  for (const auto& path : orphans) MaybeReleaseNetns(path);
  return first;
}

absl::Status PodNetwork::Detach(const PodInfo& pod) {
  auto lock = PodLock(pod.uid);
  std::lock_guard<std::mutex> l(*lock);
  NoteHook(pod.uid);
  absl::Status first;
  const Budget budget = HookBudget();
  for (const auto& plan : plans_.ForPod(pod.uid)) {
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const auto& dev = plan.devices[i];
      if (!state::InPod(dev) || dev.pod_uid != pod.uid) continue;
      absl::Status st = DetachDevice(plan.claim_uid, i, pod.uid, pod.netns, budget.cleanup);
      if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
    }
  }
  return first;
}

absl::Status PodNetwork::DetachClaim(const state::ClaimPlan& plan) {
  absl::Status first;
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    const auto& dev = plan.devices[i];
    if (!state::InPod(dev)) continue;
    auto lock = PodLock(dev.pod_uid);
    std::lock_guard<std::mutex> l(*lock);
    absl::Status st = DetachDevice(plan.claim_uid, i, dev.pod_uid, "");
    if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
  }
  return first;
}

absl::Status PodNetwork::ReleaseDevice(const state::ClaimPlan& plan, size_t index) {
  if (index >= plan.devices.size()) return absl::OkStatus();
  const std::string pod_uid = plan.devices[index].pod_uid;
  auto lock = PodLock(pod_uid);
  std::lock_guard<std::mutex> l(*lock);
  return DetachDevice(plan.claim_uid, index, pod_uid, "");
}

absl::Status PodNetwork::Reconcile(const std::vector<PodInfo>& running) {
  {
    std::lock_guard<std::mutex> l(hooked_mu_);
    if (!reconciling_) {  // a caller that took its snapshot just now
      reconciling_ = true;
      hooked_.clear();
    }
  }
  std::map<std::string, PodInfo> by_uid;
  for (const auto& p : running) by_uid[p.uid] = p;
  // Only which pods to look at comes from this read; what to do with each is decided afresh
  // under its lock (ReconcilePod).
  std::set<std::string> gone;
  for (const auto& plan : plans_.List()) {
    for (const auto& dev : plan.devices) {
      if (state::InPod(dev) && by_uid.count(dev.pod_uid) == 0) gone.insert(dev.pod_uid);
    }
  }
  absl::Status first;
  // Gone pods first: a running pod that took over one of their claims finds its device home.
  for (const std::string& uid : gone) {
    absl::Status st = ReconcilePod(uid, nullptr);
    if (!st.ok() && first.ok()) first = st;
  }
  for (const auto& [uid, pod] : by_uid) {
    absl::Status st = ReconcilePod(uid, &pod);
    if (!st.ok() && first.ok()) first = st;
  }
  {
    std::lock_guard<std::mutex> l(hooked_mu_);
    reconciling_ = false;
    hooked_.clear();
  }
  return first;
}

absl::Status PodNetwork::ReconcilePod(const std::string& uid, const PodInfo* pod) {
  if (reconcile_pod_hook_) reconcile_pod_hook_(uid);
  auto lock = PodLock(uid);
  std::lock_guard<std::mutex> l(*lock);
  if (HookedSinceSnapshot(uid)) {
    // The runtime told us about this pod after the snapshot (RunPodSandbox of a pod started
    // since, StopPodSandbox of one that was running): the hook acted on newer facts, and
    // the snapshot must not undo it.
    spdlog::info(
        "reconcile: pod uid {} had an NRI hook since Synchronize; left as the hook left it", uid);
    return absl::OkStatus();
  }
  absl::Status first;
  bool interrupted = false;
  for (const auto& plan : plans_.List()) {  // afresh, under the pod lock
    for (size_t i = 0; i < plan.devices.size(); ++i) {
      const auto& dev = plan.devices[i];
      if (!state::InPod(dev) || dev.pod_uid != uid) continue;
      if (pod == nullptr) {
        spdlog::info("reconcile: pod uid {} is gone; returning claim {}/{} device {} to the host",
                     uid, plan.claim_namespace, plan.claim_name, dev.device);
        absl::Status st = DetachDevice(plan.claim_uid, i, uid, "");
        if (!st.ok() && !absl::IsNotFound(st) && first.ok()) first = st;
      } else if (dev.state == DeviceState::kAttaching) {
        spdlog::info("reconcile: completing interrupted attach of claim {}/{} device {}",
                     plan.claim_namespace, plan.claim_name, dev.device);
        interrupted = true;
      } else if (dev.result && dev.attached_by != state::kAttachedByMultus) {
        HoldNetns(dev.result->netns);  // after knd's own restart
      }
    }
  }
  if (pod == nullptr) return first;
  // A running pod that the runtime started without knd's hook. Only devices that were never
  // attached: one that came back (its pod is over and gave it up early, or it failed) is not
  // pushed into the pod again.
  bool missing = false;
  if (!pod->netns.empty()) {
    for (const auto& plan : plans_.ForPod(uid)) {
      for (const auto& dev : plan.devices) missing = missing || dev.state == DeviceState::kPrepared;
    }
  }
  if (missing) {
    spdlog::warn(
        "reconcile: pod {}/{} runs without its devices (the runtime started it while knd was "
        "not connected); attaching them now",
        pod->namespace_, pod->name);
  }
  if (!missing && !interrupted) return first;
  absl::Status st = AttachLocked(*pod);
  if (!st.ok() && (missing || !absl::IsNotFound(st)) && first.ok()) first = st;
  return first;
}

}  // namespace knd::nri
