#include "nri/plugin.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "common/metrics.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "nri/mux.h"
#include "nri/ttrpc.h"

namespace knd::nri {
namespace {

constexpr char kPluginService[] = "nri.pkg.api.v1alpha1.Plugin";
constexpr char kRuntimeService[] = "nri.pkg.api.v1alpha1.Runtime";

absl::StatusOr<UniqueFd> Dial(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket(AF_UNIX)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("NRI socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus("connect " + path);
  }
  return fd;
}

bool ValidIndex(const std::string& idx) {
  return idx.size() == 2 && std::isdigit(static_cast<unsigned char>(idx[0])) &&
         std::isdigit(static_cast<unsigned char>(idx[1]));
}

bool ValidName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '+' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

// One connection to the runtime. Member order matters for teardown; see ~Session.
class Plugin::Session {
 public:
  Session(Plugin* p, UniqueFd fd) : plugin_(p), mux_(std::make_unique<Mux>(std::move(fd))) {
    server_ = std::make_unique<ttrpc::Server>(mux_->Open(kPluginServiceConn));
    client_ = std::make_unique<ttrpc::Client>(mux_->Open(kRuntimeServiceConn));
    mux_->Attach(kPluginServiceConn, server_.get());
    mux_->Attach(kRuntimeServiceConn, client_.get());
    RegisterMethods();
  }

  ~Session() {
    mux_->Close();
    server_->Shutdown();  // waits for a running handler
    mux_.reset();         // joins the reader, which may still be calling into server/client
    client_.reset();
    server_.reset();
  }

  void Start() { mux_->Start(); }
  void Close() { mux_->Close(); }
  bool Wait(absl::Duration d) { return mux_->Wait(d); }

  absl::Status Register() {
    api::RegisterPluginRequest req;
    req.set_plugin_name(plugin_->opts_.name);
    req.set_plugin_idx(plugin_->opts_.index);
    req.set_nri_version("v0.12.0");
    return client_
        ->CallTyped<api::Empty>(kRuntimeService, "RegisterPlugin", req,
                                plugin_->opts_.register_timeout)
        .status();
  }

 private:
  // Runs a handler call, warning when it is slow enough to risk the runtime's timeout.
  template <typename F>
  auto Timed(const char* what, const std::string& pod, F&& fn) {
    absl::Time start = absl::Now();
    auto result = fn();
    absl::Duration took = absl::Now() - start;
    static auto& hist = metrics::Default().Histogram(
        "knd_nri_hook_duration_seconds", "Time spent in an NRI hook, by event and outcome.",
        {"event", "outcome"});
    hist.Observe({what, result.ok() ? "success" : "error"}, absl::ToDoubleSeconds(took));
    if (took > plugin_->opts_.slow_handler) {
      spdlog::warn("NRI {} for pod {} took {} (runtimes drop plugins after ~2s)", what, pod,
                   absl::FormatDuration(took));
    }
    return result;
  }

  static std::string PodName(const api::PodSandbox& pod) {
    return pod.namespace_() + "/" + pod.name() + " (uid " + pod.uid() + ")";
  }

  absl::Status PodEvent(api::Event ev, const api::PodSandbox& pod) {
    Handler& h = plugin_->handler_;
    switch (ev) {
      case api::RUN_POD_SANDBOX:
        return Timed("RunPodSandbox", PodName(pod), [&] { return h.RunPodSandbox(pod); });
      case api::STOP_POD_SANDBOX:
        return Timed("StopPodSandbox", PodName(pod), [&] { return h.StopPodSandbox(pod); });
      case api::REMOVE_POD_SANDBOX:
        return Timed("RemovePodSandbox", PodName(pod), [&] { return h.RemovePodSandbox(pod); });
      default:
        return absl::OkStatus();  // not subscribed; nothing to do
    }
  }

  void RegisterMethods() {
    ttrpc::Server& s = *server_;
    Handler& h = plugin_->handler_;
    s.RegisterTyped<api::ConfigureRequest, api::ConfigureResponse>(
        kPluginService, "Configure",
        [this, &h](const api::ConfigureRequest& req) -> absl::StatusOr<api::ConfigureResponse> {
          spdlog::info("NRI: configured by runtime {} {} (NRI {}, request timeout {} ms)",
                       req.runtime_name(), req.runtime_version(), req.nri_version(),
                       req.request_timeout());
          pods_.clear();
          containers_.clear();
          RETURN_IF_ERROR(h.Configure(req.runtime_name(), req.runtime_version(),
                                      std::chrono::milliseconds(req.request_timeout())));
          api::ConfigureResponse resp;
          resp.set_events(kSubscribedEvents);
          return resp;
        });
    s.RegisterTyped<api::SynchronizeRequest, api::SynchronizeResponse>(
        kPluginService, "Synchronize",
        [this, &h](const api::SynchronizeRequest& req) -> absl::StatusOr<api::SynchronizeResponse> {
          pods_.insert(pods_.end(), req.pods().begin(), req.pods().end());
          containers_.insert(containers_.end(), req.containers().begin(), req.containers().end());
          api::SynchronizeResponse resp;
          if (req.more()) {
            // Split sync: acknowledge each chunk with more=true and no updates.
            resp.set_more(true);
            return resp;
          }
          std::vector<api::PodSandbox> pods = std::move(pods_);
          std::vector<api::Container> containers = std::move(containers_);
          pods_.clear();
          containers_.clear();
          absl::Status st =
              Timed("Synchronize", "(all)", [&] { return h.Synchronize(pods, containers); });
          RETURN_IF_ERROR(st);
          plugin_->connected_ = true;
          plugin_->sessions_++;
          spdlog::info("NRI: synchronized ({} pods, {} containers)", pods.size(),
                       containers.size());
          return resp;
        });
    s.RegisterTyped<api::Empty, api::Empty>(
        kPluginService, "Shutdown", [](const api::Empty&) -> absl::StatusOr<api::Empty> {
          spdlog::info("NRI: runtime asked the plugin to shut down");
          return api::Empty();
        });
    s.RegisterTyped<api::RunPodSandboxRequest, api::RunPodSandboxResponse>(
        kPluginService, "RunPodSandbox",
        [this](const api::RunPodSandboxRequest& req) -> absl::StatusOr<api::RunPodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::RUN_POD_SANDBOX, req.pod()));
          return api::RunPodSandboxResponse();
        });
    s.RegisterTyped<api::StopPodSandboxRequest, api::StopPodSandboxResponse>(
        kPluginService, "StopPodSandbox",
        [this](
            const api::StopPodSandboxRequest& req) -> absl::StatusOr<api::StopPodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::STOP_POD_SANDBOX, req.pod()));
          return api::StopPodSandboxResponse();
        });
    s.RegisterTyped<api::RemovePodSandboxRequest, api::RemovePodSandboxResponse>(
        kPluginService, "RemovePodSandbox",
        [this](const api::RemovePodSandboxRequest& req)
            -> absl::StatusOr<api::RemovePodSandboxResponse> {
          RETURN_IF_ERROR(PodEvent(api::REMOVE_POD_SANDBOX, req.pod()));
          return api::RemovePodSandboxResponse();
        });
    s.RegisterTyped<api::StateChangeEvent, api::Empty>(
        kPluginService, "StateChange",
        [this](const api::StateChangeEvent& ev) -> absl::StatusOr<api::Empty> {
          RETURN_IF_ERROR(PodEvent(ev.event(), ev.pod()));
          return api::Empty();
        });
    s.RegisterTyped<api::CreateContainerRequest, api::CreateContainerResponse>(
        kPluginService, "CreateContainer",
        [this, &h](const api::CreateContainerRequest& req)
            -> absl::StatusOr<api::CreateContainerResponse> {
          absl::StatusOr<api::ContainerAdjustment> adj =
              Timed("CreateContainer", PodName(req.pod()),
                    [&] { return h.CreateContainer(req.pod(), req.container()); });
          if (!adj.ok()) return adj.status();
          api::CreateContainerResponse resp;
          *resp.mutable_adjust() = std::move(*adj);
          return resp;
        });
  }

  Plugin* plugin_;
  // Split-sync accumulation; touched only by the server's single worker thread.
  std::vector<api::PodSandbox> pods_;
  std::vector<api::Container> containers_;
  std::unique_ptr<Mux> mux_;
  std::unique_ptr<ttrpc::Server> server_;
  std::unique_ptr<ttrpc::Client> client_;
};

Plugin::Plugin(Options opts, Handler& handler) : opts_(std::move(opts)), handler_(handler) {}

Plugin::~Plugin() { Stop(); }

absl::Status Plugin::Start() {
  if (!ValidIndex(opts_.index)) {
    return absl::InvalidArgumentError("NRI plugin index \"" + opts_.index +
                                      "\" must be exactly two digits (00-99)");
  }
  if (!ValidName(opts_.name)) {
    return absl::InvalidArgumentError("NRI plugin name \"" + opts_.name +
                                      "\" must be non-empty and use only [a-zA-Z0-9_.+-]");
  }
  if (opts_.socket_path.empty()) return absl::InvalidArgumentError("NRI socket path is empty");
  {
    std::lock_guard<std::mutex> l(mu_);
    if (thread_.joinable()) return absl::FailedPreconditionError("NRI plugin already started");
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Plugin::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (current_ != nullptr) current_->Close();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Plugin::SleepOrStop(absl::Duration d) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, absl::ToChronoNanoseconds(d), [this] { return stop_; });
}

void Plugin::Run() {
  absl::Duration backoff = opts_.backoff_min;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    if (RunSession()) backoff = opts_.backoff_min;
    connected_ = false;
    if (SleepOrStop(backoff)) return;
    backoff = std::min(backoff * 2, opts_.backoff_max);
  }
}

bool Plugin::RunSession() {
  absl::StatusOr<UniqueFd> fd = Dial(opts_.socket_path);
  if (!fd.ok()) {
    spdlog::debug("NRI: cannot connect: {}", fd.status().ToString());
    return false;
  }
  auto session = std::make_unique<Session>(this, std::move(*fd));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return false;
    current_ = session.get();
  }
  session->Start();
  bool registered = false;
  absl::Status st = session->Register();
  if (!st.ok()) {
    spdlog::warn("NRI: RegisterPlugin failed: {}", st.ToString());
  } else {
    registered = true;
    spdlog::info("NRI: registered as {}-{} on {}", opts_.index, opts_.name, opts_.socket_path);
    while (!session->Wait(absl::Seconds(1))) {
    }
    spdlog::warn("NRI: connection to the runtime closed; reconnecting");
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    current_ = nullptr;
  }
  connected_ = false;
  session.reset();
  return registered;
}

}  // namespace knd::nri
