#include "runtime_core.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netns/netns.h"
#include "nri/mux.h"
#include "nri/ttrpc.h"

namespace knd::localcp {
namespace {

constexpr char kPluginService[] = "nri.pkg.api.v1alpha1.Plugin";
constexpr char kRuntimeService[] = "nri.pkg.api.v1alpha1.Runtime";

int32_t Bit(api::Event ev) { return 1 << (static_cast<int>(ev) - 1); }

std::string Hex(int32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(v));
  return buf;
}

}  // namespace

absl::StatusOr<int32_t> ValidEventsFor(const std::string& v) {
  if (v == "0.8") return 0x07FF;
  if (v == "0.10" || v == "0.12") return 0x3FFF;
  return absl::InvalidArgumentError("--nri-version \"" + v + "\": want 0.8, 0.10 or 0.12");
}

struct RuntimeCore::Conn {
  explicit Conn(UniqueFd fd) : mux(std::make_unique<nri::Mux>(std::move(fd))) {
    server = std::make_unique<nri::ttrpc::Server>(mux->Open(nri::kRuntimeServiceConn));
    client = std::make_unique<nri::ttrpc::Client>(mux->Open(nri::kPluginServiceConn));
    mux->Attach(nri::kRuntimeServiceConn, server.get());
    mux->Attach(nri::kPluginServiceConn, client.get());
  }
  ~Conn() {
    mux->Close();
    server->Shutdown();
    if (setup.joinable()) setup.join();
    mux.reset();  // joins the reader before the sinks go away
    client.reset();
    server.reset();
  }
  std::string Id() const { return index + "-" + name; }

  std::unique_ptr<nri::Mux> mux;
  std::unique_ptr<nri::ttrpc::Server> server;
  std::unique_ptr<nri::ttrpc::Client> client;
  std::thread setup;
  std::atomic<bool> setup_done{false};
  // Guarded by RuntimeCore::mu_.
  bool registered = false;
  bool active = false;
  bool dropped = false;
  std::string name, index;
  int32_t events = 0;
};

absl::StatusOr<std::unique_ptr<RuntimeCore>> RuntimeCore::Start(RuntimeOptions opts) {
  std::unique_ptr<RuntimeCore> rc(new RuntimeCore(std::move(opts)));
  ASSIGN_OR_RETURN(rc->valid_events_, ValidEventsFor(rc->opts_.nri_version));
  const std::string& path = rc->opts_.socket_path;
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (!dir.empty()) RETURN_IF_ERROR(MakeDirs(dir, 0700));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove " + path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("NRI socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus("bind " + path);
  }
  if (::listen(fd.get(), 16) != 0) return ErrnoStatus("listen " + path);
  rc->listen_fd_ = fd.Release();
  RuntimeCore* self = rc.get();
  rc->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  spdlog::info("knd-runtime: NRI {} serving {}", rc->opts_.nri_version, path);
  return rc;
}

RuntimeCore::RuntimeCore(RuntimeOptions opts) : opts_(std::move(opts)) {}

RuntimeCore::~RuntimeCore() { Stop(); }

void RuntimeCore::Stop() {
  std::list<std::unique_ptr<Conn>> conns;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& c : conns_) c->mux->Close();
  }
  cv_.notify_all();
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  {
    // Wait for a running event to finish before tearing connections down; destroy them
    // outside event_mu_, since a set-up thread being joined may be waiting for it.
    std::lock_guard<std::mutex> el(event_mu_);
    std::lock_guard<std::mutex> l(mu_);
    conns.swap(conns_);
  }
  conns.clear();
  ::unlink(opts_.socket_path.c_str());
}

void RuntimeCore::AcceptLoop() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    auto conn = std::make_unique<Conn>(UniqueFd(fd));
    Conn* c = conn.get();
    std::list<std::unique_ptr<Conn>> dead;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopped_) return;
      // Reap connections that are closed and whose set-up ended. Events never hold a Conn
      // across this point: they run under event_mu_, taken below.
      for (auto it = conns_.begin(); it != conns_.end();) {
        if ((*it)->setup_done && (*it)->mux->closed() && !(*it)->active) {
          dead.push_back(std::move(*it));
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
      conns_.push_back(std::move(conn));
    }
    dead.clear();
    c->server->RegisterTyped<api::RegisterPluginRequest, api::Empty>(
        kRuntimeService, "RegisterPlugin",
        [this, c](const api::RegisterPluginRequest& req) -> absl::StatusOr<api::Empty> {
          const std::string& idx = req.plugin_idx();
          if (req.plugin_name().empty()) {
            return absl::InvalidArgumentError("RegisterPlugin: plugin_name is empty");
          }
          if (idx.size() != 2 || !std::isdigit(static_cast<unsigned char>(idx[0])) ||
              !std::isdigit(static_cast<unsigned char>(idx[1]))) {
            return absl::InvalidArgumentError("RegisterPlugin: invalid plugin_idx \"" + idx +
                                              "\" (want two digits)");
          }
          {
            std::lock_guard<std::mutex> l(mu_);
            c->name = req.plugin_name();
            c->index = idx;
            c->registered = true;
          }
          cv_.notify_all();
          return api::Empty();
        });
    c->server->RegisterTyped<api::UpdateContainersRequest, api::UpdateContainersResponse>(
        kRuntimeService, "UpdateContainers",
        [](const api::UpdateContainersRequest&) -> absl::StatusOr<api::UpdateContainersResponse> {
          return api::UpdateContainersResponse();  // no containers to update in the stand-in
        });
    c->mux->Start();
    c->setup = std::thread([this, c] {
      SetUp(c);
      c->setup_done = true;
    });
  }
}

void RuntimeCore::SetUp(Conn* c) {
  {
    std::unique_lock<std::mutex> l(mu_);
    bool ok = cv_.wait_for(l, absl::ToChronoNanoseconds(opts_.registration_timeout),
                           [&] { return c->registered || stopped_ || c->mux->closed(); });
    if (!ok || !c->registered) {
      if (!stopped_) spdlog::warn("knd-runtime: plugin did not register in time; closing");
      c->mux->Close();
      return;
    }
  }
  api::ConfigureRequest creq;
  creq.set_runtime_name(opts_.runtime_name);
  creq.set_runtime_version(opts_.runtime_version);
  creq.set_registration_timeout(absl::ToInt64Milliseconds(opts_.registration_timeout));
  creq.set_request_timeout(absl::ToInt64Milliseconds(opts_.request_timeout));
  if (opts_.nri_version == "0.12") creq.set_nri_version("v0.12.0");
  absl::StatusOr<api::ConfigureResponse> cresp = c->client->CallTyped<api::ConfigureResponse>(
      kPluginService, "Configure", creq, opts_.request_timeout);
  if (!cresp.ok()) {
    spdlog::warn("knd-runtime: closing plugin {}: Configure failed: {}", c->Id(),
                 cresp.status().ToString());
    c->mux->Close();
    return;
  }
  int32_t events = cresp->events() == 0 ? valid_events_ : cresp->events();
  if ((events & ~valid_events_) != 0) {
    spdlog::warn("knd-runtime: closing plugin {}: invalid plugin events: {}", c->Id(), Hex(events));
    c->mux->Close();
    return;
  }
  std::lock_guard<std::mutex> el(event_mu_);
  absl::Status st = Synchronize(c);
  if (!st.ok()) {
    spdlog::warn("knd-runtime: closing plugin {}: Synchronize failed: {}", c->Id(), st.ToString());
    c->mux->Close();
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    c->events = events;
    c->active = !c->mux->closed();
  }
  cv_.notify_all();
  spdlog::info("knd-runtime: plugin {} active, events {}", c->Id(), Hex(events));
}

absl::Status RuntimeCore::Synchronize(Conn* c) {
  std::vector<api::PodSandbox> pods;
  std::vector<api::Container> containers;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, p] : pods_) pods.push_back(p);
    containers = containers_;
  }
  // One deadline covers the whole (possibly split) exchange, as in containerd/nri.
  absl::Time deadline = absl::Now() + opts_.request_timeout;
  size_t chunk =
      opts_.sync_chunk_pods == 0 ? std::max<size_t>(pods.size(), 1) : opts_.sync_chunk_pods;
  size_t i = 0;
  for (;;) {
    api::SynchronizeRequest req;
    size_t end = std::min(pods.size(), i + chunk);
    for (; i < end; ++i) *req.add_pods() = pods[i];
    bool more = i < pods.size();
    if (!more) {
      for (auto& ct : containers) *req.add_containers() = ct;
    }
    req.set_more(more);
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("Synchronize timed out");
    absl::StatusOr<api::SynchronizeResponse> resp =
        c->client->CallTyped<api::SynchronizeResponse>(kPluginService, "Synchronize", req, left);
    if (resp.status().code() == absl::StatusCode::kResourceExhausted && !more &&
        req.pods_size() == static_cast<int>(pods.size()) && pods.size() > 1) {
      // Too big for one ttrpc message: split it, as containerd/nri does.
      chunk = std::max<size_t>(1, pods.size() / 8);
      i = 0;
      continue;
    }
    if (!resp.ok()) return resp.status();
    if (more) {
      if (!resp->more() || resp->update_size() > 0) {
        return absl::FailedPreconditionError("plugin does not handle split sync requests");
      }
      continue;
    }
    return absl::OkStatus();
  }
}

std::vector<PluginInfo> RuntimeCore::Plugins() {
  std::vector<PluginInfo> out;
  std::lock_guard<std::mutex> l(mu_);
  for (auto& c : conns_) {
    if (c->active && !c->dropped && !c->mux->closed()) {
      out.push_back({c->name, c->index, c->events});
    }
  }
  std::sort(out.begin(), out.end(), [](const PluginInfo& a, const PluginInfo& b) {
    return std::tie(a.index, a.name) < std::tie(b.index, b.name);
  });
  return out;
}

bool RuntimeCore::WaitForPlugins(size_t n, absl::Duration timeout) {
  absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (Plugins().size() >= n) return true;
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(20));
  }
  return Plugins().size() >= n;
}

std::vector<RuntimeCore::Conn*> RuntimeCore::Active(api::Event ev) {
  std::vector<Conn*> out;
  std::lock_guard<std::mutex> l(mu_);
  for (auto& c : conns_) {
    if (c->active && !c->dropped && !c->mux->closed() && (c->events & Bit(ev)) != 0) {
      out.push_back(c.get());
    }
  }
  std::sort(out.begin(), out.end(), [](Conn* a, Conn* b) {
    return std::tie(a->index, a->name) < std::tie(b->index, b->name);
  });
  return out;
}

bool RuntimeCore::DropIfFatal(Conn* c, const absl::Status& st, const char* what) {
  // containerd/nri isFatalError: closed connection, protocol error, or the plugin missed
  // the request deadline. The CRI operation goes on as if the plugin had said nothing. A
  // status the plugin replied with (whatever its code) is an answer: it fails the call.
  if (nri::ttrpc::IsPeerStatus(st) || (st.code() != absl::StatusCode::kDeadlineExceeded &&
                                       st.code() != absl::StatusCode::kUnavailable)) {
    return false;
  }
  spdlog::warn("knd-runtime: closing plugin {}: {} failed: {}", c->Id(), what, st.ToString());
  {
    std::lock_guard<std::mutex> l(mu_);
    c->dropped = true;
    c->active = false;
  }
  c->mux->Close();
  return true;
}

absl::Status RuntimeCore::PodEvent(api::Event ev, const api::PodSandbox& pod) {
  const char* method = ev == api::RUN_POD_SANDBOX    ? "RunPodSandbox"
                       : ev == api::STOP_POD_SANDBOX ? "StopPodSandbox"
                                                     : "RemovePodSandbox";
  std::lock_guard<std::mutex> el(event_mu_);
  for (Conn* c : Active(ev)) {
    absl::Status st = absl::UnimplementedError("no dedicated RPC before NRI 0.12");
    if (opts_.nri_version == "0.12") {
      // Run/Stop/RemovePodSandboxRequest are wire-identical ({pod = 1}).
      api::RunPodSandboxRequest req;
      *req.mutable_pod() = pod;
      Count(method);
      st = c->client
               ->CallTyped<api::RunPodSandboxResponse>(kPluginService, method, req,
                                                       opts_.request_timeout)
               .status();
    }
    if (st.code() == absl::StatusCode::kUnimplemented) {
      api::StateChangeEvent sc;
      sc.set_event(ev);
      *sc.mutable_pod() = pod;
      Count("StateChange");
      st =
          c->client->CallTyped<api::Empty>(kPluginService, "StateChange", sc, opts_.request_timeout)
              .status();
    }
    if (st.ok() || DropIfFatal(c, st, method)) continue;
    return Annotate(st, std::string("plugin ") + c->Id() + " " + method);
  }
  return absl::OkStatus();
}

void RuntimeCore::Count(const std::string& method) {
  std::lock_guard<std::mutex> l(mu_);
  calls_[method]++;
}

std::map<std::string, int> RuntimeCore::CallCounts() {
  std::lock_guard<std::mutex> l(mu_);
  return calls_;
}

absl::Status RuntimeCore::RunPodSandbox(const api::PodSandbox& pod) {
  RETURN_IF_ERROR(PodEvent(api::RUN_POD_SANDBOX, pod));
  std::lock_guard<std::mutex> l(mu_);
  pods_[pod.id()] = pod;
  return absl::OkStatus();
}

absl::Status RuntimeCore::StopPodSandbox(const api::PodSandbox& pod) {
  return PodEvent(api::STOP_POD_SANDBOX, pod);
}

absl::Status RuntimeCore::RemovePodSandbox(const api::PodSandbox& pod) {
  absl::Status st = PodEvent(api::REMOVE_POD_SANDBOX, pod);
  std::lock_guard<std::mutex> l(mu_);
  pods_.erase(pod.id());
  std::erase_if(containers_,
                [&](const api::Container& c) { return c.pod_sandbox_id() == pod.id(); });
  return st;
}

absl::StatusOr<api::ContainerAdjustment> RuntimeCore::CreateContainer(
    const api::PodSandbox& pod, const api::Container& container) {
  api::ContainerAdjustment merged;
  {
    std::lock_guard<std::mutex> el(event_mu_);
    for (Conn* c : Active(api::CREATE_CONTAINER)) {
      api::CreateContainerRequest req;
      *req.mutable_pod() = pod;
      *req.mutable_container() = container;
      Count("CreateContainer");
      absl::StatusOr<api::CreateContainerResponse> resp =
          c->client->CallTyped<api::CreateContainerResponse>(kPluginService, "CreateContainer", req,
                                                             opts_.request_timeout);
      if (!resp.ok()) {
        if (DropIfFatal(c, resp.status(), "CreateContainer")) continue;
        return Annotate(resp.status(), "plugin " + c->Id() + " CreateContainer");
      }
      merged.MergeFrom(resp->adjust());
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  containers_.push_back(container);
  return merged;
}

// ---------------------------------------------------------------- NetnsOps

namespace {
class RealNetns : public NetnsOps {
 public:
  explicit RealNetns(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<std::string> Create(const std::string& name) override {
    return netns::CreateNamed(name, dir_);
  }
  absl::Status Delete(const std::string& path) override { return netns::DeleteNamed(path); }

 private:
  std::string dir_;
};
}  // namespace

std::unique_ptr<NetnsOps> RealNetnsOps(const std::string& dir) {
  return std::make_unique<RealNetns>(dir);
}

}  // namespace knd::localcp
