// HTTP control API of knd-runtime (see runtime_core.h for the endpoint list). It plays the
// CRI caller: it creates the pod netns, then runs the NRI events in the order a real runtime
// does, including the containerd/CRI-O difference on stop.
#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <random>

#include "cdi_hooks.h"
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

}  // namespace

ControlApi::ControlApi(RuntimeCore& core, NetnsOps& netns, std::string cdi_dir)
    : core_(core),
      netns_(netns),
      cdi_dir_(std::move(cdi_dir)),
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
    absl::Status st = core_.RunPodSandbox(pod.sandbox);
    if (!st.ok()) {
      // Like a failed CRI RunPodSandbox: the sandbox is torn down.
      if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
      return Error(res, 500, std::string(st.message()));
    }
    json out{{"id", pod.sandbox.id()}, {"netns", pod.netns}};
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
      it->second.netns.clear();  // deleted below in either order
    }
    absl::Status st;
    if (order == "containerd") {
      // containerd: NRI StopPodSandbox before CNI teardown; the netns still exists.
      st = core_.StopPodSandbox(pod.sandbox);
      if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
    } else {
      // CRI-O: the netns is gone before NRI StopPodSandbox.
      if (!pod.netns.empty()) (void)netns_.Delete(pod.netns);
      st = core_.StopPodSandbox(pod.sandbox);
    }
    if (!st.ok()) return Error(res, 500, std::string(st.message()));
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
      pod = std::move(it->second);
      pods_.erase(it);
    }
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
