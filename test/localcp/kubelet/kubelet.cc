#include "kubelet.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "dra/v1/api.grpc.pb.h"
#include "dra/v1beta1/api.grpc.pb.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace knd::localcp {
namespace {

using nlohmann::json;
namespace reg = ::pluginregistration;

constexpr const char* kKnownServices[] = {"v1.DRAPlugin", "v1beta1.DRAPlugin"};
constexpr auto kGetInfoTimeout = std::chrono::seconds(1);
constexpr auto kNotifyTimeout = std::chrono::seconds(5);
constexpr auto kCallTimeout = std::chrono::seconds(45);

const json* Field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}
std::string Str(const json& j, const char* key) {
  const json* f = Field(j, key);
  return f != nullptr && f->is_string() ? f->get<std::string>() : std::string();
}
const json& Arr(const json& j, const char* key) {
  static const json kEmpty = json::array();
  const json* f = Field(j, key);
  return f != nullptr && f->is_array() ? *f : kEmpty;
}
const json& Obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  const json* f = Field(j, key);
  return f != nullptr && f->is_object() ? *f : kEmpty;
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

HttpAnswer Fail(int status, const std::string& msg) {
  return HttpAnswer{status, json{{"error", msg}}};
}

std::chrono::system_clock::time_point Deadline(std::chrono::seconds s) {
  return std::chrono::system_clock::now() + s;
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::UnavailableError(
      absl::StrCat(what, ": gRPC ", static_cast<int>(s.error_code()), ": ", s.error_message()));
}

// One DRAPlugin call through the generated stubs of one version (same shapes in v1 and v1beta1).
template <class Svc, class PrepReq, class PrepResp, class UnReq, class UnResp>
absl::Status CallVersion(const std::shared_ptr<grpc::Channel>& ch,
                         const std::vector<std::array<std::string, 3>>& claims, bool prepare,
                         json& out) {
  auto stub = Svc::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(kCallTimeout));
  auto fill = [&](auto& req) {
    for (const auto& c : claims) {
      auto* pc = req.add_claims();
      pc->set_namespace_(c[0]);
      pc->set_uid(c[1]);
      pc->set_name(c[2]);
    }
  };
  if (prepare) {
    PrepReq req;
    fill(req);
    PrepResp resp;
    grpc::Status s = stub->NodePrepareResources(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, "NodePrepareResources");
    for (const auto& [uid, r] : resp.claims()) {
      json devs = json::array();
      for (const auto& d : r.devices()) {
        devs.push_back({{"requestNames", std::vector<std::string>(d.request_names().begin(),
                                                                  d.request_names().end())},
                        {"poolName", d.pool_name()},
                        {"deviceName", d.device_name()},
                        {"cdiDeviceIds", std::vector<std::string>(d.cdi_device_ids().begin(),
                                                                  d.cdi_device_ids().end())}});
      }
      out[uid] = {{"devices", devs}, {"error", r.error()}};
    }
  } else {
    UnReq req;
    fill(req);
    UnResp resp;
    grpc::Status s = stub->NodeUnprepareResources(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s, "NodeUnprepareResources");
    for (const auto& [uid, r] : resp.claims()) out[uid] = {{"error", r.error()}};
  }
  return absl::OkStatus();
}

namespace v1 = ::k8s::io::kubelet::pkg::apis::dra::v1;
namespace v1beta1 = ::k8s::io::kubelet::pkg::apis::dra::v1beta1;

}  // namespace

// ---- API client -----------------------------------------------------------------------------

absl::StatusOr<ApiClient> ApiClient::FromKubeconfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  // yaml-cpp reports errors by exception; this is the one place they are caught.
  try {
    YAML::Node root = YAML::Load(text);
    const std::string current = root["current-context"].as<std::string>("");
    std::string cluster_name, user_name;
    for (const auto& c : root["contexts"]) {
      if (current.empty() || c["name"].as<std::string>("") == current) {
        cluster_name = c["context"]["cluster"].as<std::string>("");
        user_name = c["context"]["user"].as<std::string>("");
        break;
      }
    }
    std::string server, token;
    bool insecure = false;
    for (const auto& c : root["clusters"]) {
      if (c["name"].as<std::string>("") != cluster_name) continue;
      server = c["cluster"]["server"].as<std::string>("");
      insecure = c["cluster"]["insecure-skip-tls-verify"].as<bool>(false);
    }
    for (const auto& u : root["users"]) {
      if (u["name"].as<std::string>("") != user_name) continue;
      if (u["user"] && u["user"].IsMap()) token = u["user"]["token"].as<std::string>("");
    }
    if (server.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, ": no server for context ", Quote(current)));
    }
    return ApiClient(server, token, insecure);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
}

absl::StatusOr<json> ApiClient::Get(const std::string& path) const {
  httplib::Client cli(server_);
  cli.enable_server_certificate_verification(!insecure_);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(10);
  httplib::Headers h;
  if (!token_.empty()) h.emplace("Authorization", "Bearer " + token_);
  auto res = cli.Get(path, h);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("GET ", path, ": ", httplib::to_string(res.error())));
  }
  json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (res->status == 404) return absl::NotFoundError(absl::StrCat("GET ", path, ": not found"));
  if (res->status != 200 || body.is_discarded()) {
    return absl::UnavailableError(
        absl::StrCat("GET ", path, ": HTTP ", res->status, ": ", res->body.substr(0, 300)));
  }
  return body;
}

absl::Status ApiClient::Delete(const std::string& path_and_query) const {
  httplib::Client cli(server_);
  cli.enable_server_certificate_verification(!insecure_);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(10);
  httplib::Headers h;
  if (!token_.empty()) h.emplace("Authorization", "Bearer " + token_);
  auto res = cli.Delete(path_and_query, h);
  if (!res) {
    return absl::UnavailableError(
        absl::StrCat("DELETE ", path_and_query, ": ", httplib::to_string(res.error())));
  }
  if (res->status >= 300 && res->status != 404) {
    return absl::UnavailableError(absl::StrCat("DELETE ", path_and_query, ": HTTP ", res->status,
                                               ": ", res->body.substr(0, 300)));
  }
  return absl::OkStatus();
}

// ---- plugin registration --------------------------------------------------------------------

Kubelet::Kubelet(KubeletOptions opts, ApiClient api)
    : opts_(std::move(opts)), api_(std::move(api)) {}

Kubelet::~Kubelet() { Stop(); }

absl::Status Kubelet::Start() {
  if (opts_.wipe_slices_on_start) {
    // Like the real kubelet at start: every slice of this node goes, for every driver.
    absl::Status st = api_.Delete(absl::StrCat(
        "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName%3D", opts_.node_name));
    if (!st.ok())
      spdlog::warn("wiping ResourceSlices of node {}: {}", opts_.node_name, st.ToString());
  }
  RETURN_IF_ERROR(MakeDirs(opts_.registry_dir));
  inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ < 0) return ErrnoStatus("inotify_init1");
  if (::inotify_add_watch(inotify_fd_, opts_.registry_dir.c_str(),
                          IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM) < 0) {
    return ErrnoStatus("inotify_add_watch " + opts_.registry_dir);
  }
  Reconcile();  // the initial scan: sockets that were there before we started
  watcher_ = std::thread([this] { WatchLoop(); });
  health_ = std::thread([this] { HealthLoop(); });
  return absl::OkStatus();
}

void Kubelet::Stop() {
  stop_ = true;
  if (watcher_.joinable()) watcher_.join();
  if (health_.joinable()) health_.join();
  if (inotify_fd_ >= 0) {
    ::close(inotify_fd_);
    inotify_fd_ = -1;
  }
}

void Kubelet::WatchLoop() {
  alignas(inotify_event) char buf[4096];
  while (!stop_) {
    pollfd p{inotify_fd_, POLLIN, 0};
    // Wake on inotify events; every second anyway, to retry failed registrations and to see
    // sockets in sub-directories (the kubelet's reconciler also runs every second).
    int n = ::poll(&p, 1, 250);
    std::set<std::string> created;
    if (n > 0) {
      ssize_t len;
      while ((len = ::read(inotify_fd_, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < len;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) != 0 && ev->len > 0) {
            created.insert((std::filesystem::path(opts_.registry_dir) / ev->name).string());
          }
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
    }
    Reconcile(created);
  }
}

void Kubelet::Reconcile(const std::set<std::string>& recreated) {
  // Desired state: every unix socket under the registry dir whose name does not start with '.'.
  std::map<std::string, unsigned long> sockets;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(opts_.registry_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    struct stat st;
    if (::lstat(it->path().c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      sockets[it->path().string()] = st.st_ino;
    }
  }
  std::vector<std::pair<std::string, unsigned long>> todo;
  const uint64_t round = ++round_;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Unregister first: gone sockets, and sockets re-created under the same name. The real
    // kubelet registers a socket once per creation event. Here the previous round's scan may
    // have registered a socket whose creation event was read only now: that event is the same
    // socket (same inode), not a new one.
    for (auto it = plugins_.begin(); it != plugins_.end();) {
      auto s = sockets.find(it->first);
      const bool same_creation =
          s != sockets.end() && s->second == it->second.inode && it->second.round + 1 == round;
      if (s == sockets.end() || s->second != it->second.inode ||
          (recreated.count(it->first) && !same_creation)) {
        spdlog::info("deregistered plugin {} (socket {} gone)", it->second.name, it->first);
        it = plugins_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = rejected_.begin(); it != rejected_.end();) {
      auto s = sockets.find(it->first);
      it = (s == sockets.end() || s->second != it->second || recreated.count(it->first))
               ? rejected_.erase(it)
               : std::next(it);
    }
    for (const auto& [path, ino] : sockets) {
      if (!plugins_.count(path) && !rejected_.count(path)) todo.emplace_back(path, ino);
    }
  }
  for (const auto& [path, ino] : todo) {
    std::optional<RegisteredPlugin> p = Register(path, ino);
    if (!p) continue;
    std::lock_guard<std::mutex> l(mu_);
    p->seq = next_seq_++;
    p->round = round;
    plugins_[path] = std::move(*p);
  }
}

std::optional<RegisteredPlugin> Kubelet::Register(const std::string& socket, unsigned long inode) {
  auto ch = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = reg::Registration::NewStub(ch);
  reg::PluginInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(kGetInfoTimeout));
    grpc::Status s = stub->GetInfo(&ctx, reg::InfoRequest(), &info);
    if (!s.ok()) {
      // Not notified (the kubelet does not either); retried on the next round.
      SPDLOG_DEBUG("GetInfo {}: {}", socket, s.error_message());
      return std::nullopt;
    }
  }
  auto notify = [&](bool ok, const std::string& err) {
    reg::RegistrationStatus st;
    st.set_plugin_registered(ok);
    st.set_error(err);
    reg::RegistrationStatusResponse r;
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(kNotifyTimeout));
    return stub->NotifyRegistrationStatus(&ctx, st, &r);
  };
  auto reject = [&](const std::string& err) -> std::optional<RegisteredPlugin> {
    spdlog::warn("plugin at {} refused: {}", socket, err);
    notify(false, err);
    std::lock_guard<std::mutex> l(mu_);
    rejected_[socket] = inode;
    return std::nullopt;
  };
  if (info.type() != "DRAPlugin") {
    return reject(absl::StrCat("no handler for plugin type \"", info.type(), "\""));
  }
  if (info.name().empty()) return reject("plugin name is empty");
  RegisteredPlugin p;
  p.socket = socket;
  p.inode = inode;
  p.name = info.name();
  p.endpoint = info.endpoint().empty() ? socket : info.endpoint();
  p.versions.assign(info.supported_versions().begin(), info.supported_versions().end());
  // Kubelet ≥1.34: the first entry of the plugin's list that the kubelet knows.
  for (const std::string& v : p.versions) {
    for (const char* k : kKnownServices) {
      if (v == k && p.service.empty()) p.service = v;
    }
  }
  if (p.service.empty()) {
    return reject(absl::StrCat("none of services supported by the plugin (",
                               absl::StrJoin(p.versions, ", "),
                               ") are supported by the kubelet (v1.DRAPlugin, v1beta1.DRAPlugin)"));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [_, other] : plugins_) {
      if (other.name == p.name && other.endpoint == p.endpoint) {
        rejected_[socket] = inode;
        return std::nullopt;
      }
    }
  }
  p.channel = grpc::CreateChannel("unix:" + p.endpoint, grpc::InsecureChannelCredentials());
  grpc::Status s = notify(true, "");
  if (!s.ok()) {
    spdlog::warn("NotifyRegistrationStatus {}: {}", socket, s.error_message());
    return std::nullopt;  // retried next round
  }
  spdlog::info("registered DRA plugin {} at {} using {}", p.name, p.endpoint, p.service);
  return p;
}

void Kubelet::HealthLoop() {
  namespace health = ::v1alpha1;
  while (!stop_) {
    // The newest registration of each driver that serves the health API.
    std::vector<RegisteredPlugin> targets;
    {
      std::lock_guard<std::mutex> l(mu_);
      std::map<std::string, const RegisteredPlugin*> newest;
      for (const auto& [_, p] : plugins_) {
        bool serves = std::find(p.versions.begin(), p.versions.end(),
                                "v1alpha1.DRAResourceHealth") != p.versions.end();
        auto& n = newest[p.name];
        if (serves && (n == nullptr || p.seq > n->seq)) n = &p;
      }
      for (const auto& [_, p] : newest) {
        if (p != nullptr) targets.push_back(*p);
      }
    }
    if (targets.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    // One stream at a time, for a second at most (then the next driver, or the same one
    // again): a stand-in needs no more, and Stop() stays prompt.
    for (const RegisteredPlugin& p : targets) {
      if (stop_) return;
      auto stub = health::DRAResourceHealth::NewStub(p.channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(std::chrono::seconds(1)));
      auto reader = stub->NodeWatchResources(&ctx, health::NodeWatchResourcesRequest());
      health::NodeWatchResourcesResponse msg;
      while (!stop_ && reader->Read(&msg)) {
        json list = json::array();
        for (const auto& d : msg.devices()) {
          list.push_back({{"pool", d.device().pool_name()},
                          {"device", d.device().device_name()},
                          {"health", health::HealthStatus_Name(d.health())},
                          {"message", d.message()}});
        }
        std::lock_guard<std::mutex> l(mu_);
        health_by_driver_[p.name] = std::move(list);
      }
      ctx.TryCancel();
      (void)reader->Finish();
    }
  }
}

json Kubelet::Health() const {
  std::lock_guard<std::mutex> l(mu_);
  json out = json::object();
  for (const auto& [driver, list] : health_by_driver_) out[driver] = list;
  return out;
}

json Kubelet::Plugins() const {
  std::lock_guard<std::mutex> l(mu_);
  json out = json::array();
  for (const auto& [_, p] : plugins_) {
    out.push_back({{"name", p.name},
                   {"endpoint", p.endpoint},
                   {"versions", p.versions},
                   {"service", p.service},
                   {"socket", p.socket},
                   {"seq", p.seq},  // grows with every registration (a restart re-registers)
                   {"registered", true}});
  }
  return out;
}

std::optional<RegisteredPlugin> Kubelet::PluginFor(const std::string& driver) const {
  std::lock_guard<std::mutex> l(mu_);
  const RegisteredPlugin* best = nullptr;
  for (const auto& [_, p] : plugins_) {
    if (p.name == driver && (best == nullptr || p.seq > best->seq)) best = &p;
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

// ---- prepare / unprepare --------------------------------------------------------------------

absl::Status Kubelet::Call(const std::string& driver, const std::vector<ClaimCall>& claims,
                           const std::string& api, bool prepare, json& out) {
  std::optional<RegisteredPlugin> p = PluginFor(driver);
  if (!p) {
    return absl::UnavailableError(
        absl::StrCat("DRA driver ", driver, " is not registered with this kubelet"));
  }
  std::string service = p->service;
  if (!api.empty()) service = api + ".DRAPlugin";
  std::vector<std::array<std::string, 3>> refs;
  for (const auto& c : claims) refs.push_back({c.namespace_, c.uid, c.name});
  json answers = json::object();
  absl::Status st;
  if (service == "v1.DRAPlugin") {
    st = CallVersion<v1::DRAPlugin, v1::NodePrepareResourcesRequest,
                     v1::NodePrepareResourcesResponse, v1::NodeUnprepareResourcesRequest,
                     v1::NodeUnprepareResourcesResponse>(p->channel, refs, prepare, answers);
  } else if (service == "v1beta1.DRAPlugin") {
    st = CallVersion<v1beta1::DRAPlugin, v1beta1::NodePrepareResourcesRequest,
                     v1beta1::NodePrepareResourcesResponse, v1beta1::NodeUnprepareResourcesRequest,
                     v1beta1::NodeUnprepareResourcesResponse>(p->channel, refs, prepare, answers);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown api ", Quote(api)));
  }
  RETURN_IF_ERROR(st);
  const char* method = prepare ? "NodePrepareResources" : "NodeUnprepareResources";
  std::set<std::string> asked;
  for (const auto& c : claims) asked.insert(c.uid);
  for (const auto& [uid, _] : answers.items()) {
    if (!asked.count(uid)) {
      return absl::InternalError(
          absl::StrCat(method, " returned result for unknown claim UID ", uid));
    }
  }
  size_t skipped = 0;
  for (const auto& uid : asked) skipped += answers.contains(uid) ? 0 : 1;
  for (const auto& [uid, r] : answers.items()) out[uid] = r;
  if (skipped > 0) {
    return absl::InternalError(absl::StrCat(method, " skipped ", skipped, " ResourceClaims"));
  }
  return absl::OkStatus();
}

HttpAnswer Kubelet::PreparePod(const json& body, const std::string& api, bool prepare) {
  const std::string ns = Str(body, "namespace"), name = Str(body, "name");
  if (ns.empty() || name.empty()) return Fail(400, "body needs \"namespace\" and \"name\"");
  const std::string pod_key = ns + "/" + name;
  std::lock_guard<std::mutex> serial(pod_calls_mu_);

  std::map<std::string, std::vector<ClaimCall>> by_driver;
  absl::StatusOr<json> pod = api_.Get(absl::StrCat("/api/v1/namespaces/", ns, "/pods/", name));
  if (!prepare) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = prepared_.find(pod_key);
    if (it != prepared_.end()) by_driver = it->second;
  }
  if (by_driver.empty()) {
    if (!pod.ok()) {
      if (!prepare && absl::IsNotFound(pod.status())) {
        return HttpAnswer{200, {{"claims", json::object()}}};  // nothing known, nothing to do
      }
      return Fail(absl::IsNotFound(pod.status()) ? 404 : 502, pod.status().ToString());
    }
    const std::string pod_uid = Str(Obj(*pod, "metadata"), "uid");
    const json& statuses = Arr(Obj(*pod, "status"), "resourceClaimStatuses");
    const json& refs = Arr(Obj(*pod, "spec"), "resourceClaims");
    for (size_t i = 0; i < refs.size(); ++i) {
      const std::string entry = Str(refs[i], "name");
      std::string claim_name = Str(refs[i], "resourceClaimName");
      if (claim_name.empty()) {
        for (const json& s : statuses) {
          if (Str(s, "name") == entry) claim_name = Str(s, "resourceClaimName");
        }
      }
      if (claim_name.empty()) {
        return Fail(409, absl::StrCat("pod ", pod_key, ": spec.resourceClaims[", i, "] (", entry,
                                      ") has no claim yet "
                                      "(status.resourceClaimStatuses has no name for it)"));
      }
      absl::StatusOr<json> claim = api_.Get(
          absl::StrCat("/apis/resource.k8s.io/v1/namespaces/", ns, "/resourceclaims/", claim_name));
      if (!claim.ok()) {
        return Fail(absl::IsNotFound(claim.status()) ? 404 : 502, claim.status().ToString());
      }
      const json& status = Obj(*claim, "status");
      if (prepare) {
        bool reserved = false;
        for (const json& r : Arr(status, "reservedFor")) reserved |= Str(r, "uid") == pod_uid;
        if (!reserved) {
          return Fail(409, absl::StrCat("claim ", ns, "/", claim_name, " is not reserved for pod ",
                                        pod_key));
        }
      }
      const json& results = Arr(Obj(Obj(status, "allocation"), "devices"), "results");
      if (results.empty() && prepare) {
        return Fail(409, absl::StrCat("claim ", ns, "/", claim_name, " is not allocated"));
      }
      std::set<std::string> drivers;
      for (const json& r : results) drivers.insert(Str(r, "driver"));
      for (const std::string& d : drivers) {
        by_driver[d].push_back(ClaimCall{ns, Str(Obj(*claim, "metadata"), "uid"), claim_name});
      }
    }
  }

  // The claim-info cache decides which claims reach the driver (see kubelet.h).
  json claims = json::object();
  std::map<std::string, std::vector<ClaimCall>> to_call;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [driver, calls] : by_driver) {
      for (const ClaimCall& c : calls) {
        auto it = claim_infos_.find(c.uid);
        if (prepare) {
          if (it == claim_infos_.end()) {
            to_call[driver].push_back(c);
            continue;
          }
          json cached = it->second.answer;
          cached["cached"] = true;
          claims[c.uid] = std::move(cached);
          continue;
        }
        if (it != claim_infos_.end()) {
          std::set<std::string>& pods = it->second.pods;
          if (std::any_of(pods.begin(), pods.end(),
                          [&](const std::string& p) { return p != pod_key; })) {
            pods.erase(pod_key);  // other pods still use the claim: only this reference goes
            continue;
          }
        }
        to_call[driver].push_back(c);
      }
    }
  }
  absl::Status call_st;
  for (const auto& [driver, calls] : to_call) {
    call_st = Call(driver, calls, api, prepare, claims);
    if (!call_st.ok()) break;
  }
  bool all_ok = call_st.ok();
  for (const auto& [_, r] : claims.items()) all_ok &= Str(r, "error").empty();
  auto answered_ok = [&](const std::string& uid) {
    auto it = claims.find(uid);
    return it != claims.end() && Str(*it, "error").empty();
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    if (prepare && all_ok) {
      prepared_[pod_key] = by_driver;
      for (const auto& [_, calls] : by_driver) {
        for (const ClaimCall& c : calls) {
          ClaimInfo& info = claim_infos_[c.uid];
          if (info.answer.is_null()) info.answer = claims[c.uid];
          info.pods.insert(pod_key);
        }
      }
    }
    if (!prepare) {
      // Unprepared claims leave the cache; a claim whose unprepare failed stays (with its
      // reference) for the retry.
      for (const auto& [_, calls] : to_call) {
        for (const ClaimCall& c : calls) {
          if (answered_ok(c.uid)) claim_infos_.erase(c.uid);
        }
      }
      if (all_ok) prepared_.erase(pod_key);
    }
  }
  if (!call_st.ok()) return HttpAnswer{502, {{"error", call_st.ToString()}, {"claims", claims}}};
  return HttpAnswer{200, {{"claims", claims}}};
}

HttpAnswer Kubelet::PrepareClaims(const json& body, const std::string& api, bool prepare) {
  std::vector<ClaimCall> calls;
  for (const json& c : Arr(body, "claims")) {
    calls.push_back(ClaimCall{Str(c, "namespace"), Str(c, "uid"), Str(c, "name")});
  }
  if (calls.empty()) return Fail(400, "body needs \"claims\": [{namespace, name, uid}]");
  std::string driver = Str(body, "driver");
  if (driver.empty()) {
    std::lock_guard<std::mutex> l(mu_);
    std::set<std::string> names;
    for (const auto& [_, p] : plugins_) names.insert(p.name);
    if (names.size() != 1) {
      return Fail(400, "give \"driver\": there is not exactly one registered driver");
    }
    driver = *names.begin();
  }
  json claims = json::object();
  absl::Status st = Call(driver, calls, api, prepare, claims);
  if (!st.ok()) return HttpAnswer{502, {{"error", st.ToString()}, {"claims", claims}}};
  return HttpAnswer{200, {{"claims", claims}}};
}

}  // namespace knd::localcp
