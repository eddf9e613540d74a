// HTTP control API of knd-runtime (see runtime_core.h for the endpoint list). It plays the
// CRI caller: it creates the pod netns, runs the pod's CNI networks, then runs the NRI events in
// the order a real runtime does, including the containerd/CRI-O difference on stop.
#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "cdi_hooks.h"
#include "cni/conflist.h"
#include "cni/executor.h"
#include "runtime_core.h"

namespace knd::localcp {
namespace {

using nlohmann::json;

std::string RandomHex(size_t n) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> l(mu);
  std::string s;
  const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) s.push_back(digits[rng() % 16]);
  return s;
}

void Reply(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void Error(httplib::Response& res, int code, const std::string& msg) {
  Reply(res, code, json{{"error", msg}});
}

// Parses the body as a JSON object; answers 400 and returns false otherwise.
bool ParseBody(const httplib::Request& req, httplib::Response& res, json& out) {
  out = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded() || !out.is_object()) {
    Error(res, 400, req.path + ": body must be a JSON object");
    return false;
  }
  return true;
}

// Reads a required non-empty string field; answers 400 naming the field otherwise.
bool StringField(const json& body, const char* field, const httplib::Request& req,
                 httplib::Response& res, std::string& out, bool required = true) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) {
    if (!required) return true;
    Error(res, 400, req.path + ": field \"" + field + "\" is required");
    return false;
  }
  if (!it->is_string() || (required && it->get<std::string>().empty())) {
    Error(res, 400, req.path + ": field \"" + field + "\" must be a non-empty string");
    return false;
  }
  out = it->get<std::string>();
  return true;
}

// Multus's DRA path hands a device to a delegate (wire-facts §9; Multus pkg/types/conf.go
// addDeviceIDInConfList): the device id goes into every plugin of the delegate's conflist as
// both "deviceID" and "pciBusID", next to whatever selector the NAD already has, and plugins
// declaring the `deviceID` capability also get it as runtimeConfig.deviceID (the runtime
// conf's capability args, see CniRuntime). Not cni::HandDevice: that is knd's own hand-over
// (it replaces host-device's selectors with one of its choosing and sets no pciBusID on other
// plugins); the stand-in must feed the plugins what Multus does, not what knd would.
json InjectDeviceId(json conflist, const std::string& device_id) {
  for (json& p : conflist["plugins"]) {
    if (!p.is_object()) continue;
    p["deviceID"] = device_id;
    p["pciBusID"] = device_id;
  }
  return conflist;
}

// The runtime side of one pod network, as containerd fills it for the pod's CNI (CNI_ARGS:
// wire-facts §6.4); Multus passes the same args on to its delegates.
cni::RuntimeConf CniRuntime(const api::PodSandbox& sandbox, const std::string& netns,
                            const std::string& ifname, const std::string& device_id) {
  cni::RuntimeConf rt;
  rt.container_id = sandbox.id();
  rt.netns = netns;
  rt.ifname = ifname;
  rt.args = {{"IgnoreUnknown", "1"},
             {"K8S_POD_NAMESPACE", sandbox.namespace_()},
             {"K8S_POD_NAME", sandbox.name()},
             {"K8S_POD_INFRA_CONTAINER_ID", sandbox.id()},
             {"K8S_POD_UID", sandbox.uid()}};
  if (!device_id.empty()) rt.capability_args["deviceID"] = device_id;
  return rt;
}

}  // namespace

ControlApi::ControlApi(RuntimeCore& core, NetnsOps& netns, std::string cdi_dir, cni::Executor* cni)
    : core_(core),
      netns_(netns),
      cdi_dir_(std::move(cdi_dir)),
      cni_(cni),
      http_(std::make_unique<httplib::Server>()) {
  http_->set_tcp_nodelay(true);  // no Nagle/delayed-ACK stall on kept-alive control calls
  Routes();
}

ControlApi::~ControlApi() { Stop(); }

absl::StatusOr<int> ControlApi::Listen(const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = http_->bind_to_any_port(host);
    if (bound <= 0) return absl::UnavailableError("cannot bind " + host + ":0");
  } else if (!http_->bind_to_port(host, port)) {
    return absl::UnavailableError("cannot bind " + host + ":" + std::to_string(port));
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return bound;
}

void ControlApi::Stop() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::Status ControlApi::DelNetworks(const api::PodSandbox& sandbox, const std::string& netns,
                                     std::vector<PodNetwork>& nets) {
  absl::Status first;
  std::vector<PodNetwork> left;
  for (auto it = nets.rbegin(); it != nets.rend(); ++it) {
    absl::Status st =
        cni_->Del(it->conflist, CniRuntime(sandbox, netns, it->ifname, it->device_id));
    if (st.ok()) continue;
    spdlog::warn("pod {}/{}: CNI DEL of {} ({}): {}", sandbox.namespace_(), sandbox.name(),
                 it->conflist.value("name", ""), it->ifname, st.ToString());
    if (first.ok()) {
      first = absl::Status(st.code(),
                           absl::StrCat("CNI DEL of network ", it->conflist.value("name", ""), " (",
                                        it->ifname, "): ", st.message()));
    }
    left.insert(left.begin(), std::move(*it));  // keeps ADD order
  }
  nets = std::move(left);
  return first;
}

void ControlApi::RecordFailed(const api::PodSandbox& sandbox, const std::string& error) {
  std::lock_guard<std::mutex> l(mu_);
  failed_.push_back(
      FailedSandbox{sandbox.uid(), sandbox.id(), sandbox.namespace_(), sandbox.name(), error});
}

void ControlApi::Routes() {
  http_->Get("/plugins", [this](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const PluginInfo& p : core_.Plugins()) {
      out.push_back({{"name", p.name}, {"index", p.index}, {"events", p.events}});
    }
    Reply(res, 200, out);
  });

  http_->Get("/pods", [this](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [uid, p] : pods_) {
      out.push_back({{"uid", uid},
                     {"id", p.sandbox.id()},
                     {"namespace", p.sandbox.namespace_()},
                     {"name", p.sandbox.name()},
                     {"netns", p.netns},
                     {"hostNetwork", p.host_network}});
    }
    Reply(res, 200, out);
  });

  http_->Get("/sandboxes", [this](const httplib::Request&, httplib::Response& res) {
    json ready = json::array(), not_ready = json::array(), failed = json::array();
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [uid, p] : pods_) {
      (p.stopped ? not_ready : ready)
          .push_back({{"uid", uid},
                      {"id", p.sandbox.id()},
                      {"namespace", p.sandbox.namespace_()},
                      {"name", p.sandbox.name()},
                      {"netns", p.netns}});
    }
    for (const FailedSandbox& f : failed_) {
      failed.push_back({{"uid", f.uid},
                        {"id", f.id},
                        {"namespace", f.namespace_},
                        {"name", f.name},
                        {"error", f.error}});
    }
    Reply(res, 200,
          json{{"ready", ready},
               {"notReady", not_ready},
               {"failed", failed},
               {"failedTotal", failed_.size()}});
  });

  http_->Post("/pods/run", [this](const httplib::Request& req, httplib::Response& res) {
    json body;
    std::string uid, ns, name;
    if (!ParseBody(req, res, body) || !StringField(body, "uid", req, res, uid) ||
        !StringField(body, "namespace", req, res, ns) ||
        !StringField(body, "name", req, res, name)) {
      return;
    }
    bool host_network = false;
    if (auto it = body.find("hostNetwork"); it != body.end() && !it->is_null()) {
      if (!it->is_boolean())
        return Error(res, 400, "/pods/run: field \"hostNetwork\" must be a bool");
      host_network = it->get<bool>();
    }
    std::vector<PodNetwork> networks;
    if (auto it = body.find("networks"); it != body.end() && !it->is_null()) {
      if (!it->is_array()) return Error(res, 400, "/pods/run: field \"networks\" must be a list");
      std::set<std::string> ifnames;
      for (size_t i = 0; i < it->size(); ++i) {
        const json& e = (*it)[i];
        const std::string where = absl::StrCat("/pods/run: networks[", i, "]");
        if (!e.is_object()) return Error(res, 400, where + " must be an object");
        auto conf = e.find("conflist");
        if (conf == e.end() || !conf->is_object()) {
          return Error(res, 400, where + ".conflist must be a CNI conflist object");
        }
        absl::StatusOr<json> list = cni::NormalizeConfList(*conf, where + ".conflist");
        if (!list.ok()) return Error(res, 400, std::string(list.status().message()));
        PodNetwork n;
        n.ifname = absl::StrCat("net", i + 1);
        for (auto [key, out] : {std::pair<const char*, std::string*>{"ifname", &n.ifname},
                                {"deviceID", &n.device_id}}) {
          auto f = e.find(key);
          if (f == e.end() || f->is_null()) continue;
          if (!f->is_string() || f->get<std::string>().empty()) {
            return Error(res, 400, where + "." + key + " must be a non-empty string");
          }
          *out = f->get<std::string>();
        }
        if (!ifnames.insert(n.ifname).second) {
          return Error(res, 400, where + ": ifname " + n.ifname + " is used twice");
        }
        n.conflist = n.device_id.empty() ? *list : InjectDeviceId(*list, n.device_id);
        networks.push_back(std::move(n));
      }
    }
    if (!networks.empty() && host_network) {
      // The runtime runs no pod network for a host-network pod.
      return Error(res, 400, "/pods/run: a hostNetwork pod has no networks");
    }
    if (!networks.empty() && cni_ == nullptr) {
      return Error(res, 400, "/pods/run: networks given but this runtime runs no CNI");
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (pods_.count(uid) != 0) return Error(res, 409, "/pods/run: pod uid " + uid + " exists");
    }
    Pod pod;
    pod.host_network = host_network;
    pod.sandbox.set_id(RandomHex(32));
    pod.sandbox.set_uid(uid);
    pod.sandbox.set_namespace_(ns);
    pod.sandbox.set_name(name);
    if (!host_network) {
      // A new namespace per sandbox, as containerd (cni-<uuid>) and CRI-O do: a retried pod
      // never gets its failed attempt's path again.
      absl::StatusOr<std::string> path =
          netns_.Create("knd-pod-" + uid.substr(0, 8) + "-" + pod.sandbox.id().substr(0, 8));
      if (!path.ok()) return Error(res, 500, "create pod netns: " + path.status().ToString());
      pod.netns = *path;
      api::LinuxNamespace* lns = pod.sandbox.mutable_linux()->add_namespaces();
      lns->set_type("network");
      lns->set_path(pod.netns);
    }
    // Like a failed CRI RunPodSandbox: the sandbox's network is torn down (CNI DEL, then the
    // netns), and the runtime keeps a record of the failed sandbox.
    auto fail = [&](const std::string& error) {
      (void)DelNetworks(pod.sandbox, pod.netns, pod.networks);
      if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
      RecordFailed(pod.sandbox, error);
      Error(res, 500, error);
    };
    // containerd sets the pod network up (CNI: the default network, Multus and its delegates)
    // before NRI RunPodSandbox (internal/cri/server/sandbox_run.go; wire-facts §9).
    json results = json::array();
    for (PodNetwork& n : networks) {
      absl::StatusOr<json> r =
          cni_->Add(n.conflist, CniRuntime(pod.sandbox, pod.netns, n.ifname, n.device_id));
      // A failed ADD is DEL'ed too (the spec asks a DEL after a failed ADD: the plugin may
      // have left state, e.g. an IPAM lease), as Multus does for the delegate that failed.
      pod.networks.push_back(n);
      if (!r.ok()) {
        return fail(absl::StrCat("CNI ADD of network ", n.conflist.value("name", ""), " (",
                                 n.ifname, "): ", r.status().message()));
      }
      results.push_back(*r);
    }
    absl::Status st = core_.RunPodSandbox(pod.sandbox);
    if (!st.ok()) return fail(std::string(st.message()));
    json out{{"id", pod.sandbox.id()}, {"netns", pod.netns}, {"networks", results}};
    {
      std::lock_guard<std::mutex> l(mu_);
      pods_[uid] = std::move(pod);
    }
    Reply(res, 200, out);
  });

  http_->Post("/pods/stop", [this](const httplib::Request& req, httplib::Response& res) {
    json body;
    std::string uid, order = "containerd";
    if (!ParseBody(req, res, body) || !StringField(body, "uid", req, res, uid) ||
        !StringField(body, "order", req, res, order, /*required=*/false)) {
      return;
    }
    if (order != "containerd" && order != "crio") {
      return Error(res, 400, "/pods/stop: field \"order\" must be \"containerd\" or \"crio\"");
    }
    Pod pod;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it == pods_.end()) return Error(res, 404, "/pods/stop: no pod with uid " + uid);
      pod = it->second;
    }
    absl::Status nri_st, cni_st;
    std::vector<PodNetwork> left = pod.networks;
    bool netns_deleted = false;
    if (order == "containerd") {
      // containerd: NRI StopPodSandbox before the CNI teardown; the netns still exists. Then
      // CNI DEL (in the netns), then the netns goes. A failed DEL fails the stop there.
      nri_st = core_.StopPodSandbox(pod.sandbox);
      cni_st = DelNetworks(pod.sandbox, pod.netns, left);
      if (cni_st.ok() && !pod.netns.empty()) {
        (void)netns_.Delete(pod.netns);
        netns_deleted = true;
      }
    } else {
      // CRI-O: the network goes first (CNI DEL, then the netns); NRI StopPodSandbox comes
      // after, when the netns is gone.
      cni_st = DelNetworks(pod.sandbox, pod.netns, left);
      if (cni_st.ok()) {
        if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
        netns_deleted = true;
        nri_st = core_.StopPodSandbox(pod.sandbox);
      }
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it != pods_.end() && it->second.sandbox.id() == pod.sandbox.id()) {
        it->second.networks = left;
        if (netns_deleted) it->second.netns.clear();
        if (cni_st.ok()) it->second.stopped = true;
      }
    }
    if (!cni_st.ok()) return Error(res, 500, std::string(cni_st.message()));
    if (!nri_st.ok()) return Error(res, 500, std::string(nri_st.message()));
    Reply(res, 200, json::object());
  });

  http_->Post("/pods/remove", [this](const httplib::Request& req, httplib::Response& res) {
    json body;
    std::string uid;
    if (!ParseBody(req, res, body) || !StringField(body, "uid", req, res, uid)) return;
    Pod pod;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it == pods_.end()) return Error(res, 404, "/pods/remove: no pod with uid " + uid);
      pod = it->second;
    }
    // A pod removed without a stop still holds its networks: they go first, with its netns.
    std::vector<PodNetwork> left = pod.networks;
    absl::Status cni_st = DelNetworks(pod.sandbox, pod.netns, left);
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it != pods_.end() && it->second.sandbox.id() == pod.sandbox.id()) {
        if (cni_st.ok()) {
          pods_.erase(it);
        } else {
          it->second.networks = left;  // kept for a retried remove
        }
      }
    }
    if (!cni_st.ok()) return Error(res, 500, std::string(cni_st.message()));
    if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
    absl::Status st = core_.RemovePodSandbox(pod.sandbox);
    if (!st.ok()) return Error(res, 500, std::string(st.message()));
    Reply(res, 200, json::object());
  });

  http_->Post("/containers/create", [this](const httplib::Request& req, httplib::Response& res) {
    json body;
    std::string uid, name;
    if (!ParseBody(req, res, body) || !StringField(body, "uid", req, res, uid) ||
        !StringField(body, "name", req, res, name)) {
      return;
    }
    std::vector<std::string> cdi_devices;
    if (auto it = body.find("cdiDevices"); it != body.end()) {
      if (!it->is_array()) {
        return Error(res, 400, "/containers/create: field \"cdiDevices\" must be a list");
      }
      for (const json& id : *it) {
        if (!id.is_string()) {
          return Error(res, 400, "/containers/create: field \"cdiDevices\" holds a non-string");
        }
        cdi_devices.push_back(id.get<std::string>());
      }
    }
    api::PodSandbox sandbox;
    std::string pod_netns;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pods_.find(uid);
      if (it == pods_.end()) return Error(res, 404, "/containers/create: no pod with uid " + uid);
      sandbox = it->second.sandbox;
      pod_netns = it->second.netns;
    }
    api::Container ctr;
    ctr.set_id(RandomHex(32));
    ctr.set_pod_sandbox_id(sandbox.id());
    ctr.set_name(name);
    ctr.set_state(api::CONTAINER_CREATED);
    absl::StatusOr<api::ContainerAdjustment> adj = core_.CreateContainer(sandbox, ctr);
    if (!adj.ok()) return Error(res, 500, std::string(adj.status().message()));
    if (!cdi_devices.empty()) {
      if (cdi_dir_.empty()) {
        return Error(res, 500, "/containers/create: CDI devices given but no --cdi-dir");
      }
      absl::Status st = RunCreateRuntimeHooks(cdi_dir_, cdi_devices, pod_netns, ctr.id());
      if (!st.ok()) return Error(res, 500, std::string(st.message()));
    }
    std::string adj_json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*adj, &adj_json, opts);
    json out{{"containerId", ctr.id()},
             {"adjust", json::parse(adj_json, nullptr, /*allow_exceptions=*/false)}};
    Reply(res, 200, out);
  });
}

}  // namespace knd::localcp
